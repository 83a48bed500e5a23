// `dsinfer bench layer`: the cost per token of one full decoder layer (attention + indexer + MoE)
// at a given token position, DSA vs dense attention, decode vs prefill — the analogue of
// DeepSeek's Fig. 3 (docs/model.md §10) on this machine.
//
//  * decode at position P: one step of a batch of B sequences that each hold P cached tokens;
//  * prefill at position P: one chunk of C tokens on top of P cached tokens;
//  * verify at position P: one step of a batch of B sequences that each run 1 + N rows (the
//    last token and N drafts of speculative decoding, runtime/engine.h) on top of P cached
//    tokens — compared with the decode step of the same batch it says what verifying drafts
//    costs (docs/spec.md).
//
// The caches of the measured layer are filled with synthetic values (latent rows: random values
// through `LatentLayout::Encode`; indexer keys: random e4m3 codes with power-of-two scales),
// since running P real tokens through the model first would take far longer than the
// measurement. The work does not depend on the values (dense attention reads every row, the
// indexer scores every key and keeps k whatever they are); only the streaming top-k's
// insertion count does, and distinct random keys exercise it as real scores do.
//
// Cost: USD per 1M tokens = ms/token / 1000 / 3600 · USD per hour · 1e6 (the machine's rental
// price spread over the tokens it processes), as DeepSeek derived their figure from an H800
// hour price.
//
// Thread-safety: the parsing and cost functions are pure; `LayerBench` drives one `Model` and
// is not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/kv_layout.h"
#include "model/model.h"

namespace dsinfer::layerbench {

// Default machine price: the on-demand hourly price of a 2-vCPU AMD EPYC (Zen 4) cloud
// instance with 16 GiB (AWS r7a.large, us-east-1, ≈ 0.152 USD/hour in 2024) — the size of the
// machine this was built on. Pass `--usd-per-hour` for yours.
inline constexpr double kDefaultUsdPerHour = 0.15;

enum class Phase : uint8_t { kDecode, kPrefill, kVerify };

const char* PhaseName(Phase p);             // "decode" | "prefill" | "verify"
const char* AttentionName(AttentionMode a);  // "dsa" | "dense"

// Comma-separated lists, e.g. "decode,prefill" / "dsa,dense"; duplicates are dropped, order
// kept. Throws Error naming the bad item (and the option `what`).
std::vector<Phase> ParsePhases(const std::string& list, const std::string& what = "--phase");
std::vector<AttentionMode> ParseAttentions(const std::string& list,
                                           const std::string& what = "--attention");

// A token position: decimal digits with an optional suffix K (= 1024, either case), e.g. "0",
// "4096", "4K", "128k". Throws Error quoting the item otherwise (e.g. "4Q", "", "-1", "1.5K").
int64_t ParsePosition(const std::string& item, const std::string& what = "--positions");
// "0,4K,16K": sorted ascending, duplicates dropped.
std::vector<int64_t> ParsePositions(const std::string& list, const std::string& what = "--positions");
// 4096 → "4K", 1000 → "1000", 0 → "0".
std::string FormatPosition(int64_t p);

struct Cost {
  double ms_per_token = 0;
  double tokens_per_s = 0;
  double usd_per_mtok = 0;  // USD per 1M tokens
};

// The cost of a step that processed `tokens` tokens in `step_ms` on a machine rented at
// `usd_per_hour`.
Cost CostOf(double step_ms, int64_t tokens, double usd_per_hour);

struct Case {
  Phase phase = Phase::kDecode;
  AttentionMode attention = AttentionMode::kDsa;
  int64_t position = 0;  // tokens already cached in each sequence
  int64_t batch = 1;     // sequences in the step (decode, verify)
  int64_t chunk = 1;     // tokens per sequence in the step (prefill; verify: 1 + drafts)
  int64_t tokens() const { return batch * chunk; }
};

// Decode cases get chunk 1, prefill cases batch 1, verify cases (every batch) chunk 1 + N for
// each N of `drafts` (empty: {1}). Order: attention, phase, batch (as given), drafts, position —
// the order `LayerBench` fills caches in (one fill per attention mode).
std::vector<Case> PlanCases(std::span<const AttentionMode> attentions, std::span<const Phase> phases,
                            std::span<const int64_t> positions, std::span<const int64_t> batches,
                            int64_t chunk, std::span<const int64_t> drafts = {});

// Speculative decoding's arithmetic (docs/spec.md). The expected number of distinct experts
// read by a step whose `rows` tokens each choose `k` of `n` experts, independently and each
// expert with probability k/n: n · (1 − (1 − k/n)^rows).
double ExpectedDistinctExperts(int64_t n, int64_t k, int64_t rows);
// Tokens a verify step of `drafts` drafts emits on average when each draft is accepted with
// probability `a` given the previous one was: 1 + a + … + a^drafts.
double ExpectedTokensPerStep(double a, int64_t drafts);
// The acceptance at which speculation breaks even for a verify step that costs `cost_ratio`
// plain decode steps (ExpectedTokensPerStep(a, drafts) = cost_ratio): 0 when cost_ratio ≤ 1,
// nullopt when even a = 1 does not pay (cost_ratio > drafts + 1).
std::optional<double> BreakEvenAcceptance(double cost_ratio, int64_t drafts);

struct Measurement {
  Case c;
  int reps = 0;            // timed steps (after the warm-up steps)
  double step_ms = 0;      // fastest timed step
  double median_step_ms = 0;
  Cost cost;               // from `step_ms`
  LayerPartTimes parts;    // where the fastest step's time went (ms per part)
  double indexer_flops = 0;  // key-scan FLOPs of one step: 2 · H_I · d_I per scored (query, key)
};

struct Options {
  int64_t layer = -1;                       // -1: the first MoE layer (else layer 0)
  KvCacheType kv_cache = KvCacheType::kFP8;  // DeepSeek's deployment caches FP8 latents
  int warmup = 1;           // untimed steps first (0: the first step is timed too, for
                            // measurements too long to repeat, with warm weights)
  int reps = 3;             // timed steps at least ...
  double min_seconds = 0.3;  // ... and more (up to 1000) until their total reaches this: the
                             // fastest of many short steps filters a shared machine's noise
  double usd_per_hour = kDefaultUsdPerHour;
  uint64_t seed = 0;                        // synthetic cache and input values
  // Progress of the current case: `what` ("filling caches", "measuring") and its fraction.
  std::function<void(const std::string& what, double fraction)> progress{};
};

// Writes synthetic cache rows: latent rows are copies of a pool of random rows (values uniform
// with unit variance) encoded by the cache's `LatentLayout`; indexer keys are fresh random
// e4m3 codes (never NaN) with power-of-two scales, so every key scores differently. Row t's
// content is a function of (seed, t). Fill is multi-threaded (OpenMP); const, so callers
// may share one filler.
class SyntheticFiller {
 public:
  SyntheticFiller(const LatentLayout& layout, uint64_t seed);
  // Rows [from, to) of `cache` (reserved by the caller; its layout must be the filler's).
  void Fill(LayerKvCache& cache, int64_t from, int64_t to) const;

 private:
  LatentLayout layout_;
  uint64_t seed_;
  std::vector<std::byte> pool_;  // [kPoolRows, layout RowBytes] encoded random rows
};

// The layer a bench measures by default: the first MoE layer, or 0 if there is none.
int64_t DefaultLayer(const ModelConfig& c);

class LayerBench {
 public:
  LayerBench(Model& model, Options options);
  ~LayerBench();

  int64_t layer() const { return layer_; }
  // Throws Error if the case does not fit the model (position + tokens beyond
  // max_position_embeddings) or is malformed.
  void Check(const Case& c) const;
  // Fills caches as needed (kept for the next case of the same attention mode; a case of the
  // other mode frees them first), runs `warmup` untimed steps, then times `reps` steps.
  Measurement Measure(const Case& c);

 private:
  struct Caches;
  Model& model_;
  Options options_;
  int64_t layer_;
  std::unique_ptr<Caches> caches_;
};

// Per measurement: ms/token of each part of the fastest step (LayerPartTimes) and the indexer's
// achieved GFLOP/s, as a fraction of `peak_gflops` (the machine's dot-product peak; ≤ 0: not
// shown).
std::string FormatBreakdown(std::span<const Measurement> ms, double peak_gflops);

// A text table: one row per (phase, batch, chunk, position); for each attention mode measured
// ms/token, tokens/s and USD per 1M tokens; and the dense/DSA cost ratio when both were.
std::string FormatTable(std::span<const Measurement> ms);

// One line per phase with both modes measured, at the largest position, e.g.
// "decode at 16K (batch 32): DSA 3.1x cheaper per token than dense". Empty if none.
std::string FormatSavings(std::span<const Measurement> ms);

// One line per verify measurement that has a decode measurement of the same attention, batch
// and position: the verify step's time over the decode step's, the experts each is expected to
// read (`n_experts`, top `k`), and the acceptance at which speculation breaks even on this
// layer. Empty if there is none.
std::string FormatVerifyCost(std::span<const Measurement> ms, int64_t n_experts, int64_t k);

// The cost-vs-position curves as a standalone SVG: one panel per phase (prefill, decode), USD
// per 1M tokens over the token position, one polyline per (phase, attention, batch, chunk)
// curve (DSA solid, dense dashed). `subtitle` goes under the title (model, machine, price).
std::string PlotSvg(std::span<const Measurement> ms, const std::string& subtitle);

}  // namespace dsinfer::layerbench
