// Server counters, exposed as Prometheus text at GET /metrics. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "runtime/engine.h"

namespace dsinfer::server {

class Metrics {
 public:
  void CountResponse(int status);
  void AddTokens(int64_t prompt, int64_t cache_hit, int64_t completion);
  void CountCancelled() { ++cancelled_; }
  // The exposition text; queue depth and running sequences come from the engine.
  std::string Prometheus(const EngineStats& engine) const;

 private:
  mutable std::mutex mu_;
  std::map<int, int64_t> responses_;  // by HTTP status
  std::atomic<int64_t> prompt_{0}, cache_hit_{0}, completion_{0}, cancelled_{0};
};

}  // namespace dsinfer::server
