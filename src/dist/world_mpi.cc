// The world of `dsinfer-mpi` (dist/world.h): Open MPI's MPI_COMM_WORLD. One thread at a time
// calls MPI (MPI_THREAD_SERIALIZED: the main thread, or `serve`'s engine worker while the main
// thread serves HTTP); OpenMP's compute threads never do. MPI's default error
// handler (MPI_ERRORS_ARE_FATAL) stays: a collective MPI reports as failed ends the whole job
// instead of returning into a half-finished step.
//
// A rank that dies without a word (SIGKILL, the OOM killer, a crash) must not leave the others
// spinning in a collective: between ranks of one machine the data moves through shared memory,
// which never reports a dead peer, so the job would hang until mpirun noticed (docs/mpi.md,
// "A rank that dies"). So every collective here is non-blocking and completed by `Complete`,
// which between tests polls a pidfd of every other rank on this machine; when one has ended,
// this rank names it and ends the job (MPI_Abort). Ranks on other machines are reached over
// TCP, whose connections close when the process dies, and Open MPI ends the job itself.
#include <mpi.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/error.h"
#include "dist/world.h"

namespace dsinfer::dist {

namespace {

// How often a rank waiting in a collective looks at its peers (seconds).
constexpr double kWatchSeconds = 0.05;
// How long a collective may still take to complete once a peer has ended (seconds).
constexpr double kGraceSeconds = 0.5;
// A patient wait (BroadcastPatiently) spins for kSpinSeconds, then sleeps kNapMicroseconds
// between polls, and kLongNapMicroseconds once it has waited kDozeSeconds (an idle server: ~1%
// of a core, and at most 5 ms more to start the next request).
constexpr double kSpinSeconds = 0.002;
constexpr useconds_t kNapMicroseconds = 500;
constexpr double kDozeSeconds = 0.1;
constexpr useconds_t kLongNapMicroseconds = 5000;

// Another rank on this machine, watched through a pidfd (readable once the process has ended).
struct Peer {
  int rank = 0;
  int pid = 0;
  int fd = -1;        // -1: cannot be watched (pidfd_open unsupported)
  bool gone = false;  // had already ended when the watch started
};

class MpiWorld final : public World {
 public:
  MpiWorld() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks_);
    WatchLocalPeers();
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
    MPI_Request req;
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, rows, counts_.data(), displs_.data(),
                    RowType(width), MPI_COMM_WORLD, &req);
    Complete(req);
    stats_.seconds += MPI_Wtime() - t0;
    stats_.calls += 1;
    stats_.bytes_received +=
        (bounds[ranks_] - counts_[rank_]) * width * static_cast<int64_t>(sizeof(float));
  }

  ExchangeStats exchange_stats() const override { return stats_; }

  std::vector<uint64_t> AllGather(uint64_t value) override {
    std::vector<uint64_t> all(ranks_);
    MPI_Request req;
    MPI_Iallgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD, &req);
    Complete(req);
    return all;
  }

  void Broadcast(std::vector<int32_t>& values) override {
    uint64_t n = values.size();
    MPI_Request req;
    MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req);
    Complete(req);
    if (n > INT_MAX) throw Error("broadcast of " + std::to_string(n) + " values: too many");
    values.resize(n);
    MPI_Ibcast(values.data(), static_cast<int>(n), MPI_INT32_T, 0, MPI_COMM_WORLD, &req);
    Complete(req);
  }

  void BroadcastPatiently(std::string& bytes) override {
    uint64_t n = bytes.size();
    MPI_Request req;
    MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req);
    Complete(req, /*patient=*/true);
    if (n > INT_MAX) throw Error("broadcast of " + std::to_string(n) + " bytes: too many");
    bytes.resize(n);
    MPI_Ibcast(bytes.data(), static_cast<int>(n), MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    Complete(req);
  }

  void Barrier() override {
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    Complete(req);
  }

  [[noreturn]] void Abort(const std::string& message, int code) override {
    std::fprintf(stderr, "dsinfer: rank %d of %d: error: %s\n", rank_, ranks_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] true if it did
  }

  void Finalize() override {
    if (finalized_) return;
    finalized_ = true;
    // MPI_Finalize synchronises the ranks without watching them: meet in a watched barrier
    // first, so a rank that died during the last step is noticed here.
    Barrier();
    if (row_type_ != MPI_DATATYPE_NULL) MPI_Type_free(&row_type_);
    for (Peer& p : peers_)
      if (p.fd >= 0) ::close(p.fd);
    MPI_Finalize();
  }

 private:
  // The pids of the ranks on this machine (MPI_COMM_TYPE_SHARED), each opened as a pidfd.
  void WatchLocalPeers() {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    int node_ranks = 0;
    MPI_Comm_size(node, &node_ranks);
    const int mine[2] = {rank_, static_cast<int>(::getpid())};
    std::vector<int> all(2 * static_cast<size_t>(node_ranks));  // [node_ranks, (rank, pid)]
    MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, node);
    MPI_Comm_free(&node);
    for (int i = 0; i < node_ranks; ++i) {
      Peer p{.rank = all[2 * i], .pid = all[2 * i + 1]};
      if (p.rank == rank_) continue;
#ifdef SYS_pidfd_open
      p.fd = static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0));
      p.gone = p.fd < 0 && errno == ESRCH;
#endif
      peers_.push_back(p);
    }
  }

  // The first local peer that has ended (a pidfd is readable once its process has exited,
  // whether or not its parent has reaped it yet), or null.
  const Peer* EndedPeer() {
    fds_.clear();
    for (const Peer& p : peers_) {
      if (p.gone) return &p;
      if (p.fd >= 0) fds_.push_back(pollfd{.fd = p.fd, .events = POLLIN, .revents = 0});
    }
    if (fds_.empty() || ::poll(fds_.data(), fds_.size(), 0) <= 0) return nullptr;
    size_t i = 0;
    for (const Peer& p : peers_) {
      if (p.fd < 0) continue;
      if (fds_[i++].revents != 0) return &p;
    }
    return nullptr;
  }

  [[noreturn]] void PeerGone(const Peer& p) {
    Abort("rank " + std::to_string(p.rank) + " of " + std::to_string(ranks_) + " (pid " +
              std::to_string(p.pid) +
              ", on this machine) ended while this rank waited for it in a collective: it was "
              "killed, crashed, or stopped on an error of its own (its message, or mpirun's "
              "report, says which); ending every rank",
          1);
  }

  // Waits for `req`, spinning on MPI_Test as a blocking collective would, and looking at the
  // local peers every kWatchSeconds. A peer that ended normally (after its last collective)
  // had already delivered its part, so the collective still completes: it gets kGraceSeconds
  // to, and only a collective that does not is a dead peer's. `patient`: after kSpinSeconds
  // the polls are kNapSeconds apart (a sleeping wait: MPI has no blocking wait that does not
  // spin).
  void Complete(MPI_Request& req, bool patient = false) {
    int done = 0;
    const double start = MPI_Wtime();
    double next_check = start + kWatchSeconds;
    for (;;) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) return;
      const double now = MPI_Wtime();
      if (patient && now - start > kSpinSeconds)
        ::usleep(now - start > kDozeSeconds ? kLongNapMicroseconds : kNapMicroseconds);
      if (now < next_check) continue;
      next_check = now + kWatchSeconds;
      if (const Peer* ended = EndedPeer()) {
        const double until = now + kGraceSeconds;
        while (!done && MPI_Wtime() < until) MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done) PeerGone(*ended);
        return;
      }
    }
  }

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
  std::vector<Peer> peers_;  // the other ranks on this machine
  std::vector<pollfd> fds_;  // scratch for EndedPeer
};

MpiWorld* g_world = nullptr;  // the process's MPI_COMM_WORLD, once started

}  // namespace

World* StartWorld(int& argc, char**& argv) {
  if (LauncherRanks() == 0) return nullptr;  // run directly: a single process, MPI untouched
  if (g_world) return g_world;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  if (provided < MPI_THREAD_SERIALIZED)
    throw Error("the MPI library provides thread level " + std::to_string(provided) +
                ", below MPI_THREAD_SERIALIZED (" + std::to_string(MPI_THREAD_SERIALIZED) +
                "), which dsinfer needs (docs/mpi.md)");
  static MpiWorld world;
  g_world = &world;
  return g_world;
}

World* CurrentWorld() { return g_world; }

}  // namespace dsinfer::dist
