// Serving across the ranks of an expert-parallel job (runtime/engine.h `EngineReplica`,
// docs/mpi.md), without MPI: the ranks are threads of this process, each a `Model` holding only
// its share of the routed experts (tests/unit/model/thread_exchange.h) and an `Engine` — the
// leader's fed by `Submit`, the followers' running `Follow` — joined by an in-process replica
// (the leader's bytes copied to every follower between two barriers).
// Truth: one Engine in one process (no replica) running each request alone; the tokens of every
// request the leader serves must be those, whatever else runs beside it:
//  * 2 and 3 ranks (3: an uneven split of 8 experts): greedy and seeded-sampling requests run
//    batched with a queue (more requests than slots), chunked prefill, a prefix-cache hit, a
//    forced (scripted) request, and a request cancelled mid-generation;
//  * speculative decoding (--draft 2): greedy tokens as without it;
// and every follower's engine must have run the leader's rounds: its counters (prompt tokens
// computed, cache hits, tokens generated, decode steps, drafts verified and accepted) equal the
// leader's, and every rank made the same number of expert exchanges. A divergence inside a run
// is caught by the engines' own per-round check (EngineReplica::Fail aborts the test binary).
#include <gtest/gtest.h>

#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "runtime/engine.h"
#include "server_test_util.h"
#include "tests/unit/model/thread_exchange.h"

namespace dsinfer {
namespace {

using namespace std::chrono_literals;

// The replica side of an in-process job: rank 0's bytes replace the others', values gathered.
struct ReplicaHub {
  explicit ReplicaHub(int n) : sync(n), values(n) {}
  std::barrier<> sync;
  std::string bytes;
  std::vector<uint64_t> values;
};

class ThreadReplica : public EngineReplica {
 public:
  ThreadReplica(ReplicaHub& hub, int rank) : hub_(hub), rank_(rank) {}
  bool leader() const override { return rank_ == 0; }
  void Share(std::string& bytes) override {
    if (rank_ == 0) hub_.bytes = bytes;
    hub_.sync.arrive_and_wait();
    if (rank_ != 0) bytes = hub_.bytes;
    hub_.sync.arrive_and_wait();
  }
  std::vector<uint64_t> Gather(uint64_t value) override {
    hub_.values[rank_] = value;
    hub_.sync.arrive_and_wait();
    std::vector<uint64_t> all = hub_.values;
    hub_.sync.arrive_and_wait();
    return all;
  }
  [[noreturn]] void Fail(const std::string& message) override {
    std::fprintf(stderr, "rank %d: EngineReplica::Fail: %s\n", rank_, message.c_str());
    std::abort();
  }

 private:
  ReplicaHub& hub_;
  int rank_;
};

struct Outcome {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  int64_t cache_hit = 0;
};

Outcome CollectOutcome(Generation& g) {
  Outcome r;
  for (int i = 0; i < 1200; ++i) {  // ≤ 120 s: a hang fails instead of blocking the suite
    Generation::Update u = g.Wait(100ms);
    r.tokens.insert(r.tokens.end(), u.tokens.begin(), u.tokens.end());
    if (u.done) {
      r.finish = u.finish;
      r.cache_hit = g.cache_hit_tokens();
      return r;
    }
  }
  ADD_FAILURE() << "generation did not finish";
  return r;
}

GenerationRequest ReplicaRequest(int n_prompt, int seed, int64_t max_tokens) {
  GenerationRequest r;
  for (int i = 0; i < n_prompt; ++i) r.prompt.push_back(100 + (i * 7919 + seed * 104729) % 5000);
  r.max_tokens = max_tokens;
  return r;
}

EngineOptions Options(int64_t draft) {
  EngineOptions o;
  o.parallel = 3;
  o.queue_capacity = 16;
  o.prefill_chunk = 16;
  o.draft = draft;
  o.min_acceptance = -1;  // never stops drafting: every step verifies drafts
  return o;
}

// A job of `ranks` engines; the leader is `leader()`, the followers run on their own threads
// from construction until `Stop`.
class Job {
 public:
  Job(const std::string& dir, int ranks, const EngineOptions& options)
      : exchange_job_(ranks), hub_(ranks) {
    for (int r = 0; r < ranks; ++r) {
      exchanges_.push_back(std::make_unique<test::ThreadExchange>(exchange_job_, r));
      replicas_.push_back(std::make_unique<ThreadReplica>(hub_, r));
    }
    follower_stats_.resize(ranks);
    for (int r = 1; r < ranks; ++r)
      threads_.emplace_back([this, r, dir, options] {
        EngineOptions o = options;
        o.replica = replicas_[r].get();
        o.kv_budget_bytes = 0;  // this rank's default: the leader's budget must replace it
        Engine e(Model::Load(dir, {.exchange = exchanges_[r].get()}), o);
        e.Follow();
        follower_stats_[r] = e.Stats();
      });
    EngineOptions o = options;
    o.replica = replicas_[0].get();
    leader_ = std::make_unique<Engine>(Model::Load(dir, {.exchange = exchanges_[0].get()}), o);
  }
  Engine& leader() { return *leader_; }
  // Stops every engine; returns the leader's counters and checks the followers'.
  void Stop() {
    for (int i = 0; i < 400 && leader_->Stats().running != 0; ++i) std::this_thread::sleep_for(5ms);
    const EngineStats lead = leader_->Stats();
    leader_.reset();
    for (std::thread& t : threads_) t.join();
    for (size_t r = 1; r < follower_stats_.size(); ++r) {
      const EngineStats& f = follower_stats_[r];
      EXPECT_EQ(f.prompt_tokens, lead.prompt_tokens) << "rank " << r;
      EXPECT_EQ(f.cache_hit_tokens, lead.cache_hit_tokens) << "rank " << r;
      EXPECT_EQ(f.generated_tokens, lead.generated_tokens) << "rank " << r;
      EXPECT_EQ(f.decode_steps, lead.decode_steps) << "rank " << r;
      EXPECT_EQ(f.draft_tokens, lead.draft_tokens) << "rank " << r;
      EXPECT_EQ(f.accepted_tokens, lead.accepted_tokens) << "rank " << r;
      EXPECT_EQ(exchanges_[r]->calls(), exchanges_[0]->calls()) << "rank " << r;
    }
    EXPECT_GT(exchanges_[0]->calls(), 0);
    generated_ = lead.generated_tokens;
    draft_tokens_ = lead.draft_tokens;
  }
  int64_t generated() const { return generated_; }
  int64_t draft_tokens() const { return draft_tokens_; }

 private:
  test::ThreadJob exchange_job_;
  ReplicaHub hub_;
  std::vector<std::unique_ptr<test::ThreadExchange>> exchanges_;
  std::vector<std::unique_ptr<ThreadReplica>> replicas_;
  std::vector<EngineStats> follower_stats_;
  std::vector<std::thread> threads_;
  std::unique_ptr<Engine> leader_;
  int64_t generated_ = 0, draft_tokens_ = 0;
};

class EngineReplicaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dir_ = new std::string(server_test::TinyModelDir()); }
  static void TearDownTestSuite() { delete dir_; }
  static std::string* dir_;
};
std::string* EngineReplicaTest::dir_ = nullptr;

// Each request alone on one process's engine.
std::vector<Outcome> Alone(const std::string& dir, const EngineOptions& options,
                           const std::vector<GenerationRequest>& reqs) {
  Engine e(Model::Load(dir), options);
  std::vector<Outcome> out;
  for (const GenerationRequest& r : reqs) out.push_back(CollectOutcome(*e.Submit(r)));
  return out;
}

TEST_F(EngineReplicaTest, RanksServeWhatOneProcessServes) {
  std::vector<GenerationRequest> reqs = {ReplicaRequest(70, 1, 8), ReplicaRequest(23, 2, 6), ReplicaRequest(9, 3, 5),
                                         ReplicaRequest(40, 4, 7)};
  reqs[1].sampler = {.temperature = 0.8f, .top_p = 0.9f, .seed = 11};
  reqs[2].forced_tokens = {7, 8, 9, 10};
  reqs[3].sampler = {.temperature = 1.0f, .seed = 5, .top_k = 20};
  reqs[3].top_logprobs = 2;
  GenerationRequest longer = reqs[0];  // the first's 64-token page comes from the prefix cache
  for (int i = 0; i < 12; ++i) longer.prompt.push_back(300 + i);
  reqs.push_back(longer);
  const EngineOptions options = Options(0);
  const std::vector<Outcome> want = Alone(*dir_, options, reqs);
  for (const Outcome& w : want) ASSERT_TRUE(w.finish == FinishReason::kStop || w.finish == FinishReason::kLength);
  for (int ranks : {2, 3}) {
    Job job(*dir_, ranks, options);
    Engine& lead = job.leader();
    std::vector<std::shared_ptr<Generation>> gens;
    for (size_t i = 0; i + 1 < reqs.size(); ++i) gens.push_back(lead.Submit(reqs[i]));  // 4 > 3 slots
    // Runs beside the others (it would take 2,000 tokens) until cancelled after its first token.
    std::shared_ptr<Generation> c = lead.Submit(ReplicaRequest(30, 9, 2000));
    std::vector<Outcome> got;
    for (auto& g : gens) got.push_back(CollectOutcome(*g));
    gens.push_back(lead.Submit(reqs.back()));
    got.push_back(CollectOutcome(*gens.back()));
    for (int i = 0; i < 1200; ++i) {
      const Generation::Update u = c->Wait(100ms);
      if (!u.tokens.empty() || u.done) break;
    }
    c->Cancel();
    EXPECT_EQ(CollectOutcome(*c).finish, FinishReason::kCancelled) << ranks << " ranks";
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(got[i].tokens, want[i].tokens) << ranks << " ranks, request " << i;
      EXPECT_EQ(got[i].finish, want[i].finish) << ranks << " ranks, request " << i;
    }
    EXPECT_EQ(got.back().cache_hit, 64) << ranks << " ranks: the prefix cache served the page";
    job.Stop();
    EXPECT_GT(job.generated(), 25) << ranks << " ranks";
  }
}

TEST_F(EngineReplicaTest, SpeculativeDecodingAcrossRanks) {
  const std::vector<GenerationRequest> reqs = {ReplicaRequest(20, 5, 12), ReplicaRequest(33, 6, 10),
                                               ReplicaRequest(8, 7, 9)};
  const std::vector<Outcome> want = Alone(*dir_, Options(0), reqs);
  Job job(*dir_, 2, Options(2));
  std::vector<std::shared_ptr<Generation>> gens;
  for (const GenerationRequest& r : reqs) gens.push_back(job.leader().Submit(r));
  for (size_t i = 0; i < reqs.size(); ++i)
    EXPECT_EQ(CollectOutcome(*gens[i]).tokens, want[i].tokens) << "request " << i;
  job.Stop();
  EXPECT_GT(job.draft_tokens(), 0);
}

TEST_F(EngineReplicaTest, FollowersTakeNoRequests) {
  Job job(*dir_, 2, Options(0));
  GenerationRequest r = ReplicaRequest(5, 1, 2);
  r.session = std::make_shared<EngineSession>();
  EXPECT_THROW(job.leader().Submit(r), Error);  // sessions stay in one process
  EXPECT_THROW(job.leader().Follow(), Error);   // the leader is no follower
  EXPECT_EQ(CollectOutcome(*job.leader().Submit(ReplicaRequest(5, 1, 2))).tokens.size(), 2u);
  job.Stop();
}

}  // namespace
}  // namespace dsinfer
