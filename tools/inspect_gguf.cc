#include "tools/inspect_gguf.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "format/gguf.h"
#include "format/gguf_checkpoint.h"
#include "tools/inspect.h"

namespace dsinfer {
namespace {

std::string GiB(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f GiB", b / double(1ull << 30));
  return buf;
}

}  // namespace

GgufInspectReport InspectGguf(const std::string& path, int64_t context) {
  GgufInspectReport r;
  r.path = path;
  std::vector<GgufFile> files;
  for (const std::string& p : GgufSplitPaths(path)) files.push_back(GgufFile::Open(p));
  r.config = GgufModelConfig(files.front());
  r.architecture = files.front().FindKey("general.architecture")->str;
  r.size.copy_bytes = GgufDecodedBytes(files, r.config);
  for (const GgufFile& f : files)
    for (const GgufTensorInfo& t : f.tensors()) {
      const std::string type(GgmlTypeName(t.type));
      ++r.tensors;
      ++r.tensors_by_type[type];
      r.bytes_by_type[type] += t.nbytes;
      r.size.bytes += t.nbytes;
      r.size.weights += t.numel();
      if (t.name.find("_exps.") != std::string::npos) {
        r.size.expert_bytes += t.nbytes;
        r.size.expert_weights += t.numel();
      }
    }
  r.size.SetContext(r.config, context);
  return r;
}

std::string FormatGgufInspect(const GgufInspectReport& r) {
  const ModelConfig& c = r.config;
  std::string s;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s: GGUF, architecture %s (%s)\n"
                "  hidden %lld, layers %lld (+%lld MTP), heads %lld, experts %lld (top %lld), "
                "vocab %lld, indexer %s\n",
                r.path.c_str(), r.architecture.c_str(), c.architectures[0].c_str(),
                (long long)c.hidden_size, (long long)c.num_hidden_layers,
                (long long)c.num_nextn_predict_layers, (long long)c.num_attention_heads,
                (long long)c.n_routed_experts, (long long)c.num_experts_per_tok,
                (long long)c.vocab_size, c.has_indexer() ? "yes (DSA)" : "no (dense MLA)");
  s += buf;
  s += "  tensors: " + std::to_string(r.tensors) + " (";
  bool first = true;
  for (const auto& [type, n] : r.tensors_by_type) {
    s += (first ? "" : ", ") + std::to_string(n) + " " + type + " " + GiB(r.bytes_by_type.at(type));
    first = false;
  }
  s += ")\n";
  s += r.size.Describe("  ", "copies made at load (kv_b, W_UK)");
  return s;
}

nlohmann::json GgufInspectJson(const GgufInspectReport& r) {
  nlohmann::json j;
  j["path"] = r.path;
  j["format"] = "gguf";
  j["architecture"] = r.architecture;
  j["config"] = r.config.ToJson();
  j["tensors"] = r.tensors;
  j["tensors_by_type"] = r.tensors_by_type;
  j["bytes_by_type"] = r.bytes_by_type;
  j["file_bytes"] = r.size.bytes;
  j["decoded_bytes"] = r.size.copy_bytes;
  r.size.AddJson(j);
  return j;
}

}  // namespace dsinfer
