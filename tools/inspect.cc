#include "tools/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/threads.h"
#include "format/checkpoint.h"
#include "model/routed_expert.h"
#include "model/weights.h"
#include "text/tokenizer.h"

namespace dsinfer {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool IsPowerOfTwo(float v) {
  int e = 0;
  return std::isfinite(v) && v > 0 && std::frexp(v, &e) == 0.5f;
}

// Adds one `.weight_scale_inv` tensor's finite positive values to the statistics (invalid
// ones are CheckTensors' business).
void AddScales(const TensorView& v, ScaleStats& st, double& log_sum, int64_t& pow2) {
  const int64_t n = v.numel();
  for (int64_t i = 0; i < n; ++i) {
    float s;
    std::memcpy(&s, v.data + 4 * i, 4);
    if (!std::isfinite(s) || s <= 0) continue;
    st.min = st.count ? std::min<double>(st.min, s) : s;
    st.max = st.count ? std::max<double>(st.max, s) : s;
    ++st.count;
    log_sum += std::log(static_cast<double>(s));
    pow2 += IsPowerOfTwo(s);
  }
}

void CollectTensors(const Checkpoint& ck, bool checksums, InspectReport& r) {
  const std::vector<std::string> names = ck.Names();
  r.tensors.resize(names.size());
  double log_sum = 0;
  int64_t pow2 = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorView v = ck.Get(names[i]);
    InspectedTensor& t = r.tensors[i];
    t = {names[i], std::string(DTypeName(v.dtype())), v.shape(), v.nbytes(), std::nullopt};
    r.bytes_by_dtype[t.dtype] += t.nbytes;
    r.total_bytes += t.nbytes;
    const bool scale = names[i].ends_with(".weight_scale_inv");
    const bool expert = RoutedExpertOf(names[i]) >= 0;
    if (!scale) r.size.weights += v.numel();
    if (expert) {
      r.size.expert_bytes += t.nbytes;
      if (!scale) r.size.expert_weights += v.numel();
    }
    if (names[i].ends_with(".weight_scale_inv") && v.dtype() == DType::kF32)
      AddScales(v, r.fp8_scales, log_sum, pow2);
  }
  if (r.fp8_scales.count) {
    r.fp8_scales.geomean = std::exp(log_sum / r.fp8_scales.count);
    r.fp8_scales.pow2_fraction = static_cast<double>(pow2) / r.fp8_scales.count;
  }
  if (!checksums) return;
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < names.size(); ++i) {
    DSINFER_NOTE_THREAD("inspect.checksums");
    const TensorView v = ck.Get(names[i]);
    r.tensors[i].fnv1a64 = Fnv1a64(v.data, v.nbytes());
  }
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

uint64_t Fnv1a64(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

void SizeFigures::SetContext(const ModelConfig& c, int64_t tokens) {
  const CacheBytes cb = CacheBytesPerToken(c);
  const auto per_layer_token = static_cast<uint64_t>(c.num_hidden_layers * tokens);
  context = tokens;
  cache_f32 = per_layer_token * static_cast<uint64_t>(cb.mla_f32 + cb.indexer);
  cache_bf16 = per_layer_token * static_cast<uint64_t>(cb.mla_bf16 + cb.indexer);
  cache_fp8 = per_layer_token * static_cast<uint64_t>(cb.mla_fp8 + cb.indexer);
}

std::string SizeFigures::Describe(const std::string& indent, const std::string& copies) const {
  const auto gib = [](uint64_t b) { return static_cast<double>(b) / double(uint64_t{1} << 30); };
  const int64_t rest = weights - expert_weights;
  char buf[640];
  std::snprintf(buf, sizeof buf,
                "%sbits per weight: %.3f (routed experts %.3f, the rest %.3f; %lld weights in "
                "%.3f GiB)\n"
                "%smemory at context %lld: mapped tensors %.3f GiB (kept as stored) + %s %.3f "
                "GiB + cache %.3f GiB (f32; bf16 %.3f GiB, fp8 %.3f GiB) = %.3f GiB\n",
                indent.c_str(), bits_per_weight(),
                expert_weights ? 8.0 * expert_bytes / expert_weights : 0.0,
                rest ? 8.0 * (bytes - expert_bytes) / rest : 0.0, (long long)weights, gib(bytes),
                indent.c_str(), (long long)context, gib(bytes), copies.c_str(), gib(copy_bytes),
                gib(cache_f32), gib(cache_bf16), gib(cache_fp8),
                gib(resident() + cache_f32));
  std::string s = buf;
  // The tile copy's growth on a line of its own (not in the total: the CPU and flags decide).
  if (tile_repack > 0) {
    std::snprintf(buf, sizeof buf,
                  "%swith the block weights in 16-row tiles (bf16 block activations on a CPU with "
                  "AVX512-BF16, int8 ones on AVX-512 VNNI or AVX2: the defaults; not with "
                  "--block-acts f32): + %.3f GiB of repacked weights\n",
                  indent.c_str(), gib(tile_repack));
    s += buf;
  }
  return s;
}

void SizeFigures::AddJson(nlohmann::json& j) const {
  j["weights"] = weights;
  j["bits_per_weight"] = bits_per_weight();
  j["routed_expert_bytes"] = expert_bytes;
  j["routed_expert_weights"] = expert_weights;
  j["weights_resident_bytes"] = resident();
  j["tile_repack_bytes"] = tile_repack;
  j["context"] = context;
  j["cache_bytes"] = {{"f32", cache_f32}, {"bf16", cache_bf16}, {"fp8", cache_fp8}};
}

CacheBytes CacheBytesPerToken(const ModelConfig& c) {
  CacheBytes b;
  const int64_t latent = c.kv_lora_rank + c.qk_rope_head_dim;
  b.mla_f32 = 4 * latent;
  b.mla_bf16 = 2 * latent;
  b.mla_fp8 = c.kv_lora_rank + 4 * CeilDiv(c.kv_lora_rank, 128) + 2 * c.qk_rope_head_dim;
  if (c.has_indexer() && c.index_head_dim)
    b.indexer = *c.index_head_dim + 4 * CeilDiv(*c.index_head_dim, 128);
  return b;
}

InspectReport Inspect(const InspectOptions& o) {
  InspectReport r;
  r.dir = o.dir;
  std::optional<Checkpoint> ck;
  try {
    ck.emplace(Checkpoint::Open(o.dir));
  } catch (const Error& e) {
    r.errors.push_back(e.what());
    return r;
  }
  r.config = ck->config();
  r.cache = CacheBytesPerToken(*r.config);
  r.size.SetContext(*r.config, o.context);
  const WeightMemory memory = EstimateWeightMemory(*ck);
  r.size.copy_bytes = static_cast<uint64_t>(memory.copies);
  r.size.tile_repack = static_cast<uint64_t>(memory.tile_repack);
  try {
    TensorCheck check = CheckTensors(*ck);  // what LoadWeights checks, nothing else
    r.problems = std::move(check.problems);
    r.missing = std::move(check.missing);
    r.missing_optional = std::move(check.missing_optional);
    r.unexpected = std::move(check.unexpected);
    r.bad = std::move(check.bad);
    r.has_mtp = check.has_mtp;
    r.params = CountParameters(*r.config, check.present);
  } catch (const Error& e) {  // counts beyond the checkpoint's
    r.errors.push_back(e.what());
  }
  try {
    text::Tokenizer::ForModel(o.dir);  // what the text commands load
  } catch (const Error& e) {
    r.tokenizer_error = e.what();
  }
  CollectTensors(*ck, o.checksums, r);
  r.size.bytes = r.total_bytes;
  return r;
}

nlohmann::json InspectJson(const InspectReport& r) {
  using nlohmann::json;
  json j;
  j["dir"] = r.dir;
  j["usable"] = r.usable();
  j["usable_token_ids"] = r.usable_token_ids();
  j["errors"] = r.errors;
  j["tokenizer_error"] = r.tokenizer_error.empty() ? json(nullptr) : json(r.tokenizer_error);
  j["config"] = r.config ? r.config->ToJson() : json(nullptr);
  if (r.config) {
    const ModelConfig& c = *r.config;
    int64_t moe = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe += c.is_moe_layer(l);
    j["layers"] = {{"main", c.num_hidden_layers},
                   {"dense", c.num_hidden_layers - moe},
                   {"moe", moe},
                   {"mtp", c.num_nextn_predict_layers},
                   {"mtp_present", r.has_mtp}};
  }
  j["parameters"] = {{"total", r.params.total},
                     {"active", r.params.active},
                     {"routed_experts", r.params.routed_experts},
                     {"indexer", r.params.indexer},
                     {"mtp", r.params.mtp},
                     {"mtp_unique", r.params.mtp_unique}};
  j["bytes_by_dtype"] = r.bytes_by_dtype;
  j["total_bytes"] = r.total_bytes;
  j["weight_copy_bytes"] = r.size.copy_bytes;
  r.size.AddJson(j);
  j["fp8_scales"] = {{"count", r.fp8_scales.count},
                     {"min", r.fp8_scales.min},
                     {"max", r.fp8_scales.max},
                     {"geomean", r.fp8_scales.geomean},
                     {"pow2_fraction", r.fp8_scales.pow2_fraction}};
  j["missing"] = r.missing;
  j["missing_optional"] = r.missing_optional;
  j["unexpected"] = r.unexpected;
  j["bad"] = r.bad;
  const int64_t layers = r.config ? r.config->num_hidden_layers : 0;
  const CacheBytes& cb = r.cache;
  j["cache_bytes_per_token"] = {{"per_layer",
                                 {{"mla_f32", cb.mla_f32},
                                  {"mla_bf16", cb.mla_bf16},
                                  {"mla_fp8", cb.mla_fp8},
                                  {"indexer", cb.indexer}}},
                                {"layers", layers},
                                {"all_layers",
                                 {{"f32", layers * (cb.mla_f32 + cb.indexer)},
                                  {"bf16", layers * (cb.mla_bf16 + cb.indexer)},
                                  {"fp8", layers * (cb.mla_fp8 + cb.indexer)}}}};
  json tensors = json::array();
  for (const InspectedTensor& t : r.tensors) {
    json e = {{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}, {"nbytes", t.nbytes}};
    if (t.fnv1a64) e["fnv1a64"] = Hex(*t.fnv1a64);
    tensors.push_back(std::move(e));
  }
  j["tensors"] = std::move(tensors);
  return j;
}

}  // namespace dsinfer
