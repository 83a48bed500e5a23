// A progress bar on stderr for long CLI jobs. Quiet for jobs that finish within half a second;
// on a TTY it redraws one line (at most 10 times a second), otherwise it prints an occasional
// line (every 25%) so logs stay short. Not thread-safe: call from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dsinfer::cli {

class ProgressBar {
 public:
  // kBytes shows done/total in GiB; kItems as plain counts.
  enum class Unit { kBytes, kItems };
  explicit ProgressBar(std::string label, Unit unit = Unit::kBytes);
  ~ProgressBar();  // ends the line if one was drawn
  void Update(uint64_t done, uint64_t total);

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  Unit unit_;
  bool tty_;
  bool drawn_ = false;
  int last_quarter_ = 0;
  Clock::time_point start_, last_draw_;
};

}  // namespace dsinfer::cli
