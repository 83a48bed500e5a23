// The interleaving scheduler on a tiny generated checkpoint: with greedy sampling, requests
// run concurrently (round-robin steps, chunked prefill) produce exactly the tokens they produce
// alone; forced (scripted) tokens are replayed; cancellation frees the slot; a full queue
// refuses; max_tokens and the stop id end generations with the right reason. KV pages: a
// prefix-cache hit gives bitwise the tokens and logprobs of a miss, a fully cached prompt still
// computes its last token, a small --kv-budget makes requests wait (never overcommits) and
// refuses what can never fit, cancelled requests release their pages.
#include "runtime/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <memory>

#include "base/error.h"
#include "server_test_util.h"

namespace dsinfer {
namespace {

using namespace std::chrono_literals;

struct Result {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
};

Result Collect(Generation& g) {
  Result r;
  for (int i = 0; i < 600; ++i) {  // ≤ 60 s: a hang fails instead of blocking the suite
    Generation::Update u = g.Wait(100ms);
    r.tokens.insert(r.tokens.end(), u.tokens.begin(), u.tokens.end());
    if (u.done) {
      r.finish = u.finish;
      return r;
    }
  }
  ADD_FAILURE() << "generation did not finish";
  return r;
}

// The worker updates `running` after the round that finished the last sequence.
void WaitIdle(const Engine& e) {
  for (int i = 0; i < 400 && e.Stats().running != 0; ++i) std::this_thread::sleep_for(5ms);
}

GenerationRequest Request(int n_prompt, int seed, int64_t max_tokens) {
  GenerationRequest r;
  for (int i = 0; i < n_prompt; ++i) r.prompt.push_back(100 + (i * 7919 + seed * 104729) % 5000);
  r.max_tokens = max_tokens;
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dir_ = new std::string(server_test::TinyModelDir()); }
  static void TearDownTestSuite() { delete dir_; }
  std::unique_ptr<Engine> Make(int parallel, int queue, int64_t chunk, int64_t kv_pages = 0,
                               bool prefix_cache = true) {
    EngineOptions o;
    o.parallel = parallel;
    o.queue_capacity = queue;
    o.prefill_chunk = chunk;
    o.prefix_cache = prefix_cache;
    if (kv_pages > 0) o.kv_budget_bytes = kv_pages * PageBytes();
    return std::make_unique<Engine>(Model::Load(*dir_), o);
  }
  static int64_t PageBytes() {
    auto m = Model::Load(*dir_);
    return KvPageLayout::Of(m->NewSequence({})).bytes;
  }
  static std::string* dir_;
};
std::string* EngineTest::dir_ = nullptr;

TEST_F(EngineTest, InterleavedEqualsAlone) {
  std::vector<GenerationRequest> reqs = {Request(23, 1, 4), Request(5, 2, 6), Request(40, 3, 3),
                                         Request(11, 4, 5)};
  std::vector<Result> alone;
  {
    auto e = Make(1, 8, 1 << 20);  // one at a time, whole prompt in one Forward
    for (const auto& r : reqs) alone.push_back(Collect(*e->Submit(r)));
  }
  auto e = Make(3, 8, 7);  // 3 slots, a 4th request waiting; prefill in chunks of 7
  std::vector<std::shared_ptr<Generation>> gens;
  for (const auto& r : reqs) gens.push_back(e->Submit(r));
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(gens[i]) << i;
    Result r = Collect(*gens[i]);
    EXPECT_EQ(r.tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(r.finish, FinishReason::kLength);
    EXPECT_EQ(static_cast<int64_t>(r.tokens.size()), reqs[i].max_tokens);
  }
  WaitIdle(*e);
  const EngineStats s = e->Stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.queued, 0);
  EXPECT_EQ(s.prompt_tokens, 23 + 5 + 40 + 11);
  EXPECT_EQ(s.generated_tokens, 4 + 6 + 3 + 5);
}

TEST_F(EngineTest, ForcedTokensAndStopId) {
  auto e = Make(2, 4, 16);
  GenerationRequest r = Request(8, 5, 20);
  r.forced_tokens = {500, 600, 700, 1, 800};
  r.stop_ids = {1};
  Result got = Collect(*e->Submit(r));
  EXPECT_EQ(got.tokens, (std::vector<int32_t>{500, 600, 700, 1}));
  EXPECT_EQ(got.finish, FinishReason::kStop);
  r.forced_tokens = {42, 43};  // the script runs out: the generation stops
  got = Collect(*e->Submit(r));
  EXPECT_EQ(got.tokens, (std::vector<int32_t>{42, 43}));
  EXPECT_EQ(got.finish, FinishReason::kStop);
}

TEST_F(EngineTest, CancelFreesTheSlotAndQueueBounds) {
  auto e = Make(1, 1, 4);
  auto long_gen = e->Submit(Request(30, 6, 4096 - 30));
  ASSERT_TRUE(long_gen);
  for (int i = 0; i < 200 && e->Stats().running == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(e->Stats().running, 1);
  auto waiting = e->Submit(Request(4, 7, 3));
  ASSERT_TRUE(waiting);
  EXPECT_EQ(e->Submit(Request(4, 8, 3)), nullptr);  // slot busy, queue (1) full
  long_gen->Cancel();
  EXPECT_EQ(Collect(*long_gen).finish, FinishReason::kCancelled);
  Result w = Collect(*waiting);
  EXPECT_EQ(w.finish, FinishReason::kLength);
  EXPECT_EQ(w.tokens.size(), 3u);
  WaitIdle(*e);
  EXPECT_EQ(e->Stats().running, 0);
}

// Request A leaves its prompt pages in the prefix cache; B shares 2 full pages with it and
// adopts them. B's tokens and logprobs (computed from the logits) are bitwise those of B run
// on an engine without the cache (same 64-token chunk boundaries), and B reports the hit.
TEST_F(EngineTest, PrefixHitEqualsMiss) {
  GenerationRequest a = Request(150, 10, 2), b = Request(170, 11, 6);
  std::copy(a.prompt.begin(), a.prompt.begin() + 140, b.prompt.begin());  // 140 shared tokens
  b.top_logprobs = 3;
  auto run = [&](Engine& e, const GenerationRequest& r, int64_t& hit,
                 std::vector<TokenLogprobs>& lps) {
    auto g = e.Submit(r);
    Result res;
    for (int i = 0; i < 600; ++i) {
      Generation::Update u = g->Wait(100ms);
      res.tokens.insert(res.tokens.end(), u.tokens.begin(), u.tokens.end());
      lps.insert(lps.end(), u.logprobs.begin(), u.logprobs.end());
      if (u.done) break;
    }
    hit = g->cache_hit_tokens();
    return res.tokens;
  };
  int64_t hit_cold = -1, hit_warm = -1, hit_a = -1;
  std::vector<TokenLogprobs> lp_cold, lp_warm, unused;
  auto cold = Make(1, 4, 64, 0, /*prefix_cache=*/false);
  const auto want = run(*cold, b, hit_cold, lp_cold);
  auto warm = Make(1, 4, 64);
  run(*warm, a, hit_a, unused);
  const auto got = run(*warm, b, hit_warm, lp_warm);
  EXPECT_EQ(hit_cold, 0);
  EXPECT_EQ(hit_a, 0);
  EXPECT_EQ(hit_warm, 128);  // 2 whole pages of the 140 shared tokens
  EXPECT_EQ(got, want);
  ASSERT_EQ(lp_warm.size(), lp_cold.size());
  for (size_t i = 0; i < lp_warm.size(); ++i) {
    EXPECT_EQ(lp_warm[i].logprob, lp_cold[i].logprob) << i;  // bitwise equal floats
    EXPECT_EQ(lp_warm[i].top, lp_cold[i].top) << i;
  }
  const EngineStats s = warm->Stats();
  EXPECT_EQ(s.cache_hit_tokens, 128);
  EXPECT_EQ(s.prompt_tokens, 150 + 170 - 128);
  EXPECT_EQ(s.kv.cached_pages, 2);  // A's 2 full pages, adopted by B (B has no other full one)
}

// A whole prompt in the cache: only pages covering ≤ prompt − 1 tokens are adopted, so the
// last page's final token is computed (and gives the first token's logits).
TEST_F(EngineTest, FullyCachedPromptStillComputesOneToken) {
  auto e = Make(1, 4, 64);
  const GenerationRequest r = Request(128, 12, 3);
  const Result first = Collect(*e->Submit(r));
  auto g = e->Submit(r);
  const Result second = Collect(*g);
  EXPECT_EQ(g->cache_hit_tokens(), 64);
  EXPECT_EQ(second.tokens, first.tokens);
}

// With a budget of 6 pages and requests needing 2 pages each (100 + 4 − 1 rows), at most 3
// run at once although 4 slots exist; the others wait, then all finish with their solo
// tokens, and the pool never holds more than the budget. A request that can never fit is
// refused with an error naming the budget.
TEST_F(EngineTest, KvBudgetMakesRequestsWaitNeverOvercommit) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(Request(100, 20 + i, 4));
  std::vector<Result> alone;
  {
    auto e = Make(1, 8, 64, 0, false);
    for (const auto& r : reqs) alone.push_back(Collect(*e->Submit(r)));
  }
  auto e = Make(4, 8, 64, /*kv_pages=*/6);
  std::vector<std::shared_ptr<Generation>> gens;
  for (const auto& r : reqs) gens.push_back(e->Submit(r));
  int64_t max_running = 0;
  for (int i = 0; i < 2000; ++i) {
    const EngineStats s = e->Stats();
    max_running = std::max(max_running, s.running);
    EXPECT_LE(s.kv.used_pages, 6);
    EXPECT_LE(s.kv.allocated_pages, 6);
    if (s.running == 0 && s.queued == 0) break;
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_LE(max_running, 3);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(Collect(*gens[i]).tokens, alone[i].tokens);
  try {
    e->Submit(Request(300, 30, 200));  // 8 pages > 6
    ADD_FAILURE() << "a request larger than the budget was accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("KV budget"), std::string::npos) << err.what();
  }
  EXPECT_EQ(e->max_sequence_tokens(), 6 * 64);
}

// Cancelled requests (running or queued) release every page reference.
TEST_F(EngineTest, CancelReleasesPages) {
  auto e = Make(2, 4, 64);
  auto g1 = e->Submit(Request(200, 40, 2000));
  auto g2 = e->Submit(Request(70, 41, 2000));
  for (int i = 0; i < 400 && e->Stats().generated_tokens < 2; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_GT(e->Stats().kv.referenced_pages, 0);
  g1->Cancel();
  g2->Cancel();
  EXPECT_EQ(Collect(*g1).finish, FinishReason::kCancelled);
  EXPECT_EQ(Collect(*g2).finish, FinishReason::kCancelled);
  WaitIdle(*e);
  const EngineStats s = e->Stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.kv.referenced_pages, 0);
  EXPECT_EQ(s.kv.cached_pages, 3 + 1);  // the full prompt pages stay cached (200 → 3, 70 → 1)
  EXPECT_EQ(s.kv.used_pages, s.kv.cached_pages);
}

TEST_F(EngineTest, RejectsInvalidRequests) {
  auto e = Make(1, 1, 4);
  EXPECT_THROW(e->Submit(GenerationRequest{}), Error);  // empty prompt
  GenerationRequest r = Request(4, 9, 3);
  r.prompt[1] = static_cast<int32_t>(e->config().vocab_size);
  EXPECT_THROW(e->Submit(r), Error);
  r = Request(4, 9, e->config().max_position_embeddings);
  EXPECT_THROW(e->Submit(r), Error);  // over the context
  for (int64_t huge :
       {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max() - 2}) {
    r = Request(4, 9, huge);  // prompt + max_tokens would overflow
    EXPECT_THROW(e->Submit(r), Error) << huge;
  }
  r = Request(4, 9, 3);
  r.sampler.top_p = 0;
  EXPECT_THROW(e->Submit(r), Error);
}

}  // namespace
}  // namespace dsinfer
