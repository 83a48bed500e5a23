#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace dsinfer::cli {

ProgressBar::ProgressBar(std::string label, Unit unit)
    : label_(std::move(label)),
      unit_(unit),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(Clock::now()) {}

ProgressBar::~ProgressBar() {
  if (drawn_ && tty_) std::fputc('\n', stderr);
}

void ProgressBar::Update(uint64_t done, uint64_t total) {
  const auto now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (elapsed < 0.5 || total == 0) return;
  const double frac = static_cast<double>(done) / static_cast<double>(total);
  const double gib = 1.0 / (1ull << 30);
  const bool bytes = unit_ == Unit::kBytes;
  const double scale = bytes ? gib : 1.0;
  const char* amount = bytes ? "%.2f/%.2f GiB" : "%.0f/%.0f";
  char counts[64];
  std::snprintf(counts, sizeof counts, amount, done * scale, total * scale);
  if (tty_) {
    if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && done < total) return;
    const int width = 30, fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r%s [%.*s%*s] %3.0f%% %s %.0fs", label_.c_str(), fill,
                 "##############################", width - fill, "", 100 * frac, counts, elapsed);
    std::fflush(stderr);
    drawn_ = true;
    last_draw_ = now;
    return;
  }
  const int quarter = static_cast<int>(frac * 4);
  if (quarter <= last_quarter_) return;
  last_quarter_ = quarter;
  std::fprintf(stderr, "%s: %.0f%% (%s, %.0fs)\n", label_.c_str(), 100 * frac, counts, elapsed);
  drawn_ = true;
}

}  // namespace dsinfer::cli
