// Completion parsing (docs/model.md §9.3): assistant turns of DeepSeek's golden prompt parsed back
// to the fixture's message fields, encode → parse round trips, hand-written DSML cases
// (well-formed and malformed), and the streaming parser against the one-shot parser for every
// split of the input.
#include "text/completion_parser.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/text/chat_test_util.h"
#include "text/chat_encoding.h"
#include "text/py_json.h"

namespace dsinfer::text {
namespace {

using namespace dsinfer::text::chat_testing;  // NOLINT

using chat_testing::kChat;
using chat_testing::kThink;

const std::string kCalls = "\n\n<｜DSML｜function_calls>\n";
const std::string kCallsEnd = "</｜DSML｜function_calls>";

std::string Invoke(const std::string& name, const std::string& params) {
  return "<｜DSML｜invoke name=\"" + name + "\">\n" + params + "\n</｜DSML｜invoke>";
}
std::string Param(const std::string& key, bool is_str, const std::string& value) {
  return "<｜DSML｜parameter name=\"" + key + "\" string=\"" + (is_str ? "true" : "false") + "\">" +
         value + "</｜DSML｜parameter>";
}

std::string Show(const ParsedCompletion& p) {
  ojson calls = ojson::array();
  for (const auto& c : p.tool_calls) calls.push_back({c.id, c.name, c.arguments});
  return ojson{{"reasoning", p.reasoning_content}, {"content", p.content}, {"calls", calls}}.dump();
}

void ExpectParsed(const ParsedCompletion& got, const ParsedCompletion& want) {
  EXPECT_EQ(got.reasoning_content, want.reasoning_content);
  EXPECT_EQ(got.content, want.content);
  EXPECT_TRUE(got.tool_calls == want.tool_calls) << Show(got) << "\nwant " << Show(want);
}

// Feeds `pieces` to a streaming parser and concatenates its events.
ParsedCompletion Stream(const std::vector<std::string>& pieces, ThinkingMode mode) {
  StreamingCompletionParser parser(mode);
  ParsedCompletion out;
  auto absorb = [&out](const std::vector<CompletionEvent>& events) {
    for (const CompletionEvent& e : events) {
      if (e.kind == CompletionEvent::Kind::kReasoning) out.reasoning_content += e.text;
      if (e.kind == CompletionEvent::Kind::kContent) out.content += e.text;
      if (e.kind == CompletionEvent::Kind::kToolCall) out.tool_calls.push_back(e.tool_call);
      EXPECT_TRUE(e.kind == CompletionEvent::Kind::kToolCall || !e.text.empty());
    }
  };
  for (const std::string& p : pieces) absorb(parser.Feed(p));
  absorb(parser.Finish());
  return out;
}

// Streaming equals one-shot for: every 2-piece split, byte-by-byte feeding, and random splits.
void ExpectStreamingMatches(const std::string& text, ThinkingMode mode) {
  ParsedCompletion want = ParseCompletion(text, mode);
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    SCOPED_TRACE("split at byte " + std::to_string(cut));
    ExpectParsed(Stream({text.substr(0, cut), text.substr(cut)}, mode), want);
    if (::testing::Test::HasFailure()) return;
  }
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  ExpectParsed(Stream(bytes, mode), want);
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      size_t n = std::uniform_int_distribution<size_t>(1, 12)(rng);
      pieces.push_back(text.substr(i, n));
      i += n;
    }
    ExpectParsed(Stream(pieces, mode), want);
  }
}

// ---- well-formed completions --------------------------------------------------------------

TEST(CompletionParser, ContentAndReasoning) {
  ExpectParsed(ParseCompletion("Hello" + kEos, kChat), {"", "Hello", {}});
  ExpectParsed(ParseCompletion("Hello", kChat), {"", "Hello", {}});  // stopped without EOS
  ExpectParsed(ParseCompletion("R\n</think>C" + kEos, kThink), {"R\n", "C", {}});
  ExpectParsed(ParseCompletion("still thinking", kThink), {"still thinking", "", {}});
  ExpectParsed(ParseCompletion("R" + kEos, kThink), {"R", "", {}});
  // In chat mode "</think>" is plain content.
  ExpectParsed(ParseCompletion("a</think>b", kChat), {"", "a</think>b", {}});
}

TEST(CompletionParser, ToolCallsWithEveryValueType) {
  std::string text =
      "R</think>Let me look." + kCalls +
      Invoke("search", Param("q", true, "café \"x\"\n2") + "\n" + Param("n", false, "3") + "\n" +
                           Param("opts", false, "{\"deep\": true, \"k\": [1, 2.50]}") + "\n" +
                           Param("flag", false, "false") + "\n" + Param("none", false, "null")) +
      "\n" + Invoke("now", "") + "\n" + kCallsEnd + kEos;
  ParsedCompletion p = ParseCompletion(text, kThink);
  ExpectParsed(
      p,
      {"R",
       "Let me look.",
       {{"call_0", "search",
         // string="false" values are inserted verbatim: 2.50 stays 2.50
         R"({"q": "café \"x\"\n2", "n": 3, "opts": {"deep": true, "k": [1, 2.50]}, "flag": false, "none": null})"},
        {"call_1", "now", "{}"}}});
  ojson msg = ToOpenAiMessage(p, kThink);
  EXPECT_EQ(msg["tool_calls"][0]["function"]["arguments"], p.tool_calls[0].arguments);
  EXPECT_EQ(msg["tool_calls"][1]["type"], "function");
  EXPECT_EQ(msg["reasoning_content"], "R");
  // A caller-provided id generator.
  ParsedCompletion q =
      ParseCompletion(text, kThink, [](size_t i) { return "id" + std::to_string(i * 7); });
  EXPECT_EQ(q.tool_calls[1].id, "id7");
  ExpectStreamingMatches(text, kThink);
}

TEST(CompletionParser, EmptyToolCallBlockAndMissingEos) {
  ExpectParsed(ParseCompletion("C" + kCalls + kCallsEnd, kChat), {"", "C", {}});
  std::string one = kCalls + Invoke("f", Param("a", true, "b")) + "\n" + kCallsEnd;
  ExpectParsed(ParseCompletion(one, kChat), {"", "", {{"call_0", "f", R"({"a": "b"})"}}});
}

// ---- DeepSeek's golden prompt, parsed back --------------------------------------------------

// Each assistant turn of the golden prompt is what the model generated after its generation
// prompt ("<｜Assistant｜><think>" or "</function_results>\n\n<think>" in thinking mode, the same
// with "</think>" for turns before the last user, which parse in chat mode).
TEST(CompletionParser, GoldenAssistantTurnsParseBackToTheirMessages) {
  Fixture f = LoadFixture();
  std::vector<GoldenTurn> turns = GoldenAssistantTurns(f);
  for (size_t n = 0; n < turns.size(); ++n) {
    const GoldenTurn& t = turns[n];
    ASSERT_NE(t.message, nullptr);
    const ojson& m = *t.message;
    ParsedCompletion p = ParseCompletion(t.generated, t.thinking ? kThink : kChat);
    SCOPED_TRACE("assistant turn " + std::to_string(n));
    EXPECT_EQ(p.content, m.value("content", ""));
    EXPECT_EQ(p.reasoning_content, t.thinking ? m.value("reasoning_content", "") : "");
    const ojson& calls = m.contains("tool_calls") ? m["tool_calls"] : ojson::array();
    ASSERT_EQ(p.tool_calls.size(), calls.size());
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(p.tool_calls[i].name, calls[i]["function"]["name"]);
      EXPECT_EQ(p.tool_calls[i].arguments, calls[i]["function"]["arguments"]);
    }
    ExpectStreamingMatches(t.generated, t.thinking ? kThink : kChat);
  }
}

// ---- encode → parse round trips -------------------------------------------------------------

TEST(CompletionParser, EncodeParseRoundTrip) {
  const char* assistants[] = {
      R"({"role": "assistant", "content": "Plain answer.\n\nWith paragraphs.", "reasoning_content": "Think."})",
      R"({"role": "assistant", "reasoning_content": "Need a tool.", "tool_calls": [
          {"type": "function", "function": {"name": "calc", "arguments":
            "{\"expr\": \"1+1 \\\"quoted\\\" </tag>\", \"precision\": 2, \"exact\": true, \"opts\": {\"a\": [1.5, null, \"x\"]}, \"ratio\": 1.0, \"big\": -9223372036854775808}"}},
          {"type": "function", "function": {"name": "noargs", "arguments": "{}"}}]})",
      R"({"role": "assistant", "content": "Before the call.", "reasoning_content": "R", "tool_calls": [
          {"type": "function", "function": {"name": "f", "arguments": "{\"s\": \"中文 😀\"}"}}]})",
      R"({"role": "assistant", "content": "", "reasoning_content": "only reasoning"})",
  };
  for (const char* a : assistants) {
    ojson m = ojson::parse(a);
    ojson msgs = ojson::array({ojson{{"role", "user"}, {"content", "u"}}, m});
    for (ThinkingMode mode : {kThink, kChat}) {
      SCOPED_TRACE(std::string(a) + (mode == kThink ? " thinking" : " chat"));
      std::string prompt = EncodeMessages(msgs, {.thinking_mode = mode});
      std::string gen_prompt =
          kBos + kUser + "u" + kAsst + (mode == kThink ? "<think>" : "</think>");
      ASSERT_TRUE(prompt.starts_with(gen_prompt));
      std::string generated = prompt.substr(gen_prompt.size());
      ParsedCompletion p = ParseCompletion(generated, mode);
      chat_testing::ExpectMessage(p, m, mode);
      ExpectStreamingMatches(generated, mode);
    }
  }
}

// ---- malformed completions: raw text as content, never a failure ----------------------------

TEST(CompletionParser, MalformedDsmlBecomesContent) {
  const std::string good_f = Invoke("f", Param("a", true, "b"));
  struct Case {
    std::string name, text, content;
    size_t n_calls;
  };
  const std::string block_f = kCalls + good_f;
  const std::vector<Case> cases = {
      {"unterminated invoke",
       "C" + kCalls + "<｜DSML｜invoke name=\"f\">\n" + Param("a", true, "b"),
       "C" + kCalls + "<｜DSML｜invoke name=\"f\">\n" + Param("a", true, "b"), 0},
      {"cut after the block marker", "C\n\n<｜DSML｜function_calls", "C\n\n<｜DSML｜function_calls",
       0},
      {"bad string attribute",
       "C" + kCalls +
           Invoke("f", "<｜DSML｜parameter name=\"a\" string=\"maybe\">b</｜DSML｜parameter>") +
           "\n" + kCallsEnd,
       "C" + kCalls +
           Invoke("f", "<｜DSML｜parameter name=\"a\" string=\"maybe\">b</｜DSML｜parameter>") +
           "\n" + kCallsEnd,
       0},
      {"bad name attribute",
       "C" + kCalls + "<｜DSML｜invoke nam=\"f\">\n" + Param("a", true, "b") +
           "\n</｜DSML｜invoke>\n" + kCallsEnd + kEos,
       "C" + kCalls + "<｜DSML｜invoke nam=\"f\">\n" + Param("a", true, "b") +
           "\n</｜DSML｜invoke>\n" + kCallsEnd + kEos,
       0},
      {"no newline after the block tag",
       "C\n\n<｜DSML｜function_calls>" + good_f + "\n" + kCallsEnd,
       "C\n\n<｜DSML｜function_calls>" + good_f + "\n" + kCallsEnd, 0},
      {"string=false value that is not JSON",
       kCalls + Invoke("f", Param("n", false, "three")) + "\n" + kCallsEnd,
       kCalls + Invoke("f", Param("n", false, "three")) + "\n" + kCallsEnd, 0},
      {"duplicate parameter",
       kCalls + Invoke("f", Param("a", true, "1") + "\n" + Param("a", true, "2")) + "\n" +
           kCallsEnd,
       kCalls + Invoke("f", Param("a", true, "1") + "\n" + Param("a", true, "2")) + "\n" +
           kCallsEnd,
       0},
      {"junk between invokes",
       "C" + block_f + "\nJUNK" + Invoke("g", Param("x", false, "1")) + "\n" + kCallsEnd + kEos,
       "C\nJUNK" + Invoke("g", Param("x", false, "1")) + "\n" + kCallsEnd + kEos, 1},
      {"junk after the block", "C" + block_f + "\n" + kCallsEnd + "trailing",
       "C\n" + kCallsEnd + "trailing", 1},
      {"partial EOS after the block", block_f + "\n" + kCallsEnd + "<｜end",
       "\n" + kCallsEnd + "<｜end", 1},
      {"text after EOS after the block", block_f + "\n" + kCallsEnd + kEos + "more", kEos + "more",
       1},
      {"unterminated second invoke", block_f + "\n<｜DSML｜invoke name=\"g\">\n",
       "\n<｜DSML｜invoke name=\"g\">\n", 1},
      {"invoke close without '>'",
       kCalls + "<｜DSML｜invoke name=\"f\">\n" + Param("a", true, "b") + "\n</｜DSML｜invokeX",
       kCalls + "<｜DSML｜invoke name=\"f\">\n" + Param("a", true, "b") + "\n</｜DSML｜invokeX", 0},
      {"junk right after an invoke", kCalls + good_f + "X", "X", 1},
      {"parameter without '<' before its close",
       kCalls + "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" "
                "string=\"true\">b/｜DSML｜parameter>\n</｜DSML｜invoke>",
       kCalls + "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" "
                "string=\"true\">b/｜DSML｜parameter>\n</｜DSML｜invoke>",
       0},
      {"text after EOS", "C" + kEos + "more", "C" + kEos + "more", 0},
      {"special tokens inside content",
       "a" + kBos + "b<think>c<｜DSML｜invoke name=\"f\">" + kUser + kEos,
       "a" + kBos + "b<think>c<｜DSML｜invoke name=\"f\">" + kUser, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ParsedCompletion p = ParseCompletion(c.text, kChat);
    EXPECT_EQ(p.content, c.content);
    EXPECT_EQ(p.reasoning_content, "");
    EXPECT_EQ(p.tool_calls.size(), c.n_calls);
    if (c.n_calls == 1) {
      EXPECT_EQ(p.tool_calls[0].arguments, R"({"a": "b"})");
    }
    ExpectStreamingMatches(c.text, kChat);
    ExpectStreamingMatches("R</think>" + c.text, kThink);
  }
}

TEST(CompletionParser, MalformedThinking) {
  ExpectParsed(ParseCompletion("R" + kEos + "x", kThink), {"R", kEos + "x", {}});
  ExpectParsed(ParseCompletion("R" + kCalls + Invoke("f", "") + "\n" + kCallsEnd, kThink),
               {"R" + kCalls + Invoke("f", "") + "\n" + kCallsEnd, "", {}});  // no </think>
  ExpectParsed(ParseCompletion("a</think>b</think>c", kThink), {"a", "b</think>c", {}});
  for (const std::string& t : {"R" + kEos + "x", "a</think>b</think>c" + kEos, std::string("<")})
    ExpectStreamingMatches(t, kThink);
}

// ---- streaming latency ------------------------------------------------------------------------

std::string Texts(const std::vector<CompletionEvent>& events, CompletionEvent::Kind kind) {
  std::string s;
  for (const CompletionEvent& e : events)
    if (e.kind == kind) s += e.text;
  return s;
}

TEST(StreamingCompletionParser, HoldsBackOnlyPossibleMarkerPrefixes) {
  using K = CompletionEvent::Kind;
  StreamingCompletionParser p(kThink);
  EXPECT_EQ(Texts(p.Feed("abc</thi"), K::kReasoning), "abc");
  EXPECT_EQ(Texts(p.Feed("s is not"), K::kReasoning), "</this is not");
  EXPECT_EQ(Texts(p.Feed(" it</think>Hello"), K::kContent), "Hello");
  EXPECT_EQ(Texts(p.Feed(" wor\n"), K::kContent), " wor");
  EXPECT_EQ(Texts(p.Feed("\nx"), K::kContent), "\n\nx");
  EXPECT_EQ(Texts(p.Feed("<｜end"), K::kContent), "");
  EXPECT_EQ(Texts(p.Feed("less"), K::kContent), "<｜endless");
  std::vector<CompletionEvent> e = p.Feed(kCalls + "<｜DSML｜invoke name=\"f\">\n" +
                                          Param("a", false, "[1]") + "\n</｜DSML｜invoke");
  EXPECT_TRUE(e.empty());
  e = p.Feed(">");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].kind, K::kToolCall);
  EXPECT_EQ(e[0].tool_call.name, "f");
  EXPECT_EQ(e[0].tool_call.arguments, R"({"a": [1]})");
  EXPECT_EQ(e[0].tool_call.id, "call_0");
  EXPECT_TRUE(p.Feed("\n" + kCallsEnd + kEos).empty());
  EXPECT_TRUE(p.Finish().empty());
}

TEST(StreamingCompletionParser, FinishFlushesHeldText) {
  StreamingCompletionParser p(kChat);
  EXPECT_EQ(Texts(p.Feed("abc\n\n<｜DSML｜func"), CompletionEvent::Kind::kContent), "abc");
  EXPECT_EQ(Texts(p.Finish(), CompletionEvent::Kind::kContent), "\n\n<｜DSML｜func");
}

TEST(StreamingCompletionParser, BrokenBlockIsFlushedWithoutWaitingForTheEnd) {
  StreamingCompletionParser p(kChat);
  EXPECT_EQ(Texts(p.Feed("C" + kCalls), CompletionEvent::Kind::kContent), "C");
  EXPECT_EQ(Texts(p.Feed("JUNK"), CompletionEvent::Kind::kContent), kCalls + "JUNK");
  EXPECT_EQ(Texts(p.Feed(kEos), CompletionEvent::Kind::kContent), kEos);  // verbatim from here
}

}  // namespace
}  // namespace dsinfer::text
