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
  r.decoded_bytes = GgufDecodedBytes(files);
  for (const GgufFile& f : files)
    for (const GgufTensorInfo& t : f.tensors()) {
      const std::string type(GgmlTypeName(t.type));
      ++r.tensors;
      ++r.tensors_by_type[type];
      r.bytes_by_type[type] += t.nbytes;
      r.file_bytes += t.nbytes;
      r.weights += t.numel();
      if (t.name.find("_exps.") != std::string::npos) {
        r.expert_bytes += t.nbytes;
        r.expert_weights += t.numel();
      }
    }
  r.context = context;
  const CacheBytes cb = CacheBytesPerToken(r.config);
  const auto layers = static_cast<uint64_t>(r.config.num_hidden_layers);
  const uint64_t idx = static_cast<uint64_t>(cb.indexer);
  r.cache_bytes_f32 = layers * context * (cb.mla_f32 + idx);
  r.cache_bytes_bf16 = layers * context * (cb.mla_bf16 + idx);
  r.cache_bytes_fp8 = layers * context * (cb.mla_fp8 + idx);
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
  const double expert_bpw = r.expert_weights ? 8.0 * r.expert_bytes / r.expert_weights : 0;
  const int64_t rest_w = r.weights - r.expert_weights;
  const double rest_bpw = rest_w ? 8.0 * (r.file_bytes - r.expert_bytes) / rest_w : 0;
  std::snprintf(buf, sizeof buf,
                "  %lld weights in %s: %.3f bits per weight (routed experts %.3f, the rest %.3f)\n",
                (long long)r.weights, GiB(r.file_bytes).c_str(), r.bits_per_weight(), expert_bpw,
                rest_bpw);
  s += buf;
  const uint64_t total = r.file_bytes + r.decoded_bytes + r.cache_bytes_f32;
  std::snprintf(buf, sizeof buf,
                "  memory at context %lld: mapped tensors %s (kept as stored) + f32 copies %s "
                "+ cache %s (f32; "
                "bf16 %s, fp8 %s) = %s\n",
                (long long)r.context, GiB(r.file_bytes).c_str(), GiB(r.decoded_bytes).c_str(),
                GiB(r.cache_bytes_f32).c_str(), GiB(r.cache_bytes_bf16).c_str(),
                GiB(r.cache_bytes_fp8).c_str(), GiB(total).c_str());
  s += buf;
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
  j["file_bytes"] = r.file_bytes;
  j["weights"] = r.weights;
  j["bits_per_weight"] = r.bits_per_weight();
  j["routed_expert_bytes"] = r.expert_bytes;
  j["routed_expert_weights"] = r.expert_weights;
  j["decoded_bytes"] = r.decoded_bytes;
  j["weights_resident_bytes"] = r.file_bytes + r.decoded_bytes;
  j["context"] = r.context;
  j["cache_bytes"] = {
      {"f32", r.cache_bytes_f32}, {"bf16", r.cache_bytes_bf16}, {"fp8", r.cache_bytes_fp8}};
  return j;
}

}  // namespace dsinfer
