// Internal to model/: one decoder layer's attention and FFN blocks over a batch of sequences,
// used by model.cc for the main layers and the MTP layer alike. All buffers are f32, row-major,
// one row per token; the batch's rows are the concatenation of its segments' rows.
// Row-wise work (norms, projections, MoE) runs over all N rows at once; attention and the
// indexer run per block of a segment's consecutive rows against that sequence's cache. Every
// per-layer temporary, the kernels' scratch included, lives in the `Workspace` (grown on first
// use, then reused). Not thread-safe: one batch at a time per workspace.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "format/config.h"
#include "kernels/attention.h"
#include "kernels/indexer.h"
#include "kernels/linear.h"
#include "kernels/rope.h"
#include "kernels/topk.h"
#include "model/dump.h"
#include "model/expert_parallel.h"
#include "model/kv_cache.h"
#include "model/part_times.h"
#include "model/weights.h"

namespace dsinfer {

// One sequence's rows of a batched layer step.
struct Segment {
  LayerKvCache* cache = nullptr;  // the sequence's cache for the layer being run
  int64_t start = 0;              // position of the segment's first row
  int64_t row = 0;                // its first row in the batch
  int64_t rows = 0;               // ≥ 1
  bool use_indexer = false;       // DSA with the indexer (if the layer has one)
  int64_t index_topk = 0;         // effective top-k
};

// Consecutive rows of one segment: the unit of work of key selection and attention (a query's
// result does not depend on which other rows share its block).
struct RowBlock {
  int32_t seg;    // index into Workspace::segs
  int64_t first;  // first row, relative to the segment
  int64_t rows;   // ≥ 1
};

// Grows `v` to at least n elements (never shrinks, so steady-state calls do not allocate).
template <class T>
T* Take(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(n);
  return v.data();
}

// Every temporary of a forward call. Each buffer has one purpose, so a pointer taken from one
// stays valid while other buffers grow.
struct Workspace {
  // The batch: segments, and per row its position and segment index.
  std::vector<Segment> segs;
  std::vector<int64_t> pos;     // [N]
  std::vector<int32_t> row_seg; // [N]
  // Model level.
  std::vector<float> h, g;      // [N, hidden] residual stream, final-normed hidden
  std::vector<float> head_in;   // [M, hidden] rows that need logits
  std::vector<float> logits;    // [M, vocab]
  std::vector<float> mtp_cat;   // [n, 2*hidden]
  std::vector<float> mtp_h;     // [n, hidden]
  std::vector<int32_t> mtp_tok; // [n] the token each MTP row embeds
  std::vector<const float*> mtp_hid;  // [n] the hidden row [hidden] each MTP row takes
  // Layer.
  std::vector<float> x, y;      // [N, hidden] normed block input / block output
  // Attention.
  std::vector<float> qr;        // [N, q_lora_rank]
  std::vector<float> q;         // [N, H, dn + dr]
  std::vector<float> kv_a;      // [N, R + dr]
  std::vector<float> ckv, k_pe; // [N, R], [N, dr]
  std::vector<float> q_abs;     // [N, H, R]
  std::vector<float> q_pe;      // [N, H, dr]
  std::vector<float> o_lat;     // [N, H, R]
  std::vector<float> o;         // [N, H * dv]
  std::vector<RowBlock> blocks; // [n_blocks] row blocks of every segment, in row order
  int64_t n_blocks = 0;
  std::vector<MlaWorkspace> mla_ws;  // [threads] attention kernels' scratch
  // Indexer and key selection.
  std::vector<float> ik;              // [N, d_I] keys
  std::vector<float> ik_scales;       // [d_I / 128]
  std::vector<float> iq;              // [N, H_I, d_I] queries
  std::vector<uint8_t> iq_codes;      // [N, H_I, d_I] e4m3
  std::vector<float> iq_scales;       // [N, H_I, d_I / 128]
  std::vector<float> iq_weights;      // [N, H_I]
  std::vector<int32_t> sel;           // per indexer segment [rows, k]: selected positions
  std::vector<int64_t> sel_off;       // [segments] where a segment's rows start in sel
  std::vector<IndexerWorkspace> indexer_ws;  // [threads] indexer kernels' scratch
  // FFN.
  std::vector<float> mg, mu;          // [N, inter] dense MLP / shared expert gate and up
  std::vector<float> sh;              // [N, hidden] shared expert output
  std::vector<float> gate_s, gate_b;  // [N, E] sigmoid scores, biased scores
  std::vector<TopKCandidate> topk_scratch;  // [E] routing TopK scratch
  std::vector<int32_t> topk_out;      // [max(2, n_group, k)] one routing selection
  std::vector<int32_t> r_experts;     // [N, k] ascending expert ids
  std::vector<float> r_weights;       // [N, k]
  std::vector<float> group_score;     // [n_group]
  std::vector<float> masked;          // [E]
  std::vector<int64_t> e_offset;      // [E + 1] start of each expert's tokens in e_rows
  std::vector<int64_t> e_fill;        // [E]
  std::vector<int64_t> e_rows;        // [N * k] token rows grouped by expert
  std::vector<float> e_weights;       // [N * k] their routing weights
  std::vector<int64_t> active;        // [E] experts with tokens, ascending
  std::vector<float> xe, ye;          // [rows, hidden] gathered inputs / outputs of experts
  std::vector<float> eg, eu;          // [rows, moe_inter] experts' gate / up projections
  std::vector<int64_t> ep_bounds;     // [ranks + 1] each rank's first slot in e_rows (ep)
  // Benchmarks: time per part of the layer step (null: not measured).
  LayerPartTimes* times = nullptr;
};

// Charges the time since the previous lap (or construction) to a part of ws.times; free when
// no times are recorded.
class PartLap {
 public:
  explicit PartLap(const Workspace& ws) : times_(ws.times) {
    if (times_) last_ = std::chrono::steady_clock::now();
  }
  void operator()(LayerPartTimes::Part part) {
    if (!times_) return;
    const auto now = std::chrono::steady_clock::now();
    times_->ms[part] += std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
  }
  // Starts the next lap now, charging nothing (the time since was measured elsewhere).
  void Restart() {
    if (times_) last_ = std::chrono::steady_clock::now();
  }

 private:
  LayerPartTimes* times_;
  std::chrono::steady_clock::time_point last_{};
};

struct LayerContext {
  const ModelConfig& config;
  const RopeTable& rope;
  Workspace& ws;       // ws.segs / ws.pos / ws.row_seg describe the batch
  int64_t N;           // rows in the batch
  Dumper* dump;        // may be null (only with a single segment)
  // Expert parallelism: this rank computes only its routed experts and exchanges their
  // outputs (model/expert_parallel.h). Null: a single process computes them all.
  const ExpertParallel* ep = nullptr;
  // The arithmetic of the activation-side GEMMs (`Linear(Numerics, ...)`, docs/numerics.md): wq_a,
  // wq_b, wkv_a, wo, indexer.wq_b, indexer.wk and every MLP's w1/w3/w2 follow it; the router,
  // indexer.weights_proj and the wkv_b products stay f32 in both modes.
  Numerics numerics = Numerics::kF32;
};

// MLA (+ indexer) of the batch; writes every segment's cache rows first.
// x: [N, hidden] (attn_norm output), out: [N, hidden] (after wo).
void AttentionForward(const LayerContext& ctx, const LayerWeights& lw, const float* x,
                      float* out);

// Dense MLP or MoE. x: [N, hidden] (ffn_norm output), out: [N, hidden].
void FfnForward(const LayerContext& ctx, const LayerWeights& lw, const float* x, float* out);

// SwiGLU MLP w2(silu(w1 x) * w3 x), its three GEMMs in `numerics`. x: [S, hidden],
// out: [S, hidden]; g, u: [S, inter] scratch.
void MlpForward(Numerics numerics, const MlpWeights& w, const float* x, int64_t S, float* out,
                float* g, float* u);

// Group-limited routing of one token (docs/model.md §5.2, numerics.md §6): s [E] sigmoid scores,
// b [E] the scores used for selection (s + bias). Groups are scored by the sum of their two
// largest b when the checkpoint has a router bias (`has_bias`), else by their largest b, as
// DeepSeek's `Gate` does. Writes the chosen expert ids [k] (in selection order) and weights [k].
void RouteToken(const ModelConfig& c, Workspace& ws, const float* s, const float* b,
                bool has_bias, int32_t* experts, float* weights);

}  // namespace dsinfer
