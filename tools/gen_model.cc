#include "tools/gen_model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <span>

#include "base/error.h"
#include "format/safetensors.h"
#include "model/tensor_table.h"
#include "tools/gen_init.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kShardTarget = 4ull << 30;  // about one shard per 4 GiB, like HF uploads

// Dims deliberately not multiples of 128 (partial FP8 blocks everywhere), YaRN with a small
// original context so that positions of a few hundred tokens reach the interpolated band, and
// index_topk 16 so that a few hundred tokens are truly sparse. The real vocabulary keeps the
// real tokenizer usable.
ModelConfig TinyConfig() {
  ModelConfig c;
  c.hidden_size = 200;
  c.intermediate_size = 320;
  c.moe_intermediate_size = 72;
  c.num_hidden_layers = 3;
  c.num_nextn_predict_layers = 1;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.q_lora_rank = 96;
  c.kv_lora_rank = 80;
  c.qk_nope_head_dim = 24;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 20;
  c.n_routed_experts = 8;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 2;
  c.first_k_dense_replace = 1;
  c.n_group = 4;
  c.topk_group = 2;
  c.rope_scaling = RopeScaling{.factor = 4.0, .original_max_position_embeddings = 256};
  c.max_position_embeddings = 4096;
  c.index_n_heads = 4;
  c.index_head_dim = 64;  // a power of two (Hadamard)
  c.index_topk = 16;
  return c;
}

ModelConfig MiniConfig() {
  ModelConfig c;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 4;
  c.num_nextn_predict_layers = 1;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.q_lora_rank = 768;
  c.kv_lora_rank = 512;
  c.n_routed_experts = 64;
  c.num_experts_per_tok = 8;
  c.first_k_dense_replace = 1;
  c.n_group = 8;
  c.topk_group = 4;
  c.rope_scaling = RopeScaling{.factor = 40.0, .original_max_position_embeddings = 4096};
  return c;  // nope 128, rope 64, v 128, indexer 64×128 top-2048, 1 shared: official values
}

ModelConfig Layer671bConfig() {
  ModelConfig c;  // the official dimensions
  c.num_hidden_layers = 1;
  c.first_k_dense_replace = 0;
  c.num_nextn_predict_layers = 0;
  return c;
}

// Tensors go to shards in table order; a shard starts where the running byte count crosses
// k·total/N, and every shard gets at least one tensor.
std::vector<int> PlanShards(const std::vector<uint64_t>& bytes, uint64_t total, int shards) {
  const int n = static_cast<int>(bytes.size());
  if (shards > n)
    throw Error("--shards " + std::to_string(shards) + " exceeds the number of tensors (" +
                std::to_string(n) + ")");
  std::vector<int> shard_of(n);
  uint64_t start = 0;
  int cur = 0;
  for (int i = 0; i < n; ++i) {
    int want = 0;
    if (i > 0) {
      const auto by_bytes = static_cast<int>(static_cast<long double>(start) * shards / total);
      want = std::clamp(by_bytes, cur, cur + 1);      // never skip a shard (no empty shard)
      if (n - i <= shards - 1 - cur) want = cur + 1;  // one tensor left per remaining shard
      want = std::min(want, shards - 1);
    }
    shard_of[i] = cur = want;
    start += bytes[i];
  }
  return shard_of;
}

std::string ShardName(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw Error("cannot write " + path.string());
}

void PrepareOutDir(const fs::path& dir, bool force) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw Error("cannot create output directory " + dir.string());
  bool empty = fs::is_empty(dir);
  if (!empty && !force)
    throw Error("output directory " + dir.string() + " is not empty (use --force to overwrite)");
  for (const auto& f : fs::directory_iterator(dir)) {  // stale shards of an earlier run
    const std::string name = f.path().filename().string();
    if (name.ends_with(".safetensors") || name == "model.safetensors.index.json")
      fs::remove(f.path());
  }
}

// Fills tensors in any order. An FP8 weight and its `.weight_scale_inv` come from the same
// deterministic draw (seed, name, index): whichever of the two is written first computes both
// and keeps the scales for the other. Shards put F32 first (alignment, see WriteShards), so the
// scale usually comes first: it draws the weight into a transient buffer and keeps only the
// scales; the weight, written later, is drawn again (same values, same codes).
class TensorFiller {
 public:
  TensorFiller(const ModelConfig& c, uint64_t seed, const std::vector<TensorEntry>& table)
      : config_(c), seed_(seed) {
    for (const TensorEntry& e : table) by_name_[e.name] = &e;
  }

  void Fill(const TensorEntry& e, std::span<std::byte> out) {
    if (e.role == TensorRole::kBlockScale) {
      FillScale(e, out);
    } else if (e.quantized) {
      std::vector<float> scales(static_cast<size_t>(ScaleCount(e.shape)));
      FillFp8(e.shape[0], e.shape[1], TensorKey(seed_, e.name), InitFor(e, config_), out, scales);
      if (!scales_written_.erase(e.name + "_scale_inv"))
        pending_[e.name + "_scale_inv"] = std::move(scales);
    } else {
      FillPlain(e, TensorKey(seed_, e.name), InitFor(e, config_), out);
    }
  }

 private:
  static int64_t ScaleCount(const std::vector<int64_t>& shape) {
    return ((shape[0] + 127) / 128) * ((shape[1] + 127) / 128);
  }
  void FillScale(const TensorEntry& e, std::span<std::byte> out) {
    auto it = pending_.find(e.name);
    if (it == pending_.end()) {  // the weight comes later: draw it now for its scales
      const std::string weight = e.name.substr(0, e.name.size() - std::string("_scale_inv").size());
      auto w = by_name_.find(weight);
      DSINFER_CHECK(w != by_name_.end() && w->second->quantized, "scale without FP8 weight");
      const TensorEntry& we = *w->second;
      std::vector<std::byte> codes(static_cast<size_t>(we.shape[0] * we.shape[1]));
      std::vector<float> scales(static_cast<size_t>(ScaleCount(we.shape)));
      FillFp8(we.shape[0], we.shape[1], TensorKey(seed_, we.name), InitFor(we, config_), codes,
              scales);
      DSINFER_CHECK(scales.size() * sizeof(float) == out.size());
      std::memcpy(out.data(), scales.data(), out.size());
      scales_written_.insert(e.name);
      return;
    }
    DSINFER_CHECK(it->second.size() * sizeof(float) == out.size());
    std::memcpy(out.data(), it->second.data(), out.size());
    pending_.erase(it);
  }

  const ModelConfig& config_;
  uint64_t seed_;
  std::map<std::string, const TensorEntry*> by_name_;
  std::map<std::string, std::vector<float>> pending_;  // scales of weights already written
  std::set<std::string> scales_written_;               // scales written before their weight
};

void WriteConfigFiles(const fs::path& dir, const ModelConfig& c) {
  WriteText(dir / "config.json", c.ToJson().dump(2) + "\n");
  const nlohmann::json gen_config = {{"_from_model_config", true},
                                     {"bos_token_id", c.bos_token_id},
                                     {"eos_token_id", c.eos_token_id},
                                     {"do_sample", true},
                                     {"temperature", 1.0},
                                     {"top_p", 0.95},
                                     {"transformers_version", "4.46.3"}};
  WriteText(dir / "generation_config.json", gen_config.dump(2) + "\n");
}

// Streams every tensor into its shard; returns the index's weight_map.
nlohmann::json WriteShards(const fs::path& dir, const std::vector<TensorEntry>& table,
                           const std::vector<uint64_t>& bytes, const std::vector<int>& shard_of,
                           const GenResult& r, const GenOptions& o) {
  TensorFiller filler(r.config, o.seed, table);
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t done = 0;
  size_t i = 0;
  for (int s = 0; s < r.shards; ++s) {
    std::vector<TensorSpec> specs;
    std::map<std::string, size_t> index_of;
    for (; i < table.size() && shard_of[i] == s; ++i) {
      specs.push_back({table[i].name, table[i].dtype, table[i].shape});
      index_of[table[i].name] = i;
      weight_map[table[i].name] = ShardName(s, r.shards);
    }
    // Widest elements first (F32, BF16, then FP8), as Hugging Face's writer orders a file:
    // offsets are contiguous, so this keeps every tensor aligned to its element size.
    std::stable_sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) {
      return DTypeSize(a.dtype) > DTypeSize(b.dtype);
    });
    const auto fill = [&](const TensorSpec& spec, std::span<std::byte> out) {
      const size_t k = index_of.at(spec.name);
      filler.Fill(table[k], out);
      done += bytes[k];
      if (o.progress) o.progress(done, r.total_bytes);
    };
    WriteSafetensors((dir / ShardName(s, r.shards)).string(), specs, fill, {{"format", "pt"}});
  }
  return weight_map;
}

}  // namespace

std::vector<std::string> PresetNames() { return {"tiny", "mini", "layer671b"}; }

ModelConfig PresetConfig(const std::string& preset) {
  if (preset == "tiny") return TinyConfig();
  if (preset == "mini") return MiniConfig();
  if (preset == "layer671b") return Layer671bConfig();
  throw Error("unknown preset '" + preset + "' (known: tiny, mini, layer671b)");
}

ModelConfig GenConfig(const GenOptions& o) {
  ModelConfig c = PresetConfig(o.preset);
  for (const std::string& kv : o.sets) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--set '" + kv + "': expected key=value");
    c.Set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  c.Validate("preset " + o.preset);
  return c;
}

GenResult GenerateCheckpoint(const GenOptions& o) {
  GenResult r;
  r.config = GenConfig(o);
  const std::vector<TensorEntry> table = TensorTable(r.config);
  std::vector<uint64_t> bytes;  // [tensors] data bytes, table order
  for (const TensorEntry& e : table) {
    uint64_t n = DTypeSize(e.dtype);
    for (int64_t d : e.shape) n *= static_cast<uint64_t>(d);
    bytes.push_back(n);
    r.total_bytes += n;
  }
  r.num_tensors = static_cast<int64_t>(table.size());
  r.shards = o.shards > 0 ? o.shards
                          : static_cast<int>(std::max<uint64_t>(
                                1, (r.total_bytes + kShardTarget - 1) / kShardTarget));
  const std::vector<int> shard_of = PlanShards(bytes, r.total_bytes, r.shards);

  const fs::path dir(o.out_dir);
  PrepareOutDir(dir, o.force);
  // Tokenizer first: a missing source fails before minutes of generation.
  WriteV32TokenizerFiles(o.tokenizer_source.value_or(DefaultTokenizerSource()), o.out_dir);
  WriteConfigFiles(dir, r.config);
  const nlohmann::json weight_map = WriteShards(dir, table, bytes, shard_of, r, o);
  const nlohmann::json index = {{"metadata", {{"total_size", r.total_bytes}}},
                                {"weight_map", weight_map}};
  WriteText(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  return r;
}

}  // namespace dsinfer
