// Expert parallelism at the model level (model/expert_parallel.h, docs/mpi.md), without MPI:
//  * the assignment against its definition: for every expert count and rank count the ranges
//    are contiguous, in rank order, cover [0, E) exactly once, and differ in size by at most one;
//  * ranks as threads of one process, each a `Model` loaded with only its experts and joined by
//    an in-process `ExpertExchange` (publish, wait, copy the others' rows, wait): the logits of
//    2, 3 and 5 ranks equal one process's bitwise, in a prefill long enough for the
//    one-expert-at-a-time path (N·k > 64) and in decode steps (the parallel-over-experts path),
//    with exactly one exchange per MoE layer per forward call.
// The MPI transport itself is tested end to end by tests/mpi/mpi_logits_test.py.
#include "model/expert_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "model/model.h"
#include "thread_exchange.h"
#include "tiny_checkpoint.h"

namespace dsinfer {
namespace {

TEST(ExpertRangeOf, PartitionsEveryExpertOnceInRankOrder) {
  for (int64_t experts : {1, 7, 8, 64, 256}) {
    for (int ranks = 1; ranks <= 17; ++ranks) {
      int64_t next = 0, smallest = experts, largest = 0;
      for (int r = 0; r < ranks; ++r) {
        const ExpertRange e = ExpertRangeOf(experts, r, ranks);
        EXPECT_EQ(e.first, next) << experts << " experts, rank " << r << " of " << ranks;
        EXPECT_GE(e.size(), 0);
        next = e.end;
        smallest = std::min(smallest, e.size());
        largest = std::max(largest, e.size());
      }
      EXPECT_EQ(next, experts) << experts << " experts over " << ranks << " ranks";
      EXPECT_LE(largest - smallest, 1) << experts << " experts over " << ranks << " ranks";
    }
  }
}

TEST(ExpertRangeOf, UnevenSplitOfTheTinyModel) {
  // 8 experts over 3 ranks: ⌊8r/3⌋ = 0, 2, 5, 8.
  EXPECT_EQ(ExpertRangeOf(8, 0, 3).end, 2);
  EXPECT_EQ(ExpertRangeOf(8, 1, 3).first, 2);
  EXPECT_EQ(ExpertRangeOf(8, 1, 3).end, 5);
  EXPECT_EQ(ExpertRangeOf(8, 2, 3).end, 8);
  EXPECT_TRUE(ExpertRangeOf(8, 2, 3).Has(5));
  EXPECT_FALSE(ExpertRangeOf(8, 2, 3).Has(4));
}

TEST(ExpertRangeOf, RejectsInvalidRanks) {
  EXPECT_THROW(ExpertRangeOf(8, 0, 0), Error);
  EXPECT_THROW(ExpertRangeOf(8, 2, 2), Error);
  EXPECT_THROW(ExpertRangeOf(8, -1, 2), Error);
}

using test::ThreadExchange;
using test::ThreadJob;

struct RankRun {
  std::vector<float> logits;  // [prefill + decode rows, vocab]
  int64_t forwards = 0;
  int64_t exchanges = 0;
  std::string error;
};

// A prefill of `prompt` then one decode step per token of `steps`, all rows' logits.
RankRun RunRank(const std::string& dir, ThreadExchange* exchange,
                const std::vector<int32_t>& prompt, const std::vector<int32_t>& steps) {
  RankRun out;
  try {
    auto model = Model::Load(dir, LoadOptions{.exchange = exchange});
    SequenceState seq = model->NewSequence(SequenceOptions{.index_topk = 5});
    ForwardResult r = model->Forward(seq, prompt, 0);
    out.logits = r.logits;
    ++out.forwards;
    for (int32_t t : steps) {
      r = model->Forward(seq, {&t, 1}, seq.length);
      out.logits.insert(out.logits.end(), r.logits.begin(), r.logits.end());
      ++out.forwards;
    }
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  if (exchange) out.exchanges = exchange->calls();
  return out;
}

TEST(ExpertParallelModel, RanksAsThreadsEqualOneProcessBitwise) {
  const std::string dir = MakeCheckpoint("expert_parallel_tiny", 21);
  const std::vector<int32_t> prompt = Ids(40, 1024, 3);  // 40 rows × k 2 > 64
  const std::vector<int32_t> steps = Ids(4, 1024, 4);
  const RankRun one = RunRank(dir, nullptr, prompt, steps);
  ASSERT_TRUE(one.error.empty()) << one.error;
  const int64_t moe_layers = 2;  // tiny: 3 layers, the first dense
  for (int ranks : {2, 3, 5}) {
    ThreadJob job(ranks);
    std::vector<ThreadExchange> exchanges;
    exchanges.reserve(ranks);
    for (int r = 0; r < ranks; ++r) exchanges.emplace_back(job, r);
    std::vector<RankRun> runs(ranks);
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r)
      threads.emplace_back([&, r] { runs[r] = RunRank(dir, &exchanges[r], prompt, steps); });
    for (std::thread& t : threads) t.join();
    for (int r = 0; r < ranks; ++r) {
      ASSERT_TRUE(runs[r].error.empty()) << "rank " << r << ": " << runs[r].error;
      ASSERT_EQ(runs[r].logits.size(), one.logits.size());
      EXPECT_EQ(
          std::memcmp(runs[r].logits.data(), one.logits.data(), one.logits.size() * sizeof(float)),
          0)
          << "rank " << r << " of " << ranks << ": logits differ from one process";
      EXPECT_EQ(runs[r].exchanges, runs[r].forwards * moe_layers)
          << "one exchange per MoE layer per forward call";
    }
  }
}

}  // namespace
}  // namespace dsinfer
