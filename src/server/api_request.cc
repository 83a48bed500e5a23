#include "server/api_request.h"

#include <algorithm>
#include <limits>

#include "base/error.h"
#include "format/json_util.h"
#include "server/api_error.h"
#include "text/chat_encoding.h"

namespace dsinfer::server {
namespace {

using Json = nlohmann::ordered_json;

// The field if present and not null.
const Json* Field(const Json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double Number(const Json& body, const char* name, double lo, double hi, double def) {
  const Json* v = Field(body, name);
  if (!v) return def;
  if (!v->is_number()) throw ApiError::Invalid(name, std::string(name) + " must be a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw ApiError::Invalid(name, std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                                      std::to_string(hi) + "]");
  return x;
}

bool Bool(const Json& body, const char* name, const std::string& param) {
  const Json* v = Field(body, name);
  if (!v) return false;
  if (!v->is_boolean()) throw ApiError::Invalid(param, param + " must be a boolean");
  return v->get<bool>();
}

// max_completion_tokens (preferred) or max_tokens: a positive integer. Values beyond 2^63 − 1
// become 2^63 − 1 (too large either way; the caller compares it with the context).
void MaxTokens(const Json& body, SamplingParams& p) {
  for (const char* name : {"max_completion_tokens", "max_tokens"}) {
    const Json* v = Field(body, name);
    if (!v) continue;
    const bool positive = v->is_number_unsigned()  ? v->get<uint64_t>() > 0
                          : v->is_number_integer() ? v->get<int64_t>() > 0
                                                   : false;
    if (!positive) throw ApiError::Invalid(name, std::string(name) + " must be a positive integer");
    const uint64_t max = std::numeric_limits<int64_t>::max();
    const int64_t n = v->is_number_unsigned()
                          ? static_cast<int64_t>(std::min<uint64_t>(v->get<uint64_t>(), max))
                          : v->get<int64_t>();
    if (!p.max_tokens) {
      p.max_tokens = n;
      p.max_tokens_field = name;
    }
  }
}

std::vector<std::string> Stops(const Json& body) {
  const Json* v = Field(body, "stop");
  if (!v) return {};
  if (v->is_string()) {
    if (v->get<std::string>().empty()) throw ApiError::Invalid("stop", "stop must not be empty");
    return {v->get<std::string>()};
  }
  if (!v->is_array()) throw ApiError::Invalid("stop", "stop must be a string or an array");
  if (v->size() > 4) throw ApiError::Invalid("stop", "stop takes at most 4 sequences");
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string param = "stop[" + std::to_string(i) + "]";
    if (!(*v)[i].is_string() || (*v)[i].get<std::string>().empty())
      throw ApiError::Invalid(param, param + " must be a non-empty string");
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

void CheckUnsupported(const Json& body) {
  const Json* n = Field(body, "n");
  if (n && (!n->is_number_integer() || n->get<int64_t>() != 1))
    throw ApiError::Invalid("n", "only n = 1 is supported");
}

// An integer field in [0, 20], or nullopt when absent.
std::optional<int> LogprobCount(const Json& body, const char* name) {
  const Json* v = Field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > 20)
    throw ApiError::Invalid(name, std::string(name) + " must be an integer in [0, 20]");
  return static_cast<int>(v->get<int64_t>());
}

// Chat: `logprobs` (bool) and `top_logprobs` (0..20, needs logprobs: true).
int ChatLogprobs(const Json& body) {
  const bool on = Bool(body, "logprobs", "logprobs");
  const std::optional<int> top = LogprobCount(body, "top_logprobs");
  if (top && !on) throw ApiError::Invalid("top_logprobs", "top_logprobs needs \"logprobs\": true");
  return on ? top.value_or(0) : -1;
}

// Completions (legacy): `logprobs` is the number of top tokens (0..20).
int TextLogprobs(const Json& body) { return LogprobCount(body, "logprobs").value_or(-1); }

// `top_k` (vLLM's extension of the OpenAI request): an integer ≥ -1; -1 and 0 mean no limit
// (vLLM's and llama.cpp's spellings). The upper bound, the vocabulary size, is checked by the
// app, which knows the model.
int64_t TopK(const Json& body) {
  const Json* v = Field(body, "top_k");
  if (!v) return 0;
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const bool ok = v->is_number_unsigned()  ? v->get<uint64_t>() <= static_cast<uint64_t>(kMax)
                  : v->is_number_integer() ? v->get<int64_t>() >= -1 && v->get<int64_t>() <= kMax
                                           : false;
  if (!ok)
    throw ApiError::Invalid("top_k", "top_k must be an integer: -1 or 0 (no limit) or k ≥ 1");
  return std::max<int64_t>(v->get<int64_t>(), 0);
}

SamplingParams ParseSampling(const Json& body) {
  SamplingParams p;
  const Json* model = Field(body, "model");
  if (!model || !model->is_string())
    throw ApiError::Invalid("model", "model is required and must be a string");
  p.model = model->get<std::string>();
  CheckUnsupported(body);
  MaxTokens(body, p);
  p.temperature = static_cast<float>(Number(body, "temperature", 0.0, 2.0, 1.0));
  p.top_p = static_cast<float>(Number(body, "top_p", 0.0, 1.0, 1.0));
  if (p.top_p <= 0.0f) throw ApiError::Invalid("top_p", "top_p must be in (0, 1]");
  p.top_k = TopK(body);
  if (const Json* s = Field(body, "seed")) {
    if (!s->is_number_integer()) throw ApiError::Invalid("seed", "seed must be an integer");
    p.seed =
        s->is_number_unsigned() ? s->get<uint64_t>() : static_cast<uint64_t>(s->get<int64_t>());
  }
  p.stop = Stops(body);
  p.stream = Bool(body, "stream", "stream");
  if (const Json* so = Field(body, "stream_options")) {
    if (!so->is_object())
      throw ApiError::Invalid("stream_options", "stream_options must be an object");
    p.include_usage = Bool(*so, "include_usage", "stream_options.include_usage");
  }
  return p;
}

void CheckMessages(const Json& body) {
  const Json* m = Field(body, "messages");
  if (!m || !m->is_array() || m->empty())
    throw ApiError::Invalid("messages", "messages must be a non-empty array");
  for (size_t i = 0; i < m->size(); ++i) {
    const std::string at = "messages[" + std::to_string(i) + "]";
    const Json& msg = (*m)[i];
    if (!msg.is_object()) throw ApiError::Invalid(at, at + " must be an object");
    const Json* role = Field(msg, "role");
    static const char* kRoles[] = {"system", "developer", "user", "assistant", "tool"};
    bool ok = role && role->is_string();
    if (ok)
      ok = std::find(std::begin(kRoles), std::end(kRoles), role->get<std::string>()) !=
           std::end(kRoles);
    if (!ok)
      throw ApiError::Invalid(at + ".role",
                              at + ".role must be one of system, developer, user, assistant, tool");
  }
}

// tools must be an array; tool_choice "auto" (default) or "none" (tools left out).
void CheckTools(Json& body) {
  const Json* tools = Field(body, "tools");
  if (tools && !tools->is_array()) throw ApiError::Invalid("tools", "tools must be an array");
  const Json* choice = Field(body, "tool_choice");
  if (!choice) return;
  if (!choice->is_string() || (*choice != "auto" && *choice != "none"))
    throw ApiError::Invalid("tool_choice", "tool_choice must be \"auto\" or \"none\"");
  if (*choice == "none") body.erase("tools");
}

}  // namespace

Json ParseJsonBody(std::string_view body) {
  Json j;
  try {
    // Depth-limited (the handlers and the chat encoder walk the value recursively); duplicate
    // keys keep the last, as Python's json does.
    j = ParseJsonStrict<Json>(body, "request body", {.reject_duplicate_keys = false});
  } catch (const JsonTooDeepError& e) {
    throw ApiError(400, "invalid_request_error", e.what(),
                   e.path().empty() ? std::nullopt : std::optional<std::string>(e.path()));
  } catch (const JsonNumberOverflowError& e) {
    throw ApiError(400, "invalid_request_error", e.what(),
                   e.path().empty() ? std::nullopt : std::optional<std::string>(e.path()));
  } catch (const Error& e) {  // syntax
    throw ApiError(400, "invalid_request_error", e.what());
  }
  if (!j.is_object()) throw ApiError(400, "invalid_request_error", "body must be a JSON object");
  return j;
}

ChatRequest ParseChatRequest(Json body) {
  ChatRequest r;
  r.params = ParseSampling(body);
  r.params.top_logprobs = ChatLogprobs(body);
  CheckMessages(body);
  CheckTools(body);
  const std::string suffix = "-reasoner";
  const std::string& m = r.params.model;
  r.thinking =
      m.size() >= suffix.size() && m.compare(m.size() - suffix.size(), suffix.size(), suffix) == 0;
  try {
    r.thinking = r.thinking || text::ThinkingModeOf(body) == text::ThinkingMode::kThinking;
  } catch (const Error& e) {
    throw ApiError::Invalid("thinking", e.what());
  }
  if (r.thinking) body["thinking"] = Json{{"type", "enabled"}};
  r.body = std::move(body);
  return r;
}

TextRequest ParseTextRequest(const Json& body) {
  TextRequest r;
  r.params = ParseSampling(body);
  r.params.top_logprobs = TextLogprobs(body);
  const Json* p = Field(body, "prompt");
  if (p && p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (!p || !p->is_string() || p->get<std::string>().empty())
    throw ApiError::Invalid("prompt", "prompt must be a non-empty string");
  r.prompt = p->get<std::string>();
  return r;
}

}  // namespace dsinfer::server
