// Expert parallelism (docs/mpi.md, issue #14): the routed experts of every MoE layer are split
// over the ranks of a job in contiguous ranges; everything else (embedding, attention, dense
// layers, shared experts, router, head) is replicated. Each rank runs the whole batch through
// attention and routing, computes the outputs of its own experts for the tokens routed to them,
// and one `ExpertExchange::AllGatherRows` per MoE layer gives every rank every expert's outputs,
// which each rank then adds in ascending expert id exactly as one process does — so the logits
// are bitwise those of a single process, whatever the number of ranks.
// The model layer knows only the `ExpertExchange` interface; the MPI implementation lives with
// the command that starts the job (src/dist/). Thread-safety: see each type.
#pragma once

#include <cstdint>
#include <span>

namespace dsinfer {

// Routed experts [first, end) of one rank. Plain value; thread-safe.
struct ExpertRange {
  int64_t first = 0;
  int64_t end = 0;
  bool Has(int64_t e) const { return e >= first && e < end; }
  int64_t size() const { return end - first; }
};

// The assignment: rank r of `ranks` holds experts [⌊r·E/ranks⌋, ⌊(r+1)·E/ranks⌋) — contiguous,
// in rank order, covering [0, E) once, sizes differing by at most one (ranks > E leaves some
// ranks without experts). Throws Error for ranks < 1 or rank outside [0, ranks).
ExpertRange ExpertRangeOf(int64_t experts, int rank, int ranks);

// The one collective of expert parallelism. Implementations are called from the thread that
// runs the forward pass only (never from inside a parallel region); not thread-safe.
class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  virtual int rank() const = 0;
  virtual int ranks() const = 0;
  // `rows` is [bounds[ranks()], width] floats in which this rank has written rows
  // [bounds[rank()], bounds[rank() + 1]); on return every rank's rows are in place, on every
  // rank. `bounds` ([ranks() + 1], ascending) is the same on every rank. Every rank calls it
  // at the same point of the same forward pass. Throws Error when the exchange fails.
  virtual void AllGatherRows(float* rows, int64_t width, std::span<const int64_t> bounds) = 0;
};

// What a model loaded for expert parallelism holds and talks through.
struct ExpertParallel {
  ExpertExchange* exchange = nullptr;  // not owned; outlives the model
  int64_t experts = 0;                 // n_routed_experts (each rank's range follows from it)
  ExpertRange mine;                    // ExpertRangeOf(experts, rank, ranks)
};

}  // namespace dsinfer
