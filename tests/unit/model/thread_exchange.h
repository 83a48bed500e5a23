// The ranks of an expert-parallel job as threads of one process, for tests without MPI: an
// in-process `ExpertExchange` (each rank publishes its buffer, all wait, each copies the other
// ranks' rows into its own, all wait again, so no buffer changes while it is read).
#pragma once

#include <barrier>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "model/expert_parallel.h"

namespace dsinfer::test {

struct ThreadJob {
  explicit ThreadJob(int n) : ranks(n), sync(n), buffers(n) {}
  int ranks;
  std::barrier<> sync;
  std::vector<float*> buffers;  // [ranks]
};

class ThreadExchange : public ExpertExchange {
 public:
  ThreadExchange(ThreadJob& job, int rank) : job_(job), rank_(rank) {}
  int rank() const override { return rank_; }
  int ranks() const override { return job_.ranks; }
  void AllGatherRows(float* rows, int64_t width, std::span<const int64_t> bounds) override {
    ++calls_;
    job_.buffers[rank_] = rows;
    job_.sync.arrive_and_wait();
    for (int r = 0; r < job_.ranks; ++r)
      if (r != rank_ && bounds[r + 1] > bounds[r])
        std::memcpy(rows + bounds[r] * width, job_.buffers[r] + bounds[r] * width,
                    (bounds[r + 1] - bounds[r]) * width * sizeof(float));
    job_.sync.arrive_and_wait();
  }
  int64_t calls() const { return calls_; }

 private:
  ThreadJob& job_;
  int rank_;
  int64_t calls_ = 0;
};

}  // namespace dsinfer::test
