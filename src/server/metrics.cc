#include "server/metrics.h"

#include <sstream>

namespace dsinfer::server {

void Metrics::CountResponse(int status) {
  std::lock_guard lock(mu_);
  ++responses_[status];
}

void Metrics::AddTokens(int64_t prompt, int64_t cache_hit, int64_t completion) {
  prompt_ += prompt;
  cache_hit_ += cache_hit;
  completion_ += completion;
}

std::string Metrics::Prometheus(const EngineStats& e) const {
  std::ostringstream o;
  o << "# HELP dsinfer_requests_total HTTP responses by status code.\n"
       "# TYPE dsinfer_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [status, n] : responses_)
      o << "dsinfer_requests_total{status=\"" << status << "\"} " << n << "\n";
  }
  auto metric = [&o](const char* name, const char* type, const char* help, int64_t v) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
      << name << " " << v << "\n";
  };
  metric("dsinfer_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
         prompt_.load());
  metric("dsinfer_prompt_cache_hit_tokens_total", "counter",
         "Prompt tokens served from the prefix cache.", cache_hit_.load());
  metric("dsinfer_completion_tokens_total", "counter", "Generated tokens of finished requests.",
         completion_.load());
  metric("dsinfer_requests_cancelled_total", "counter",
         "Requests whose client went away before the end.", cancelled_.load());
  metric("dsinfer_queue_depth", "gauge", "Requests waiting for a sequence slot.", e.queued);
  metric("dsinfer_running_sequences", "gauge", "Sequences being prefilled or decoded.", e.running);
  metric("dsinfer_engine_generated_tokens_total", "counter", "Tokens emitted by the engine.",
         e.generated_tokens);
  return o.str();
}

}  // namespace dsinfer::server
