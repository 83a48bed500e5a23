#include "format/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>
#include <utility>

#include "base/error.h"
#include "base/mapped_file.h"
#include "format/json_util.h"

namespace dsinfer {
namespace {

using Json = nlohmann::json;

// How an absent optional is written by ToJson. HF writes `"q_lora_rank": null`, but a
// `quantization_config` key (even null) makes transformers look for a quantizer, and V3
// configs have no `scale_fmt`: those are omitted instead.
enum class Absent { kNull, kOmit };

// ---------------------------------------------------------------------------------------------
// THE field lists. Each line: JSON name, member, and (in the comment) meaning and default.
// Defaults are the member initializers in config.h (= the official V3.2 config,
// docs/model.md §1.2).
// On reading, an absent plain field keeps its default; an absent optional means "not present"
// (same as null). Unknown JSON keys are ignored.

// `T` is `U` or `const U`: lets one list serve reading (mutable) and writing (const).
template <class T, class U>
concept Is = std::is_same_v<std::remove_const_t<T>, U>;

template <Is<RopeScaling> R, class V>
void ForEachField(R& r, V&& v) {
  v("type", r.type);      // "yarn" (the only one supported; also read as `rope_type`)
  v("factor", r.factor);  // 40: context extension factor s
  v("original_max_position_embeddings", r.original_max_position_embeddings);  // 4096
  v("beta_fast", r.beta_fast);            // 32: YaRN ramp, high-frequency end (in rotations)
  v("beta_slow", r.beta_slow);            // 1: YaRN ramp, low-frequency end
  v("mscale", r.mscale);                  // 1.0: cos/sin magnitude scale numerator
  v("mscale_all_dim", r.mscale_all_dim);  // 1.0: softmax-scale mscale (absent → 1.0, not HF's 0)
}

template <Is<QuantizationConfig> Q, class V>
void ForEachField(Q& q, V&& v) {
  v("quant_method", q.quant_method);            // "fp8"
  v("fmt", q.fmt);                              // "e4m3": weight element format
  v("activation_scheme", q.activation_scheme);  // "dynamic": per-token act_quant at run time
  v("weight_block_size", q.weight_block_size);  // [128, 128]: block of one weight_scale_inv
  v("scale_fmt", q.scale_fmt, Absent::kOmit);   // "ue8m0": power-of-two act scales; null = f32
}

template <Is<ModelConfig> C, class V>
void ForEachField(C& c, V&& v) {
  v("architectures", c.architectures);                        // ["DeepseekV32ForCausalLM"]
  v("model_type", c.model_type);                              // "deepseek_v32"
  v("vocab_size", c.vocab_size);                              // 129280: embedding and lm_head rows
  v("hidden_size", c.hidden_size);                            // 7168: model width d
  v("intermediate_size", c.intermediate_size);                // 18432: dense MLP hidden size
  v("moe_intermediate_size", c.moe_intermediate_size);        // 2048: per-expert hidden size
  v("num_hidden_layers", c.num_hidden_layers);                // 61 main blocks
  v("num_nextn_predict_layers", c.num_nextn_predict_layers);  // 1 MTP block (layer ids follow)
  v("num_attention_heads", c.num_attention_heads);            // 128 MLA query heads
  v("num_key_value_heads", c.num_key_value_heads);            // 128, unused by MLA
  v("q_lora_rank", c.q_lora_rank);                  // 1536; null: q = wq(x), no low-rank q path
  v("kv_lora_rank", c.kv_lora_rank);                // 512: compressed KV latent
  v("qk_nope_head_dim", c.qk_nope_head_dim);        // 128
  v("qk_rope_head_dim", c.qk_rope_head_dim);        // 64 (even: RoPE rotates pairs)
  v("v_head_dim", c.v_head_dim);                    // 128
  v("n_routed_experts", c.n_routed_experts);        // 256
  v("n_shared_experts", c.n_shared_experts);        // 1 (its width is n × moe_intermediate_size)
  v("num_experts_per_tok", c.num_experts_per_tok);  // 8 routed experts per token
  v("first_k_dense_replace", c.first_k_dense_replace);  // 3 leading dense-MLP layers
  v("moe_layer_freq", c.moe_layer_freq);                // 1: every layer after those is MoE
  v("n_group", c.n_group);                              // 8 expert groups
  v("topk_group", c.topk_group);                        // 4 groups kept per token
  v("topk_method", c.topk_method);                      // "noaux_tc" (bias-corrected group top-k)
  v("scoring_func", c.scoring_func);                    // "sigmoid" (the only one supported)
  v("norm_topk_prob", c.norm_topk_prob);                // true: normalise the selected weights
  v("routed_scaling_factor", c.routed_scaling_factor);  // 2.5
  v("rms_norm_eps", c.rms_norm_eps);                    // 1e-6
  v("rope_theta", c.rope_theta);                        // 10000
  v("rope_scaling", c.rope_scaling);                    // YaRN block above; null/absent: plain RoPE
  v("max_position_embeddings", c.max_position_embeddings);  // 163840
  v("bos_token_id", c.bos_token_id);                        // 0
  v("eos_token_id", c.eos_token_id);                        // 1
  v("tie_word_embeddings", c.tie_word_embeddings);          // false
  v("hidden_act", c.hidden_act);                            // "silu" (the only one supported)
  v("torch_dtype", c.torch_dtype);        // "bfloat16": dtype of unquantised weights
  v("index_n_heads", c.index_n_heads);    // 64 indexer heads  } all three or none:
  v("index_head_dim", c.index_head_dim);  // 128 indexer dim   } none = no indexer,
  v("index_topk", c.index_topk);          // 2048 keys kept    } dense attention (V3)
  v("quantization_config", c.quantization_config, Absent::kOmit);  // FP8 block above; absent = bf16
}

// ---------------------------------------------------------------------------------------------
// Per-type JSON conversion. Errors name the (dotted) field; FromJson prefixes the source.

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <class T>
constexpr bool kIsStruct = std::is_same_v<T, RopeScaling> || std::is_same_v<T, QuantizationConfig>;

[[noreturn]] void TypeError(const std::string& field, const char* expected, const Json& got) {
  // Containers are described by type only: dumping one could be huge (or deeply recursive).
  const std::string shown = got.is_structured() ? std::string("an ") + got.type_name() : got.dump();
  throw Error(field + ": expected " + expected + ", got " + shown);
}

void Read(const Json& j, int64_t& out, const std::string& field) {
  if (!j.is_number_integer()) TypeError(field, "an integer", j);
  if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    TypeError(field, "an integer in int64 range", j);
  }
  out = j.get<int64_t>();
}
void Read(const Json& j, double& out, const std::string& field) {
  if (!j.is_number()) TypeError(field, "a number", j);
  out = j.get<double>();
}
void Read(const Json& j, bool& out, const std::string& field) {
  if (!j.is_boolean()) TypeError(field, "true or false", j);
  out = j.get<bool>();
}
void Read(const Json& j, std::string& out, const std::string& field) {
  if (!j.is_string()) TypeError(field, "a string", j);
  out = j.get<std::string>();
}
void Read(const Json& j, std::vector<std::string>& out, const std::string& field) {
  if (!j.is_array()) TypeError(field, "an array of strings", j);
  out.clear();
  for (size_t i = 0; i < j.size(); ++i) {
    out.emplace_back();
    Read(j[i], out.back(), field + "[" + std::to_string(i) + "]");
  }
}
void Read(const Json& j, std::array<int64_t, 2>& out, const std::string& field) {
  if (!j.is_array() || j.size() != 2) TypeError(field, "an array of two integers", j);
  for (size_t i = 0; i < 2; ++i) Read(j[i], out[i], field + "[" + std::to_string(i) + "]");
}
template <class S>
requires kIsStruct<S>
void Read(const Json& j, S& out, const std::string& field);
template <class T>
void Read(const Json& j, std::optional<T>& out, const std::string& field) {
  if (j.is_null()) {
    out.reset();
    return;
  }
  if (!out) out.emplace();
  Read(j, *out, field);
}

// Reads the fields listed by ForEachField(target) from object `j`; `prefix` names the parent.
template <class Target>
void ReadFields(const Json& j, Target& target, const std::string& prefix) {
  ForEachField(target, [&](const char* name, auto& field, Absent = Absent::kNull) {
    auto it = j.find(name);
    if (it != j.end()) {
      Read(*it, field, prefix + name);
    } else if constexpr (IsOptional<std::decay_t<decltype(field)>>::value) {
      field.reset();
    }
  });
}

template <class S>
requires kIsStruct<S>
void Read(const Json& j, S& out, const std::string& field) {
  if (!j.is_object()) TypeError(field, "an object", j);
  out = S{};
  ReadFields(j, out, field + ".");
  if constexpr (std::is_same_v<S, RopeScaling>) {
    auto alias = j.find("rope_type");  // newer transformers spelling of `type`
    if (!j.contains("type") && alias != j.end()) Read(*alias, out.type, field + ".rope_type");
  }
}

template <class T>
Json Write(const T& v) {
  if constexpr (kIsStruct<T>) {
    Json j = Json::object();
    ForEachField(v, [&](const char* name, const auto& field, Absent absent = Absent::kNull) {
      if constexpr (IsOptional<std::decay_t<decltype(field)>>::value) {
        if (!field && absent == Absent::kOmit) return;
      }
      j[name] = Write(field);
    });
    return j;
  } else if constexpr (IsOptional<T>::value) {
    return v ? Write(*v) : Json(nullptr);
  } else {
    return Json(v);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation helpers.

template <class T>
std::string Show(const char* name, const T& value) {
  std::ostringstream s;
  s << name << " (" << value << ")";
  return s.str();
}

void Require(bool ok, const std::string& source, const std::string& message) {
  if (!ok) throw Error(source + ": " + message);
}

void RequirePositive(const std::string& source, const char* name, int64_t value) {
  Require(value > 0, source, Show(name, value) + " must be positive");
}

// Upper bounds far beyond any DeepSeek-class model (V3: 61 layers, 256 experts, hidden 7168,
// vocab 129280, 163840 positions), small enough that a wrong value is refused before it sizes
// a table or an allocation and that products of them (shapes, bytes) fit 64 bits.
void RequireAtMost(const std::string& source, const char* name, int64_t value, int64_t max) {
  Require(value <= max, source,
          Show(name, value) + " is implausibly large (at most " + std::to_string(max) + ")");
}

void ValidateRopeScaling(const RopeScaling& r, const std::string& src) {
  Require(r.type == "yarn", src,
          "rope_scaling.type (\"" + r.type +
              "\") is not supported: only \"yarn\" (or no rope_scaling)");
  Require(r.factor >= 1.0, src, Show("rope_scaling.factor", r.factor) + " must be >= 1");
  RequirePositive(src, "rope_scaling.original_max_position_embeddings",
                  r.original_max_position_embeddings);
  Require(r.beta_fast > r.beta_slow && r.beta_slow > 0, src,
          Show("rope_scaling.beta_fast", r.beta_fast) + " must exceed " +
              Show("rope_scaling.beta_slow", r.beta_slow) + " > 0");
  Require(r.mscale >= 0 && r.mscale_all_dim >= 0, src,
          "rope_scaling.mscale and rope_scaling.mscale_all_dim must be >= 0");
}

void ValidateQuantization(const QuantizationConfig& q, const std::string& src) {
  Require(q.quant_method == "fp8", src,
          "quantization_config.quant_method (\"" + q.quant_method + "\") is not \"fp8\"");
  Require(q.fmt == "e4m3", src, "quantization_config.fmt (\"" + q.fmt + "\") is not \"e4m3\"");
  Require(
      q.activation_scheme == "dynamic", src,
      "quantization_config.activation_scheme (\"" + q.activation_scheme + "\") is not \"dynamic\"");
  Require(q.weight_block_size == std::array<int64_t, 2>{128, 128}, src,
          "quantization_config.weight_block_size ([" + std::to_string(q.weight_block_size[0]) +
              ", " + std::to_string(q.weight_block_size[1]) + "]) is not [128, 128]");
  Require(!q.scale_fmt || *q.scale_fmt == "ue8m0", src,
          "quantization_config.scale_fmt (\"" + q.scale_fmt.value_or("") +
              "\") is not \"ue8m0\" or null");
}

void ValidateIndexer(const ModelConfig& c, const std::string& src) {
  const int present =
      c.index_n_heads.has_value() + c.index_head_dim.has_value() + c.index_topk.has_value();
  Require(present == 0 || present == 3, src,
          "index_n_heads, index_head_dim and index_topk must be all present or all absent");
  if (present == 0) return;
  RequirePositive(src, "index_n_heads", *c.index_n_heads);
  const int64_t d = *c.index_head_dim;
  Require(d > 0 && (d & (d - 1)) == 0, src,
          Show("index_head_dim", d) + " must be a power of two (Hadamard rotation)");
  Require(
      d >= c.qk_rope_head_dim, src,
      Show("index_head_dim", d) + " must be >= " + Show("qk_rope_head_dim", c.qk_rope_head_dim));
  Require(*c.index_topk >= 1, src, Show("index_topk", *c.index_topk) + " must be >= 1");
  Require(c.q_lora_rank.has_value(), src,
          "the indexer (index_*) needs q_lora_rank, but q_lora_rank is null");
}

void ValidateMoe(const ModelConfig& c, const std::string& src) {
  RequirePositive(src, "n_routed_experts", c.n_routed_experts);
  RequirePositive(src, "moe_intermediate_size", c.moe_intermediate_size);
  RequirePositive(src, "n_group", c.n_group);
  RequirePositive(src, "topk_group", c.topk_group);
  RequirePositive(src, "num_experts_per_tok", c.num_experts_per_tok);
  RequirePositive(src, "moe_layer_freq", c.moe_layer_freq);
  Require(c.n_shared_experts >= 0, src,
          Show("n_shared_experts", c.n_shared_experts) + " is negative");
  Require(c.n_routed_experts % c.n_group == 0, src,
          Show("n_routed_experts", c.n_routed_experts) + " is not divisible by " +
              Show("n_group", c.n_group));
  Require(c.topk_group <= c.n_group, src,
          Show("topk_group", c.topk_group) + " exceeds " + Show("n_group", c.n_group));
  const int64_t reachable = c.topk_group * (c.n_routed_experts / c.n_group);
  Require(c.num_experts_per_tok <= reachable, src,
          Show("num_experts_per_tok", c.num_experts_per_tok) + " exceeds the " +
              std::to_string(reachable) + " experts in topk_group (" +
              std::to_string(c.topk_group) + ") groups of n_routed_experts / n_group");
  Require(c.first_k_dense_replace >= 0 && c.first_k_dense_replace <= c.num_hidden_layers, src,
          Show("first_k_dense_replace", c.first_k_dense_replace) + " must be in [0, " +
              Show("num_hidden_layers", c.num_hidden_layers) + "]");
  Require(c.topk_method == "noaux_tc", src,
          "topk_method (\"" + c.topk_method + "\") is not supported: only \"noaux_tc\"");
  Require(c.scoring_func == "sigmoid", src,
          "scoring_func (\"" + c.scoring_func + "\") is not supported: only \"sigmoid\"");
  Require(std::isfinite(c.routed_scaling_factor) && c.routed_scaling_factor > 0, src,
          Show("routed_scaling_factor", c.routed_scaling_factor) + " must be positive");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

double ModelConfig::softmax_scale() const {
  double m = 1.0;
  if (rope_scaling && rope_scaling->type == "yarn" && rope_scaling->factor > 1.0) {
    m = 0.1 * rope_scaling->mscale_all_dim * std::log(rope_scaling->factor) + 1.0;
  }
  return m * m / std::sqrt(static_cast<double>(qk_head_dim()));
}

void ModelConfig::Validate(const std::string& src) const {
  Require(vocab_size >= 2, src, Show("vocab_size", vocab_size) + " must be at least 2");
  RequirePositive(src, "hidden_size", hidden_size);
  RequirePositive(src, "intermediate_size", intermediate_size);
  RequirePositive(src, "num_hidden_layers", num_hidden_layers);
  Require(num_nextn_predict_layers >= 0, src,
          Show("num_nextn_predict_layers", num_nextn_predict_layers) + " is negative");
  RequirePositive(src, "num_attention_heads", num_attention_heads);
  RequirePositive(src, "num_key_value_heads", num_key_value_heads);
  if (q_lora_rank) RequirePositive(src, "q_lora_rank", *q_lora_rank);
  RequirePositive(src, "kv_lora_rank", kv_lora_rank);
  RequirePositive(src, "qk_nope_head_dim", qk_nope_head_dim);
  RequirePositive(src, "qk_rope_head_dim", qk_rope_head_dim);
  Require(qk_rope_head_dim % 2 == 0, src,
          Show("qk_rope_head_dim", qk_rope_head_dim) + " must be even (RoPE rotates pairs)");
  RequirePositive(src, "v_head_dim", v_head_dim);
  RequirePositive(src, "max_position_embeddings", max_position_embeddings);
  const std::pair<const char*, std::pair<int64_t, int64_t>> bounds[] = {
      {"vocab_size", {vocab_size, int64_t{1} << 24}},
      {"hidden_size", {hidden_size, int64_t{1} << 18}},
      {"intermediate_size", {intermediate_size, int64_t{1} << 20}},
      {"moe_intermediate_size", {moe_intermediate_size, int64_t{1} << 20}},
      {"num_hidden_layers", {num_hidden_layers, 1024}},
      {"num_nextn_predict_layers", {num_nextn_predict_layers, 16}},
      {"num_attention_heads", {num_attention_heads, 4096}},
      {"num_key_value_heads", {num_key_value_heads, 4096}},
      {"q_lora_rank", {q_lora_rank.value_or(1), int64_t{1} << 16}},
      {"kv_lora_rank", {kv_lora_rank, int64_t{1} << 16}},
      {"qk_nope_head_dim", {qk_nope_head_dim, 4096}},
      {"qk_rope_head_dim", {qk_rope_head_dim, 4096}},
      {"v_head_dim", {v_head_dim, 4096}},
      {"max_position_embeddings", {max_position_embeddings, int64_t{1} << 24}},
      {"n_routed_experts", {n_routed_experts, 16384}},
      {"n_shared_experts", {n_shared_experts, 64}},
      {"index_n_heads", {index_n_heads.value_or(1), 4096}},
      {"index_head_dim", {index_head_dim.value_or(1), 4096}},
      {"index_topk", {index_topk.value_or(1), int64_t{1} << 24}},
  };
  for (const auto& [name, value_max] : bounds)
    RequireAtMost(src, name, value_max.first, value_max.second);
  Require(rms_norm_eps > 0 && std::isfinite(rms_norm_eps), src,
          Show("rms_norm_eps", rms_norm_eps) + " must be positive");
  Require(rope_theta > 0 && std::isfinite(rope_theta), src,
          Show("rope_theta", rope_theta) + " must be positive");
  Require(bos_token_id >= 0 && bos_token_id < vocab_size, src,
          Show("bos_token_id", bos_token_id) + " is outside [0, vocab_size)");
  Require(eos_token_id >= 0 && eos_token_id < vocab_size, src,
          Show("eos_token_id", eos_token_id) + " is outside [0, vocab_size)");
  Require(hidden_act == "silu", src,
          "hidden_act (\"" + hidden_act + "\") is not supported: only \"silu\"");
  ValidateMoe(*this, src);
  ValidateIndexer(*this, src);
  if (rope_scaling) ValidateRopeScaling(*rope_scaling, src);
  if (quantization_config) ValidateQuantization(*quantization_config, src);
}

ModelConfig ModelConfig::FromJson(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": config is not a JSON object");
  ModelConfig c;
  try {
    ReadFields(j, c, "");
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  c.Validate(source);
  return c;
}

ModelConfig ModelConfig::FromFile(const std::string& path) {
  const MappedFile file = MappedFile::Open(path);  // names the path if missing / not a file
  const std::string_view text(reinterpret_cast<const char*>(file.bytes().data()),
                              file.bytes().size());
  return FromJson(ParseJsonStrict<Json>(text, path), path);
}

nlohmann::json ModelConfig::ToJson() const {
  Json j = Json::object();
  ForEachField(*this, [&](const char* name, const auto& field, Absent absent = Absent::kNull) {
    if constexpr (IsOptional<std::decay_t<decltype(field)>>::value) {
      if (!field && absent == Absent::kOmit) return;
    }
    j[name] = Write(field);
  });
  return j;
}

namespace {

// `value` as JSON for a field of type T: string fields take the text verbatim (unless it is
// `null` or a quoted JSON string); all others parse it as JSON.
template <class T>
Json ValueText(const std::string& value, const std::string& key) {
  constexpr bool kString =
      std::is_same_v<T, std::string> || std::is_same_v<T, std::optional<std::string>>;
  if (kString && value != "null" && (value.empty() || value.front() != '"')) return Json(value);
  Json j = Json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error("--set " + key + "=" + value + ": value is not valid JSON");
  return j;
}

// Assigns `value` to the field `rest` (dotted path, may be empty = the field itself) of
// `field`; `key` is the whole key, for messages.
template <class T>
void SetField(T& field, const std::string& rest, const std::string& value, const std::string& key) {
  if (rest.empty()) {
    Read(ValueText<T>(value, key), field, key);
    return;
  }
  using Inner = typename std::conditional_t<IsOptional<T>::value, T, std::optional<T>>::value_type;
  if constexpr (kIsStruct<Inner>) {
    Inner* target;
    if constexpr (IsOptional<T>::value) {
      if (!field) field.emplace();  // setting a sub-field of an absent block starts from defaults
      target = &*field;
    } else {
      target = &field;
    }
    bool found = false;
    ForEachField(*target, [&](const char* name, auto& sub, Absent = Absent::kNull) {
      if (name != rest) return;
      found = true;
      Read(ValueText<std::decay_t<decltype(sub)>>(value, key), sub, key);
    });
    if (!found) throw Error("--set " + key + ": unknown config field");
  } else {
    throw Error("--set " + key + ": " + key.substr(0, key.size() - rest.size() - 1) +
                " has no sub-fields");
  }
}

}  // namespace

void ModelConfig::Set(const std::string& key, const std::string& value) {
  const size_t dot = key.find('.');
  const std::string head = key.substr(0, dot);
  const std::string rest = dot == std::string::npos ? "" : key.substr(dot + 1);
  bool found = false;
  try {
    ForEachField(*this, [&](const char* name, auto& field, Absent = Absent::kNull) {
      if (name != head) return;
      found = true;
      SetField(field, rest, value, key);
    });
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error(what.rfind("--set ", 0) == 0 ? what : "--set " + key + "=" + value + ": " + what);
  }
  if (!found) throw Error("--set " + key + ": unknown config field");
}

}  // namespace dsinfer
