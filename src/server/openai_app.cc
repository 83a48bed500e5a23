#include "server/openai_app.h"

#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>

#include "base/error.h"
#include "server/api_error.h"
#include "server/api_key.h"
#include "server/output_text.h"
#include "server/sse.h"
#include "server/web_assets.h"
#include "text/chat_encoding.h"

namespace dsinfer::server {

using Json = nlohmann::ordered_json;

std::vector<ScriptRule> LoadTestScript(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the test script");
  std::stringstream ss;
  ss << in.rdbuf();
  const Json j = Json::parse(ss.str(), nullptr, false);
  if (!j.is_array()) throw Error(path + ": a test script is a JSON array of rules");
  std::vector<ScriptRule> rules;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string at = path + ": [" + std::to_string(i) + "]";
    if (!j[i].is_object() || !j[i].contains("match") || !j[i]["match"].is_string() ||
        !j[i].contains("completion") || !j[i]["completion"].is_string())
      throw Error(at + ": needs string fields \"match\" and \"completion\"");
    rules.push_back({j[i]["match"].get<std::string>(), j[i]["completion"].get<std::string>()});
  }
  return rules;
}

// One request being generated; registered with its app (for shutdown) from Submit until the
// last reference (the handler's, or the stream's once its last byte is sent) goes.
struct OpenAiApp::Job {
  OpenAiApp* app = nullptr;  // set when registered
  // Nobody reads a generation once its job is gone (a whole response that failed part-way,
  // a stream never sent): stop it, freeing its slot and pages (no effect once done).
  ~Job() {
    if (gen) gen->Cancel();
    if (!app) return;
    std::lock_guard<std::mutex> lock(app->jobs_mu_);
    app->jobs_.erase(this);
    app->jobs_cv_.notify_all();
  }
  std::string id;
  std::string model;
  int64_t created = 0;
  SamplingParams params;
  int64_t prompt_tokens = 0;
  std::shared_ptr<Generation> gen;
  int64_t completion_tokens = 0;
  FinishReason finish = FinishReason::kNone;
  bool stopped = false;  // a stop sequence matched
  std::string error;
  // When the request was accepted, and when the worker pushed its first and latest tokens.
  std::chrono::steady_clock::time_point start, first_token, last_token;
};

namespace {

ApiError ShuttingDown() {
  return ApiError(503, "server_error", "the server is shutting down; retry on another instance",
                  std::nullopt, "server_shutting_down");
}

HttpResponse JsonResponse(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

HttpResponse ErrorResponse(const ApiError& e) {
  HttpResponse r;
  r.status = e.status();
  r.body = e.Body();
  if (e.status() == 429 || e.status() == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

// A chat encoder Error reads "messages[2].content: ..."; the part before ": " is the field.
ApiError FromEncoderError(const Error& e) {
  const std::string msg = e.what();
  const size_t colon = msg.find(": ");
  std::optional<std::string> param;
  if (colon != std::string::npos && msg.find(' ') > colon) param = msg.substr(0, colon);
  return ApiError(400, "invalid_request_error", msg, param);
}

// Waits for the job's tokens, handing each to `on_token(id, logprobs or nullptr)` (false: a
// stop sequence matched). `alive(idle)` is asked when no token arrived for 500 ms (idle) and
// at least every 500 ms while tokens arrive; false (the client left) cancels: returns false.
template <class OnToken, class Alive>
bool Drain(OpenAiApp::Job& job, OnToken on_token, Alive alive) {
  using Clock = std::chrono::steady_clock;
  constexpr auto kCheck = std::chrono::milliseconds(500);
  Clock::time_point last_check = Clock::now();
  while (true) {
    Generation::Update u = job.gen->Wait(kCheck);
    if (!u.tokens.empty()) {
      job.first_token = u.first_token_time;
      job.last_token = u.last_token_time;
    }
    for (size_t i = 0; i < u.tokens.size(); ++i) {
      ++job.completion_tokens;
      if (!on_token(u.tokens[i], i < u.logprobs.size() ? &u.logprobs[i] : nullptr)) {
        job.stopped = true;
        job.finish = FinishReason::kStop;
        job.gen->Cancel();
        return true;
      }
    }
    if (u.done) {
      job.finish = u.finish;
      job.error = u.error;
      return true;
    }
    const bool idle = u.tokens.empty();
    if (idle || Clock::now() - last_check >= kCheck) {
      last_check = Clock::now();
      if (!alive(idle)) {
        job.gen->Cancel();
        return false;
      }
    }
  }
}

void ThrowIfFailed(const OpenAiApp::Job& job) {
  if (job.finish == FinishReason::kError)
    throw std::runtime_error("generation failed: " + job.error);  // an internal error
  if (job.finish == FinishReason::kCancelled)
    throw ApiError(503, "server_error",
                   "the server is shutting down: the generation was cancelled after " +
                       std::to_string(job.completion_tokens) + " tokens",
                   std::nullopt, "server_shutting_down");
}

// `timings` of a finished job: {first_token_ms (queue + prefill + the first token),
// decode_ms (first to last token), decode_tokens_per_second ((completion − 1) / decode time;
// null with fewer than 2 tokens)}, as the worker produced the tokens.
Json TimingsJson(const OpenAiApp::Job& job) {
  using Ms = std::chrono::duration<double, std::milli>;
  if (job.completion_tokens == 0)
    return Json{
        {"first_token_ms", nullptr}, {"decode_ms", 0.0}, {"decode_tokens_per_second", nullptr}};
  const double first = Ms(job.first_token - job.start).count();
  const double decode = Ms(job.last_token - job.first_token).count();
  Json speed = nullptr;
  if (job.completion_tokens > 1 && decode > 0)
    speed = static_cast<double>(job.completion_tokens - 1) / (decode / 1000.0);
  return Json{
      {"first_token_ms", first}, {"decode_ms", decode}, {"decode_tokens_per_second", speed}};
}

std::string FinishName(const OpenAiApp::Job& job, bool tool_calls) {
  if (job.finish == FinishReason::kLength) return "length";
  return tool_calls && !job.stopped ? "tool_calls" : "stop";
}

// `logprobs` of a response in the chat format, {"content": [{token, logprob, bytes,
// top_logprobs: [{token, logprob, bytes}]}]}, or in the legacy completions format, {tokens,
// token_logprobs, top_logprobs: [{token: logprob}], text_offset}. Tokens are rendered as the
// bytes they add to the text (invalid UTF-8 is replaced when the JSON is written).
class LogprobsJson {
 public:
  LogprobsJson(const text::Tokenizer& tokenizer, bool legacy)
      : tokenizer_(tokenizer), legacy_(legacy) {}

  void Add(const TokenLogprobs& lp) {
    const std::string& text = tokenizer_.DecodedBytes(lp.token);
    if (!legacy_) {
      Json e = Entry(lp.token, lp.logprob);
      Json top = Json::array();
      for (const auto& [id, logprob] : lp.top) top.push_back(Entry(id, logprob));
      e["top_logprobs"] = std::move(top);
      content_.push_back(std::move(e));
      return;
    }
    tokens_.push_back(text);
    token_logprobs_.push_back(lp.logprob);
    Json top = Json::object();
    for (const auto& [id, logprob] : lp.top) top[tokenizer_.DecodedBytes(id)] = logprob;
    top_.push_back(std::move(top));
    offsets_.push_back(offset_);
    offset_ += static_cast<int64_t>(text.size());
  }
  bool empty() const { return content_.empty() && tokens_.empty(); }
  // The entries added since the previous Take.
  Json Take() {
    Json j = legacy_ ? Json{{"tokens", std::move(tokens_)},
                            {"token_logprobs", std::move(token_logprobs_)},
                            {"top_logprobs", std::move(top_)},
                            {"text_offset", std::move(offsets_)}}
                     : Json{{"content", std::move(content_)}};
    content_ = tokens_ = token_logprobs_ = top_ = offsets_ = Json::array();
    return j;
  }

 private:
  Json Entry(int32_t id, float logprob) const {
    const std::string& text = tokenizer_.DecodedBytes(id);
    Json bytes = Json::array();
    for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
    return Json{{"token", text}, {"logprob", logprob}, {"bytes", std::move(bytes)}};
  }
  const text::Tokenizer& tokenizer_;
  bool legacy_;
  Json content_ = Json::array(), tokens_ = Json::array(), token_logprobs_ = Json::array(),
       top_ = Json::array(), offsets_ = Json::array();
  int64_t offset_ = 0;  // bytes of completion text before the next token
};

}  // namespace

OpenAiApp::OpenAiApp(Engine& engine, const text::Tokenizer& tokenizer, AppOptions options)
    : engine_(engine),
      tokenizer_(tokenizer),
      options_(std::move(options)),
      eos_(static_cast<int32_t>(engine.config().eos_token_id)) {
  const int64_t limit = engine.max_sequence_tokens();  // the model's context, within the KV budget
  if (options_.ctx <= 0 || options_.ctx > limit) options_.ctx = limit;
}

HttpResponse OpenAiApp::Handle(const HttpRequest& request) noexcept {
  HttpResponse res;
  try {
    try {
      res = Route(request);
    } catch (const ApiError& e) {
      res = ErrorResponse(e);
    } catch (const Error& e) {
      res = ErrorResponse(ApiError(400, "invalid_request_error", e.what()));
    } catch (const std::exception& e) {  // not the client's fault: logged, not shown
      res = ErrorResponse(InternalError(request.method + " " + request.path, e.what()));
    }
    metrics_.CountResponse(res.status);
  } catch (...) {  // even building the error failed (out of memory)
    res = HttpResponse{};
    res.status = 500;
    res.body =
        R"({"error":{"message":"internal error","type":"server_error","param":null,"code":null}})";
  }
  return res;
}

ApiError OpenAiApp::InternalError(const std::string& where, const std::string& detail) {
  const std::string ref = std::to_string(std::time(nullptr)) + "-" + std::to_string(next_error_++);
  const std::string line = "internal error " + ref + " in " + where + ": " + detail;
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "dsinfer serve: %s\n", line.c_str());
  }
  return ApiError(500, "server_error",
                  "internal server error (reference " + ref + "); the server's log has the details",
                  std::nullopt, "internal_error");
}

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The host name of a Host header ("h", "h:port", "[v6]:port") or of an Origin
// ("scheme://host[:port]"), lower-case; "" when malformed.
std::string HostName(std::string v, bool origin) {
  v = Lower(v);
  if (origin) {
    const size_t scheme = v.find("://");
    if (scheme == std::string::npos) return "";
    v = v.substr(scheme + 3);
    if (v.find('/') != std::string::npos) v = v.substr(0, v.find('/'));
  }
  if (v.starts_with('[')) {
    const size_t end = v.find(']');
    return end == std::string::npos ? "" : v.substr(0, end + 1);
  }
  return v.substr(0, v.find(':'));
}

// True when an If-None-Match header ("*", or a list of possibly weak ETags) names `etag`.
bool EtagMatches(const std::string& if_none_match, std::string_view etag) {
  std::stringstream ss(if_none_match);
  std::string tag;
  while (std::getline(ss, tag, ',')) {
    const size_t b = tag.find_first_not_of(" \t"), e = tag.find_last_not_of(" \t");
    if (b == std::string::npos) continue;
    tag = tag.substr(b, e - b + 1);
    if (tag.starts_with("W/")) tag = tag.substr(2);
    if (tag == "*" || tag == etag) return true;
  }
  return false;
}

// A file of the web page, with its security and cache headers. `no-cache` lets the browser
// keep it but revalidate every load (304 on an unchanged ETag), so a rebuilt server never
// runs with a stale script.
HttpResponse WebPage(const WebAsset& page, const HttpRequest& req) {
  HttpResponse r;
  r.content_type = std::string(page.content_type);
  r.headers = {{"Content-Security-Policy", std::string(kWebCsp)},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               {"Cache-Control", "no-cache"},
               {"ETag", std::string(page.etag)}};
  if (EtagMatches(req.Header("if-none-match"), page.etag)) {
    r.status = 304;
    return r;
  }
  r.body = std::string(page.body);
  return r;
}

}  // namespace

void OpenAiApp::CheckBrowserSafety(const HttpRequest& req) const {
  auto allowed = [this](const std::string& host) {
    if (host == "localhost" || host == "127.0.0.1" || host == "[::1]") return true;
    for (const std::string& a : options_.allowed_hosts)
      if (a == "*" || Lower(a) == host) return true;
    return false;
  };
  // Browsers always send Host, and Origin with every cross-site POST: a request without them
  // is not a page's, and passes.
  const std::string host = HostName(req.Header("host"), /*origin=*/false);
  if (!req.Header("host").empty() && !allowed(host))
    throw ApiError(403, "invalid_request_error",
                   "Host \"" + req.Header("host") +
                       "\" is not allowed without an API key (DNS rebinding protection): use "
                       "localhost, set --api-key, or allow it with --allow-host",
                   std::nullopt, "host_not_allowed");
  const std::string origin = req.Header("origin");
  if (!origin.empty() && !allowed(HostName(origin, /*origin=*/true)))
    throw ApiError(403, "invalid_request_error",
                   "Origin \"" + origin +
                       "\" is not allowed without an API key (cross-site request protection): "
                       "set --api-key, or allow its host with --allow-host",
                   std::nullopt, "origin_not_allowed");
}

void OpenAiApp::CheckHead(const HttpRequest& req) const {
  const std::string& p = req.path;
  if (req.method == "GET" && (p == "/health" || p == "/metrics")) return;
  const WebAsset* page = FindWebAsset(p);
  // The web page needs no key (its API calls do); without a key it obeys the Host/Origin rule
  // of /v1/*, so a rebound DNS name cannot load it either.
  if (page && (req.method == "GET" || req.method == "HEAD")) {
    if (!options_.api_key) CheckBrowserSafety(req);
    return;
  }
  const bool known = p == "/v1/models" || p == "/v1/chat/completions" || p == "/v1/completions" ||
                     p == "/v1/dsinfer/prices" || page;
  if (!known && p != "/health" && p != "/metrics")
    throw ApiError(404, "invalid_request_error", "unknown URL: " + req.method + " " + p,
                   std::nullopt, "unknown_url");
  if (!options_.api_key) CheckBrowserSafety(req);
  if (options_.api_key && !AuthorizationMatches(req.Header("authorization"), *options_.api_key))
    throw ApiError(401, "invalid_request_error",
                   req.Header("authorization").empty()
                       ? "missing API key (Authorization: Bearer ...)"
                       : "incorrect API key provided",
                   std::nullopt, "invalid_api_key");
}

std::optional<HttpResponse> OpenAiApp::Admit(const HttpRequest& head) noexcept {
  try {
    CheckHead(head);
    return std::nullopt;
  } catch (...) {
    return Handle(head);  // fails the same check again: the full error response, counted
  }
}

HttpResponse OpenAiApp::Route(const HttpRequest& req) {
  const std::string& p = req.path;
  const bool get = req.method == "GET", post = req.method == "POST";
  if (p == "/health" && get)
    return shutting_down_ ? JsonResponse(503, Json{{"status", "shutting_down"}})
                          : JsonResponse(200, Json{{"status", "ok"}});
  if (p == "/metrics" && get) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = metrics_.Prometheus(engine_.Stats());
    return r;
  }
  CheckHead(req);
  if (const WebAsset* page = FindWebAsset(p); page && (get || req.method == "HEAD"))
    return WebPage(*page, req);
  if (p == "/v1/models" && get) return Models();
  if (p == "/v1/dsinfer/prices" && get) return JsonResponse(200, PricesJson(options_.prices));
  if (p == "/v1/chat/completions" && post) return Chat(req);
  if (p == "/v1/completions" && post) return Completions(req);
  throw ApiError(405, "invalid_request_error", "method " + req.method + " not allowed for " + p,
                 std::nullopt, "method_not_allowed");
}

HttpResponse OpenAiApp::Models() const {
  Json data = Json::array();
  for (const std::string& name : {options_.model_name, options_.model_name + "-reasoner"})
    data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "dsinfer"}});
  return JsonResponse(200, Json{{"object", "list"}, {"data", data}});
}

void OpenAiApp::CheckModel(const std::string& model) const {
  if (model != options_.model_name && model != options_.model_name + "-reasoner")
    throw ApiError(404, "invalid_request_error", "the model '" + model + "' does not exist",
                   "model", "model_not_found");
}

std::shared_ptr<OpenAiApp::Job> OpenAiApp::Start(const std::string& prompt_text,
                                                 const std::vector<text::TextSpan>* control,
                                                 const SamplingParams& params) {
  if (shutting_down_) throw ShuttingDown();
  auto job = std::make_shared<Job>();
  job->id = std::to_string(std::time(nullptr)) + "-" + std::to_string(next_id_++);
  job->model = params.model;
  job->created = std::time(nullptr);
  job->start = std::chrono::steady_clock::now();
  job->params = params;
  GenerationRequest g;
  g.prompt = control ? tokenizer_.EncodeWithControlTokensAt(prompt_text, *control)
                     : tokenizer_.Encode(prompt_text);
  const int64_t n = static_cast<int64_t>(g.prompt.size());
  job->prompt_tokens = n;
  if (params.max_tokens && *params.max_tokens > options_.ctx)  // never fits, whatever the prompt
    throw ApiError(400, "invalid_request_error",
                   params.max_tokens_field +
                       " is too large: " + std::to_string(*params.max_tokens) +
                       "; this model's maximum context length is " + std::to_string(options_.ctx) +
                       " tokens, prompt included",
                   params.max_tokens_field, "context_length_exceeded");
  g.max_tokens = params.max_tokens.value_or(options_.ctx - n);
  // Subtracted, not added: n + max_tokens could overflow for a max_tokens near 2^63.
  if (g.max_tokens < 1 || g.max_tokens > options_.ctx - n)
    throw ApiError(400, "invalid_request_error",
                   "this model's maximum context length is " + std::to_string(options_.ctx) +
                       " tokens; the request needs " + std::to_string(n) + " prompt + " +
                       std::to_string(std::max<int64_t>(g.max_tokens, 1)) + " completion tokens",
                   "messages", "context_length_exceeded");
  const int64_t vocab = engine_.config().vocab_size;
  if (params.top_k > vocab)
    throw ApiError::Invalid("top_k", "top_k must be at most the vocabulary size (" +
                                         std::to_string(vocab) + "); -1 or 0: no limit");
  g.sampler = {.temperature = params.temperature,
               .top_p = params.top_p,
               .seed = params.seed.value_or(std::random_device{}()),
               .top_k = params.top_k};
  g.stop_ids = {eos_};
  g.top_logprobs = params.top_logprobs;
  for (const ScriptRule& rule : options_.test_script)
    if (prompt_text.find(rule.match) != std::string::npos) {
      g.forced_tokens = tokenizer_.Encode(rule.completion);
      break;
    }
  job->gen = engine_.Submit(std::move(g));
  if (!job->gen)
    throw ApiError(429, "rate_limit_error", "the request queue is full; retry later", std::nullopt,
                   "queue_full");
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    jobs_.insert(job.get());
    job->app = this;
  }
  if (shutting_down_) job->gen->Cancel();  // CancelAll may have run before the registration
  return job;
}

void OpenAiApp::BeginShutdown() { shutting_down_ = true; }

size_t OpenAiApp::jobs_in_flight() const {
  std::lock_guard<std::mutex> lock(jobs_mu_);
  return jobs_.size();
}

bool OpenAiApp::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(jobs_mu_);
  return jobs_cv_.wait_until(lock, deadline, [this] { return jobs_.empty(); });
}

void OpenAiApp::CancelAll() {
  std::lock_guard<std::mutex> lock(jobs_mu_);
  for (Job* job : jobs_) job->gen->Cancel();
}

Json OpenAiApp::FinishUsage(const Job& job, int64_t reasoning_tokens) {
  const int64_t hit = job.gen->cache_hit_tokens();
  metrics_.AddTokens(job.prompt_tokens, hit, job.completion_tokens);
  Usage u{job.prompt_tokens, hit, job.completion_tokens, reasoning_tokens};
  return UsageJson(u, options_.prices);
}

HttpResponse OpenAiApp::Chat(const HttpRequest& req) {
  if (req.body.size() > options_.max_body_bytes) throw ApiError::PayloadTooLarge();
  ChatRequest cr = ParseChatRequest(ParseJsonBody(req.body));
  CheckModel(cr.params.model);
  text::ChatPrompt prompt;
  try {
    prompt = text::EncodeChatRequest(cr.body);
  } catch (const Error& e) {
    throw FromEncoderError(e);
  }
  // Control tokens only where the chat format puts them: typed in a message they are text.
  std::shared_ptr<Job> job = Start(prompt.text, &prompt.control_tokens, cr.params);
  const bool thinking = prompt.thinking_mode == text::ThinkingMode::kThinking;
  return cr.params.stream ? ChatStream(job, thinking)
                          : ChatWhole(job, thinking, req.connection_open);
}

HttpResponse OpenAiApp::Completions(const HttpRequest& req) {
  if (req.body.size() > options_.max_body_bytes) throw ApiError::PayloadTooLarge();
  TextRequest tr = ParseTextRequest(ParseJsonBody(req.body));
  CheckModel(tr.params.model);
  std::string prompt = tr.prompt;
  const std::optional<int32_t> bos = tokenizer_.bos_id();
  if (bos) {
    const std::string bos_text = tokenizer_.Decode({*bos});
    if (prompt.rfind(bos_text, 0) != 0) prompt = bos_text + prompt;
  }
  // A raw prompt is the model's input as given: added tokens in it are control tokens.
  std::shared_ptr<Job> job = Start(prompt, nullptr, tr.params);
  return tr.params.stream ? TextStream(job) : TextWhole(job, req.connection_open);
}

namespace {

// What a whole response's Drain asks: is the client still connected.
auto ConnectionCheck(const std::function<bool()>& connection_open) {
  return [&connection_open](bool) { return !connection_open || connection_open(); };
}

// The response to a client that left before its whole response was ready (nobody reads it;
// the status is nginx's "client closed request", counted in /metrics).
HttpResponse ClientGone() {
  return ErrorResponse(ApiError(499, "invalid_request_error",
                                "the client closed the connection; the generation was cancelled",
                                std::nullopt, "client_closed_request"));
}

}  // namespace

HttpResponse OpenAiApp::ChatWhole(std::shared_ptr<Job> job, bool thinking,
                                  const std::function<bool()>& connection_open) {
  const auto mode = thinking ? text::ThinkingMode::kThinking : text::ThinkingMode::kChat;
  ChatOutput out(tokenizer_, job->params.stop, mode, "call_" + job->id + "_");
  LogprobsJson logprobs(tokenizer_, /*legacy=*/false);
  const bool finished = Drain(
      *job,
      [&](int32_t id, const TokenLogprobs* lp) {
        if (lp) logprobs.Add(*lp);
        out.Add(id);
        return !out.stopped();
      },
      ConnectionCheck(connection_open));
  if (!finished) {
    metrics_.CountCancelled();
    return ClientGone();
  }
  ThrowIfFailed(*job);
  out.Finish();
  Json choice = {{"index", 0},
                 {"message", out.Message()},
                 {"logprobs", job->params.top_logprobs >= 0 ? logprobs.Take() : Json()},
                 {"finish_reason", FinishName(*job, out.has_tool_calls())}};
  return JsonResponse(200, Json{{"id", "chatcmpl-" + job->id},
                                {"object", "chat.completion"},
                                {"created", job->created},
                                {"model", job->model},
                                {"system_fingerprint", "dsinfer"},
                                {"choices", Json::array({choice})},
                                {"usage", FinishUsage(*job, out.reasoning_tokens())},
                                {"timings", TimingsJson(*job)}});
}

HttpResponse OpenAiApp::TextWhole(std::shared_ptr<Job> job,
                                  const std::function<bool()>& connection_open) {
  OutputText out(tokenizer_, job->params.stop, eos_);
  LogprobsJson logprobs(tokenizer_, /*legacy=*/true);
  std::string text;
  const bool finished = Drain(
      *job,
      [&](int32_t id, const TokenLogprobs* lp) {
        if (lp) logprobs.Add(*lp);
        text += out.Add(id);
        return !out.stopped();
      },
      ConnectionCheck(connection_open));
  if (!finished) {
    metrics_.CountCancelled();
    return ClientGone();
  }
  ThrowIfFailed(*job);
  text += out.Finish();
  Json choice = {{"text", text},
                 {"index", 0},
                 {"logprobs", job->params.top_logprobs >= 0 ? logprobs.Take() : Json()},
                 {"finish_reason", FinishName(*job, false)}};
  return JsonResponse(200, Json{{"id", "cmpl-" + job->id},
                                {"object", "text_completion"},
                                {"created", job->created},
                                {"model", job->model},
                                {"system_fingerprint", "dsinfer"},
                                {"choices", Json::array({choice})},
                                {"usage", FinishUsage(*job, 0)},
                                {"timings", TimingsJson(*job)}});
}

// ---- streaming ------------------------------------------------------------------------------

namespace {

// A chunk of `object` type with one choice; `usage: null` when the request asked for usage.
Json StreamChunk(const OpenAiApp::Job& job, const char* object, const char* id_prefix,
                 Json choice) {
  Json c = {{"id", id_prefix + job.id},        {"object", object},
            {"created", job.created},          {"model", job.model},
            {"system_fingerprint", "dsinfer"}, {"choices", Json::array({std::move(choice)})}};
  if (job.params.include_usage) c["usage"] = nullptr;
  return c;
}

// Streams a job: `on_token` / `on_finish` write chunks; handles the client leaving, the end
// (finish chunk, usage chunk, [DONE]) and errors (an error event, then [DONE]).
struct StreamDriver {
  OpenAiApp::Job& job;
  ChunkSink& sink;
  bool ok = true;  // false once a write failed (the client is gone)

  bool Write(const Json& chunk) { return ok = ok && sink.Write(SseData(chunk)); }

  // Returns false when the client left (the generation is cancelled).
  template <class OnToken>
  bool Run(OnToken on_token) {
    const bool finished = Drain(
        job, [&](int32_t id, const TokenLogprobs* lp) { return on_token(id, lp) && ok; },
        [&](bool idle) { return ok = ok && (!idle || sink.Write(": keep-alive\n\n")); });
    if (!ok) job.gen->Cancel();
    return finished && ok;
  }

  // The frame every stream shares: `body()` streams the tokens and the finish chunk and
  // returns the reasoning-token count, or nullopt when the client left; then the usage chunk
  // (stream_options.include_usage) and [DONE]. A failure becomes an error event, then [DONE].
  // `internal_error(detail)` logs an internal failure and gives the error to send.
  template <class Body, class FinishUsage, class InternalErrorFn>
  void Frame(const char* object, const char* id_prefix, Body body, FinishUsage finish_usage,
             InternalErrorFn internal_error, Metrics& metrics) {
    try {
      const std::optional<int64_t> reasoning = body();
      if (!reasoning) return metrics.CountCancelled();
      Json usage = finish_usage(*reasoning);
      if (job.params.include_usage) {
        Json c = StreamChunk(job, object, id_prefix, nullptr);
        c["choices"] = Json::array();
        c["usage"] = std::move(usage);
        c["timings"] = TimingsJson(job);
        Write(c);
      }
    } catch (const ApiError& e) {
      ok = ok && sink.Write("data: " + e.Body() + "\n\n");
    } catch (const std::exception& e) {  // not the client's fault: logged, not shown
      job.gen->Cancel();
      ok = ok && sink.Write("data: " + internal_error(e.what()).Body() + "\n\n");
    }
    if (ok) sink.Write(SseDone());
  }
};

HttpResponse EventStream() {
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;
}

}  // namespace

HttpResponse OpenAiApp::ChatStream(std::shared_ptr<Job> job, bool thinking) {
  HttpResponse r = EventStream();
  r.stream = [this, job, thinking](ChunkSink& sink) {
    const auto mode = thinking ? text::ThinkingMode::kThinking : text::ThinkingMode::kChat;
    StreamDriver d{*job, sink};
    LogprobsJson logprobs(tokenizer_, /*legacy=*/false);
    // Each chunk carries the logprobs of the tokens received since the previous chunk.
    auto send = [&](Json delta, Json finish) {
      Json lp = logprobs.empty() ? Json() : logprobs.Take();
      return d.Write(StreamChunk(*job, "chat.completion.chunk", "chatcmpl-",
                                 {{"index", 0},
                                  {"delta", std::move(delta)},
                                  {"logprobs", std::move(lp)},
                                  {"finish_reason", std::move(finish)}}));
    };
    auto body = [&]() -> std::optional<int64_t> {
      ChatOutput out(tokenizer_, job->params.stop, mode, "call_" + job->id + "_");
      send({{"role", "assistant"}, {"content", ""}}, nullptr);
      const bool done = d.Run([&](int32_t id, const TokenLogprobs* lp) {
        if (lp) logprobs.Add(*lp);
        for (Json& delta : out.Add(id)) send(std::move(delta), nullptr);
        return !out.stopped();
      });
      if (!done) return std::nullopt;
      ThrowIfFailed(*job);
      for (Json& delta : out.Finish()) send(std::move(delta), nullptr);
      send(Json::object(), FinishName(*job, out.has_tool_calls()));
      return out.reasoning_tokens();
    };
    d.Frame(
        "chat.completion.chunk", "chatcmpl-", body,
        [&](int64_t reasoning) { return FinishUsage(*job, reasoning); },
        [&](const std::string& detail) {
          return InternalError("the stream of chatcmpl-" + job->id, detail);
        },
        metrics_);
  };
  return r;
}

HttpResponse OpenAiApp::TextStream(std::shared_ptr<Job> job) {
  HttpResponse r = EventStream();
  r.stream = [this, job](ChunkSink& sink) {
    StreamDriver d{*job, sink};
    LogprobsJson logprobs(tokenizer_, /*legacy=*/true);
    auto send = [&](const std::string& text, Json finish) {
      if (text.empty() && finish.is_null() && logprobs.empty()) return true;
      Json lp = logprobs.empty() ? Json() : logprobs.Take();
      return d.Write(StreamChunk(*job, "text_completion", "cmpl-",
                                 {{"text", text},
                                  {"index", 0},
                                  {"logprobs", std::move(lp)},
                                  {"finish_reason", std::move(finish)}}));
    };
    auto body = [&]() -> std::optional<int64_t> {
      OutputText out(tokenizer_, job->params.stop, eos_);
      const bool done = d.Run([&](int32_t id, const TokenLogprobs* lp) {
        if (lp) logprobs.Add(*lp);
        send(out.Add(id), nullptr);
        return !out.stopped();
      });
      if (!done) return std::nullopt;
      ThrowIfFailed(*job);
      send(out.Finish(), nullptr);
      send("", FinishName(*job, false));
      return 0;
    };
    d.Frame(
        "text_completion", "cmpl-", body,
        [&](int64_t reasoning) { return FinishUsage(*job, reasoning); },
        [&](const std::string& detail) {
          return InternalError("the stream of cmpl-" + job->id, detail);
        },
        metrics_);
  };
  return r;
}

}  // namespace dsinfer::server
