#include "tools/bench_layer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <tuple>

#include "base/error.h"
#include "base/threads.h"
#include "base/mix.h"
#include "kernels/quant.h"

namespace dsinfer::layerbench {

// ---------------------------------------------------------------------------------------------
// Parsing and cost

const char* PhaseName(Phase p) {
  return p == Phase::kDecode ? "decode" : p == Phase::kPrefill ? "prefill" : "verify";
}
const char* AttentionName(AttentionMode a) { return a == AttentionMode::kDsa ? "dsa" : "dense"; }

namespace {

std::vector<std::string> SplitList(const std::string& list, const std::string& what) {
  std::vector<std::string> items;
  size_t begin = 0;
  while (true) {
    const size_t comma = list.find(',', begin);
    std::string item = list.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    if (item.empty()) throw Error(what + " '" + list + "': empty item in the comma-separated list");
    items.push_back(std::move(item));
    if (comma == std::string::npos) return items;
    begin = comma + 1;
  }
}

template <typename T>
void AddUnique(std::vector<T>& v, T x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

}  // namespace

std::vector<Phase> ParsePhases(const std::string& list, const std::string& what) {
  std::vector<Phase> out;
  for (const std::string& s : SplitList(list, what)) {
    if (s == "decode") AddUnique(out, Phase::kDecode);
    else if (s == "prefill") AddUnique(out, Phase::kPrefill);
    else if (s == "verify") AddUnique(out, Phase::kVerify);
    else throw Error(what + ": unknown phase '" + s + "' (expected decode, prefill or verify)");
  }
  return out;
}

std::vector<AttentionMode> ParseAttentions(const std::string& list, const std::string& what) {
  std::vector<AttentionMode> out;
  for (const std::string& s : SplitList(list, what)) {
    if (s == "dsa") AddUnique(out, AttentionMode::kDsa);
    else if (s == "dense") AddUnique(out, AttentionMode::kDense);
    else throw Error(what + ": unknown attention '" + s + "' (expected dsa or dense)");
  }
  return out;
}

int64_t ParsePosition(const std::string& item, const std::string& what) {
  const auto bad = [&](const std::string& why) {
    return Error(what + ": bad position '" + item + "': " + why);
  };
  size_t digits = 0;
  while (digits < item.size() && item[digits] >= '0' && item[digits] <= '9') ++digits;
  if (digits == 0) throw bad("expected digits with an optional K suffix (K = 1024), e.g. 4K");
  const std::string suffix = item.substr(digits);
  int64_t unit = 1;
  if (suffix == "K" || suffix == "k") unit = 1024;
  else if (!suffix.empty())
    throw bad("unknown suffix '" + suffix + "' (only K = 1024 is allowed)");
  if (digits > 12) throw bad("too large");
  return std::stoll(item.substr(0, digits)) * unit;
}

std::vector<int64_t> ParsePositions(const std::string& list, const std::string& what) {
  std::vector<int64_t> out;
  for (const std::string& s : SplitList(list, what)) out.push_back(ParsePosition(s, what));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string FormatPosition(int64_t p) {
  if (p > 0 && p % 1024 == 0) return std::to_string(p / 1024) + "K";
  return std::to_string(p);
}

Cost CostOf(double step_ms, int64_t tokens, double usd_per_hour) {
  DSINFER_CHECK(tokens > 0 && step_ms > 0);
  Cost c;
  c.ms_per_token = step_ms / static_cast<double>(tokens);
  c.tokens_per_s = 1000.0 / c.ms_per_token;
  c.usd_per_mtok = c.ms_per_token / 1000.0 / 3600.0 * usd_per_hour * 1e6;
  return c;
}

std::vector<Case> PlanCases(std::span<const AttentionMode> attentions, std::span<const Phase> phases,
                            std::span<const int64_t> positions, std::span<const int64_t> batches,
                            int64_t chunk, std::span<const int64_t> drafts) {
  const std::vector<int64_t> verify_drafts =
      drafts.empty() ? std::vector<int64_t>{1} : std::vector<int64_t>(drafts.begin(), drafts.end());
  std::vector<Case> cases;
  for (AttentionMode a : attentions)
    for (Phase ph : phases) {
      const std::vector<int64_t> bs =
          ph == Phase::kPrefill ? std::vector<int64_t>{1}
                                : std::vector<int64_t>(batches.begin(), batches.end());
      for (int64_t b : bs) {
        std::vector<int64_t> chunks{ph == Phase::kPrefill ? chunk : 1};
        if (ph == Phase::kVerify) {
          chunks.clear();
          for (int64_t n : verify_drafts) chunks.push_back(1 + n);
        }
        for (int64_t ch : chunks)
          for (int64_t p : positions)
            cases.push_back({.phase = ph, .attention = a, .position = p, .batch = b, .chunk = ch});
      }
    }
  return cases;
}

double ExpectedDistinctExperts(int64_t n, int64_t k, int64_t rows) {
  DSINFER_CHECK(n > 0 && k >= 0 && k <= n && rows >= 0);
  return static_cast<double>(n) *
         (1.0 - std::pow(1.0 - static_cast<double>(k) / static_cast<double>(n),
                         static_cast<double>(rows)));
}

double ExpectedTokensPerStep(double a, int64_t drafts) {
  double tokens = 0, p = 1;  // p = a^j: every draft before j + 1 was accepted
  for (int64_t j = 0; j <= drafts; ++j, p *= a) tokens += p;
  return tokens;
}

std::optional<double> BreakEvenAcceptance(double cost_ratio, int64_t drafts) {
  if (cost_ratio <= 1) return 0.0;
  if (cost_ratio > static_cast<double>(drafts + 1)) return std::nullopt;
  double lo = 0, hi = 1;  // ExpectedTokensPerStep rises from 1 to drafts + 1 on [0, 1]
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (lo + hi);
    (ExpectedTokensPerStep(mid, drafts) < cost_ratio ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

int64_t DefaultLayer(const ModelConfig& c) {
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l)) return l;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Synthetic caches

namespace {

// xorshift64*: a cheap stream per row (seeded through SplitMix64 so nearby rows differ).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(SplitMix64(seed) | 1) {}
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float Uniform(float lo, float hi) {  // [lo, hi)
    return lo + (hi - lo) * static_cast<float>(Next() >> 40) * (1.0f / (1 << 24));
  }
};

// Uniform on ±√3 has variance 1, as the RMS-normalised latents and unit-scale k_pe have.
constexpr float kUnitUniform = 1.7320508f;
constexpr int64_t kLatentPoolRows = 1024;
constexpr int64_t kFillBlockRows = 16384;  // rows per progress report
constexpr int kMaxReps = 1000;

}  // namespace

// The sequences of one attention mode. Row t < filled[i] of sequence i's measured layer holds
// a valid value (synthetic, or written by a measured step).
struct LayerBench::Caches {
  AttentionMode mode;
  std::vector<SequenceState> seqs;
  std::vector<int64_t> filled;
  std::optional<SyntheticFiller> filler;
};

namespace {

void FillIndexRow(const IndexKeyLayout& layout, Rng& rng, std::byte* row) {
  auto* codes = reinterpret_cast<uint8_t*>(row);
  for (int64_t i = 0; i < layout.head_dim; i += 8) {
    uint64_t r = rng.Next();
    for (int64_t j = i; j < std::min(i + 8, layout.head_dim); ++j, r >>= 8) {
      uint8_t code = static_cast<uint8_t>(r);
      if ((code & 0x7F) == 0x7F) code ^= 1;  // 0x7F / 0xFF are NaN in e4m3fn
      codes[j] = code;
    }
  }
  for (int64_t b = 0; b < QuantBlocks(layout.head_dim); ++b) {
    const float scale = std::ldexp(1.0f, -6 - static_cast<int>(rng.Next() & 3));  // ue8m0-like
    std::memcpy(row + layout.head_dim + b * sizeof(float), &scale, sizeof scale);
  }
}

}  // namespace

SyntheticFiller::SyntheticFiller(const LatentLayout& layout, uint64_t seed)
    : layout_(layout), seed_(SplitMix64(seed)), pool_(kLatentPoolRows * layout.RowBytes()) {
  const int64_t bytes = layout.RowBytes();
  std::vector<float> c(layout.kv_lora_rank), k_pe(layout.rope_dim);  // [R], [dr]
  Rng rng(seed);
  for (int64_t r = 0; r < kLatentPoolRows; ++r) {
    for (float& v : c) v = rng.Uniform(-kUnitUniform, kUnitUniform);
    for (float& v : k_pe) v = rng.Uniform(-kUnitUniform, kUnitUniform);
    layout.Encode(c.data(), k_pe.data(), &pool_[r * bytes]);
  }
}

void SyntheticFiller::Fill(LayerKvCache& cache, int64_t from, int64_t to) const {
  const int64_t bytes = layout_.RowBytes();
  DSINFER_CHECK(cache.layout().type == layout_.type && cache.layout().RowBytes() == bytes,
                "SyntheticFiller: cache layout differs from the filler's");
  DSINFER_CHECK(from >= 0 && to <= cache.capacity(), "SyntheticFiller: rows not reserved");
#pragma omp parallel for schedule(static)
  for (int64_t t = from; t < to; ++t) {
    DSINFER_NOTE_THREAD("bench_layer.fill_cache");
    Rng rng(seed_ ^ static_cast<uint64_t>(t));
    std::memcpy(cache.latent_row(t), &pool_[(rng.Next() % kLatentPoolRows) * bytes], bytes);
    if (cache.has_index()) FillIndexRow(cache.index_layout(), rng, cache.index_row(t));
  }
}

LayerBench::LayerBench(Model& model, Options options)
    : model_(model), options_(std::move(options)) {
  const ModelConfig& c = model_.config();
  layer_ = options_.layer >= 0 ? options_.layer : DefaultLayer(c);
  if (layer_ >= c.num_hidden_layers)
    throw Error("--layer " + std::to_string(layer_) + " is out of range: the model has " +
                std::to_string(c.num_hidden_layers) + " layers");
  if (options_.reps < 1) throw Error("--reps must be at least 1");
  if (options_.warmup < 0) throw Error("--warmup must not be negative");
  if (!(options_.usd_per_hour > 0)) throw Error("--usd-per-hour must be positive");
}

LayerBench::~LayerBench() = default;

void LayerBench::Check(const Case& c) const {
  const ModelConfig& cfg = model_.config();
  if (c.position < 0) throw Error("position must be ≥ 0");
  if (c.batch < 1 || c.chunk < 1) throw Error("--batch and --chunk must be at least 1");
  if (c.phase == Phase::kDecode && c.chunk != 1) throw Error("a decode step has chunk 1");
  if (c.phase == Phase::kVerify && c.chunk < 2)
    throw Error("a verify step has 1 + N rows per sequence (N ≥ 1 drafts)");
  if (c.attention == AttentionMode::kDsa && !cfg.has_indexer())
    throw Error("--attention dsa: the checkpoint has no indexer (index_topk), so it is dense");
  if (c.position + c.chunk > cfg.max_position_embeddings)
    throw Error("position " + FormatPosition(c.position) + " + " + std::to_string(c.chunk) +
                " token(s) exceeds max_position_embeddings (" +
                std::to_string(cfg.max_position_embeddings) + ")");
}

namespace {

// Calls `progress` at most every 0.2 s (and at the end).
struct Throttle {
  using Clock = std::chrono::steady_clock;
  const std::function<void(const std::string&, double)>& progress;
  Clock::time_point last{};
  void operator()(const std::string& what, double f) {
    if (!progress) return;
    const auto now = Clock::now();
    if (f < 1.0 && now - last < std::chrono::milliseconds(200)) return;
    last = now;
    progress(what, f);
  }
};

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

Measurement LayerBench::Measure(const Case& c) {
  Check(c);
  if (!caches_ || caches_->mode != c.attention) {
    caches_.reset();  // free the other mode's caches before allocating these
    caches_ = std::make_unique<Caches>();
    caches_->mode = c.attention;
  }
  Caches& cs = *caches_;
  const SequenceOptions so{.attention = c.attention, .kv_cache = options_.kv_cache};
  while (static_cast<int64_t>(cs.seqs.size()) < c.batch) {
    cs.seqs.push_back(model_.NewSequence(so));
    cs.filled.push_back(0);
  }
  if (!cs.filler) cs.filler.emplace(cs.seqs[0].caches[layer_].layout(), options_.seed);

  Throttle report{options_.progress};
  int64_t to_fill = 0, done = 0;
  for (int64_t b = 0; b < c.batch; ++b) to_fill += std::max<int64_t>(0, c.position - cs.filled[b]);
  for (int64_t b = 0; b < c.batch; ++b) {
    LayerKvCache& cache = cs.seqs[b].caches[layer_];
    cache.Reserve(c.position + c.chunk);
    for (int64_t t = cs.filled[b]; t < c.position; t += kFillBlockRows) {
      const int64_t end = std::min(t + kFillBlockRows, c.position);
      cs.filler->Fill(cache, t, end);
      done += end - t;
      report("filling caches (synthetic)", static_cast<double>(done) / to_fill);
    }
    cs.filled[b] = std::max(cs.filled[b], c.position + c.chunk);  // the step writes the rest
  }

  const int64_t hidden = model_.config().hidden_size;
  std::vector<int32_t> ids(c.chunk, 0);  // LayerStep reads only the count
  std::vector<BatchEntry> entries;
  for (int64_t b = 0; b < c.batch; ++b)
    entries.push_back({.seq = &cs.seqs[b], .tokens = ids});
  std::vector<float> h0(c.tokens() * hidden), h(h0.size());  // [tokens, hidden] layer input
  Rng rng(options_.seed + 1);
  for (float& v : h0) v = rng.Uniform(-kUnitUniform, kUnitUniform);

  std::vector<double> times;
  LayerPartTimes fastest_parts;
  double total_ms = 0;
  const int warmup = options_.warmup, steps = warmup + options_.reps;
  for (int rep = 0;
       rep < steps || (total_ms < 1000 * options_.min_seconds && rep < warmup + kMaxReps);
       ++rep) {  // reps [0, warmup) are untimed
    report("measuring", std::min(1.0, static_cast<double>(rep) / steps));
    for (auto& s : cs.seqs) s.length = c.position;
    std::copy(h0.begin(), h0.end(), h.begin());
    LayerPartTimes parts;
    const auto t0 = std::chrono::steady_clock::now();
    model_.LayerStep(layer_, entries, h.data(), &parts);
    const double ms = Ms(std::chrono::steady_clock::now() - t0);
    if (rep >= warmup) {
      if (times.empty() || ms < *std::min_element(times.begin(), times.end())) fastest_parts = parts;
      times.push_back(ms);
      total_ms += ms;
    }
  }
  report("measuring", 1.0);
  std::sort(times.begin(), times.end());
  Measurement m;
  m.c = c;
  m.reps = static_cast<int>(times.size());
  m.step_ms = times.front();
  m.median_step_ms = times.size() % 2 ? times[times.size() / 2]
                                      : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
  m.cost = CostOf(m.step_ms, c.tokens(), options_.usd_per_hour);
  m.parts = fastest_parts;
  const ModelConfig& cfg = model_.config();
  if (c.attention == AttentionMode::kDsa && cfg.has_indexer()) {
    const int64_t k = *cfg.index_topk;
    double keys = 0;  // Σ over queries that score (k < p + 1) of the keys they scan (p + 1)
    for (int64_t s = 0; s < c.chunk; ++s)
      if (k < c.position + s + 1) keys += static_cast<double>(c.position + s + 1);
    m.indexer_flops = 2.0 * static_cast<double>(*cfg.index_n_heads * *cfg.index_head_dim) * keys *
                      static_cast<double>(c.batch);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Text

namespace {

struct RowKey {
  Phase phase;
  int64_t batch, chunk, position;
  auto operator<=>(const RowKey&) const = default;
};

// measurements by row, then by attention mode
std::map<RowKey, std::map<AttentionMode, const Measurement*>> ByRow(std::span<const Measurement> ms) {
  std::map<RowKey, std::map<AttentionMode, const Measurement*>> rows;
  for (const Measurement& m : ms)
    rows[{m.c.phase, -m.c.batch, m.c.chunk, m.c.position}][m.c.attention] = &m;  // big batch first
  return rows;
}

std::string Printf(const char* f, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

// 4 significant digits, never in exponent form above 1 (12345 → "12345", 0.01234 → "0.01234").
std::string Num(double v) { return v >= 1000 ? Printf("%.0f", v) : Printf("%.4g", v); }

}  // namespace

std::string FormatTable(std::span<const Measurement> ms) {
  std::vector<AttentionMode> modes;
  for (AttentionMode a : {AttentionMode::kDsa, AttentionMode::kDense})
    for (const Measurement& m : ms)
      if (m.c.attention == a) {
        modes.push_back(a);
        break;
      }
  std::string out = "phase    batch chunk position";
  for (AttentionMode a : modes)
    out += Printf(" | %5s ms/token   tokens/s USD/1M tok", a == AttentionMode::kDsa ? "DSA" : "dense");
  if (modes.size() == 2) out += " | dense/DSA";
  out += "\n";
  for (const auto& [key, by_mode] : ByRow(ms)) {
    out += Printf("%-7s %6lld %5lld %8s", PhaseName(key.phase), static_cast<long long>(-key.batch),
                  static_cast<long long>(key.chunk), FormatPosition(key.position).c_str());
    for (AttentionMode a : modes) {
      auto it = by_mode.find(a);
      if (it == by_mode.end()) {
        out += Printf(" | %39s", "-");
        continue;
      }
      const Cost& c = it->second->cost;
      out += Printf(" | %14s %10s %10s", Num(c.ms_per_token).c_str(), Num(c.tokens_per_s).c_str(),
                    Num(c.usd_per_mtok).c_str());
    }
    if (modes.size() == 2) {
      if (by_mode.size() == 2)
        out += Printf(" | %8.2fx", by_mode.at(AttentionMode::kDense)->cost.ms_per_token /
                                       by_mode.at(AttentionMode::kDsa)->cost.ms_per_token);
      else
        out += " |        -";
    }
    out += "\n";
  }
  return out;
}

std::string FormatBreakdown(std::span<const Measurement> ms, double peak_gflops) {
  std::string out = "ms/token by part (fastest step)\nattn  phase    batch chunk position";
  for (int p = 0; p < LayerPartTimes::kCount; ++p) out += Printf(" %9s", LayerPartTimes::Name(p));
  out += " | indexer GFLOP/s";
  if (peak_gflops > 0) out += Printf(" (of %.0f peak)", peak_gflops);
  out += "\n";
  for (const Measurement& m : ms) {
    out += Printf("%-5s %-7s %6lld %5lld %8s", AttentionName(m.c.attention), PhaseName(m.c.phase),
                  static_cast<long long>(m.c.batch), static_cast<long long>(m.c.chunk),
                  FormatPosition(m.c.position).c_str());
    for (double part_ms : m.parts.ms)
      out += Printf(" %9s", Num(part_ms / static_cast<double>(m.c.tokens())).c_str());
    const double indexer_ms = m.parts.ms[LayerPartTimes::kIndexer];
    if (m.indexer_flops > 0 && indexer_ms > 0) {
      const double gflops = m.indexer_flops / (indexer_ms * 1e6);
      out += Printf(" | %8.1f", gflops);
      if (peak_gflops > 0) out += Printf(" (%.2f)", gflops / peak_gflops);
    } else {
      out += " |        -";
    }
    out += "\n";
  }
  return out;
}

namespace {

// "batch 32" (decode), "chunk 512" (prefill), "batch 8, 1+2 rows" (verify).
std::string ShapeLabel(Phase phase, int64_t batch, int64_t chunk) {
  if (phase == Phase::kPrefill) return "chunk " + std::to_string(chunk);
  std::string s = "batch " + std::to_string(batch);
  if (phase == Phase::kVerify) s += ", 1+" + std::to_string(chunk - 1) + " rows";
  return s;
}

}  // namespace

std::string FormatSavings(std::span<const Measurement> ms) {
  // (phase, -batch, chunk) → the row at the largest position
  std::map<std::tuple<Phase, int64_t, int64_t>, std::pair<RowKey, double>> best;
  for (const auto& [key, by_mode] : ByRow(ms)) {
    if (by_mode.size() != 2) continue;
    const double ratio = by_mode.at(AttentionMode::kDense)->cost.ms_per_token /
                         by_mode.at(AttentionMode::kDsa)->cost.ms_per_token;
    best[{key.phase, key.batch, key.chunk}] = {key, ratio};  // ascending positions: last wins
  }
  std::string out;
  for (const auto& [pk, v] : best) {
    const RowKey& k = v.first;
    out += Printf("%s at %s (%s): DSA %.2fx %s per token than dense\n", PhaseName(k.phase),
                  FormatPosition(k.position).c_str(), ShapeLabel(k.phase, -k.batch, k.chunk).c_str(),
                  v.second >= 1 ? v.second : 1 / v.second, v.second >= 1 ? "cheaper" : "dearer");
  }
  return out;
}

std::string FormatVerifyCost(std::span<const Measurement> ms, int64_t n_experts, int64_t k) {
  std::string out;
  for (const Measurement& v : ms) {
    if (v.c.phase != Phase::kVerify) continue;
    const Measurement* d = nullptr;
    for (const Measurement& m : ms)
      if (m.c.phase == Phase::kDecode && m.c.attention == v.c.attention &&
          m.c.batch == v.c.batch && m.c.position == v.c.position)
        d = &m;
    if (!d) continue;
    const int64_t drafts = v.c.chunk - 1;
    const double ratio = v.step_ms / d->step_ms;
    const std::optional<double> even = BreakEvenAcceptance(ratio, drafts);
    out += Printf("verify %s at %s (%s): step %.2fx decode's; experts read %.1f vs %.1f (expected, "
                  "independent routing); pays above acceptance %s\n",
                  ShapeLabel(v.c.phase, v.c.batch, v.c.chunk).c_str(),
                  FormatPosition(v.c.position).c_str(), AttentionName(v.c.attention), ratio,
                  ExpectedDistinctExperts(n_experts, k, v.c.tokens()),
                  ExpectedDistinctExperts(n_experts, k, d->c.tokens()),
                  even ? Printf("%.2f", *even).c_str() : "- (never: more than 1 + N steps)");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SVG

namespace {

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

// 1, 2 or 5 × 10^k, giving about `ticks` intervals over [0, max].
double NiceStep(double max, int ticks) {
  const double raw = max / ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

struct CurveKey {
  Phase phase;
  AttentionMode attention;
  int64_t batch, chunk;
  auto operator<=>(const CurveKey&) const = default;
};

std::string CurveLabel(const CurveKey& k) {
  std::string s = k.attention == AttentionMode::kDsa ? "DSA" : "dense";
  return s + (k.phase == Phase::kDecode ? ", batch " + std::to_string(k.batch)
                                        : ", chunk " + std::to_string(k.chunk));
}

struct Box {
  double x, y, w, h;  // plot area in SVG units
};

// One panel: axes, ticks, one polyline (+ point markers) per curve, legend.
void DrawPanel(std::string& svg, const Box& box, const std::string& title,
               const std::map<CurveKey, std::vector<const Measurement*>>& curves) {
  double xmax = 0, ymax = 0;
  for (const auto& [key, pts] : curves)
    for (const Measurement* m : pts) {
      xmax = std::max(xmax, static_cast<double>(m->c.position));
      ymax = std::max(ymax, m->cost.usd_per_mtok);
    }
  const bool in_k = xmax >= 4096;
  const double xunit = in_k ? 1024.0 : 1.0;
  // Positions in K step by powers of two (0, 32K, 64K, ... as context lengths go).
  const double xstep = in_k ? std::exp2(std::ceil(std::log2(xmax / xunit / 4))) * xunit
                            : NiceStep(std::max(xmax, 1.0), 4);
  xmax = std::max(xstep, std::ceil(xmax / xstep) * xstep);
  const double ystep = NiceStep(ymax > 0 ? ymax : 1.0, 5);
  ymax = std::max(ystep, std::ceil(ymax / ystep) * ystep);
  const auto X = [&](double v) { return box.x + box.w * v / xmax; };
  const auto Y = [&](double v) { return box.y + box.h * (1 - v / ymax); };

  svg += "<text x=\"" + Fmt("%.1f", box.x + box.w / 2) + "\" y=\"" + Fmt("%.1f", box.y - 12) +
         "\" text-anchor=\"middle\" font-size=\"14\">" + XmlEscape(title) + "</text>\n";
  svg += "<g stroke=\"#ccc\" stroke-width=\"1\">\n";
  for (double v = 0; v <= ymax + ystep / 2; v += ystep)
    svg += "<line x1=\"" + Fmt("%.1f", box.x) + "\" y1=\"" + Fmt("%.1f", Y(v)) + "\" x2=\"" +
           Fmt("%.1f", box.x + box.w) + "\" y2=\"" + Fmt("%.1f", Y(v)) + "\"/>\n";
  svg += "</g>\n<g stroke=\"#000\" stroke-width=\"1\">\n";
  svg += "<line x1=\"" + Fmt("%.1f", box.x) + "\" y1=\"" + Fmt("%.1f", box.y + box.h) + "\" x2=\"" +
         Fmt("%.1f", box.x + box.w) + "\" y2=\"" + Fmt("%.1f", box.y + box.h) + "\"/>\n";
  svg += "<line x1=\"" + Fmt("%.1f", box.x) + "\" y1=\"" + Fmt("%.1f", box.y) + "\" x2=\"" +
         Fmt("%.1f", box.x) + "\" y2=\"" + Fmt("%.1f", box.y + box.h) + "\"/>\n</g>\n";
  svg += "<g font-size=\"11\">\n";
  for (double v = 0; v <= xmax + xstep / 2; v += xstep)
    svg += "<text x=\"" + Fmt("%.1f", X(v)) + "\" y=\"" + Fmt("%.1f", box.y + box.h + 15) +
           "\" text-anchor=\"middle\">" + (in_k && v > 0 ? Fmt("%gK", v / 1024) : Fmt("%g", v)) + "</text>\n";
  for (double v = 0; v <= ymax + ystep / 2; v += ystep)
    svg += "<text x=\"" + Fmt("%.1f", box.x - 5) + "\" y=\"" + Fmt("%.1f", Y(v) + 4) +
           "\" text-anchor=\"end\">" + Fmt("%g", v) + "</text>\n";
  svg += "<text x=\"" + Fmt("%.1f", box.x + box.w / 2) + "\" y=\"" + Fmt("%.1f", box.y + box.h + 32) +
         "\" text-anchor=\"middle\">token position</text>\n";
  svg += "</g>\n";

  // DSA blue, dense red; the largest batch solid, smaller batches dashed.
  int64_t max_batch = 0;
  for (const auto& [key, pts] : curves) max_batch = std::max(max_batch, key.batch);
  double legend_y = box.y + 8;
  for (const auto& [key, pts] : curves) {
    const char* color = key.attention == AttentionMode::kDsa ? "#1f5fbf" : "#c8323c";
    const std::string dash = key.batch < max_batch ? " stroke-dasharray=\"6 4\"" : "";
    std::string points;
    for (const Measurement* m : pts)
      points += Fmt("%.1f,", X(static_cast<double>(m->c.position))) +
                Fmt("%.1f ", Y(m->cost.usd_per_mtok));
    svg += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"2\"" +
           dash + " points=\"" + points + "\"><title>" + XmlEscape(CurveLabel(key)) +
           "</title></polyline>\n";
    for (const Measurement* m : pts)
      svg += "<circle cx=\"" + Fmt("%.1f", X(static_cast<double>(m->c.position))) + "\" cy=\"" +
             Fmt("%.1f", Y(m->cost.usd_per_mtok)) + "\" r=\"3\" fill=\"" + color + "\"/>\n";
    svg += "<line x1=\"" + Fmt("%.1f", box.x + 10) + "\" y1=\"" + Fmt("%.1f", legend_y) +
           "\" x2=\"" + Fmt("%.1f", box.x + 34) + "\" y2=\"" + Fmt("%.1f", legend_y) +
           "\" stroke=\"" + color + "\" stroke-width=\"2\"" + dash + "/>\n";
    svg += "<text x=\"" + Fmt("%.1f", box.x + 40) + "\" y=\"" + Fmt("%.1f", legend_y + 4) +
           "\" font-size=\"11\">" + XmlEscape(CurveLabel(key)) + "</text>\n";
    legend_y += 16;
  }
}

}  // namespace

std::string PlotSvg(std::span<const Measurement> ms, const std::string& subtitle) {
  std::map<Phase, std::map<CurveKey, std::vector<const Measurement*>>> panels;
  for (const Measurement& m : ms)
    panels[m.c.phase][{m.c.phase, m.c.attention, m.c.batch, m.c.chunk}].push_back(&m);
  for (auto& [phase, curves] : panels)
    for (auto& [key, pts] : curves)
      std::sort(pts.begin(), pts.end(), [](const Measurement* a, const Measurement* b) {
        return a->c.position < b->c.position;
      });
  const double panel_w = 420, panel_h = 300, left = 70, top = 90, gap = 90;
  const int n = std::max<int>(1, static_cast<int>(panels.size()));
  const double width = left + n * panel_w + (n - 1) * gap + 30, height = top + panel_h + 60;
  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + Fmt("%.0f", width) +
         "\" height=\"" + Fmt("%.0f", height) + "\" viewBox=\"0 0 " + Fmt("%.0f", width) + " " +
         Fmt("%.0f", height) + "\" font-family=\"sans-serif\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n";
  svg += "<text x=\"" + Fmt("%.1f", width / 2) +
         "\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">Cost per token of one layer vs "
         "token position: DSA vs dense attention</text>\n";
  svg += "<text x=\"" + Fmt("%.1f", width / 2) + "\" y=\"42\" text-anchor=\"middle\" "
         "font-size=\"11\" fill=\"#444\">" + XmlEscape(subtitle) + "</text>\n";
  svg += "<text x=\"16\" y=\"" + Fmt("%.1f", top + panel_h / 2) + "\" font-size=\"12\" "
         "text-anchor=\"middle\" transform=\"rotate(-90 16 " + Fmt("%.1f", top + panel_h / 2) +
         ")\">USD per 1M tokens</text>\n";
  int i = 0;
  for (Phase phase : {Phase::kPrefill, Phase::kDecode}) {
    auto it = panels.find(phase);
    if (it == panels.end()) continue;
    const Box box{left + i * (panel_w + gap), top, panel_w, panel_h};
    DrawPanel(svg, box, phase == Phase::kPrefill ? "Prefill" : "Decode", it->second);
    ++i;
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace dsinfer::layerbench
