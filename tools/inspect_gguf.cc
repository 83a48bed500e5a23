#include "tools/inspect_gguf.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <vector>

#include "format/ggml_types.h"
#include "format/gguf.h"
#include "format/gguf_checkpoint.h"
#include "kernels/weight.h"
#include "tools/inspect.h"

namespace dsinfer {
namespace {

std::string GiB(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f GiB", b / double(1ull << 30));
  return buf;
}

}  // namespace

namespace {

// The ggml names of the weights the model multiplies at its bf16 GEMM sites: what
// gguf_checkpoint.cc maps to the names IsBf16Site (model/weights.cc) lists — the projections of
// attention, the indexer and every MLP (dense, shared, routed experts).
bool GgufBf16Site(std::string_view name) {
  static constexpr std::string_view kSites[] = {
      "attn_q_a",      "attn_q_b",       "attn_q",        "attn_kv_a_mqa",  "attn_output",
      "indexer.attn_q_b", "indexer.attn_k", "ffn_gate",   "ffn_up",         "ffn_down",
      "ffn_gate_exps", "ffn_up_exps",    "ffn_down_exps", "ffn_gate_shexp", "ffn_up_shexp",
      "ffn_down_shexp"};
  if (!name.starts_with("blk.") || !name.ends_with(".weight")) return false;
  const size_t dot = name.find('.', 4);
  if (dot == std::string_view::npos) return false;
  const std::string_view mid = name.substr(dot + 1, name.size() - dot - 1 - 7);
  return std::find(std::begin(kSites), std::end(kSites), mid) != std::end(kSites);
}

// The bytes the 16-row tile copy adds for tensor `t` (0 unless a block weight (TileRepackDtype) of
// a bf16 site): 16-row tiles per matrix (an expert of a stacked tensor), as RepackBlocksBf16.
uint64_t Bf16RepackGrowth(const GgufTensorInfo& t) {
  const std::optional<DType> d = DTypeOfGgml(t.type);
  if (!d || !TileRepackDtype(*d) || t.dims.size() < 2 || !GgufBf16Site(t.name)) return 0;
  int64_t mats = 1;
  for (size_t i = 2; i < t.dims.size(); ++i) mats *= t.dims[i];
  const int64_t tiles = (t.dims[1] + kBlockTileRows - 1) / kBlockTileRows;
  const uint64_t copy = static_cast<uint64_t>(mats * tiles * BlockTileBytes(*d, t.dims[0]));
  return copy > t.nbytes ? copy - t.nbytes : 0;
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
      r.size.tile_repack += Bf16RepackGrowth(t);
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
