#include "model/expert_parallel.h"

#include <string>

#include "base/error.h"

namespace dsinfer {

ExpertRange ExpertRangeOf(int64_t experts, int rank, int ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks)
    throw Error("expert parallelism: rank " + std::to_string(rank) + " of " +
                std::to_string(ranks) + " is not a valid rank");
  return ExpertRange{.first = experts * rank / ranks, .end = experts * (rank + 1) / ranks};
}

}  // namespace dsinfer
