// `dsinfer gguf-dump FILE [--out-dir DIR]` (developer command, hidden from --help): the parsed
// header of a GGUF file as one JSON object, and optionally every decodable tensor dequantised to
// f32 as DIR/<index>.npy (row-major, `shape` order). Used by tests/reference/check_gguf.py to
// compare the reader and decoders with the independent NumPy ones.
//
// JSON: {"version", "alignment", "data_offset",
//        "metadata": [{"key", "type", "value"}...] in file order, arrays as
//          {"elem_type", "items": [...]} (nested for arrays of arrays),
//        "tensors": [{"name", "type", "dims" (ggml order), "offset", "nbytes"}...]}.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/npy.h"
#include "cli/commands.h"
#include "format/gguf.h"

namespace dsinfer::cli {
namespace {

struct Options {
  std::string file;
  std::string out_dir;
};

nlohmann::json ScalarJson(const GgufValue& v) {
  switch (v.type) {
    case GgufType::kBool:
      return v.u != 0;
    case GgufType::kU8:
    case GgufType::kU16:
    case GgufType::kU32:
    case GgufType::kU64:
      return v.u;
    case GgufType::kI8:
    case GgufType::kI16:
    case GgufType::kI32:
    case GgufType::kI64:
      return v.i;
    case GgufType::kF32:
    case GgufType::kF64:
      return v.f;
    case GgufType::kString:
      return v.str;
    default:
      return nullptr;
  }
}

nlohmann::json ValueJson(const GgufValue& v) {
  if (v.type != GgufType::kArray) return ScalarJson(v);
  nlohmann::json items = nlohmann::json::array();
  if (v.elem_type == GgufType::kString) {
    for (const std::string& s : v.strings) items.push_back(s);
  } else if (v.elem_type == GgufType::kArray) {
    for (const GgufValue& a : v.arrays) items.push_back(ValueJson(a));
  } else {
    for (uint64_t k = 0; k < v.count; ++k) items.push_back(ScalarJson(v.At(k)));
  }
  return {{"elem_type", GgufTypeName(v.elem_type)}, {"items", std::move(items)}};
}

int RunGgufDump(const Options& o) {
  const GgufFile f = GgufFile::Open(o.file);
  const GgufHeader& h = f.header();
  nlohmann::json j = {{"version", h.version},
                      {"alignment", h.alignment},
                      {"data_offset", h.data_offset},
                      {"metadata", nlohmann::json::array()},
                      {"tensors", nlohmann::json::array()}};
  for (const auto& [key, value] : h.metadata)
    j["metadata"].push_back(
        {{"key", key}, {"type", GgufTypeName(value.type)}, {"value", ValueJson(value)}});
  for (const GgufTensorInfo& t : h.tensors)
    j["tensors"].push_back({{"name", t.name},
                            {"type", GgmlTypeName(t.type)},
                            {"dims", t.dims},
                            {"offset", t.offset},
                            {"nbytes", t.nbytes}});
  std::printf("%s\n", j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  if (!o.out_dir.empty()) {
    std::filesystem::create_directories(o.out_dir);
    for (size_t t = 0; t < h.tensors.size(); ++t) {
      const GgufTensorInfo& info = h.tensors[t];
      if (!GgmlTypeOf(info.type).decodable) continue;
      const std::vector<float> values = f.Dequantize(info);
      WriteNpy(o.out_dir + "/" + std::to_string(t) + ".npy", values.data(), info.shape());
    }
  }
  return 0;
}

CommandRegistrar reg("gguf-dump", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand("gguf-dump", "Dump a GGUF file's header (developer tool)");
  sub->group("");  // hidden from --help
  auto o = std::make_shared<Options>();
  sub->add_option("file", o->file, "GGUF file")->required();
  sub->add_option("--out-dir", o->out_dir, "write every decodable tensor as <index>.npy here");
  return [o] { return RunGgufDump(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
