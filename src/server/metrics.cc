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
  auto metric = [&o](const char* name, const char* type, const char* help, auto v) {
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
  metric("dsinfer_engine_prompt_tokens_total", "counter",
         "Prompt tokens computed (prefilled) by the engine.", e.prompt_tokens);
  metric("dsinfer_engine_prompt_cache_hit_tokens_total", "counter",
         "Prompt tokens adopted from the prefix cache by the engine.", e.cache_hit_tokens);
  const int64_t prompt_seen = e.cache_hit_tokens + e.prompt_tokens;
  metric("dsinfer_prompt_cache_hit_ratio", "gauge",
         "Prefix-cache hit tokens / (hit + computed) prompt tokens since start.",
         prompt_seen > 0 ? static_cast<double>(e.cache_hit_tokens) / prompt_seen : 0.0);
  metric("dsinfer_spec_draft_tokens_total", "counter", "MTP draft tokens verified (--spec mtp).",
         e.draft_tokens);
  metric("dsinfer_spec_accepted_tokens_total", "counter", "MTP draft tokens accepted.",
         e.accepted_tokens);
  metric("dsinfer_spec_acceptance_rate", "gauge", "Accepted / verified draft tokens since start.",
         e.draft_tokens > 0 ? static_cast<double>(e.accepted_tokens) / e.draft_tokens : 0.0);
  metric("dsinfer_decode_tokens_per_step", "gauge",
         "Tokens emitted per decode step of a sequence since start (1 without speculation).",
         e.decode_steps > 0 ? static_cast<double>(e.decode_tokens) / e.decode_steps : 0.0);
  metric("dsinfer_generation_tokens_per_second", "gauge",
         "Tokens emitted in the last 10 s, divided by 10.", e.generated_tokens_per_s);
  metric("dsinfer_prompt_tokens_per_second", "gauge",
         "Prompt tokens computed in the last 10 s, divided by 10.", e.prompt_tokens_per_s);
  metric("dsinfer_kv_cache_budget_bytes", "gauge", "KV page pool budget (whole pages).",
         e.kv.budget_bytes());
  metric("dsinfer_kv_cache_bytes_in_use", "gauge",
         "KV pages referenced by sequences or kept in the prefix cache, in bytes.",
         e.kv.bytes_in_use());
  metric("dsinfer_kv_cache_page_bytes", "gauge", "Bytes of one KV page (64 tokens, all layers).",
         e.kv.page_bytes);
  metric("dsinfer_kv_cache_referenced_pages", "gauge", "KV pages used by running sequences.",
         e.kv.referenced_pages);
  metric("dsinfer_kv_cache_cached_pages", "gauge", "KV pages published in the prefix cache.",
         e.kv.cached_pages);
  metric("dsinfer_kv_cache_evictions_total", "counter",
         "Cached KV pages evicted (least recently used) to make room.", e.kv.evictions);
  return o.str();
}

}  // namespace dsinfer::server
