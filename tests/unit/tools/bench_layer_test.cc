// `dsinfer bench layer`'s library (tools/bench_layer.h): position and list parsing (bad input →
// an Error quoting it), the cost arithmetic, the case plan, the synthetic cache rows, the
// measurement loop on a generated tiny model, and the SVG's structure. Timings themselves are
// not asserted (shared machine); tests/bench/ checks the CLI end to end.
#include "tools/bench_layer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "base/error.h"
#include "format/dtype.h"
#include "tools/gen_model.h"
#include "tests/unit/tools/gen_test_util.h"

namespace dsinfer::layerbench {
namespace {

using testing_util::ScratchDir;

// Runs `f`, expecting an Error whose message contains every string of `parts`.
template <typename F>
void ExpectError(F f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no Error thrown";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

TEST(BenchLayer, ParsesPositionsWithKSuffix) {
  EXPECT_EQ(ParsePosition("0"), 0);
  EXPECT_EQ(ParsePosition("4096"), 4096);
  EXPECT_EQ(ParsePosition("4K"), 4096);
  EXPECT_EQ(ParsePosition("128k"), 131072);
  EXPECT_EQ(ParsePositions("16K,0,4K,4096,64"), (std::vector<int64_t>{0, 64, 4096, 16384}));
  EXPECT_EQ(FormatPosition(0), "0");
  EXPECT_EQ(FormatPosition(1000), "1000");
  EXPECT_EQ(FormatPosition(131072), "128K");
}

TEST(BenchLayer, BadPositionsNameTheItem) {
  ExpectError([] { ParsePositions("0,4Q"); }, {"--positions", "'4Q'", "suffix 'Q'"});
  ExpectError([] { ParsePosition("-1"); }, {"'-1'", "digits"});
  ExpectError([] { ParsePosition("1.5K"); }, {"'1.5K'", "suffix '.5K'"});
  ExpectError([] { ParsePosition("K"); }, {"'K'"});
  ExpectError([] { ParsePosition("4M"); }, {"'4M'", "K = 1024"});
  ExpectError([] { ParsePosition("9999999999999K"); }, {"too large"});
  ExpectError([] { ParsePositions("0,,4K"); }, {"--positions", "empty item"});
  ExpectError([] { ParsePositions(""); }, {"empty item"});
}

TEST(BenchLayer, ParsesPhaseAndAttentionLists) {
  EXPECT_EQ(ParsePhases("prefill,decode,prefill"),
            (std::vector<Phase>{Phase::kPrefill, Phase::kDecode}));
  EXPECT_EQ(ParseAttentions("dense"), (std::vector<AttentionMode>{AttentionMode::kDense}));
  ExpectError([] { ParsePhases("decode,train"); }, {"--phase", "'train'"});
  ExpectError([] { ParseAttentions("dsa,sparse"); }, {"--attention", "'sparse'"});
}

TEST(BenchLayer, CostArithmetic) {
  // 100 ms for 10 tokens at 3.6 USD/hour: 10 ms/token, 100 tokens/s, and 1M tokens take
  // 1e4 s = 2.7778 h → 10 USD.
  const Cost c = CostOf(/*step_ms=*/100, /*tokens=*/10, /*usd_per_hour=*/3.6);
  EXPECT_DOUBLE_EQ(c.ms_per_token, 10);
  EXPECT_DOUBLE_EQ(c.tokens_per_s, 100);
  EXPECT_NEAR(c.usd_per_mtok, 10, 1e-12);
  // Linear in the price and in time per token.
  const Cost d = CostOf(/*step_ms=*/512, /*tokens=*/512, /*usd_per_hour=*/kDefaultUsdPerHour);
  EXPECT_NEAR(d.usd_per_mtok, 1e6 / 3.6e6 * kDefaultUsdPerHour, 1e-12);
}

TEST(BenchLayer, PlanCoversEveryCombination) {
  const std::vector<AttentionMode> a{AttentionMode::kDsa, AttentionMode::kDense};
  const std::vector<Phase> ph{Phase::kDecode, Phase::kPrefill};
  const std::vector<int64_t> pos{0, 64}, batches{32, 1};
  const std::vector<Case> cases = PlanCases(a, ph, pos, batches, /*chunk=*/8);
  ASSERT_EQ(cases.size(), 2u * (2 * 2 + 2));  // per mode: decode 2 batches × 2 positions + prefill 2
  std::set<std::tuple<Phase, AttentionMode, int64_t, int64_t, int64_t>> seen;
  for (const Case& c : cases) {
    EXPECT_EQ(c.phase == Phase::kDecode ? c.chunk : c.batch, 1);
    if (c.phase == Phase::kPrefill) {
      EXPECT_EQ(c.chunk, 8);
    }
    seen.insert({c.phase, c.attention, c.position, c.batch, c.chunk});
  }
  EXPECT_EQ(seen.size(), cases.size());
  // Grouped by attention mode, so each mode's caches are filled once.
  EXPECT_EQ(cases.front().attention, AttentionMode::kDsa);
  EXPECT_EQ(cases.back().attention, AttentionMode::kDense);
  for (size_t i = 1; i < cases.size(); ++i)
    if (cases[i].attention == AttentionMode::kDsa) {
      EXPECT_EQ(cases[i - 1].attention, AttentionMode::kDsa);
    }
}

TEST(BenchLayer, SyntheticRowsAreValidAndDistinct) {
  for (KvCacheType type : {KvCacheType::kFP8, KvCacheType::kBF16, KvCacheType::kF32}) {
    const LatentLayout layout{.type = type, .kv_lora_rank = 512, .rope_dim = 64};
    LayerKvCache cache(layout, /*index_head_dim=*/128);
    cache.Reserve(300);
    const SyntheticFiller filler(layout, /*seed=*/7);
    filler.Fill(cache, 0, 300);
    std::vector<float> row(layout.width());  // [R + dr]
    double sum2 = 0;
    for (int64_t t = 0; t < 300; ++t) {
      layout.Decode(cache.latent_row(t), row.data());
      for (float v : row) {
        ASSERT_TRUE(std::isfinite(v));
        ASSERT_LE(std::fabs(v), 2.0f);  // uniform on ±√3, plus FP8 rounding
        sum2 += v * v;
      }
    }
    EXPECT_NEAR(sum2 / (300.0 * layout.width()), 1.0, 0.1);  // unit variance
    std::set<std::string> keys;
    const IndexKeyLayout& il = cache.index_layout();
    for (int64_t t = 0; t < 300; ++t) {
      const std::byte* k = cache.index_row(t);
      for (int64_t i = 0; i < il.head_dim; ++i)
        ASSERT_FALSE(std::isnan(E4M3ToFloat(il.codes(k)[i]))) << "row " << t;
      const float s = il.scale(k, 0);
      EXPECT_GT(s, 0);
      EXPECT_EQ(std::exp2(std::round(std::log2(s))), s);  // a power of two, as ue8m0
      keys.emplace(reinterpret_cast<const char*>(k), il.RowBytes());
    }
    EXPECT_EQ(keys.size(), 300u);  // every key differs
    // Deterministic: the same seed rewrites the same bytes.
    LayerKvCache again(layout, 128);
    again.Reserve(300);
    filler.Fill(again, 100, 200);
    EXPECT_EQ(0, std::memcmp(again.latent_row(150), cache.latent_row(150), layout.RowBytes()));
    EXPECT_EQ(0, std::memcmp(again.index_row(150), cache.index_row(150), il.RowBytes()));
  }
}

// Verify cases: every batch, 1 + N rows per sequence for each N of `drafts` ({1} by default).
TEST(BenchLayer, PlanHasVerifyCasesPerDraftCount) {
  EXPECT_EQ(ParsePhases("verify,decode"), (std::vector<Phase>{Phase::kVerify, Phase::kDecode}));
  const std::vector<AttentionMode> a{AttentionMode::kDsa};
  const std::vector<Phase> ph{Phase::kDecode, Phase::kVerify};
  const std::vector<int64_t> pos{0, 4096}, batches{8, 1}, drafts{1, 2};
  const std::vector<Case> cases = PlanCases(a, ph, pos, batches, /*chunk=*/512, drafts);
  ASSERT_EQ(cases.size(), 2u * 2 + 2u * 2 * 2);  // decode: batches × positions; verify: × drafts
  std::set<std::tuple<Phase, int64_t, int64_t, int64_t>> seen;
  for (const Case& c : cases) {
    if (c.phase == Phase::kDecode) {
      EXPECT_EQ(c.chunk, 1);
    } else {
      EXPECT_TRUE(c.chunk == 2 || c.chunk == 3) << c.chunk;
    }
    seen.insert({c.phase, c.batch, c.chunk, c.position});
  }
  EXPECT_EQ(seen.size(), cases.size());
  for (const Case& c : PlanCases(a, std::vector<Phase>{Phase::kVerify}, pos, batches, 512))
    EXPECT_EQ(c.chunk, 2);  // default: one draft
}

// The expected number of distinct experts against an exhaustive enumeration: n = 6 experts,
// every token choosing k = 2 distinct ones (15 equally likely pairs), 1 to 3 tokens.
TEST(BenchLayer, ExpectedDistinctExpertsMatchesEnumeration) {
  std::vector<unsigned> pairs;  // bit masks of the 15 pairs
  for (int i = 0; i < 6; ++i)
    for (int j = i + 1; j < 6; ++j) pairs.push_back(1u << i | 1u << j);
  double mean1 = 0, mean2 = 0, mean3 = 0;
  for (unsigned p : pairs) {
    mean1 += __builtin_popcount(p);
    for (unsigned q : pairs) {
      mean2 += __builtin_popcount(p | q);
      for (unsigned r : pairs) mean3 += __builtin_popcount(p | q | r);
    }
  }
  mean1 /= 15, mean2 /= 15 * 15, mean3 /= 15 * 15 * 15;
  EXPECT_NEAR(ExpectedDistinctExperts(6, 2, 1), mean1, 1e-12);
  EXPECT_NEAR(ExpectedDistinctExperts(6, 2, 2), mean2, 1e-12);
  EXPECT_NEAR(ExpectedDistinctExperts(6, 2, 3), mean3, 1e-12);
  EXPECT_DOUBLE_EQ(ExpectedDistinctExperts(256, 8, 0), 0);
  EXPECT_NEAR(ExpectedDistinctExperts(256, 8, 1), 8, 1e-12);
}

// Tokens per step and the break-even acceptance against their closed forms: N = 1:
// 1 + a = r → a = r − 1; N = 2: 1 + a + a² = r → a = (√(4r − 3) − 1) / 2.
TEST(BenchLayer, BreakEvenAcceptanceClosedForms) {
  EXPECT_DOUBLE_EQ(ExpectedTokensPerStep(0.0, 3), 1.0);
  EXPECT_DOUBLE_EQ(ExpectedTokensPerStep(1.0, 3), 4.0);
  EXPECT_DOUBLE_EQ(ExpectedTokensPerStep(0.5, 2), 1.75);
  for (double r : {1.05, 1.57, 1.9, 2.0}) {
    ASSERT_TRUE(BreakEvenAcceptance(r, 1)) << r;
    EXPECT_NEAR(*BreakEvenAcceptance(r, 1), r - 1, 1e-12) << r;
  }
  for (double r : {1.2, 2.12, 2.9}) {
    ASSERT_TRUE(BreakEvenAcceptance(r, 2)) << r;
    EXPECT_NEAR(*BreakEvenAcceptance(r, 2), (std::sqrt(4 * r - 3) - 1) / 2, 1e-12) << r;
  }
  EXPECT_EQ(BreakEvenAcceptance(0.9, 1), 0.0);  // cheaper than a plain step: always pays
  EXPECT_FALSE(BreakEvenAcceptance(2.01, 1));   // dearer than 1 + N plain steps: never
  EXPECT_FALSE(BreakEvenAcceptance(3.5, 2));
}

std::string MakeTiny(const ScratchDir& tmp, const std::vector<std::string>& sets = {}) {
  GenOptions o{.preset = "tiny", .seed = 3, .out_dir = tmp / "m", .sets = {"vocab_size=1000"}};
  o.sets.insert(o.sets.end(), sets.begin(), sets.end());
  GenerateCheckpoint(o);
  return o.out_dir;
}

TEST(BenchLayer, MeasuresEveryCaseOfATinyModel) {
  ScratchDir tmp("bench_layer");
  std::unique_ptr<Model> model = Model::Load(MakeTiny(tmp));
  int progress_calls = 0;
  LayerBench bench(*model, {.reps = 2,
                            .min_seconds = 0,
                            .usd_per_hour = 1.0,
                            .progress = [&](const std::string&, double f) {
                              EXPECT_GE(f, 0.0);
                              EXPECT_LE(f, 1.0);
                              ++progress_calls;
                            }});
  EXPECT_EQ(bench.layer(), 1);  // tiny: layer 0 is dense, 1 is the first MoE layer
  const std::vector<AttentionMode> a{AttentionMode::kDsa, AttentionMode::kDense};
  const std::vector<Phase> ph{Phase::kDecode, Phase::kPrefill};
  const std::vector<int64_t> pos{0, 100}, batches{3, 1};
  std::vector<Measurement> ms;
  for (const Case& c : PlanCases(a, ph, pos, batches, /*chunk=*/5)) {
    ms.push_back(bench.Measure(c));
    const Measurement& m = ms.back();
    EXPECT_EQ(m.reps, 2);
    EXPECT_GT(m.step_ms, 0);
    EXPECT_LE(m.step_ms, m.median_step_ms);
    EXPECT_DOUBLE_EQ(m.cost.ms_per_token, m.step_ms / c.tokens());
    // The parts are consecutive phases inside the timed step: each ≥ 0, together ≤ the step.
    double parts = 0;
    for (double part : m.parts.ms) {
      EXPECT_GE(part, 0);
      parts += part;
    }
    EXPECT_GT(parts, 0);
    EXPECT_LE(parts, m.step_ms * (1 + 1e-9));
    // Indexer FLOPs: 2 · H_I · d_I per (query, key) of every query with more keys than top-k.
    const ModelConfig& cfg = model->config();
    const int64_t k = *cfg.index_topk;
    double keys = 0;
    if (c.attention == AttentionMode::kDsa)
      for (int64_t b = 0; b < c.batch; ++b)
        for (int64_t p = c.position; p < c.position + c.chunk; ++p) keys += p + 1 > k ? p + 1 : 0;
    EXPECT_DOUBLE_EQ(m.indexer_flops, 2.0 * *cfg.index_n_heads * *cfg.index_head_dim * keys);
    if (keys > 0) {
      EXPECT_GT(m.parts.ms[LayerPartTimes::kIndexer], 0);
    }
    EXPECT_GT(m.parts.ms[LayerPartTimes::kExperts], 0);
  }
  const std::string breakdown = FormatBreakdown(ms, 100.0);
  EXPECT_EQ(std::count(breakdown.begin(), breakdown.end(), '\n'), 2 + static_cast<long>(ms.size())) << breakdown;
  EXPECT_NE(breakdown.find("indexer"), std::string::npos) << breakdown;
  EXPECT_GT(progress_calls, 0);
  const std::string table = FormatTable(ms);
  EXPECT_NE(table.find("dense/DSA"), std::string::npos) << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 1 + 6) << table;  // header + rows
  const std::string savings = FormatSavings(ms);  // decode batch 3, batch 1, prefill at 100
  EXPECT_EQ(std::count(savings.begin(), savings.end(), '\n'), 3) << savings;
  EXPECT_NE(savings.find("decode at 100 (batch 3)"), std::string::npos) << savings;
}

// Verify steps (1 + N rows per sequence) run and cost per row as the other phases; the verify
// summary has a line per verify case with a decode case of the same batch and position.
TEST(BenchLayer, MeasuresVerifyStepsAgainstDecode) {
  ScratchDir tmp("bench_layer");
  std::unique_ptr<Model> model = Model::Load(MakeTiny(tmp));
  const ModelConfig& cfg = model->config();
  LayerBench bench(*model, {.reps = 1, .min_seconds = 0});
  const std::vector<AttentionMode> a{AttentionMode::kDsa};
  const std::vector<Phase> ph{Phase::kDecode, Phase::kVerify};
  const std::vector<int64_t> pos{100}, batches{2, 1}, drafts{1, 3};
  std::vector<Measurement> ms;
  for (const Case& c : PlanCases(a, ph, pos, batches, /*chunk=*/8, drafts)) {
    ms.push_back(bench.Measure(c));
    const Measurement& m = ms.back();
    EXPECT_GT(m.step_ms, 0);
    EXPECT_DOUBLE_EQ(m.cost.ms_per_token, m.step_ms / (c.batch * c.chunk));
    double keys = 0;  // every row of every sequence scores its keys (> top-k of them)
    for (int64_t p = c.position; p < c.position + c.chunk; ++p) keys += p + 1;
    EXPECT_DOUBLE_EQ(m.indexer_flops,
                     2.0 * *cfg.index_n_heads * *cfg.index_head_dim * keys * c.batch);
  }
  ASSERT_EQ(ms.size(), 2u + 4u);
  const std::string v = FormatVerifyCost(ms, cfg.n_routed_experts, cfg.num_experts_per_tok);
  EXPECT_EQ(std::count(v.begin(), v.end(), '\n'), 4) << v;
  EXPECT_NE(v.find("verify batch 2, 1+3 rows at 100 (dsa): step "), std::string::npos) << v;
  EXPECT_NE(v.find("verify batch 1, 1+1 rows at 100 (dsa): step "), std::string::npos) << v;
  EXPECT_EQ(FormatVerifyCost(std::span<const Measurement>(ms.data(), 2), 8, 2), "");  // decode only
  ExpectError([&] { bench.Check({.phase = Phase::kVerify, .batch = 2, .chunk = 1}); },
              {"verify", "1 + N"});
}

TEST(BenchLayer, RejectsCasesTheModelCannotRun) {
  ScratchDir tmp("bench_layer");
  std::unique_ptr<Model> model = Model::Load(MakeTiny(tmp));
  LayerBench bench(*model, {});
  ExpectError([&] { bench.Check({.phase = Phase::kPrefill, .position = 4090, .chunk = 8}); },
              {"max_position_embeddings (4096)"});
  ExpectError([&] { bench.Check({.phase = Phase::kDecode, .position = 0, .batch = 0}); },
              {"at least 1"});
  ExpectError([&] { LayerBench b(*model, {.layer = 3}); }, {"--layer 3", "3 layers"});
  ExpectError([&] { LayerBench b(*model, {.usd_per_hour = 0}); }, {"--usd-per-hour"});

  ScratchDir tmp2("bench_layer_dense");
  std::unique_ptr<Model> dense = Model::Load(MakeTiny(tmp2, {"index_topk=null", "index_n_heads=null", "index_head_dim=null"}));
  LayerBench dense_bench(*dense, {});
  ExpectError([&] { dense_bench.Check({.attention = AttentionMode::kDsa}); }, {"no indexer"});
  dense_bench.Check({.attention = AttentionMode::kDense});
}

TEST(BenchLayer, SvgHasOnePolylinePerCurve) {
  std::vector<Measurement> ms;
  for (AttentionMode a : {AttentionMode::kDsa, AttentionMode::kDense})
    for (int64_t p : {0, 4096, 65536}) {
      for (int64_t b : {32, 1})
        ms.push_back({.c = {.phase = Phase::kDecode, .attention = a, .position = p, .batch = b},
                      .cost = {.usd_per_mtok = 0.1 + p * 1e-6 * (a == AttentionMode::kDense)},
                      .parts = {},
                      .indexer_flops = 0});
      ms.push_back({.c = {.phase = Phase::kPrefill, .attention = a, .position = p, .chunk = 512},
                    .cost = {.usd_per_mtok = 0.05 + p * 2e-6},
                    .parts = {},
                    .indexer_flops = 0});
    }
  const std::string svg = PlotSvg(ms, "model <a & b>");
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t i = svg.find(what); i != std::string::npos; i = svg.find(what, i + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<polyline"), 6u);  // decode: 2 modes × 2 batches; prefill: 2 modes
  EXPECT_EQ(count("<circle"), ms.size());
  EXPECT_NE(svg.find("model &lt;a &amp; b&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">64K<"), std::string::npos);  // x ticks in K
  EXPECT_NE(svg.find("USD per 1M tokens"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.rfind("</svg>\n"), svg.size() - 7);
}

}  // namespace
}  // namespace dsinfer::layerbench
