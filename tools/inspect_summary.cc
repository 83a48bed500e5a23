// The human-readable form of an InspectReport.
#include <cstdarg>
#include <cstdio>

#include "tools/inspect.h"

namespace dsinfer {
namespace {

void Append(std::string& out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void Append(std::string& out, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  out += buf;
}

std::string Count(int64_t n) {  // 1.23B / 45.6M / 789
  char buf[32];
  if (n >= 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1'000'000)
    std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

std::string Bytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", n / double(1ull << 30));
  else if (n >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", n / double(1ull << 20));
  else if (n >= (1ull << 10))
    std::snprintf(buf, sizeof buf, "%.2f KiB", n / double(1ull << 10));
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

void AppendArchitecture(std::string& s, const ModelConfig& c, bool has_mtp) {
  int64_t moe = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe += c.is_moe_layer(l);
  Append(s, "architecture: %s (%s)\n", c.architectures.empty() ? "?" : c.architectures[0].c_str(),
         c.model_type.c_str());
  Append(s, "  layers: %lld (%lld dense, %lld MoE), hidden %lld, vocab %lld\n",
         (long long)c.num_hidden_layers, (long long)(c.num_hidden_layers - moe), (long long)moe,
         (long long)c.hidden_size, (long long)c.vocab_size);
  Append(s, "  MLA: %lld heads, q_lora %s, kv_lora %lld, nope %lld, rope %lld, v %lld\n",
         (long long)c.num_attention_heads,
         c.q_lora_rank ? std::to_string(*c.q_lora_rank).c_str() : "none", (long long)c.kv_lora_rank,
         (long long)c.qk_nope_head_dim, (long long)c.qk_rope_head_dim, (long long)c.v_head_dim);
  if (c.has_indexer())
    Append(s, "  indexer (DSA): on, %lld heads x %lld dims, top-%lld\n",
           (long long)c.index_n_heads.value_or(0), (long long)c.index_head_dim.value_or(0),
           (long long)*c.index_topk);
  else
    Append(s, "  indexer (DSA): off (dense attention)\n");
  Append(s,
         "  MoE: %lld routed experts (%lld per token, %lld groups keep %lld), %lld shared, "
         "intermediate %lld; dense intermediate %lld\n",
         (long long)c.n_routed_experts, (long long)c.num_experts_per_tok, (long long)c.n_group,
         (long long)c.topk_group, (long long)c.n_shared_experts, (long long)c.moe_intermediate_size,
         (long long)c.intermediate_size);
  if (c.rope_scaling)
    Append(s, "  RoPE: theta %g, %s factor %g, original %lld; max positions %lld\n", c.rope_theta,
           c.rope_scaling->type.c_str(), c.rope_scaling->factor,
           (long long)c.rope_scaling->original_max_position_embeddings,
           (long long)c.max_position_embeddings);
  else
    Append(s, "  RoPE: theta %g, no scaling; max positions %lld\n", c.rope_theta,
           (long long)c.max_position_embeddings);
  Append(s, "  MTP: %lld layer(s) in config, %s\n", (long long)c.num_nextn_predict_layers,
         c.num_nextn_predict_layers == 0 ? "none"
         : has_mtp                       ? "present"
                                         : "not (fully) present");
}

void AppendList(std::string& s, const char* title, const std::vector<std::string>& items) {
  if (items.empty()) return;
  Append(s, "%s (%zu):\n", title, items.size());
  for (size_t i = 0; i < items.size() && i < 50; ++i) Append(s, "  %s\n", items[i].c_str());
  if (items.size() > 50) Append(s, "  ... and %zu more\n", items.size() - 50);
}

}  // namespace

std::string FormatInspectSummary(const InspectReport& r) {
  std::string s;
  Append(s, "checkpoint: %s\n", r.dir.c_str());
  if (r.config) {
    AppendArchitecture(s, *r.config, r.has_mtp);
    Append(s,
           "parameters: %s total, %s active per token (indexer %s), MTP %s (%s without its "
           "embedding/head copies)\n",
           Count(r.params.total).c_str(), Count(r.params.active).c_str(),
           Count(r.params.indexer).c_str(), Count(r.params.mtp).c_str(),
           Count(r.params.mtp_unique).c_str());
    Append(s, "bytes: %s total;", Bytes(r.total_bytes).c_str());
    for (const auto& [dtype, n] : r.bytes_by_dtype)
      Append(s, " %s %s;", dtype.c_str(), Bytes(n).c_str());
    s += "\n";
    s += r.size.Describe("", "copies made at load (kv_b)");
    const ScaleStats& f = r.fp8_scales;
    Append(
        s,
        "FP8 block scales: %lld, min %.4g, max %.4g, geometric mean %.4g, %.1f%% powers of two\n",
        (long long)f.count, f.min, f.max, f.geomean, 100.0 * f.pow2_fraction);
    const CacheBytes& c = r.cache;
    const long long layers = r.config->num_hidden_layers;
    Append(s,
           "cache per token and layer: MLA %lld B (f32) / %lld B (bf16) / %lld B (fp8), indexer "
           "key %lld B\n",
           (long long)c.mla_f32, (long long)c.mla_bf16, (long long)c.mla_fp8, (long long)c.indexer);
    Append(s, "cache per token, %lld layers: %s (f32) / %s (bf16) / %s (fp8)\n", layers,
           Bytes(layers * (c.mla_f32 + c.indexer)).c_str(),
           Bytes(layers * (c.mla_bf16 + c.indexer)).c_str(),
           Bytes(layers * (c.mla_fp8 + c.indexer)).c_str());
  }
  AppendList(s, "missing optional tensors", r.missing_optional);
  AppendList(s, "unexpected tensors", r.unexpected);
  Append(s, "tokenizer: %s\n", r.tokenizer_error.empty() ? "ok" : "NOT usable (details on stderr)");
  Append(s, "usable: %s\n",
         r.usable()             ? "yes"
         : r.usable_token_ids() ? "token ids only: logits and run --ids (tokenizer on stderr)"
                                : "NO (details on stderr)");
  return s;
}

std::string FormatInspectProblems(const InspectReport& r) {
  std::string s;
  AppendList(s, "tensors that cannot load", r.problems);
  AppendList(s, "errors", r.errors);
  if (!r.tokenizer_error.empty()) AppendList(s, "tokenizer", {r.tokenizer_error});
  return s;
}

}  // namespace dsinfer
