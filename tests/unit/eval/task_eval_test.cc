// eval/task_eval.h without a model: the JSONL readers (fields, defaults, errors naming
// file:line), the answer extraction (completion parser + whitespace strip) and the tally.
#include "eval/task_eval.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "base/error.h"
#include "tests/unit/error_of.h"

namespace dsinfer::eval {
namespace {

using text::ThinkingMode;

// Files written by a test, removed at exit.
struct TempFiles {
  ~TempFiles() {
    for (const std::string& p : paths) std::filesystem::remove(p);
  }
  std::vector<std::string> paths;
};
TempFiles temp_files;

std::string WriteFile(const std::string& name, const std::string& body) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("dsinfer_eval_" + std::to_string(::getpid()) + "_" + name))
                               .string();
  std::ofstream(path) << body;
  temp_files.paths.push_back(path);
  return path;
}

TEST(TaskEvalTest, StripAndAnswer) {
  EXPECT_EQ(StripWhitespace(" \t\n 42 \r\n"), "42");
  EXPECT_EQ(StripWhitespace("  "), "");
  EXPECT_EQ(StripWhitespace("a b"), "a b");
  EXPECT_EQ(AnswerOf(" 71432\n", ThinkingMode::kChat), "71432");
  EXPECT_EQ(AnswerOf("the sum is 4</think> 4 ", ThinkingMode::kThinking), "4");
  EXPECT_EQ(AnswerOf("still thinking", ThinkingMode::kThinking), "");  // cut short: no content
  EXPECT_EQ(AnswerOf("7<｜end▁of▁sentence｜>", ThinkingMode::kChat), "7");
}

TEST(TaskEvalTest, ReadsTasksWithDefaultsAndLimit) {
  const std::string path = WriteFile(
      "ok.jsonl",
      R"({"messages": [{"role": "user", "content": "a"}], "answer": "1"})"
      "\n\n"
      R"({"messages": [{"role": "user", "content": "b"}], "answer": "2", "thinking": true, "kind": "k"})"
      "\n"
      R"({"messages": [{"role": "user", "content": "c"}], "answer": "3"})"
      "\n");
  const std::vector<EvalTask> tasks = ReadTaskFile(path);
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].line, 1);
  EXPECT_EQ(tasks[0].kind, "default");
  EXPECT_EQ(tasks[0].mode, ThinkingMode::kChat);
  EXPECT_EQ(tasks[1].line, 3);
  EXPECT_EQ(tasks[1].kind, "k");
  EXPECT_EQ(tasks[1].mode, ThinkingMode::kThinking);
  EXPECT_EQ(tasks[1].answer, "2");
  EXPECT_EQ(tasks[1].messages[0]["content"], "b");
  EXPECT_EQ(ReadTaskFile(path, /*limit=*/2).size(), 2u);
}

TEST(TaskEvalTest, BadTaskLinesNameFileLineAndField) {
  const std::string good = R"({"messages": [{"role": "user", "content": "a"}], "answer": "1"})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{oops", ":2: invalid JSON"},
      {R"({"answer": "1"})", R"(:2: missing "messages")"},
      {R"({"messages": {}, "answer": "1"})", R"(:2: "messages" must be a non-empty array)"},
      {R"({"messages": [{"role": "user", "content": "a"}]})", R"(:2: missing "answer")"},
      {R"({"messages": [{"role": "user", "content": "a"}], "answer": null})",
       R"(:2: "answer" must be a string, got null)"},
      {R"({"messages": [{"role": "user", "content": "a"}], "answer": "1", "kind": 3})",
       R"(:2: "kind" must be a non-empty string)"},
      {R"({"messages": [{"role": "user", "content": "a"}], "answer": "1", "answer": "2"})",
       ":2: duplicate key"},
      {"\"text\"", ":2: expected a JSON object, got string"},
  };
  for (const auto& [line, needle] : cases) {
    const std::string path = WriteFile("bad.jsonl", good + "\n" + line + "\n");
    EXPECT_NE(ErrorOf([&] { ReadTaskFile(path); }).find(path + needle), std::string::npos)
        << line << " -> " << ErrorOf([&] { ReadTaskFile(path); });
  }
  const std::string empty = WriteFile("empty.jsonl", "\n \n");
  EXPECT_NE(ErrorOf([&] { ReadTaskFile(empty); }).find("no entries"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ReadTaskFile("/nonexistent/t.jsonl"); }).find("cannot open"),
            std::string::npos);
}

TEST(TaskEvalTest, ReadsTextAndIds) {
  const std::string path = WriteFile("text.jsonl", R"({"text": "hello"})"
                                                   "\n"
                                                   R"({"ids": [0, 5, 1]})"
                                                   "\n");
  const std::vector<TextDocument> docs = ReadTextFile(path);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "hello");
  EXPECT_FALSE(docs[0].ids.has_value());
  EXPECT_EQ(docs[1].ids, (std::vector<int32_t>{0, 5, 1}));
  for (const auto& [line, needle] :
       std::vector<std::pair<std::string, std::string>>{{R"({"ids": [3]})", "at least 2"},
                                                        {R"({"ids": [3, -1]})", "holds -1"},
                                                        {R"({"text": 3})", "must be a string"},
                                                        {R"({"other": 3})", "exactly one of"}}) {
    const std::string bad = WriteFile("badtext.jsonl", line + "\n");
    EXPECT_NE(ErrorOf([&] { ReadTextFile(bad); }).find(bad + ":1: "), std::string::npos) << line;
    EXPECT_NE(ErrorOf([&] { ReadTextFile(bad); }).find(needle), std::string::npos) << line;
  }
}

TEST(TaskEvalTest, Tally) {
  Tally t;
  t.Add(true, 10);
  t.Add(false, 4);
  t.Add(true, 7);
  EXPECT_EQ(t.n, 3);
  EXPECT_EQ(t.correct, 2);
  EXPECT_DOUBLE_EQ(t.Accuracy(), 2.0 / 3);
  EXPECT_EQ(t.prompt_min, 4);
  EXPECT_EQ(t.prompt_max, 10);
  EXPECT_DOUBLE_EQ(t.PromptMean(), 7.0);
  Tally u;
  u.Add(false, 12);
  u.Merge(t);
  u.Merge(Tally{});
  EXPECT_EQ(u.n, 4);
  EXPECT_EQ(u.correct, 2);
  EXPECT_EQ(u.prompt_min, 4);
  EXPECT_EQ(u.prompt_max, 12);
  EXPECT_DOUBLE_EQ(u.PromptMean(), 33.0 / 4);
  Tally v;
  v.Merge(t);
  EXPECT_EQ(v.prompt_min, 4);
}

}  // namespace
}  // namespace dsinfer::eval
