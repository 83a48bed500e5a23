// The world of `dsinfer-mpi` (dist/world.h): Open MPI's MPI_COMM_WORLD. Only the main thread
// calls MPI (MPI_THREAD_FUNNELED); OpenMP's compute threads never do. MPI's default error
// handler (MPI_ERRORS_ARE_FATAL) stays: a collective MPI reports as failed ends the whole job
// instead of returning into a half-finished step. (A peer killed mid-run was seen not to end
// a loopback job within 60 s: docs/mpi.md.)
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/error.h"
#include "dist/world.h"

namespace dsinfer::dist {

namespace {

class MpiWorld final : public World {
 public:
  MpiWorld() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks_);
  }

  int rank() const override { return rank_; }
  int ranks() const override { return ranks_; }

  // MPI_Allgatherv in place, in rows of `width` floats (a contiguous datatype), so counts stay
  // far below INT_MAX even for long prefills.
  void AllGatherRows(float* rows, int64_t width, std::span<const int64_t> bounds) override {
    DSINFER_CHECK(static_cast<int64_t>(bounds.size()) == ranks_ + 1, "one bound per rank + 1");
    if (width < 1 || width > INT_MAX || bounds[ranks_] > INT_MAX)
      throw Error("expert exchange of " + std::to_string(bounds[ranks_]) + " rows of " +
                  std::to_string(width) + " floats does not fit one MPI call");
    counts_.resize(ranks_);
    displs_.resize(ranks_);
    for (int r = 0; r < ranks_; ++r) {
      DSINFER_CHECK(bounds[r] <= bounds[r + 1], "bounds must ascend");
      counts_[r] = static_cast<int>(bounds[r + 1] - bounds[r]);
      displs_[r] = static_cast<int>(bounds[r]);
    }
    const double t0 = MPI_Wtime();
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, rows, counts_.data(), displs_.data(),
                   RowType(width), MPI_COMM_WORLD);
    stats_.seconds += MPI_Wtime() - t0;
    stats_.calls += 1;
    stats_.bytes_received +=
        (bounds[ranks_] - counts_[rank_]) * width * static_cast<int64_t>(sizeof(float));
  }

  ExchangeStats exchange_stats() const override { return stats_; }

  std::vector<uint64_t> AllGather(uint64_t value) override {
    std::vector<uint64_t> all(ranks_);
    MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
    return all;
  }

  void Barrier() override { MPI_Barrier(MPI_COMM_WORLD); }

  [[noreturn]] void Abort(const std::string& message, int code) override {
    std::fprintf(stderr, "dsinfer: rank %d of %d: error: %s\n", rank_, ranks_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] true if it did
  }

  void Finalize() override {
    if (finalized_) return;
    finalized_ = true;
    if (row_type_ != MPI_DATATYPE_NULL) MPI_Type_free(&row_type_);
    MPI_Finalize();
  }

 private:
  MPI_Datatype RowType(int64_t width) {
    if (width != row_width_) {
      if (row_type_ != MPI_DATATYPE_NULL) MPI_Type_free(&row_type_);
      MPI_Type_contiguous(static_cast<int>(width), MPI_FLOAT, &row_type_);
      MPI_Type_commit(&row_type_);
      row_width_ = width;
    }
    return row_type_;
  }

  int rank_ = 0, ranks_ = 1;
  bool finalized_ = false;
  std::vector<int> counts_, displs_;  // [ranks] rows per rank, first row per rank
  MPI_Datatype row_type_ = MPI_DATATYPE_NULL;
  int64_t row_width_ = 0;
  ExchangeStats stats_;
};

MpiWorld* g_world = nullptr;  // the process's MPI_COMM_WORLD, once started

}  // namespace

World* StartWorld(int& argc, char**& argv) {
  if (LauncherRanks() == 0) return nullptr;  // run directly: a single process, MPI untouched
  if (g_world) return g_world;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  static MpiWorld world;
  g_world = &world;
  return g_world;
}

World* CurrentWorld() { return g_world; }

}  // namespace dsinfer::dist
