// DeepSeek-V3.2 chat encoding against DeepSeek's golden fixture (byte for byte), against the
// definition in docs/model.md §9.2 (hand-written expected prompts), and Python-exact JSON against
// outputs of CPython 3.11's `json.dumps(..., ensure_ascii=False)`.
#include "text/chat_encoding.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>

#include "base/error.h"
#include "format/json_util.h"
#include "tests/unit/text/chat_test_util.h"
#include "text/py_json.h"

namespace dsinfer::text {
namespace {

using namespace dsinfer::text::chat_testing;  // NOLINT


std::string Encode(const char* messages_json, ThinkingMode mode, bool bos = true) {
  return EncodeMessages(ojson::parse(messages_json), {.thinking_mode = mode, .add_bos = bos});
}

// Asserts that encoding fails with a `dsinfer::Error` whose message contains `needle`.
void ExpectError(const ojson& messages, ThinkingMode mode, const std::string& needle) {
  try {
    EncodeMessages(messages, {.thinking_mode = mode});
    ADD_FAILURE() << "no error for " << messages.dump() << " (expected: " << needle << ")";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message \"" << e.what() << "\" does not name " << needle;
  }
}

// ---- DeepSeek's golden fixture ----------------------------------------------------------------

TEST(ChatEncodingGolden, ToolsAttachedToFirstMessage) {
  Fixture f = LoadFixture();
  ojson messages = f.input["messages"];
  messages[0]["tools"] = f.input["tools"];  // as DeepSeek's test script does
  std::string got = EncodeMessages(messages, {.thinking_mode = kThink});
  EXPECT_EQ(got.size(), f.output.size());
  EXPECT_TRUE(got == f.output)
      << "first difference at byte "
      << std::mismatch(got.begin(), got.end(), f.output.begin(), f.output.end()).first -
             got.begin();
}

TEST(ChatEncodingGolden, RequestLevelToolsBothThinkingFlags) {
  Fixture f = LoadFixture();
  ojson request = f.input;  // {"tools", "messages"}: an OpenAI request already
  request["chat_template_kwargs"] = {{"thinking", true}};
  ChatPrompt p = EncodeChatRequest(request);
  EXPECT_EQ(p.thinking_mode, kThink);
  EXPECT_TRUE(p.text == f.output);
  request.erase("chat_template_kwargs");
  request["thinking"] = {{"type", "enabled"}};
  EXPECT_TRUE(EncodeChatRequest(request).text == f.output);
  // In chat mode (the default) every turn closes thinking and no reasoning is rendered: the
  // only "<think>" left is the one in the TOOLS block's example.
  request.erase("thinking");
  ChatPrompt chat = EncodeChatRequest(request);
  EXPECT_EQ(chat.thinking_mode, kChat);
  size_t n_open = 0;
  for (size_t p = chat.text.find("<think>"); p != std::string::npos;
       p = chat.text.find("<think>", p + 1))
    ++n_open;
  EXPECT_EQ(n_open, 1u);
  EXPECT_EQ(chat.text.find("Got the weather data"), std::string::npos);
}

// ---- roles and modes (docs/model.md §9.2) ------------------------------------------------------

TEST(ChatEncoding, SingleTurnChatAndThinking) {
  const char* msgs = R"([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])";
  EXPECT_EQ(Encode(msgs, kChat), kBos + "S" + kUser + "Hi" + kAsst + "</think>");
  EXPECT_EQ(Encode(msgs, kThink), kBos + "S" + kUser + "Hi" + kAsst + "<think>");
  EXPECT_EQ(Encode(msgs, kChat, /*bos=*/false), "S" + kUser + "Hi" + kAsst + "</think>");
  // A system message without content renders as "".
  EXPECT_EQ(Encode(R"([{"role": "system"}, {"role": "user", "content": ""}])", kChat),
            kBos + kUser + kAsst + "</think>");
}

TEST(ChatEncoding, MultiTurnReasoningIsDroppedBeforeTheLastUser) {
  const char* msgs = R"([{"role": "user", "content": "u1"},
      {"role": "assistant", "content": "A", "reasoning_content": "R"},
      {"role": "user", "content": "u2"}])";
  std::string history = kBos + kUser + "u1" + kAsst + "</think>A" + kEos + kUser + "u2" + kAsst;
  EXPECT_EQ(Encode(msgs, kChat), history + "</think>");
  EXPECT_EQ(Encode(msgs, kThink), history + "<think>");
}

TEST(ChatEncoding, AssistantAfterLastUserCarriesReasoningInThinkingMode) {
  const char* msgs = R"([{"role": "user", "content": "u"},
      {"role": "assistant", "content": "C", "reasoning_content": "R"}])";
  EXPECT_EQ(Encode(msgs, kThink), kBos + kUser + "u" + kAsst + "<think>R</think>C" + kEos);
  EXPECT_EQ(Encode(msgs, kChat), kBos + kUser + "u" + kAsst + "</think>C" + kEos);
  // `reasoning` is accepted as an alias.
  const char* alias = R"([{"role": "user", "content": "u"},
      {"role": "assistant", "content": "C", "reasoning": "R"}])";
  EXPECT_EQ(Encode(alias, kThink), Encode(msgs, kThink));
  // The encoder's assertion: no reasoning and no tool calls after the last user.
  ExpectError(ojson::parse(R"([{"role": "user", "content": "u"},
      {"role": "assistant", "content": "C"}])"),
              kThink, "messages[1]");
  EXPECT_EQ(
      Encode(R"([{"role": "user", "content": "u"}, {"role": "assistant", "content": "C"}])", kChat),
      kBos + kUser + "u" + kAsst + "</think>C" + kEos);
}

const char* kToolsJson = R"([{"type": "function", "function": {"name": "f", "description": "d",
    "parameters": {"type": "object", "properties": {"x": {"type": "number"}}}}}])";
const char* kToolSchema =
    R"({"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "number"}}}})";
const char* kFormatJson =
    R"({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}})";

std::string ToolsBlock() { return ToolsHeadFromFixture() + kToolSchema + "\n</functions>\n"; }
std::string FormatBlock() {
  return std::string(
             "## Response Format:\n\nYou MUST strictly adhere to the following schema to "
             "reply:\n") +
         kFormatJson;
}

TEST(ChatEncoding, SystemWithToolsAndResponseFormat) {
  ojson msgs =
      ojson::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "q"}])");
  std::string tail = kUser + "q" + kAsst + "</think>";
  msgs[0]["tools"] = ojson::parse(kToolsJson);
  EXPECT_EQ(EncodeMessages(msgs, {}), kBos + "S\n\n" + ToolsBlock() + tail);
  msgs[0]["response_format"] = ojson::parse(kFormatJson);
  EXPECT_EQ(EncodeMessages(msgs, {}),
            kBos + "S\n\n" + ToolsBlock() + "\n\n" + FormatBlock() + tail);
  msgs[0].erase("tools");
  EXPECT_EQ(EncodeMessages(msgs, {}), kBos + "S\n\n" + FormatBlock() + tail);
  msgs[0]["tools"] = ojson::array();  // empty: nothing, like Python's `if tools:`
  EXPECT_EQ(EncodeMessages(msgs, {}), kBos + "S\n\n" + FormatBlock() + tail);
}

TEST(ChatEncoding, DeveloperRole) {
  ojson msgs = ojson::parse(R"([{"role": "developer", "content": "find X"}])");
  msgs[0]["tools"] = ojson::parse(kToolsJson);
  msgs[0]["response_format"] = ojson::parse(kFormatJson);
  EXPECT_EQ(EncodeMessages(msgs, {.thinking_mode = kThink}),
            kBos + kUser + "\n\n" + ToolsBlock() + "\n\n" + FormatBlock() +
                "\n\n# The user's message is: find X" + kAsst + "<think>");
  EXPECT_EQ(Encode(R"([{"role": "developer", "content": "hi"}])", kChat),
            kBos + kUser + "\n\n# The user's message is: hi" + kAsst + "</think>");
  // A developer message is a user turn for `last_user`.
  EXPECT_EQ(Encode(R"([{"role": "developer", "content": "d"},
      {"role": "assistant", "content": "C", "reasoning_content": "R"}])",
                   kThink),
            kBos + kUser + "\n\n# The user's message is: d" + kAsst + "<think>R</think>C" + kEos);
  ExpectError(ojson::parse(R"([{"role": "developer", "content": ""}])"), kChat,
              "messages[0].content");
}

TEST(ChatEncoding, RequestLevelToolsAndResponseFormat) {
  ojson req = ojson::parse(R"({"messages": [{"role": "user", "content": "q"}]})");
  req["tools"] = ojson::parse(kToolsJson);
  std::string tail = kUser + "q" + kAsst + "</think>";
  // No system message: rendered as an empty system message put first.
  EXPECT_EQ(EncodeChatRequest(req).text, kBos + "\n\n" + ToolsBlock() + tail);
  req["response_format"] = ojson::parse(kFormatJson);
  EXPECT_EQ(EncodeChatRequest(req).text,
            kBos + "\n\n" + ToolsBlock() + "\n\n" + FormatBlock() + tail);
  // A system message first: attached to it.
  req["messages"].insert(req["messages"].begin(),
                         ojson::parse(R"({"role": "system", "content": "S"})"));
  EXPECT_EQ(EncodeChatRequest(req).text,
            kBos + "S\n\n" + ToolsBlock() + "\n\n" + FormatBlock() + tail);
  // OpenAI's default response format adds nothing.
  req["response_format"] = {{"type", "text"}};
  EXPECT_EQ(EncodeChatRequest(req).text, kBos + "S\n\n" + ToolsBlock() + tail);
  // Tools both in the request and on messages[0]: ambiguous.
  req["messages"][0]["tools"] = ojson::parse(kToolsJson);
  EXPECT_THROW(EncodeChatRequest(req), Error);
}

// An assistant with two tool calls whose arguments cover every JSON type, two results, then
// the generation prompt. Expected text written from docs/model.md §9.2.
const char* kToolRoundTrip = R"([
  {"role": "system", "content": "S"},
  {"role": "user", "content": "Weather?"},
  {"role": "assistant", "content": "Checking.", "tool_calls": [
    {"id": "a", "type": "function", "function": {"name": "search", "arguments":
      "{\"q\": \"café \\\"x\\\"\\n2\", \"n\": 3, \"opts\": {\"deep\": true, \"k\": [1, 2.5]}, \"tags\": [\"a\", \"b\"], \"flag\": false, \"none\": null, \"f\": 1.0}"}},
    {"id": "b", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
  {"role": "tool", "tool_call_id": "a", "content": "R1"},
  {"role": "tool", "tool_call_id": "b", "content": "R2"}])";

std::string ToolCallsText() {
  return "\n\n<｜DSML｜function_calls>\n"
         "<｜DSML｜invoke name=\"search\">\n"
         "<｜DSML｜parameter name=\"q\" string=\"true\">café \"x\"\n2</｜DSML｜parameter>\n"
         "<｜DSML｜parameter name=\"n\" string=\"false\">3</｜DSML｜parameter>\n"
         "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"deep\": true, \"k\": [1, 2.5]}"
         "</｜DSML｜parameter>\n"
         "<｜DSML｜parameter name=\"tags\" string=\"false\">[\"a\", \"b\"]</｜DSML｜parameter>\n"
         "<｜DSML｜parameter name=\"flag\" string=\"false\">false</｜DSML｜parameter>\n"
         "<｜DSML｜parameter name=\"none\" string=\"false\">null</｜DSML｜parameter>\n"
         "<｜DSML｜parameter name=\"f\" string=\"false\">1.0</｜DSML｜parameter>\n"
         "</｜DSML｜invoke>\n"
         "<｜DSML｜invoke name=\"now\">\n\n</｜DSML｜invoke>\n"
         "</｜DSML｜function_calls>";
}

TEST(ChatEncoding, ToolCallRoundTrip) {
  std::string results =
      "\n\n<function_results>\n<result>R1</result>\n<result>R2</result>\n"
      "</function_results>\n\n";
  EXPECT_EQ(Encode(kToolRoundTrip, kThink), kBos + "S" + kUser + "Weather?" + kAsst + "<think>" +
                                                "</think>Checking." + ToolCallsText() + kEos +
                                                results + "<think>");
  EXPECT_EQ(Encode(kToolRoundTrip, kChat), kBos + "S" + kUser + "Weather?" + kAsst +
                                               "</think>Checking." + ToolCallsText() + kEos +
                                               results + "</think>");
  // `function.arguments` given as an object instead of a JSON string: the same prompt.
  ojson msgs = ojson::parse(kToolRoundTrip);
  for (ojson& call : msgs[2]["tool_calls"])
    call["function"]["arguments"] = ojson::parse(call["function"]["arguments"].get<std::string>());
  EXPECT_EQ(EncodeMessages(msgs, {.thinking_mode = kThink}), Encode(kToolRoundTrip, kThink));
}

TEST(ChatEncoding, ToolResultsBeforeTheLastUserCloseThinking) {
  const char* msgs = R"([{"role": "user", "content": "u1"},
      {"role": "assistant", "reasoning_content": "R", "tool_calls": [{"type": "function",
        "function": {"name": "g", "arguments": "{\"x\": \"y\"}"}}]},
      {"role": "tool", "content": "out"},
      {"role": "assistant", "content": "done", "reasoning_content": "R2"},
      {"role": "user", "content": "u2"}])";
  EXPECT_EQ(Encode(msgs, kThink),
            kBos + kUser + "u1" + kAsst + "</think>" +
                "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"g\">\n"
                "<｜DSML｜parameter name=\"x\" string=\"true\">y</｜DSML｜parameter>\n"
                "</｜DSML｜invoke>\n</｜DSML｜function_calls>" +
                kEos + "\n\n<function_results>\n<result>out</result>\n</function_results>\n\n" +
                "</think>done" + kEos + kUser + "u2" + kAsst + "<think>");
}

TEST(ChatEncoding, ContentAsTextParts) {
  EXPECT_EQ(Encode(R"([{"role": "user", "content": [{"type": "text", "text": "a"},
      {"type": "text", "text": "b"}]}])",
                   kChat),
            kBos + kUser + "a\nb" + kAsst + "</think>");
  ExpectError(ojson::parse(R"([{"role": "user", "content": [{"type": "image_url"}]}])"), kChat,
              "messages[0].content[0].type");
}

TEST(ChatEncoding, BadRequestsNameTheField) {
  struct Case {
    const char* messages;
    const char* needle;
  };
  const Case cases[] = {
      {R"({"role": "user"})", "messages: must be an array"},
      {R"([])", "messages: must not be empty"},
      {R"([{"role": "user", "content": "u"}, {"role": "function", "content": "x"}])",
       "messages[1].role"},
      {R"([{"content": "x"}])", "messages[0].role"},
      {R"([{"role": "user"}])", "messages[0].content"},
      {R"([{"role": "user", "content": 5}])", "messages[0].content"},
      {R"([{"role": "user", "content": "u"}, {"role": "tool", "content": "r"}])", "messages[1]"},
      {R"([{"role": "tool", "content": "r"}])", "messages[0]"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
           {"role": "tool", "content": "r"}])",
       "messages[2]"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "tool_calls": [{"function":
           {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "content": "r"},
           {"role": "tool", "content": "r2"}])",
       "messages[3]"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "tool_calls": [
           {"function": {"name": "f", "arguments": "{}"}},
           {"function": {"name": "g", "arguments": "{}"}}]}, {"role": "tool", "content": "r"},
           {"role": "user", "content": "u2"}])",
       "messages[1].tool_calls"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "tool_calls": [{"function":
           {"name": "f", "arguments": "{\"a\": "}}]}])",
       "messages[1].tool_calls[0].function.arguments"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "tool_calls": [{"function":
           {"name": "f", "arguments": "[1]"}}]}])",
       "messages[1].tool_calls[0].function.arguments"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "tool_calls": [{"function":
           {"name": "f", "arguments": "{\"a\": 123456789012345678901234567890}"}}]}])",
       "outside the 64-bit range"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "tool_calls": [{"function":
           {"arguments": "{}"}}]}])",
       "messages[1].tool_calls[0].function.name"},
      {R"([{"role": "user", "content": "u"}, {"role": "assistant", "tool_calls": [{}]}])",
       "messages[1].tool_calls[0].function"},
      {R"([{"role": "system", "content": "s", "tools": "x"}])", "messages[0].tools"},
      {R"([{"role": "system", "content": "s", "tools": [{"type": "function"}]}])",
       "messages[0].tools[0].function"},
  };
  for (const Case& c : cases) ExpectError(ojson::parse(c.messages), kChat, c.needle);
}

TEST(ChatEncoding, ThinkingFlag) {
  auto mode = [](const char* req) { return ThinkingModeOf(ojson::parse(req)); };
  EXPECT_EQ(mode(R"({})"), kChat);
  EXPECT_EQ(mode(R"({"chat_template_kwargs": {"thinking": true}})"), kThink);
  EXPECT_EQ(mode(R"({"chat_template_kwargs": {"thinking": false}})"), kChat);
  EXPECT_EQ(mode(R"({"thinking": {"type": "enabled"}})"), kThink);
  EXPECT_EQ(mode(R"({"thinking": {"type": "disabled"}})"), kChat);
  EXPECT_EQ(
      mode(R"({"thinking": {"type": "enabled"}, "chat_template_kwargs": {"thinking": true}})"),
      kThink);
  EXPECT_THROW(
      mode(R"({"thinking": {"type": "enabled"}, "chat_template_kwargs": {"thinking": false}})"),
      Error);
  EXPECT_THROW(mode(R"({"chat_template_kwargs": {"thinking": "yes"}})"), Error);
  EXPECT_THROW(mode(R"({"thinking": {"type": "on"}})"), Error);
  EXPECT_THROW(mode(R"({"thinking": true})"), Error);
}

// ---- Python JSON ----------------------------------------------------------------------------

// Generated with Python 3.11: json.dumps(json.loads(input), ensure_ascii=False).
const std::pair<const char*, const char*> kPyJsonCases[] = {
    {"{\"a\": 1, \"b\": 1.0, \"c\": -0.0, \"d\": 1e16, \"e\": 1e15, \"f\": 0.0001, \"g\": 0.00001, "
     "\"h\": 123456789.125, \"i\": 1.5e300, \"j\": 5e-324, \"k\": 1.7976931348623157e308}",
     "{\"a\": 1, \"b\": 1.0, \"c\": -0.0, \"d\": 1e+16, \"e\": 1000000000000000.0, \"f\": 0.0001, "
     "\"g\": 1e-05, \"h\": 123456789.125, \"i\": 1.5e+300, \"j\": 5e-324, \"k\": "
     "1.7976931348623157e+308}"},
    {"[9223372036854775807, -9223372036854775808, 18446744073709551615, 0, -0, 1E2, 2.5e-7, 0.1, "
     "100.0, 1e22, 12345678901234567.0]",
     "[9223372036854775807, -9223372036854775808, 18446744073709551615, 0, 0, 100.0, 2.5e-07, 0.1, "
     "100.0, 1e+22, 1.2345678901234568e+16]"},
    {"{\"s\": \"quote\\\" back\\\\ nl\\n cr\\r tab\\t bs\\b ff\\f nul\\u0000 us\\u001f del\\u007f "
     "slash/ \\/ \303\251 \344\270\255\346\226\207 \360\237\230\200 \\u2028 \\u00e9\"}",
     "{\"s\": \"quote\\\" back\\\\ nl\\n cr\\r tab\\t bs\\b ff\\f nul\\u0000 us\\u001f del\177 "
     "slash/ / \303\251 \344\270\255\346\226\207 \360\237\230\200 \342\200\250 \303\251\"}"},
    {"{\"z\": {\"y\": [1, [2, {\"x\": null}], true, false], \"w\": {}}, \"v\": [], \"a\": \"\"}",
     "{\"z\": {\"y\": [1, [2, {\"x\": null}], true, false], \"w\": {}}, \"v\": [], \"a\": \"\"}"},
    {"{\"b\": 2, \"a\": 1, \"b2\": {\"k2\": 1, \"k1\": 2}}",
     "{\"b\": 2, \"a\": 1, \"b2\": {\"k2\": 1, \"k1\": 2}}"},
    {"[0.3, 2.675, 1e-5, 9.999999999999999e22, 1.0000000000000002, 4.35, 123e-20, -1.5, 1e-4, "
     "0.001, 123456789012345678]",
     "[0.3, 2.675, 1e-05, 1e+23, 1.0000000000000002, 4.35, 1.23e-18, -1.5, 0.0001, 0.001, "
     "123456789012345678]"},
    {"{\"nested\":{\"deep\":[[[[{\"k\":\"v\"}]]]]},\"empty_s\":\"\",\"unicode_key_\303\251\":"
     "\"\303\274\"}",
     "{\"nested\": {\"deep\": [[[[{\"k\": \"v\"}]]]]}, \"empty_s\": \"\", "
     "\"unicode_key_\303\251\": \"\303\274\"}"},
};

TEST(PyJson, MatchesPythonJsonDumps) {
  for (const auto& [input, expected] : kPyJsonCases)
    EXPECT_EQ(PyJsonDumps(ParseJsonText(input, "case")), expected) << input;
}

TEST(PyJson, FloatRepr) {
  EXPECT_EQ(PyFloatRepr(1.0), "1.0");
  EXPECT_EQ(PyFloatRepr(-0.0), "-0.0");
  EXPECT_EQ(PyFloatRepr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(PyFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PyFloatRepr(9999999999999998.0), "9999999999999998.0");
  EXPECT_EQ(PyFloatRepr(1e-5), "1e-05");
  EXPECT_EQ(PyFloatRepr(1.5e-7), "1.5e-07");
}

TEST(PyJson, ParseErrorsNameTheSource) {
  try {
    ParseJsonText("{\"a\": ", "request.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("request.json: invalid JSON"));
  }
  EXPECT_THROW(ParseJsonText("[18446744073709551616]", "x"), Error);
  EXPECT_THROW(ParseJsonText("[-9223372036854775809]", "x"), Error);
  EXPECT_NO_THROW(ParseJsonText("[\"18446744073709551616\", 1.8e19]", "x"));
}

// `depth` containers nested alternately as arrays and {"k": ...} objects around 7, built
// without recursion (nlohmann's destructor is iterative too).
ojson DeepValue(int depth) {
  ojson root = ojson::array();
  ojson* cur = &root;
  for (int i = 1; i < depth; ++i) {
    if (cur->is_array()) {
      cur->push_back(i % 2 ? ojson::object() : ojson::array());
      cur = &cur->back();
    } else {
      (*cur)["k"] = i % 2 ? ojson::object() : ojson::array();
      cur = &(*cur)["k"];
    }
  }
  if (cur->is_array()) {
    cur->push_back(7);
  } else {
    (*cur)["k"] = 7;
  }
  return root;
}

// The expected text of DeepValue, written independently as string concatenation.
std::string DeepText(int depth) {
  std::string open, close;
  for (int i = 0; i < depth; ++i) {
    const bool array = i % 2 == 0;
    open += array ? "[" : "{\"k\": ";
    close += array ? "]" : "}";
  }
  std::reverse(close.begin(), close.end());
  return open + "7" + close;
}

// 200,000 levels would need tens of MB of stack written recursively (the probe's request with
// 50,000 killed the server); the dumper keeps its own stack on the heap.
TEST(PyJson, DumpsAnyDepthWithoutRecursion) {
  EXPECT_EQ(PyJsonDumps(DeepValue(3)), "[{\"k\": [7]}]");
  EXPECT_EQ(PyJsonDumps(DeepValue(3)), DeepText(3));
  const int depth = 200000;
  EXPECT_TRUE(PyJsonDumps(DeepValue(depth)) == DeepText(depth));
}

// Parsing is depth-limited at kMaxJsonDepth (the top-level value being depth 0); the error
// names where the nesting went too deep.
TEST(PyJson, ParseRefusesNestingBeyondTheLimit) {
  auto nested = [](int containers, const std::string& leaf) {
    return std::string(containers, '[') + leaf + std::string(containers, ']');
  };
  EXPECT_NO_THROW(ParseJsonText(nested(kMaxJsonDepth + 1, "1"), "x"));
  EXPECT_THROW(ParseJsonText(nested(kMaxJsonDepth + 2, "1"), "x"), JsonTooDeepError);
  std::string deep = "{\"a\": [0, {\"b\": " + nested(50000, "") + "}]}";
  try {
    ParseJsonText(deep, "messages[1].tool_calls[0].function.arguments");
    FAIL();
  } catch (const JsonTooDeepError& e) {
    EXPECT_EQ(e.path(), "a[1].b[0][0][0]...");
    EXPECT_EQ(std::string(e.what()),
              "messages[1].tool_calls[0].function.arguments: invalid JSON: a[1].b[0][0][0]...: "
              "nested deeper than 64 levels");
  }
  // Duplicate keys: the last wins, as in Python.
  EXPECT_EQ(ParseJsonText(R"({"a": 1, "a": 2})", "x")["a"], 2);
}

// A tool call's arguments string nested 50,000 deep: a 400-style Error naming the field.
TEST(ChatEncoding, DeepToolCallArgumentsNameTheField) {
  std::string args = "{\"q\": " + std::string(50000, '[') + std::string(50000, ']') + "}";
  ojson req = {{"messages",
                {{{"role", "user"}, {"content", "hi"}},
                 {{"role", "assistant"},
                  {"content", ""},
                  {"tool_calls",
                   {{{"type", "function"}, {"function", {{"name", "f"}, {"arguments", args}}}}}}},
                 {{"role", "tool"}, {"tool_call_id", "c"}, {"content", "r"}}}}};
  try {
    EncodeChatRequest(req);
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with(
        "messages[1].tool_calls[0].function.arguments: invalid JSON: q[0][0][0][0][0]...: "
        "nested deeper than 64"))
        << e.what();
  }
}

}  // namespace
}  // namespace dsinfer::text
