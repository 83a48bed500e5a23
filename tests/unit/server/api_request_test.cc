// Request parsing and validation: each malformed field gives ApiError 400 naming it; the
// accepted forms (stop string/list, max_completion_tokens, thinking flags, reasoner alias,
// tool_choice none) map to the right parameters. Plus the pure pieces: usage/cost arithmetic
// (against hand-computed prices), price parsing, SSE framing and the error JSON shape.
#include "server/api_request.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <limits>
#include <string>

#include "base/error.h"
#include "server/api_error.h"
#include "server/sse.h"
#include "server/usage.h"

namespace dsinfer::server {
namespace {

using Json = nlohmann::ordered_json;

Json Chat(Json extra = Json::object()) {
  Json j = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  for (auto& [k, v] : extra.items()) j[k] = v;
  return j;
}

// The `param` of the ApiError `f` throws ("" if none; "<no error>" if it does not throw).
template <class F>
std::string ParamOf(F f, int want_status = 400) {
  try {
    f();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), want_status) << e.what();
    return e.param().value_or("");
  }
  return "<no error>";
}

TEST(ApiRequest, Defaults) {
  ChatRequest r = ParseChatRequest(Chat({{"unknown_field", 1}}));
  EXPECT_EQ(r.params.model, "m");
  EXPECT_FALSE(r.params.max_tokens);
  EXPECT_FLOAT_EQ(r.params.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.params.top_p, 1.0f);
  EXPECT_FALSE(r.params.stream);
  EXPECT_FALSE(r.thinking);
  EXPECT_TRUE(r.params.stop.empty());
}

TEST(ApiRequest, AcceptedForms) {
  ChatRequest r = ParseChatRequest(Chat({{"max_completion_tokens", 7},
                                         {"max_tokens", 9},
                                         {"stop", "END"},
                                         {"seed", 42},
                                         {"n", 1},
                                         {"temperature", 0},
                                         {"top_p", 0.5},
                                         {"stream", true},
                                         {"stream_options", {{"include_usage", true}}},
                                         {"logprobs", false}}));
  EXPECT_EQ(*r.params.max_tokens, 7);  // max_completion_tokens wins
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(*r.params.seed, 42u);
  EXPECT_FLOAT_EQ(r.params.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.params.top_p, 0.5f);
  EXPECT_TRUE(r.params.stream && r.params.include_usage);
  r = ParseChatRequest(Chat({{"stop", {"a", "b"}}}));
  EXPECT_EQ(r.params.stop, (std::vector<std::string>{"a", "b"}));
}

TEST(ApiRequest, ThinkingFlags) {
  EXPECT_TRUE(ParseChatRequest(Chat({{"thinking", {{"type", "enabled"}}}})).thinking);
  EXPECT_TRUE(ParseChatRequest(Chat({{"chat_template_kwargs", {{"thinking", true}}}})).thinking);
  Json reasoner = Chat();
  reasoner["model"] = "deepseek-v3.2-reasoner";
  ChatRequest r = ParseChatRequest(reasoner);
  EXPECT_TRUE(r.thinking);
  EXPECT_EQ(r.body["thinking"]["type"], "enabled");  // the encoder sees thinking mode
  EXPECT_FALSE(ParseChatRequest(Chat({{"thinking", {{"type", "disabled"}}}})).thinking);
}

TEST(ApiRequest, ToolChoice) {
  Json tools = Json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
  EXPECT_TRUE(
      ParseChatRequest(Chat({{"tools", tools}, {"tool_choice", "auto"}})).body.contains("tools"));
  EXPECT_FALSE(
      ParseChatRequest(Chat({{"tools", tools}, {"tool_choice", "none"}})).body.contains("tools"));
  EXPECT_EQ(ParamOf([&] { ParseChatRequest(Chat({{"tool_choice", "required"}})); }), "tool_choice");
  EXPECT_EQ(ParamOf([&] { ParseChatRequest(Chat({{"tools", "x"}})); }), "tools");
}

TEST(ApiRequest, ErrorsNameTheField) {
  auto chat = [](Json extra) { return [extra] { ParseChatRequest(Chat(extra)); }; };
  EXPECT_EQ(ParamOf(chat({{"model", 3}})), "model");
  EXPECT_EQ(ParamOf(chat({{"messages", Json::array()}})), "messages");
  EXPECT_EQ(ParamOf(chat(
                {{"messages",
                  {{{"role", "user"}, {"content", "a"}}, {{"role", "robot"}, {"content", "b"}}}}})),
            "messages[1].role");
  EXPECT_EQ(ParamOf(chat({{"messages", {"text"}}})), "messages[0]");
  EXPECT_EQ(ParamOf(chat({{"max_tokens", 0}})), "max_tokens");
  EXPECT_EQ(ParamOf(chat({{"max_completion_tokens", "5"}})), "max_completion_tokens");
  EXPECT_EQ(ParamOf(chat({{"temperature", 3}})), "temperature");
  EXPECT_EQ(ParamOf(chat({{"top_p", 0}})), "top_p");
  EXPECT_EQ(ParamOf(chat({{"stop", {"a", 1}}})), "stop[1]");
  EXPECT_EQ(ParamOf(chat({{"stop", {"a", "b", "c", "d", "e"}}})), "stop");
  EXPECT_EQ(ParamOf(chat({{"n", 2}})), "n");
  EXPECT_EQ(ParamOf(chat({{"logprobs", 1}})), "logprobs");
  EXPECT_EQ(ParamOf(chat({{"top_logprobs", 3}})), "top_logprobs");  // needs logprobs: true
  EXPECT_EQ(ParamOf(chat({{"logprobs", true}, {"top_logprobs", 21}})), "top_logprobs");
  EXPECT_EQ(ParamOf([] {
              ParseTextRequest(Json{{"model", "m"}, {"prompt", "a"}, {"logprobs", true}});
            }),
            "logprobs");
  EXPECT_EQ(ParamOf(chat({{"seed", 1.5}})), "seed");
  EXPECT_EQ(ParamOf(chat({{"stream", "yes"}})), "stream");
  EXPECT_EQ(ParamOf(chat({{"stream_options", {{"include_usage", 1}}}})),
            "stream_options.include_usage");
  EXPECT_EQ(ParamOf([] { ParseTextRequest(Json{{"model", "m"}, {"prompt", 5}}); }), "prompt");
}

// top_k (vLLM's extension): an integer ≥ -1, -1 and 0 meaning no limit (0 in the parameters).
TEST(ApiRequest, TopK) {
  EXPECT_EQ(ParseChatRequest(Chat()).params.top_k, 0);
  EXPECT_EQ(ParseChatRequest(Chat({{"top_k", 40}})).params.top_k, 40);
  EXPECT_EQ(ParseChatRequest(Chat({{"top_k", 1}})).params.top_k, 1);
  EXPECT_EQ(ParseChatRequest(Chat({{"top_k", -1}})).params.top_k, 0);
  EXPECT_EQ(ParseChatRequest(Chat({{"top_k", 0}})).params.top_k, 0);
  EXPECT_EQ(ParseChatRequest(Chat({{"top_k", nullptr}})).params.top_k, 0);
  EXPECT_EQ(ParseTextRequest(Json{{"model", "m"}, {"prompt", "a"}, {"top_k", 7}}).params.top_k, 7);
  for (const Json& bad : {Json(-2), Json(1.5), Json(5.0), Json("5"), Json(true), Json(1e300),
                          Json(uint64_t{1} << 40), Json(std::numeric_limits<int64_t>::min())}) {
    EXPECT_EQ(ParamOf([&] { ParseChatRequest(Chat({{"top_k", bad}})); }), "top_k") << bad.dump();
    EXPECT_EQ(ParamOf([&] {
                ParseTextRequest(Json{{"model", "m"}, {"prompt", "a"}, {"top_k", bad}});
              }),
              "top_k")
        << bad.dump();
  }
}

// max_tokens: only positive integers; anything up to 2^64 − 1 parses (capped at 2^63 − 1: the
// caller compares it with the context, subtracting, never adding).
TEST(ApiRequest, MaxTokensRange) {
  auto chat = [](Json extra) { return [extra] { ParseChatRequest(Chat(extra)); }; };
  for (const Json& bad : {Json(-1), Json(0), Json(1.5), Json(1e300), Json("5"), Json(true),
                          Json(std::numeric_limits<int64_t>::min())})
    EXPECT_EQ(ParamOf(chat({{"max_tokens", bad}})), "max_tokens") << bad.dump();
  const int64_t max = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(ParseChatRequest(Chat({{"max_tokens", max}})).params.max_tokens, max);
  EXPECT_EQ(ParseChatRequest(Chat({{"max_tokens", std::numeric_limits<uint64_t>::max()}}))
                .params.max_tokens,
            max);
  const ChatRequest both =
      ParseChatRequest(Chat({{"max_tokens", 9}, {"max_completion_tokens", 7}}));
  EXPECT_EQ(both.params.max_tokens, 7);
  EXPECT_EQ(both.params.max_tokens_field, "max_completion_tokens");
}

TEST(ApiRequest, Logprobs) {
  const Json msgs = Json::array({{{"role", "user"}, {"content", "a"}}});
  EXPECT_EQ(ParseChatRequest(Json{{"model", "m"}, {"messages", msgs}}).params.top_logprobs, -1);
  EXPECT_EQ(ParseChatRequest(Json{{"model", "m"}, {"messages", msgs}, {"logprobs", true}})
                .params.top_logprobs,
            0);
  EXPECT_EQ(ParseChatRequest(
                Json{{"model", "m"}, {"messages", msgs}, {"logprobs", true}, {"top_logprobs", 20}})
                .params.top_logprobs,
            20);
  EXPECT_EQ(
      ParseTextRequest(Json{{"model", "m"}, {"prompt", "a"}, {"logprobs", 5}}).params.top_logprobs,
      5);
  EXPECT_EQ(ParseTextRequest(Json{{"model", "m"}, {"prompt", "a"}}).params.top_logprobs, -1);
}

TEST(ApiRequest, JsonBody) {
  EXPECT_EQ(ParseJsonBody(R"({"a": 1})")["a"], 1);
  try {
    ParseJsonBody("{\"a\": ");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("invalid JSON"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ParamOf([] { ParseJsonBody("[1]"); }), "");
}

// The probe's request: 50,000 levels in tools[].function.parameters. Refused while parsing
// (nothing recursive ever sees it), 400 naming where it went too deep.
TEST(ApiRequest, DeepBodyIs400NamingTheParameter) {
  const int depth = 50000;
  std::string deep;
  for (int i = 0; i < depth; ++i) deep += "{\"type\": \"object\", \"properties\": {\"p\": ";
  deep += "{}";
  for (int i = 0; i < depth; ++i) deep += "}}";
  const std::string body = R"({"model": "m", "messages": [], "tools": [{"type": "function", )"
                           R"("function": {"name": "f", "parameters": )" +
                           deep + "}}]}";
  EXPECT_EQ(ParamOf([&] { ParseJsonBody(body); }), "tools[0].function.parameters.properties.p...");
  // The limit itself: kMaxJsonDepth (64) levels below the top-level object pass.
  EXPECT_NO_THROW(ParseJsonBody("{\"a\": " + std::string(64, '[') + std::string(64, ']') + "}"));
  EXPECT_EQ(ParamOf([] {
              ParseJsonBody("{\"a\": " + std::string(65, '[') + std::string(65, ']') + "}");
            }),
            "a[0][0][0][0][0]...");
}

// Numbers out of the double range are a 400 naming the field, without the JSON library's
// internals; duplicate keys keep the last (Python's json does).
TEST(ApiRequest, OutOfRangeNumberIs400) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"model": "m", "temperature": 1e999})", "temperature"},
      {R"({"max_tokens": -1e400})", "max_tokens"},
      {R"({"stop": ["a", 1e999]})", "stop[1]"},
      {R"({"stream_options": {"include_usage": 2e308}})", "stream_options.include_usage"},
      {R"({"messages": [{"role": "user"}, {"content": [1, 1E+400]}]})", "messages[1].content[1]"},
      {R"({"seed": 1e99999999999999999999})", "seed"},
  };
  for (const auto& [body, param] : cases) {
    try {
      ParseJsonBody(body);
      ADD_FAILURE() << body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.param(), std::optional<std::string>(param)) << body;
      const std::string msg = e.what();
      EXPECT_NE(msg.find("number overflow"), std::string::npos) << msg;
      EXPECT_NE(msg.find(param), std::string::npos) << msg;
      EXPECT_EQ(msg.find("json.exception"), std::string::npos) << msg;
    }
  }
  EXPECT_EQ(ParseJsonBody(R"({"a": 1, "a": 2})")["a"], 2);
}

// Parsing is linear in the body: nlohmann's callback parser rescanned the parent array after
// every object (an 8 MiB body of `{},` took hours: quadratic), and ordered_json's key lookup
// is a linear search (an object of 10^6 keys: quadratic). Ten times the elements must cost
// about ten times the time, not a hundred: the ratio of the best of three parses of n and
// 10 n elements (thread CPU time) is checked against 40 (a complexity check, not a speed test).
// Duplicate keys still keep the last value at the first key's position, as Python's json does.
TEST(ApiRequest, ParseIsLinear) {
  auto bodies = [](int n) {
    std::string objects = R"({"x": [)", keys = R"({"y": {)";
    for (int i = 0; i < n; ++i) {
      objects += i ? ",{}" : "{}";
      keys += (i ? ",\"" : "\"") + std::to_string(i) + "\":" + std::to_string(i);
    }
    return std::pair(objects + "]}", keys + R"(, "5": -5}})");
  };
  // CPU time of this thread, not wall time: a loaded machine preempts the parse, which moved
  // the wall-clock ratio past 100 on a 2-core machine running builds; CPU time does not move.
  auto cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  auto best_of_3 = [&](const std::pair<std::string, std::string>& b) {
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      const double t0 = cpu_seconds();
      ParseJsonBody(b.first);
      ParseJsonBody(b.second);
      best = std::min(best, cpu_seconds() - t0);
    }
    return best;
  };
  const int n = 10000;
  const auto small = bodies(n), big = bodies(10 * n);
  const double ratio = best_of_3(big) / best_of_3(small);
  EXPECT_LT(ratio, 40.0) << "parse time grows faster than the body";
  const Json a = ParseJsonBody(big.first), b = ParseJsonBody(big.second);
  ASSERT_EQ(a["x"].size(), static_cast<size_t>(10 * n));
  EXPECT_EQ(a["x"][10 * n - 1], Json::object());
  ASSERT_EQ(b["y"].size(), static_cast<size_t>(10 * n));
  EXPECT_EQ(b["y"]["5"], -5);
  EXPECT_EQ(std::next(b["y"].begin(), 5).key(), "5");
  EXPECT_EQ(b["y"][std::to_string(10 * n - 1)], 10 * n - 1);
}

TEST(ApiError, Shape) {
  const Json j = Json::parse(
      ApiError(404, "invalid_request_error", "no such model", "model", "model_not_found").Body());
  EXPECT_EQ(j, Json::parse(R"({"error":{"message":"no such model","type":"invalid_request_error",
                                        "param":"model","code":"model_not_found"}})"));
  const Json k = Json::parse(ApiError::PayloadTooLarge().Body());
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_EQ(k["error"]["code"], "payload_too_large");
}

TEST(Usage, CostArithmetic) {
  Usage u{.prompt_tokens = 3000000,
          .cache_hit_tokens = 1000000,
          .completion_tokens = 500000,
          .reasoning_tokens = 200000};
  const Json j = UsageJson(u, Prices{});
  EXPECT_EQ(j["prompt_tokens"], 3000000);
  EXPECT_EQ(j["completion_tokens"], 500000);
  EXPECT_EQ(j["total_tokens"], 3500000);
  EXPECT_EQ(j["prompt_cache_hit_tokens"], 1000000);
  EXPECT_EQ(j["prompt_cache_miss_tokens"], 2000000);
  EXPECT_EQ(j["completion_tokens_details"]["reasoning_tokens"], 200000);
  // 1M hit × 0.028 + 2M miss × 0.28 + 0.5M out × 0.42 USD per 1M.
  EXPECT_NEAR(j["cost"]["input_cache_hit"].get<double>(), 0.028, 1e-12);
  EXPECT_NEAR(j["cost"]["input_cache_miss"].get<double>(), 0.56, 1e-12);
  EXPECT_NEAR(j["cost"]["output"].get<double>(), 0.21, 1e-12);
  EXPECT_NEAR(j["cost"]["total"].get<double>(), 0.798, 1e-12);
  EXPECT_EQ(j["cost"]["currency"], "USD");
}

TEST(Usage, ParsePrices) {
  const Prices p = ParsePrices("0.1,2,3.5");
  EXPECT_DOUBLE_EQ(p.cache_hit, 0.1);
  EXPECT_DOUBLE_EQ(p.cache_miss, 2.0);
  EXPECT_DOUBLE_EQ(p.output, 3.5);
  EXPECT_THROW(ParsePrices("1,2"), Error);
  EXPECT_THROW(ParsePrices("1,x,3"), Error);
  EXPECT_THROW(ParsePrices("1,-2,3"), Error);
}

TEST(Sse, Framing) {
  EXPECT_EQ(SseData(Json{{"a", "x\ny"}}), "data: {\"a\":\"x\\ny\"}\n\n");
  EXPECT_EQ(SseDone(), "data: [DONE]\n\n");
}

}  // namespace
}  // namespace dsinfer::server
