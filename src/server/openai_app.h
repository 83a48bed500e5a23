// The OpenAI-compatible API over an `Engine`: routes, authentication, request validation,
// prompt encoding (chat encoder + tokenizer), generation, SSE streaming, usage and cost, and
// Prometheus metrics. `Handle` never throws: every failure is an OpenAI-style error response.
// Thread-safe: `Handle` runs concurrently on the HTTP server's threads.
//
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// GET /v1/dsinfer/prices, GET /health, GET /metrics, and the web chat page (GET /, its files:
// web_assets.h; no key needed, Host/Origin checked as for /v1/* when there is no key). The
// served model names are `model_name` and `model_name + "-reasoner"` (the latter turns
// thinking on, as DeepSeek's API does).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/api_error.h"
#include "server/api_request.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/usage.h"
#include "text/tokenizer.h"

namespace dsinfer::server {

// TEST-ONLY (`dsinfer serve --test-script`): a request whose prompt text contains `match`
// generates `completion` (tokenized with the real tokenizer) instead of sampled tokens; the
// tokens still run through the model and the real parser. First matching rule wins.
struct ScriptRule {
  std::string match;
  std::string completion;
};
// Reads a JSON array of {"match": ..., "completion": ...}; throws Error naming the file/field.
std::vector<ScriptRule> LoadTestScript(const std::string& path);

struct AppOptions {
  std::string model_name = "deepseek-v3.2";
  std::optional<std::string> api_key;  // required as "Authorization: Bearer KEY" on /v1/*
  // Without an API key any web page the user visits could call /v1/* (CSRF, DNS rebinding), so
  // the Host and Origin headers, when sent, must name a loopback host (localhost, 127.0.0.1,
  // [::1]) or one of these (`--allow-host`; "*": any), else 403.
  std::vector<std::string> allowed_hosts;
  int64_t ctx = 0;  // context limit (prompt + max_tokens); 0: the model's
  Prices prices;
  size_t max_body_bytes = 8u << 20;
  std::vector<ScriptRule> test_script;
  // Where internal errors are logged, one line each (the detail a client never sees: a
  // library's exception text, a failed generation); unset: stderr.
  std::function<void(const std::string&)> log;
};

class OpenAiApp {
 public:
  // `engine` and `tokenizer` must outlive the app.
  OpenAiApp(Engine& engine, const text::Tokenizer& tokenizer, AppOptions options);
  HttpResponse Handle(const HttpRequest& request) noexcept;
  // The checks a request's head allows (unknown URL 404, Host/Origin 403, API key 401), run
  // before its body is read (`ServeHttp`'s admission): the error response, or nullopt.
  std::optional<HttpResponse> Admit(const HttpRequest& head) noexcept;
  const Metrics& metrics() const { return metrics_; }

  // Graceful shutdown (SIGTERM, `dsinfer serve`): after BeginShutdown, new generation requests
  // get 503 `server_shutting_down` (Retry-After) and /health 503; WaitIdle waits until no
  // request is being generated (true) or `deadline` passed (false); CancelAll cancels every
  // generation still running or queued: a stream ends with an error event
  // (`server_shutting_down`) and [DONE], a whole response is a 503.
  void BeginShutdown();
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);
  void CancelAll();
  size_t jobs_in_flight() const;

  struct Job;  // one request being generated (openai_app.cc)

 private:
  HttpResponse Route(const HttpRequest& request);
  void CheckBrowserSafety(const HttpRequest& request) const;
  void CheckHead(const HttpRequest& request) const;  // throws ApiError
  HttpResponse Models() const;
  HttpResponse Chat(const HttpRequest& request);
  HttpResponse Completions(const HttpRequest& request);
  void CheckModel(const std::string& model) const;
  // `control`: where added tokens may become control tokens (nullptr: anywhere).
  std::shared_ptr<Job> Start(const std::string& prompt_text,
                             const std::vector<text::TextSpan>* control,
                             const SamplingParams& params);
  HttpResponse ChatWhole(std::shared_ptr<Job> job, bool thinking,
                         const std::function<bool()>& connection_open);
  HttpResponse ChatStream(std::shared_ptr<Job> job, bool thinking);
  HttpResponse TextWhole(std::shared_ptr<Job> job, const std::function<bool()>& connection_open);
  HttpResponse TextStream(std::shared_ptr<Job> job);
  nlohmann::ordered_json FinishUsage(const Job& job, int64_t reasoning_tokens);
  // A failure that is not the client's: logs `detail` with a fresh reference and returns the
  // generic 500 naming that reference (library messages never reach the client).
  ApiError InternalError(const std::string& where, const std::string& detail);

  Engine& engine_;
  const text::Tokenizer& tokenizer_;
  AppOptions options_;
  int32_t eos_;
  Metrics metrics_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> next_error_{1};
  std::atomic<bool> shutting_down_{false};
  mutable std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::set<Job*> jobs_;  // requests between Submit and their last byte sent
};

}  // namespace dsinfer::server
