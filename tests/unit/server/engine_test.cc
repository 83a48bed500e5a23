// The interleaving scheduler on a tiny generated checkpoint: with greedy sampling, requests
// run concurrently (round-robin steps, chunked prefill) produce exactly the tokens they produce
// alone; forced (scripted) tokens are replayed; cancellation frees the slot; a full queue
// refuses; max_tokens and the stop id end generations with the right reason.
#include "runtime/engine.h"

#include <gtest/gtest.h>

#include <chrono>
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
  std::unique_ptr<Engine> Make(int parallel, int queue, int64_t chunk) {
    EngineOptions o;
    o.parallel = parallel;
    o.queue_capacity = queue;
    o.prefill_chunk = chunk;
    return std::make_unique<Engine>(Model::Load(*dir_), o);
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

TEST_F(EngineTest, RejectsInvalidRequests) {
  auto e = Make(1, 1, 4);
  EXPECT_THROW(e->Submit(GenerationRequest{}), Error);  // empty prompt
  GenerationRequest r = Request(4, 9, 3);
  r.prompt[1] = static_cast<int32_t>(e->config().vocab_size);
  EXPECT_THROW(e->Submit(r), Error);
  r = Request(4, 9, e->config().max_position_embeddings);
  EXPECT_THROW(e->Submit(r), Error);  // over the context
  r = Request(4, 9, 3);
  r.sampler.top_p = 0;
  EXPECT_THROW(e->Submit(r), Error);
}

}  // namespace
}  // namespace dsinfer
