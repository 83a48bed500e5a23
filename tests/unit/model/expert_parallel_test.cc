// The expert assignment of expert parallelism (model/expert_parallel.h, docs/mpi.md), checked
// against its definition: for every expert count and rank count the ranges are contiguous, in
// rank order, cover [0, E) exactly once, and differ in size by at most one.
#include <gtest/gtest.h>

#include <algorithm>

#include "base/error.h"
#include "model/expert_parallel.h"

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

}  // namespace
}  // namespace dsinfer
