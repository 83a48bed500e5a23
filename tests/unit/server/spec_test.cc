// MTP speculative decoding in the engine (#12) on a generated 2-layer checkpoint with an MTP
// layer. Truths: the same engine without speculation (greedy output must be identical: drafts
// are only accepted when they are the argmax), an oracle drafter that proposes the true
// continuation with some drafts corrupted (exercises partial acceptance and the truncation of
// rejected rows), and for sampling the target distribution computed with `Model::Forward`
// (a chi-square test of the tokens the engine emits after a draft was verified).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>

#include "runtime/engine.h"
#include "tests/unit/model/tiny_checkpoint.h"

namespace dsinfer {
namespace {

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kUnderSanitizer = true;
#else
constexpr bool kUnderSanitizer = false;
#endif
#else
constexpr bool kUnderSanitizer = false;
#endif

using namespace std::chrono_literals;

// 2 layers + MTP, 1024-token vocabulary (fast), index_topk 16 (DSA selects past 16 tokens).
std::string SpecDir() { return MakeCheckpoint("spec_tiny2", 21, {"num_hidden_layers=2"}); }

std::vector<int32_t> CollectTokens(Generation& g) {
  std::vector<int32_t> out;
  for (int i = 0; i < 1200; ++i) {  // ≤ 120 s: a hang fails instead of blocking the suite
    Generation::Update u = g.Wait(100ms);
    out.insert(out.end(), u.tokens.begin(), u.tokens.end());
    if (u.done) {
      EXPECT_NE(u.finish, FinishReason::kError) << u.error;
      return out;
    }
  }
  ADD_FAILURE() << "generation did not finish";
  return out;
}

GenerationRequest SpecRequest(int64_t n_prompt, uint32_t seed, int64_t max_tokens) {
  GenerationRequest r;
  r.prompt = Ids(n_prompt, 1024, seed);
  r.max_tokens = max_tokens;
  return r;
}

std::unique_ptr<Engine> Make(int64_t draft, int parallel = 4, double min_acceptance = -1) {
  EngineOptions o;
  o.parallel = parallel;
  o.queue_capacity = 4096;
  o.draft = draft;
  o.min_acceptance = min_acceptance;
  o.sequence.kv_cache = KvCacheType::kFP8;
  return std::make_unique<Engine>(Model::Load(SpecDir()), o);
}

// Runs the requests concurrently (one batch) and returns each one's tokens.
std::vector<std::vector<int32_t>> RunAll(Engine& e, const std::vector<GenerationRequest>& reqs) {
  std::vector<std::shared_ptr<Generation>> gens;
  for (const auto& r : reqs) gens.push_back(e.Submit(r));
  std::vector<std::vector<int32_t>> out;
  for (auto& g : gens) {
    EXPECT_TRUE(g);
    out.push_back(g ? CollectTokens(*g) : std::vector<int32_t>{});
  }
  return out;
}

// Prompts: short, past index_topk (DSA selects), and past one 64-token page (prefix hits).
std::vector<GenerationRequest> Requests() {
  return {SpecRequest(5, 1, 30), SpecRequest(40, 2, 30), SpecRequest(100, 3, 30), SpecRequest(130, 4, 12)};
}

TEST(SpecTest, GreedyOutputIsIdenticalWithDrafts) {
  const auto reqs = Requests();
  std::vector<std::vector<int32_t>> want;
  {
    auto plain = Make(0, 1);
    for (const auto& r : reqs) want.push_back(RunAll(*plain, {r})[0]);
  }
  for (int64_t draft : {1, 2}) {
    auto e = Make(draft);
    EXPECT_EQ(RunAll(*e, reqs), want) << "draft " << draft << ", batched";
    // Again: the long prompts now adopt cached pages, MTP rows included.
    EXPECT_EQ(RunAll(*e, reqs), want) << "draft " << draft << ", prefix-cache hits";
    const EngineStats s = e->Stats();
    EXPECT_GT(s.cache_hit_tokens, 0);
    EXPECT_GT(s.draft_tokens, 0);
    std::printf("draft %lld: %lld of %lld drafts accepted, %.3f tokens/step\n",
                static_cast<long long>(draft), static_cast<long long>(s.accepted_tokens),
                static_cast<long long>(s.draft_tokens),
                static_cast<double>(s.decode_tokens) / s.decode_steps);
  }
}

// Drafts that are right except every third one: acceptance is partial, so the verified steps
// emit several tokens and then truncate the rejected rows (main, indexer and MTP caches).
TEST(SpecTest, PartialAcceptanceTruncatesAndStaysLossless) {
  const auto reqs = Requests();
  std::vector<std::vector<int32_t>> want;
  {
    auto plain = Make(0, 1);
    for (const auto& r : reqs) want.push_back(RunAll(*plain, {r})[0]);
  }
  EngineOptions o;
  o.parallel = 4;
  o.draft = 3;
  o.min_acceptance = -1;
  o.sequence.kv_cache = KvCacheType::kFP8;
  int64_t calls = 0;
  o.test_drafter = [&](const std::vector<int32_t>& tokens, int64_t n) {
    std::vector<int32_t> d;
    for (size_t r = 0; r < reqs.size(); ++r) {  // which request: its prompt is a prefix
      const auto& p = reqs[r].prompt;
      if (tokens.size() < p.size() || !std::equal(p.begin(), p.end(), tokens.begin())) continue;
      const size_t done = tokens.size() - p.size();
      for (int64_t j = 0; j < n; ++j) {
        const size_t i = done + j;
        const int32_t right = i < want[r].size() ? want[r][i] : 0;
        d.push_back(++calls % 3 == 0 ? (right + 1) % 1024 : right);
      }
      return d;
    }
    ADD_FAILURE() << "unknown sequence";
    return std::vector<int32_t>(n, 0);
  };
  Engine e(Model::Load(SpecDir()), o);
  EXPECT_EQ(RunAll(e, reqs), want);
  const EngineStats s = e.Stats();
  EXPECT_GT(s.accepted_tokens, 0);
  EXPECT_LT(s.accepted_tokens, s.draft_tokens);
  EXPECT_GT(static_cast<double>(s.decode_tokens) / s.decode_steps, 1.5);
}

// Adaptive: with an acceptance threshold no sequence meets, drafting stops after the window.
TEST(SpecTest, LowAcceptanceStopsDrafting) {
  GenerationRequest r = SpecRequest(20, 9, 60);
  std::vector<int32_t> want;
  {
    auto plain = Make(0, 1);
    want = RunAll(*plain, {r})[0];
  }
  auto e = Make(1, 1, /*min_acceptance=*/1.01);
  EXPECT_EQ(RunAll(*e, {r})[0], want);
  EXPECT_EQ(e->Stats().draft_tokens, 16);  // the window, then plain decoding
}

// Adaptive stop is per sequence, in a batch: drafts that are always right for one request and
// always wrong for the other. With the default threshold (30% after 16 drafts) the second stops
// drafting after its 16th draft while the first drafts to the end: 19 drafts for 40 tokens
// (two tokens per step from the first token on, none in the last step, which has one token
// left), all accepted. Outputs equal plain decoding.
TEST(SpecTest, AdaptiveStopIsPerSequence) {
  const std::vector<GenerationRequest> reqs = {SpecRequest(20, 11, 40), SpecRequest(25, 12, 40)};
  std::vector<std::vector<int32_t>> want;
  {
    auto plain = Make(0, 1);
    for (const auto& r : reqs) want.push_back(RunAll(*plain, {r})[0]);
  }
  EngineOptions o;
  o.parallel = 2;
  o.draft = 1;
  o.sequence.kv_cache = KvCacheType::kFP8;
  ASSERT_EQ(o.min_acceptance, 0.3);  // the defaults this test counts with
  ASSERT_EQ(o.adaptive_window, 16);
  o.test_drafter = [&](const std::vector<int32_t>& tokens, int64_t n) {
    for (size_t r = 0; r < reqs.size(); ++r) {
      const auto& p = reqs[r].prompt;
      if (tokens.size() < p.size() || !std::equal(p.begin(), p.end(), tokens.begin())) continue;
      std::vector<int32_t> d;
      for (int64_t j = 0; j < n; ++j) {
        const size_t i = tokens.size() - p.size() + j;
        const int32_t right = i < want[r].size() ? want[r][i] : 0;
        d.push_back(r == 0 ? right : (right + 1) % 1024);
      }
      return d;
    }
    ADD_FAILURE() << "unknown sequence";
    return std::vector<int32_t>(n, 0);
  };
  Engine e(Model::Load(SpecDir()), o);
  EXPECT_EQ(RunAll(e, reqs), want);
  const EngineStats s = e.Stats();
  EXPECT_EQ(s.accepted_tokens, 19);
  EXPECT_EQ(s.draft_tokens, 19 + 16);
}

// With sampling, a sequence's tokens depend only on its seed, not on the batch around it (the
// MTP layer drafts for the whole batch in one step: chained with 3 drafts, and mixed with
// sequences still prefilling).
TEST(SpecTest, SampledOutputIsBatchInvariant) {
  auto reqs = Requests();
  for (size_t i = 0; i < reqs.size(); ++i)
    reqs[i].sampler = {.temperature = 0.8f, .top_p = 0.95f, .seed = 100 + i};
  for (int64_t draft : {2, 3}) {
    auto e = Make(draft);
    std::vector<std::vector<int32_t>> alone;
    for (const auto& r : reqs) alone.push_back(RunAll(*e, {r})[0]);
    EXPECT_EQ(RunAll(*e, reqs), alone) << "draft " << draft;
  }
}

// Rejection sampling keeps the distribution: the second generated token (the first one that
// went through draft verification) conditioned on the first, over many seeds, against
// p(t2 | prompt, t1) from Model::Forward. Chi-square over the tokens expected ≥ 5 times plus
// one bin for the rest, bound df + 5 sqrt(2 df) (≈ 5 standard deviations).
TEST(SpecTest, RejectionSamplingKeepsTheDistribution) {
  const SamplerOptions so{.temperature = 0.2f, .top_p = 1.0f};  // peaked: random weights
  const std::vector<int32_t> prompt = Ids(6, 1024, 77);
  // The truth: first-token distribution and, for its most likely value, the next one.
  auto model = Model::Load(SpecDir());
  SequenceState seq = model->NewSequence({.kv_cache = KvCacheType::kFP8});
  ForwardResult r1 = model->Forward(seq, prompt, 0, /*all_logits=*/false);
  const int32_t t1 = Argmax(r1.logits.data(), 1024);
  const int32_t t1_tok[1] = {t1};
  ForwardResult r2 = model->Forward(seq, t1_tok, seq.length, false);
  std::vector<double> p2;
  Sampler(so).Distribution(r2.logits.data(), 1024, p2);

  // Under ASan or TSan the point is the memory and thread checks of the same code, not the
  // statistics: fewer seeds keep those builds' suite time down (the bound scales with df).
  const int runs = kUnderSanitizer ? 1200 : 3000;
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < runs; ++i) {
    GenerationRequest g;
    g.prompt = prompt;
    g.max_tokens = 3;  // after t1 one draft (the reservation covers it), verified for t2
    g.sampler = so;
    g.sampler.seed = 1000 + i;
    reqs.push_back(g);
  }
  // The MTP layer's drafts (random weights: mostly rejected, the residual decides), then a
  // deterministic drafter proposing the most likely t2 (mostly accepted).
  const int32_t likely = static_cast<int32_t>(std::max_element(p2.begin(), p2.end()) - p2.begin());
  for (bool oracle : {false, true}) {
    EngineOptions o;
    o.parallel = 8;
    o.queue_capacity = runs;
    o.draft = 1;
    o.min_acceptance = -1;
    o.sequence.kv_cache = KvCacheType::kFP8;
    if (oracle)
      o.test_drafter = [&](const std::vector<int32_t>&, int64_t n) {
        return std::vector<int32_t>(n, likely);
      };
    Engine e(Model::Load(SpecDir()), o);
    std::map<int32_t, int64_t> count;
    int64_t n = 0;
    for (const auto& out : RunAll(e, reqs))
      if (out.size() >= 2 && out[0] == t1) ++count[out[1]], ++n;
    ASSERT_GT(n, 300) << "the first token is not peaked enough";
    const EngineStats s = e.Stats();
    EXPECT_GT(s.draft_tokens, runs / 2);
    if (oracle) {
      EXPECT_GT(s.accepted_tokens, s.draft_tokens / 4);
    }
    double chi2 = 0, rest_p = 0;
    int64_t rest_n = n, df = 0;
    for (int32_t t = 0; t < 1024; ++t) {
      const double expect = p2[t] * n;
      if (expect < 5) {
        rest_p += p2[t];
        continue;
      }
      const double got = count.count(t) ? count[t] : 0;
      rest_n -= static_cast<int64_t>(got);
      chi2 += (got - expect) * (got - expect) / expect;
      ++df;
    }
    if (rest_p * n >= 5) chi2 += (rest_n - rest_p * n) * (rest_n - rest_p * n) / (rest_p * n), ++df;
    df -= 1;
    ASSERT_GE(df, 1);
    std::printf("%s drafts: chi2 %.1f, df %lld, %lld samples, acceptance %lld / %lld\n",
                oracle ? "deterministic" : "MTP", chi2, static_cast<long long>(df),
                static_cast<long long>(n), static_cast<long long>(s.accepted_tokens),
                static_cast<long long>(s.draft_tokens));
    EXPECT_LT(chi2, df + 5 * std::sqrt(2.0 * df));
  }
}

}  // namespace
}  // namespace dsinfer
