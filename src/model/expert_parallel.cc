#include "model/expert_parallel.h"

#include <string>
#include <string_view>

#include "base/error.h"
#include "model/routed_expert.h"

namespace dsinfer {

ExpertRange ExpertRangeOf(int64_t experts, int rank, int ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks)
    throw Error("expert parallelism: rank " + std::to_string(rank) + " of " +
                std::to_string(ranks) + " is not a valid rank");
  return ExpertRange{.first = experts * rank / ranks, .end = experts * (rank + 1) / ranks};
}

int64_t RoutedExpertOf(std::string_view name) {
  constexpr std::string_view kMarker = ".mlp.experts.";
  const size_t at = name.find(kMarker);
  if (at == std::string_view::npos) return -1;
  int64_t e = 0;
  size_t i = at + kMarker.size();
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) e = e * 10 + (name[i] - '0');
  return e;
}

}  // namespace dsinfer
