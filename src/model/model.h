// The DeepSeek-V3.2 forward pass in f32 reference numerics (NUMERICS.md): embedding →
// N × [RMSNorm → MLA (+ lightning indexer → DSA) → RMSNorm → MLP | MoE] → norm → head, plus
// the MTP module. One code path for prefill, chunked prefill, decode (S = 1) and multi-token
// verification: `Forward(seq, tokens, start_pos)` processes S ≥ 1 tokens at absolute positions
// start_pos.. against everything already cached for `seq` (MODEL.md §3.7).
// `Model` is immutable after Load except for its RoPE table, which grows on demand: not
// thread-safe; one `Forward` at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "kernels/kv_layout.h"
#include "kernels/rope.h"
#include "model/dump.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace dsinfer {

enum class AttentionMode : uint8_t { kDsa, kDense };

struct SequenceOptions {
  AttentionMode attention = AttentionMode::kDsa;  // kDsa falls back to dense without indexer
  std::optional<int64_t> index_topk = std::nullopt;  // overrides the config's index_topk
  KvCacheType kv_cache = KvCacheType::kF32;
  bool mtp = false;                               // also run the MTP module
};

// Everything cached for one sequence. Move-only (caches can be large).
struct SequenceState {
  SequenceOptions options;
  bool use_indexer = false;         // DSA with an indexer in the checkpoint
  int64_t index_topk = 0;           // effective top-k
  int64_t length = 0;               // tokens cached in the main layers
  std::vector<LayerKvCache> caches; // [num_hidden_layers]
  std::optional<LayerKvCache> mtp_cache;
  int64_t mtp_length = 0;           // rows cached in the MTP layer
  std::vector<float> pending_hidden;  // [hidden] final-norm hidden of the last main row (MTP)
};

struct ForwardResult {
  int64_t rows = 0;
  std::vector<float> logits;      // [rows, vocab]: all tokens, or only the last one
  int64_t mtp_rows = 0;
  std::vector<float> mtp_logits;  // [mtp_rows, vocab]: MTP row i predicts token i + 2
};

class Model {
 public:
  // Opens the checkpoint directory and checks every tensor (Error names tensor + shape).
  static std::unique_ptr<Model> Load(const std::string& dir);

  const ModelConfig& config() const { return ckpt_.config(); }
  bool has_mtp() const { return weights_.mtp.has_value(); }

  SequenceState NewSequence(const SequenceOptions& options) const;

  // Runs tokens at positions [start_pos, start_pos + S); start_pos must equal seq.length.
  // `all_logits`: logits of every token, else only of the last one.
  ForwardResult Forward(SequenceState& seq, std::span<const int32_t> tokens, int64_t start_pos,
                        bool all_logits = true, Dumper* dump = nullptr);

 private:
  explicit Model(Checkpoint ckpt);
  void ForwardMtp(SequenceState& seq, std::span<const int32_t> tokens, int64_t start,
                  const std::vector<float>& g, ForwardResult& r, Dumper* dump);
  Checkpoint ckpt_;
  ModelWeights weights_;
  RopeTable rope_;
};

}  // namespace dsinfer
