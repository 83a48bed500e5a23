// Shared helpers of the chat encoding / completion parser tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "text/chat_encoding.h"
#include "text/completion_parser.h"
#include "text/py_json.h"

namespace dsinfer::text::chat_testing {

inline constexpr ThinkingMode kChat = ThinkingMode::kChat;
inline constexpr ThinkingMode kThink = ThinkingMode::kThinking;

using ojson = nlohmann::ordered_json;

inline const std::string kBos = "<｜begin▁of▁sentence｜>";
inline const std::string kEos = "<｜end▁of▁sentence｜>";
inline const std::string kUser = "<｜User｜>";
inline const std::string kAsst = "<｜Assistant｜>";

inline std::string ReadFileOrFail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return {};
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string InRepoFixtureDir() { return DSINFER_SOURCE_DIR "/tests/golden/chat_encoding/"; }

struct Fixture {
  ojson input;         // {"tools": [...], "messages": [...]}
  std::string output;  // the prompt, without the file's final newline
};

// DeepSeek's golden fixture. test_output.txt ends with EOS plus one newline that the encoder
// does not write (a text-file convention); it is checked and removed here.
inline Fixture LoadFixture(const std::string& dir = InRepoFixtureDir()) {
  Fixture f;
  f.input = ojson::parse(ReadFileOrFail(dir + "test_input.json"));
  f.output = ReadFileOrFail(dir + "test_output.txt");
  EXPECT_TRUE(f.output.ends_with(kEos + "\n")) << "unexpected end of test_output.txt";
  if (!f.output.empty()) f.output.pop_back();
  return f;
}

// The fixed TOOLS block text, cut from the golden output (an independent copy of the template).
inline std::string ToolsHeadFromFixture() {
  std::string out = LoadFixture().output;
  size_t a = out.find("## Tools\n");
  size_t b = out.find("<functions>\n");
  EXPECT_NE(a, std::string::npos);
  EXPECT_NE(b, std::string::npos);
  return out.substr(a, b + 12 - a);
}

// One assistant turn of the golden conversation: the text the model generated after its
// generation prompt ("<｜Assistant｜><think>", "</function_results>\n\n<think>", or the same with
// "</think>"; turns before the last user parse in chat mode), and the fixture's message.
struct GoldenTurn {
  std::string generated;
  bool thinking = false;
  const ojson* message = nullptr;
};

inline std::vector<GoldenTurn> GoldenAssistantTurns(const Fixture& f) {
  std::vector<const ojson*> assistants;
  for (const ojson& m : f.input["messages"])
    if (m["role"] == "assistant") assistants.push_back(&m);
  std::vector<GoldenTurn> turns;
  size_t turn_start = 0;
  for (size_t eos = f.output.find(kEos); eos != std::string::npos;
       eos = f.output.find(kEos, turn_start)) {
    std::string chunk = f.output.substr(turn_start, eos + kEos.size() - turn_start);
    turn_start = eos + kEos.size();
    GoldenTurn t;
    size_t start = 0;
    for (const std::string& prompt :
         {kAsst + "<think>", kAsst + "</think>", std::string("</function_results>\n\n<think>"),
          std::string("</function_results>\n\n</think>")}) {
      size_t at = chunk.rfind(prompt);
      if (at != std::string::npos && at + prompt.size() > start) {
        start = at + prompt.size();
        t.thinking = prompt.ends_with("<think>");
      }
    }
    t.generated = chunk.substr(start);
    if (turns.size() < assistants.size()) t.message = assistants[turns.size()];
    turns.push_back(std::move(t));
  }
  EXPECT_EQ(turns.size(), assistants.size()) << "assistant turns in the golden prompt";
  return turns;
}

// `p` is the message `m` (an OpenAI-style assistant message: content, reasoning_content,
// tool_calls) as the parser must return it in `mode` (reasoning only when thinking).
inline void ExpectMessage(const ParsedCompletion& p, const ojson& m, ThinkingMode mode) {
  EXPECT_EQ(p.content, m.value("content", ""));
  EXPECT_EQ(p.reasoning_content,
            mode == ThinkingMode::kThinking ? m.value("reasoning_content", "") : "");
  const ojson& calls = m.contains("tool_calls") ? m["tool_calls"] : ojson::array();
  ASSERT_EQ(p.tool_calls.size(), calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(p.tool_calls[i].name, calls[i]["function"]["name"]);
    std::string args = calls[i]["function"]["arguments"];
    EXPECT_EQ(p.tool_calls[i].arguments, PyJsonDumps(ojson::parse(args)));
  }
}

}  // namespace dsinfer::text::chat_testing
