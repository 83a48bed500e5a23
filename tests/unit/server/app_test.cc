// The API handlers without sockets, on a tiny generated checkpoint and its real tokenizer:
// every error case maps to its status/type/code/param; scripted completions (the test-only
// sampler override) come back through the real parser as reasoning_content / tool_calls;
// the streamed deltas concatenate to the non-streamed message; usage counts equal the
// tokenizer's count of the scripted text; stop sequences cut the text; a client leaving
// mid-stream cancels the generation and frees its sequence.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "server/openai_app.h"
#include "server/web_assets.h"
#include "server_test_util.h"
#include "text/chat_encoding.h"
#include "text/completion_parser.h"
#include "text/tokenizer.h"

namespace dsinfer::server {
namespace {

using Json = nlohmann::ordered_json;
using namespace std::chrono_literals;

const char* kThink = "Let me think about 2+2.</think>It is 4.<｜end▁of▁sentence｜>";
const char* kToolCall =
    "Weather.</think>\n\n<｜DSML｜function_calls>\n"
    "<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>";
const char* kStop = "alpha beta STOP gamma<｜end▁of▁sentence｜>";

// Collects a streamed body; fails writes after `limit` chunks (a client that leaves).
class FakeSink : public ChunkSink {
 public:
  explicit FakeSink(int limit = 1 << 30) : limit_(limit) {}
  bool Write(std::string_view data) override {
    if (writes_++ >= limit_) return false;
    body += data;
    return true;
  }
  std::string body;

 private:
  int limit_, writes_ = 0;
};

// The `data:` payloads of an SSE body, checking the framing on the way.
std::vector<std::string> SseEvents(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event";
    if (end == std::string::npos) break;
    const std::string ev = body.substr(pos, end - pos);
    if (ev.rfind("data: ", 0) == 0) {
      out.push_back(ev.substr(6));
    } else {
      EXPECT_EQ(ev[0], ':') << ev;  // keep-alive comment
    }
    pos = end + 2;
  }
  return out;
}

class AppTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = server_test::TinyModelDir();
    tok_ = new text::Tokenizer(text::Tokenizer::FromFile(dir + "/tokenizer.json"));
    EngineOptions eo;
    eo.parallel = 2;
    eo.queue_capacity = 4;
    eo.prefill_chunk = 16;
    engine_ = new Engine(Model::Load(dir), eo);
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete tok_;
  }
  static AppOptions Options() {
    AppOptions o;
    o.ctx = 512;
    o.max_body_bytes = 4096;
    o.test_script = {{"SCRIPT_THINK", kThink}, {"SCRIPT_TOOL", kToolCall}, {"SCRIPT_STOP", kStop}};
    return o;
  }
  HttpResponse Post(OpenAiApp& app, const std::string& path, const Json& body,
                    const std::string& auth = "") {
    HttpRequest r{"POST", path, {}, body.dump()};
    if (!auth.empty()) r.headers["authorization"] = auth;
    return app.Handle(r);
  }
  static Json UserChat(const std::string& text, Json extra = Json::object()) {
    Json j = {{"model", "deepseek-v3.2"}, {"messages", {{{"role", "user"}, {"content", text}}}}};
    for (auto& [k, v] : extra.items()) j[k] = v;
    return j;
  }
  static text::Tokenizer* tok_;
  static Engine* engine_;
};
text::Tokenizer* AppTest::tok_ = nullptr;
Engine* AppTest::engine_ = nullptr;

void ExpectError(const HttpResponse& r, int status, const std::string& code,
                 const std::string& param = "") {
  EXPECT_EQ(r.status, status) << r.body;
  const Json e = Json::parse(r.body)["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
  EXPECT_TRUE(e["type"].is_string());
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << r.body;
  }
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << r.body;
  }
}

TEST_F(AppTest, HealthModelsMetrics) {
  OpenAiApp app(*engine_, *tok_, Options());
  EXPECT_EQ(app.Handle({"GET", "/health", {}, ""}).status, 200);
  const HttpResponse m = app.Handle({"GET", "/v1/models", {}, ""});
  const Json models = Json::parse(m.body);
  EXPECT_EQ(models["data"][0]["id"], "deepseek-v3.2");
  EXPECT_EQ(models["data"][1]["id"], "deepseek-v3.2-reasoner");
  const std::string text = app.Handle({"GET", "/metrics", {}, ""}).body;
  for (const char* want : {"dsinfer_requests_total{status=\"200\"} 2", "dsinfer_queue_depth 0",
                           "dsinfer_running_sequences", "dsinfer_prompt_tokens_total",
                           "dsinfer_completion_tokens_total"})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
}

TEST_F(AppTest, ErrorCases) {
  AppOptions o = Options();
  o.api_key = "sekret";
  OpenAiApp app(*engine_, *tok_, o);
  const std::string auth = "Bearer sekret";
  ExpectError(Post(app, "/v1/chat/completions", UserChat("hi")), 401, "invalid_api_key");
  ExpectError(Post(app, "/v1/chat/completions", UserChat("hi"), "Bearer nope"), 401,
              "invalid_api_key");
  EXPECT_EQ(app.Handle({"GET", "/health", {}, ""}).status, 200);  // no key needed
  HttpRequest bad{"POST", "/v1/chat/completions", {{"authorization", auth}}, "{\"model\": "};
  ExpectError(app.Handle(bad), 400, "");
  EXPECT_NE(app.Handle(bad).body.find("invalid JSON"), std::string::npos);
  Json unknown = UserChat("hi");
  unknown["model"] = "gpt-4";
  ExpectError(Post(app, "/v1/chat/completions", unknown, auth), 404, "model_not_found", "model");
  ExpectError(Post(app, "/v1/chat/completions", UserChat("hi", {{"max_tokens", 600}}), auth), 400,
              "context_length_exceeded");
  ExpectError(Post(app, "/v1/chat/completions", UserChat(std::string(5000, 'x')), auth), 413,
              "payload_too_large");
  ExpectError(Post(app, "/v1/chat/completions", UserChat("hi", {{"n", 3}}), auth), 400, "", "n");
  Json tool_first = {{"model", "deepseek-v3.2"},
                     {"messages", {{{"role", "tool"}, {"content", "x"}, {"tool_call_id", "a"}}}}};
  const HttpResponse enc = Post(app, "/v1/chat/completions", tool_first, auth);
  EXPECT_EQ(enc.status, 400) << enc.body;
  ExpectError(app.Handle({"GET", "/v1/nothing", {{"authorization", auth}}, ""}), 404,
              "unknown_url");
  ExpectError(app.Handle({"GET", "/v1/chat/completions", {{"authorization", auth}}, ""}), 405,
              "method_not_allowed");
}

// Without an API key, /v1/* answers only requests whose Host and Origin (when sent) are
// loopback or allowed: a page on another site (Origin) or a rebound DNS name (Host) gets 403.
TEST_F(AppTest, WithoutKeyForeignHostOrOriginIs403) {
  auto get = [](OpenAiApp& app, std::map<std::string, std::string> headers) {
    return app.Handle({"GET", "/v1/models", std::move(headers), ""});
  };
  OpenAiApp app(*engine_, *tok_, Options());
  for (const char* ok :
       {"localhost", "localhost:8080", "127.0.0.1:1234", "[::1]:8080", "LocalHost"})
    EXPECT_EQ(get(app, {{"host", ok}}).status, 200) << ok;
  EXPECT_EQ(get(app, {}).status, 200);  // no Host: not a browser
  ExpectError(get(app, {{"host", "evil.example"}}), 403, "host_not_allowed");
  ExpectError(get(app, {{"host", "127.0.0.1.evil.example:8080"}}), 403, "host_not_allowed");
  ExpectError(get(app, {{"host", "localhost:8080"}, {"origin", "https://evil.example"}}), 403,
              "origin_not_allowed");
  ExpectError(get(app, {{"host", "localhost:8080"}, {"origin", "null"}}), 403,
              "origin_not_allowed");
  EXPECT_EQ(get(app, {{"host", "localhost:8080"}, {"origin", "http://localhost:3000"}}).status,
            200);
  // A cross-site POST is refused before anything runs.
  HttpRequest post{"POST",
                   "/v1/chat/completions",
                   {{"host", "127.0.0.1:8080"}, {"origin", "http://evil.example"}},
                   UserChat("hi").dump()};
  ExpectError(app.Handle(post), 403, "origin_not_allowed");
  EXPECT_EQ(app.Handle({"GET", "/health", {{"host", "evil.example"}}, ""}).status, 200);
  // --allow-host, and "*".
  AppOptions o = Options();
  o.allowed_hosts = {"gpu-box"};
  OpenAiApp allowed(*engine_, *tok_, o);
  EXPECT_EQ(get(allowed, {{"host", "gpu-box:8080"}, {"origin", "http://gpu-box:8080"}}).status,
            200);
  ExpectError(get(allowed, {{"host", "other"}}), 403, "host_not_allowed");
  o.allowed_hosts = {"*"};
  OpenAiApp any(*engine_, *tok_, o);
  EXPECT_EQ(get(any, {{"host", "other"}, {"origin", "https://x.example"}}).status, 200);
  // With a key the key is the protection (a page cannot add Authorization without CORS).
  o = Options();
  o.api_key = "k";
  OpenAiApp keyed(*engine_, *tok_, o);
  EXPECT_EQ(get(keyed, {{"host", "other"}, {"authorization", "Bearer k"}}).status, 200);
}

// The head-only admission ServeHttp runs before reading a body: the same errors as Handle.
TEST_F(AppTest, AdmitRefusesFromTheHead) {
  AppOptions o = Options();
  o.api_key = "k";
  OpenAiApp app(*engine_, *tok_, o);
  auto admit = [&](const std::string& path, std::map<std::string, std::string> headers) {
    return app.Admit({"POST", path, std::move(headers), ""});
  };
  ExpectError(admit("/v1/chat/completions", {}).value(), 401, "invalid_api_key");
  ExpectError(admit("/v1/chat/completions", {{"authorization", "Bearer x"}}).value(), 401,
              "invalid_api_key");
  ExpectError(admit("/v1/nope", {{"authorization", "Bearer k"}}).value(), 404, "unknown_url");
  EXPECT_FALSE(admit("/v1/chat/completions", {{"authorization", "Bearer k"}}));
  EXPECT_FALSE(app.Admit({"GET", "/health", {}, ""}));
  OpenAiApp open(*engine_, *tok_, Options());
  ExpectError(
      open.Admit({"POST", "/v1/completions", {{"origin", "https://evil.example"}}, ""}).value(),
      403, "origin_not_allowed");
}

TEST_F(AppTest, QueueFullIs429WithRetryAfter) {
  EngineOptions eo;
  eo.parallel = 1;
  eo.queue_capacity = 0;  // every request is refused
  Engine full(Model::Load(server_test::TinyModelDir()), eo);
  OpenAiApp app(full, *tok_, Options());
  const HttpResponse r = Post(app, "/v1/chat/completions", UserChat("hi"));
  ExpectError(r, 429, "queue_full");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Retry-After");
}

// `timings`: times in ms, and the decode speed is (completion − 1) tokens over decode_ms.
void ExpectTimings(const Json& t, int64_t completion) {
  ASSERT_TRUE(t.is_object()) << t;
  ASSERT_TRUE(t["first_token_ms"].is_number()) << t;
  ASSERT_TRUE(t["decode_ms"].is_number()) << t;
  EXPECT_GE(t["first_token_ms"].get<double>(), 0.0);
  const double decode = t["decode_ms"].get<double>();
  EXPECT_GE(decode, 0.0);
  if (completion < 2 || decode == 0) {
    EXPECT_TRUE(t["decode_tokens_per_second"].is_null()) << t;
    return;
  }
  const double speed = t["decode_tokens_per_second"].get<double>();
  EXPECT_NEAR(speed, (completion - 1) / (decode / 1000.0), 1e-9 * speed) << t;
}

TEST_F(AppTest, ScriptedThinkingNonStream) {
  OpenAiApp app(*engine_, *tok_, Options());
  Json req = UserChat("SCRIPT_THINK");
  req["model"] = "deepseek-v3.2-reasoner";
  const HttpResponse r = Post(app, "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json j = Json::parse(r.body);
  const Json& msg = j["choices"][0]["message"];
  EXPECT_EQ(msg["reasoning_content"], "Let me think about 2+2.");
  EXPECT_EQ(msg["content"], "It is 4.");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const int64_t completion = static_cast<int64_t>(tok_->Encode(kThink).size());
  const int64_t reasoning = static_cast<int64_t>(tok_->Encode("Let me think about 2+2.").size());
  EXPECT_EQ(j["usage"]["completion_tokens"], completion);
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], reasoning);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int64_t>() + completion);
  ExpectTimings(j["timings"], completion);
}

// Several HTTP threads at once (as the server runs Handle): each request gets its own scripted
// answer, whole or streamed, and the metrics count every one. Under the tsan preset this is
// the handlers' concurrency: tokenizer cache, job registry, metrics, engine queue.
TEST_F(AppTest, ConcurrentRequestsEachGetTheirAnswer) {
  OpenAiApp app(*engine_, *tok_, Options());
  constexpr int kThreads = 4, kEach = 2;
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      try {
        for (int k = 0; k < kEach; ++k) {
          Json req = UserChat("SCRIPT_THINK from thread " + std::to_string(t));
          req["model"] = "deepseek-v3.2-reasoner";
          req["stream"] = (t + k) % 2 == 1;
          HttpResponse r = Post(app, "/v1/chat/completions", req);
          std::string reasoning, content;
          if (r.stream) {
            FakeSink sink;
            r.stream(sink);
            for (const std::string& e : SseEvents(sink.body)) {
              if (e == "[DONE]") continue;
              const Json d = Json::parse(e)["choices"][0]["delta"];
              if (d.contains("reasoning_content") && d["reasoning_content"].is_string())
                reasoning += d["reasoning_content"].get<std::string>();
              if (d.contains("content") && d["content"].is_string())
                content += d["content"].get<std::string>();
            }
          } else if (r.status == 200) {
            const Json m = Json::parse(r.body)["choices"][0]["message"];
            reasoning = m.value("reasoning_content", "");
            content = m.value("content", "");
          }
          if (reasoning != "Let me think about 2+2." || content != "It is 4.")
            failures[t] += "[" + reasoning + "|" + content + "|" + r.body + "]";
        }
      } catch (const std::exception& e) {
        failures[t] += e.what();
      }
    });
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
  EXPECT_NE(
      app.Handle({"GET", "/metrics", {}, ""})
          .body.find("dsinfer_requests_total{status=\"200\"} " + std::to_string(kThreads * kEach)),
      std::string::npos);
}

// The streamed deltas reassemble to the one-shot parse of the scripted text (the non-stream
// path is the same accumulation, checked in ScriptedThinkingNonStream; one generation here
// keeps the test fast under ASan).
TEST_F(AppTest, ToolCallStreamEqualsOneShotParse) {
  OpenAiApp app(*engine_, *tok_, Options());
  // No `tools` in the request: their ~400-token prompt would only slow the test down; the
  // parser reads DSML regardless (the node test does the round trip with tools).
  Json req = UserChat("SCRIPT_TOOL", {{"thinking", {{"type", "enabled"}}}});
  std::string script = kToolCall;
  script.resize(script.size() - std::string("<｜end▁of▁sentence｜>").size());
  const Json msg = text::ToOpenAiMessage(
      text::ParseCompletion(script, text::ThinkingMode::kThinking), text::ThinkingMode::kThinking);
  ASSERT_EQ(msg["tool_calls"].size(), 1u);
  EXPECT_EQ(msg["tool_calls"][0]["function"]["arguments"], R"({"city": "Paris", "days": 2})");
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  const HttpResponse s = Post(app, "/v1/chat/completions", req);
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.content_type, "text/event-stream");
  FakeSink sink;
  s.stream(sink);
  const std::vector<std::string> events = SseEvents(sink.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string reasoning, content;
  Json calls = Json::array(), finish, usage, timings;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const Json c = Json::parse(events[i]);
    ASSERT_TRUE(c.contains("usage"));  // include_usage: null on every chunk, then the totals
    if (c["choices"].empty()) {
      usage = c["usage"];
      timings = c["timings"];
      continue;
    }
    const Json& d = c["choices"][0]["delta"];
    if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("content")) content += d["content"].get<std::string>();
    if (d.contains("tool_calls"))
      for (const Json& tc : d["tool_calls"]) calls.push_back(tc);
    if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(reasoning, msg["reasoning_content"]);
  EXPECT_EQ(content, "");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"], msg["tool_calls"][0]["function"]);
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_EQ(usage["completion_tokens"], static_cast<int64_t>(tok_->Encode(kToolCall).size()));
  EXPECT_EQ(usage["prompt_tokens"],
            static_cast<int64_t>(tok_->Encode(text::EncodeChatRequest(req).text).size()));
  ExpectTimings(timings, usage["completion_tokens"].get<int64_t>());
}

TEST_F(AppTest, StopSequenceAndGreedyCompletions) {
  OpenAiApp app(*engine_, *tok_, Options());
  const Json r = Json::parse(
      Post(app, "/v1/chat/completions", UserChat("SCRIPT_STOP", {{"stop", {"STOP"}}})).body);
  EXPECT_EQ(r["choices"][0]["message"]["content"], "alpha beta ");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  // Greedy plain completion: stream and non-stream give the same text.
  Json c = {
      {"model", "deepseek-v3.2"}, {"prompt", "Once upon"}, {"max_tokens", 3}, {"temperature", 0}};
  const Json whole = Json::parse(Post(app, "/v1/completions", c).body);
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(whole["usage"]["completion_tokens"], 3);
  c["stream"] = true;
  FakeSink sink;
  Post(app, "/v1/completions", c).stream(sink);
  std::string text;
  for (const std::string& e : SseEvents(sink.body))
    if (e != "[DONE]") text += Json::parse(e)["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, whole["choices"][0]["text"]);
}

// `top_k` (vLLM's extension): top_k = 1 keeps only the most likely token, so sampling at any
// temperature and seed must give exactly the greedy (temperature 0) tokens; -1 and 0 mean no
// limit; above the vocabulary it is a 400 naming top_k.
TEST_F(AppTest, TopKOneIsGreedyAndOutOfRangeIs400) {
  OpenAiApp app(*engine_, *tok_, Options());
  auto text_of = [&](const std::string& path, Json extra) {
    Json body = path == "/v1/completions"
                    ? Json{{"model", "deepseek-v3.2"}, {"prompt", "Once upon a time"}}
                    : UserChat("Tell me a story");
    body["max_tokens"] = 8;
    for (auto& [k, v] : extra.items()) body[k] = v;
    const HttpResponse r = Post(app, path, body);
    EXPECT_EQ(r.status, 200) << r.body;
    Json c = Json::parse(r.body)["choices"][0];
    return path == "/v1/completions" ? c["text"].dump() : c["message"].dump();
  };
  for (const std::string path : {"/v1/completions", "/v1/chat/completions"}) {
    const std::string greedy = text_of(path, {{"temperature", 0}});
    for (uint64_t seed : {1, 2, 3})
      EXPECT_EQ(text_of(path, {{"temperature", 1.5}, {"top_k", 1}, {"seed", seed}}), greedy)
          << path << " seed " << seed;
    // No limit: the same tokens as without top_k for the same seed.
    const std::string plain = text_of(path, {{"temperature", 1.0}, {"seed", 9}});
    EXPECT_EQ(text_of(path, {{"temperature", 1.0}, {"seed", 9}, {"top_k", -1}}), plain) << path;
    EXPECT_EQ(text_of(path, {{"temperature", 1.0}, {"seed", 9}, {"top_k", 0}}), plain) << path;
  }
  const int64_t vocab = engine_->config().vocab_size;
  EXPECT_EQ(Post(app, "/v1/chat/completions",
                 UserChat("hi", {{"max_tokens", 1}, {"top_k", vocab}, {"temperature", 1.0}}))
                .status,
            200);
  for (const Json& bad : {Json(vocab + 1), Json(-2), Json(2.5), Json("5"), Json(true)}) {
    ExpectError(Post(app, "/v1/chat/completions", UserChat("hi", {{"top_k", bad}})), 400, "",
                "top_k");
    ExpectError(Post(app, "/v1/completions",
                     Json{{"model", "deepseek-v3.2"}, {"prompt", "a"}, {"top_k", bad}}),
                400, "", "top_k");
  }
}

TEST_F(AppTest, ResponseFormatAndToolChoiceNoneAccepted) {
  OpenAiApp app(*engine_, *tok_, Options());
  const HttpResponse r = Post(app, "/v1/chat/completions",
                              UserChat("hi", {{"response_format", {{"type", "json_object"}}},
                                              {"max_tokens", 2},
                                              {"tool_choice", "none"},
                                              {"seed", 7},
                                              {"temperature", 0.7}}));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["usage"]["completion_tokens"], 2);
  // Seeded sampling replays the same tokens.
  const HttpResponse again = Post(app, "/v1/chat/completions",
                                  UserChat("hi", {{"response_format", {{"type", "json_object"}}},
                                                  {"max_tokens", 2},
                                                  {"tool_choice", "none"},
                                                  {"seed", 7},
                                                  {"temperature", 0.7}}));
  EXPECT_EQ(Json::parse(r.body)["choices"], Json::parse(again.body)["choices"]);
}

// The probe's crash: ~50,000 levels where the chat encoder writes JSON into the prompt
// (tools[].function.parameters, response_format, a tool call's arguments, as a string or as
// an object). Each is a 400 naming the parameter, and the app keeps serving. (The bodies are
// written as text: nlohmann's own dump is recursive.)
TEST_F(AppTest, DeepNestingIs400NamingTheParameter) {
  AppOptions o = Options();
  o.max_body_bytes = 1 << 20;
  OpenAiApp app(*engine_, *tok_, o);
  const int depth = 50000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  auto chat = [&](const std::string& messages, const std::string& extra) {
    return app.Handle({"POST",
                       "/v1/chat/completions",
                       {},
                       R"({"model": "deepseek-v3.2", "max_tokens": 1, "messages": [)" + messages +
                           "]" + extra + "}"});
  };
  const std::string user = R"({"role": "user", "content": "hi"})";
  ExpectError(chat(user, R"(, "tools": [{"type": "function", "function": {"name": "f", )"
                         R"("parameters": )" +
                             deep + "}}]"),
              400, "", "tools[0].function.parameters[0][0]...");
  ExpectError(chat(user, R"(, "response_format": )" + deep), 400, "",
              "response_format[0][0][0][0][0]...");
  auto with_call = [&](const std::string& arguments) {
    return user +
           R"(, {"role": "assistant", "content": "", "tool_calls": [{"id": "c", )"
           R"("type": "function", "function": {"name": "f", "arguments": )" +
           arguments + R"(}}]}, {"role": "tool", "tool_call_id": "c", "content": "r"})";
  };
  ExpectError(chat(with_call(R"("{\"q\": )" + deep + R"(}")"), ""), 400, "",
              "messages[1].tool_calls[0].function.arguments");
  ExpectError(chat(with_call(R"({"q": )" + deep + "}"), ""), 400, "",
              "messages[1].tool_calls[0].function.arguments...");
  EXPECT_EQ(app.Handle({"GET", "/health", {}, ""}).status, 200);
  // Realistic nesting still passes: a schema 10 objects deep.
  std::string schema = R"({"type": "string"})";
  for (int i = 0; i < 10; ++i)
    schema = R"({"type": "object", "properties": {"p": )" + schema + "}}";
  const HttpResponse ok = chat(user, R"(, "tools": [{"type": "function", "function": )"
                                     R"({"name": "f", "parameters": )" +
                                         schema + "}}]");
  EXPECT_EQ(ok.status, 200) << ok.body;
}

// max_tokens near 2^63 used to overflow prompt + max_tokens (ctx and KV-budget checks passed,
// the request ran unbounded). Now: 400 naming the field, streaming or not, and the app and
// engine keep serving.
TEST_F(AppTest, HugeMaxTokensIs400NamingTheField) {
  OpenAiApp app(*engine_, *tok_, Options());
  const int64_t max = std::numeric_limits<int64_t>::max();
  for (const Json& n : {Json(max), Json(max - 3), Json(std::numeric_limits<uint64_t>::max()),
                        Json(int64_t{1} << 62), Json(513)}) {
    for (bool stream : {false, true}) {
      ExpectError(Post(app, "/v1/chat/completions",
                       UserChat("hi", {{"max_tokens", n}, {"stream", stream}})),
                  400, "context_length_exceeded", "max_tokens");
      ExpectError(Post(app, "/v1/completions",
                       Json{{"model", "deepseek-v3.2"},
                            {"prompt", "hi"},
                            {"max_completion_tokens", n},
                            {"stream", stream}}),
                  400, "context_length_exceeded", "max_completion_tokens");
    }
  }
  // Fits alone but not with the prompt: the context error names the messages.
  ExpectError(Post(app, "/v1/chat/completions", UserChat("hi", {{"max_tokens", 510}})), 400,
              "context_length_exceeded", "messages");
  const HttpResponse ok = Post(app, "/v1/chat/completions", UserChat("hi", {{"max_tokens", 2}}));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

// Control-token strings typed in a message are text: the prompt has control tokens only where
// the chat format puts them (usage counts the plain-text tokens, fewer control ids than a
// whole-text Encode would make); a raw /v1/completions prompt keeps them as control tokens.
TEST_F(AppTest, TypedControlTokensAreText) {
  OpenAiApp app(*engine_, *tok_, Options());
  const std::string typed = "a<｜end▁of▁sentence｜><｜User｜>b<｜Assistant｜></think>c";
  const Json req = UserChat(typed, {{"max_tokens", 1}});
  const text::ChatPrompt p = text::EncodeChatRequest(req);
  const size_t as_text = tok_->EncodeWithControlTokensAt(p.text, p.control_tokens).size();
  ASSERT_NE(as_text, tok_->Encode(p.text).size());
  const HttpResponse r = Post(app, "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["usage"]["prompt_tokens"], as_text);
  const HttpResponse raw =
      Post(app, "/v1/completions",
           Json{{"model", "deepseek-v3.2"}, {"prompt", typed}, {"max_tokens", 1}});
  ASSERT_EQ(raw.status, 200) << raw.body;
  const std::string bos = tok_->Decode({*tok_->bos_id()});
  EXPECT_EQ(Json::parse(raw.body)["usage"]["prompt_tokens"], tok_->Encode(bos + typed).size());
}

TEST_F(AppTest, ClientLeavingCancels) {
  OpenAiApp app(*engine_, *tok_, Options());
  const HttpResponse s =
      Post(app, "/v1/chat/completions", UserChat("hello", {{"stream", true}, {"max_tokens", 400}}));
  FakeSink sink(3);  // the client goes away after three chunks
  s.stream(sink);
  for (int i = 0; i < 400 && engine_->Stats().running != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(engine_->Stats().running, 0);
  EXPECT_NE(app.Handle({"GET", "/metrics", {}, ""}).body.find("dsinfer_requests_cancelled_total 1"),
            std::string::npos);
}

// A whole (non-streaming) response whose client closed its connection is cancelled: the
// connection probe is asked while tokens arrive, not only when they stop.
TEST_F(AppTest, WholeResponseClientLeavingCancels) {
  OpenAiApp app(*engine_, *tok_, Options());
  HttpRequest r{
      "POST", "/v1/chat/completions", {}, UserChat("hello", {{"max_tokens", 490}}).dump()};
  int asked = 0;
  r.connection_open = [&asked] { return ++asked < 1; };  // gone at the first look (500 ms)
  const HttpResponse res = app.Handle(r);
  ExpectError(res, 499, "client_closed_request");
  EXPECT_EQ(asked, 1);
  EXPECT_NE(app.Handle({"GET", "/metrics", {}, ""}).body.find("dsinfer_requests_cancelled_total 1"),
            std::string::npos);
  for (int i = 0; i < 400 && engine_->Stats().running != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(engine_->Stats().running, 0);
  EXPECT_EQ(engine_->Stats().kv.referenced_pages, 0);
}

// An exception that is not the client's fault (here thrown by the HTTP layer's connection
// probe, as a library would) is a generic 500 naming a reference: the exception's text goes to
// the server's log with that reference, never to the client; the generation stops.
TEST_F(AppTest, InternalErrorIsGenericAndLogged) {
  std::vector<std::string> log;
  AppOptions o = Options();
  o.log = [&log](const std::string& line) { log.push_back(line); };
  OpenAiApp app(*engine_, *tok_, o);
  const std::string secret = "basic_string::_M_create at /usr/include/c++/12/secret.tcc:42";
  HttpRequest r{
      "POST", "/v1/chat/completions", {}, UserChat("hello", {{"max_tokens", 490}}).dump()};
  r.connection_open = [&secret]() -> bool { throw std::length_error(secret); };
  const HttpResponse res = app.Handle(r);
  ExpectError(res, 500, "internal_error");
  EXPECT_EQ(res.body.find("secret"), std::string::npos) << res.body;
  EXPECT_EQ(res.body.find("basic_string"), std::string::npos) << res.body;
  ASSERT_EQ(log.size(), 1u);
  const std::string message = Json::parse(res.body)["error"]["message"];
  const size_t at = message.find("reference ");
  ASSERT_NE(at, std::string::npos) << message;
  const std::string ref = message.substr(at + 10, message.find(')', at) - at - 10);
  EXPECT_FALSE(ref.empty());
  EXPECT_NE(log[0].find(ref), std::string::npos) << log[0];
  EXPECT_NE(log[0].find(secret), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("POST /v1/chat/completions"), std::string::npos) << log[0];
  EXPECT_NE(app.Handle({"GET", "/metrics", {}, ""}).body.find("status=\"500\"} 1"),
            std::string::npos);
  for (int i = 0; i < 400 && engine_->Stats().running != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(engine_->Stats().running, 0);
  EXPECT_EQ(engine_->Stats().kv.referenced_pages, 0);
}

// The same inside a stream: the failure becomes a generic error event (then [DONE]) and a log
// line, and the generation stops.
TEST_F(AppTest, InternalErrorInAStreamIsGenericAndLogged) {
  // A sink whose third write throws (a library failing mid-stream), then works again.
  class ThrowingSink : public ChunkSink {
   public:
    bool Write(std::string_view data) override {
      if (++writes_ == 3) throw std::runtime_error("sink internals: secret");
      body += data;
      return true;
    }
    std::string body;

   private:
    int writes_ = 0;
  };
  std::vector<std::string> log;
  AppOptions o = Options();
  o.log = [&log](const std::string& line) { log.push_back(line); };
  OpenAiApp app(*engine_, *tok_, o);
  HttpResponse s =
      Post(app, "/v1/chat/completions", UserChat("hello", {{"stream", true}, {"max_tokens", 400}}));
  ASSERT_TRUE(s.stream);
  ThrowingSink sink;
  s.stream(sink);
  const std::vector<std::string> events = SseEvents(sink.body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back(), "[DONE]");
  const Json error = Json::parse(events[events.size() - 2])["error"];
  EXPECT_EQ(error["code"], "internal_error") << error;
  EXPECT_EQ(sink.body.find("secret"), std::string::npos) << sink.body;
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("sink internals: secret"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("the stream of chatcmpl-"), std::string::npos) << log[0];
  for (int i = 0; i < 400 && engine_->Stats().running != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(engine_->Stats().running, 0);
}

// Shutdown: new requests and /health are 503 with Retry-After; a stream cancelled by CancelAll
// ends with a server_shutting_down error event, then [DONE]; WaitIdle sees the end.
TEST_F(AppTest, ShutdownCancelsStreamsAndRefusesNewRequests) {
  OpenAiApp app(*engine_, *tok_, Options());
  HttpResponse s =
      Post(app, "/v1/chat/completions", UserChat("hello", {{"stream", true}, {"max_tokens", 400}}));
  ASSERT_TRUE(s.stream);
  EXPECT_EQ(app.jobs_in_flight(), 1u);
  app.BeginShutdown();
  const HttpResponse refused = Post(app, "/v1/chat/completions", UserChat("later"));
  ExpectError(refused, 503, "server_shutting_down");
  bool retry_after = false;
  for (const auto& [k, v] : refused.headers) retry_after = retry_after || k == "Retry-After";
  EXPECT_TRUE(retry_after);
  EXPECT_EQ(app.Handle({"GET", "/health", {}, ""}).status, 503);
  EXPECT_FALSE(app.WaitIdle(std::chrono::steady_clock::now() + 10ms));
  app.CancelAll();
  FakeSink sink;
  s.stream(sink);
  const std::vector<std::string> events = SseEvents(sink.body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(Json::parse(events[events.size() - 2])["error"]["code"], "server_shutting_down");
  s = HttpResponse{};  // the stream's last reference to its job
  EXPECT_TRUE(app.WaitIdle(std::chrono::steady_clock::now() + 1s));
  for (int i = 0; i < 400 && engine_->Stats().running != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(engine_->Stats().running, 0);
}

// ---- the web chat page --------------------------------------------------------------------

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string HeaderOf(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

// Every file of src/server/web is served, byte for byte, at its path (index.html at /), with
// its type and the security and cache headers, and without the API key.
TEST_F(AppTest, WebPageFilesServedWithoutKey) {
  AppOptions o = Options();
  o.api_key = "k";
  OpenAiApp app(*engine_, *tok_, o);
  const std::map<std::string, std::string> types = {{".html", "text/html; charset=utf-8"},
                                                    {".js", "text/javascript; charset=utf-8"},
                                                    {".css", "text/css; charset=utf-8"},
                                                    {".svg", "image/svg+xml"}};
  size_t files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(DSINFER_SOURCE_DIR) + "/src/server/web")) {
    const std::string name = entry.path().filename().string();
    const std::string path = name == "index.html" ? "/" : "/" + name;
    ++files;
    ASSERT_TRUE(FindWebAsset(path)) << path;
    const HttpResponse r = app.Handle({"GET", path, {{"host", "localhost:8080"}}, ""});
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.body, ReadFile(entry.path())) << path;
    EXPECT_EQ(r.content_type, types.at(entry.path().extension().string())) << path;
    EXPECT_EQ(HeaderOf(r, "Content-Security-Policy"), kWebCsp);
    EXPECT_EQ(HeaderOf(r, "X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(HeaderOf(r, "Cache-Control"), "no-cache");
    const std::string etag = HeaderOf(r, "ETag");
    ASSERT_EQ(etag.size(), 18u) << etag;  // 16 hex digits, quoted
    for (const std::string& inm : {etag, "W/" + etag, "\"x\", " + etag, std::string("*")}) {
      const HttpResponse again = app.Handle({"GET", path, {{"if-none-match", inm}}, ""});
      EXPECT_EQ(again.status, 304) << inm;
      EXPECT_TRUE(again.body.empty());
    }
    EXPECT_EQ(app.Handle({"GET", path, {{"if-none-match", "\"other\""}}, ""}).status, 200);
    EXPECT_EQ(app.Handle({"HEAD", path, {}, ""}).status, 200);
    EXPECT_FALSE(app.Admit({"GET", path, {}, ""}));
  }
  EXPECT_EQ(files, kWebAssetCount);
  EXPECT_EQ(std::string(FindWebAsset("/")->content_type), "text/html; charset=utf-8");
  ExpectError(app.Handle({"POST", "/", {{"authorization", "Bearer k"}}, ""}), 405,
              "method_not_allowed");
  ExpectError(app.Handle({"GET", "/chat.js.map", {}, ""}), 404, "unknown_url");
}

// Without a key the page obeys the Host/Origin rule of /v1/* (DNS rebinding).
TEST_F(AppTest, WebPageWithoutKeyChecksHost) {
  OpenAiApp app(*engine_, *tok_, Options());
  EXPECT_EQ(app.Handle({"GET", "/", {{"host", "127.0.0.1:8080"}}, ""}).status, 200);
  ExpectError(app.Handle({"GET", "/", {{"host", "evil.example:8080"}}, ""}), 403,
              "host_not_allowed");
  ExpectError(app.Admit({"GET", "/chat.js", {{"host", "evil.example"}}, ""}).value(), 403,
              "host_not_allowed");
  ExpectError(
      app.Handle({"GET", "/", {{"host", "localhost"}, {"origin", "http://evil.example"}}, ""}), 403,
      "origin_not_allowed");
}

// GET /v1/dsinfer/prices: the --prices table, behind the key like every /v1/* endpoint.
TEST_F(AppTest, PriceTable) {
  AppOptions o = Options();
  o.api_key = "k";
  o.prices = ParsePrices("0.5,2,8.25");
  OpenAiApp app(*engine_, *tok_, o);
  ExpectError(app.Handle({"GET", "/v1/dsinfer/prices", {}, ""}), 401, "invalid_api_key");
  const HttpResponse r =
      app.Handle({"GET", "/v1/dsinfer/prices", {{"authorization", "Bearer k"}}, ""});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body), Json::parse(R"({"object": "dsinfer.prices", "currency": "USD",
      "per_tokens": 1000000, "input_cache_hit": 0.5, "input_cache_miss": 2,
      "output": 8.25})"));
}

}  // namespace
}  // namespace dsinfer::server
