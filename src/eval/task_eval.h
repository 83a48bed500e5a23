// `dsinfer eval`'s files and figures: exact-match tasks in the V3.2 chat format and held-out
// text for perplexity, read from JSONL (errors name file:line and the field), run on a model
// through score.h, and tallied per file and per task kind.
//
// Task line:  {"messages": [{"role": "user", "content": "..."}], "thinking": false,
//              "answer": "71432", "kind": "retrieval"}
//   `messages` (required) is encoded with the V3.2 chat encoding (text/chat_encoding.h) in
//   thinking or chat mode (`thinking`, default false); the model continues greedily; its text is
//   split by the completion parser (text/completion_parser.h) and the task is correct when the
//   content with surrounding whitespace stripped equals `answer` (required string). `kind`
//   (optional string, default "default") groups the tally. Other keys are ignored.
// Text line:  {"text": "..."}  → BOS + tokens + EOS, scored by teacher forcing; or
//             {"ids": [0, 5, ...]}, token ids scored as given (at least 2, no BOS/EOS added).
// Stateless functions; the `Model` they use is not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "eval/score.h"
#include "text/chat_encoding.h"
#include "text/tokenizer.h"

namespace dsinfer::eval {

struct EvalTask {
  int64_t line = 0;  // 1-based line in its file
  nlohmann::ordered_json messages;
  text::ThinkingMode mode = text::ThinkingMode::kChat;
  std::string answer;
  std::string kind = "default";
};

// Reads a task file (blank lines skipped); at most `limit` tasks if limit > 0. Error
// "<path>:<line>: <what>" for a line that is not a JSON object of the format above, or for a
// file without tasks.
std::vector<EvalTask> ReadTaskFile(const std::string& path, int64_t limit = 0);

struct TextDocument {
  int64_t line = 0;  // 1-based line in its file
  std::string text;
  std::optional<std::vector<int32_t>> ids;  // pre-tokenized
};

// Reads a text file of {"text": "..."} or {"ids": [...]} lines, same rules.
std::vector<TextDocument> ReadTextFile(const std::string& path, int64_t limit = 0);

// `s` without leading and trailing ASCII whitespace (space, \t, \n, \v, \f, \r).
std::string_view StripWhitespace(std::string_view s);

// The content of a generated completion (text after the prompt, EOS excluded or not), split by
// the V3.2 completion parser in `mode`, whitespace-stripped.
std::string AnswerOf(std::string_view completion, text::ThinkingMode mode);

struct Tally {
  int64_t n = 0, correct = 0;
  int64_t prompt_min = 0, prompt_max = 0, prompt_sum = 0;  // prompt tokens
  void Add(bool ok, int64_t prompt_tokens);
  void Merge(const Tally& other);
  double Accuracy() const { return n ? static_cast<double>(correct) / n : 0; }
  double PromptMean() const { return n ? static_cast<double>(prompt_sum) / n : 0; }
};

struct TaskOutcome {
  int64_t line = 0;
  std::string kind;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  bool stopped = false;  // ended with EOS (else cut at max_new)
  std::string expected, got;  // got: the stripped content
  bool correct = false;
};

struct TaskFileResult {
  std::string file;
  Tally all;
  std::map<std::string, Tally> kinds;
  std::vector<TaskOutcome> outcomes;  // in file order
  DecodeStats stats;
};

// Encodes, generates and tallies `tasks` (from `file`, named in errors as file:line: a chat
// encoding error, or a prompt + max_new beyond the model's context).
TaskFileResult EvalTasks(Model& model, const text::Tokenizer& tokenizer,
                         const SequenceOptions& options, const std::string& file,
                         const std::vector<EvalTask>& tasks, const GreedyOptions& greedy,
                         const ProgressFn& progress = {});

// BOS + Encode(text) + EOS of each text document (ids from the model config); pre-tokenized
// ones as given. Error "<file>:<line>: ..." for ids outside the model's vocabulary.
std::vector<std::vector<int32_t>> TokenizeDocuments(const text::Tokenizer& tokenizer,
                                                    const ModelConfig& config,
                                                    const std::string& file,
                                                    const std::vector<TextDocument>& docs);

}  // namespace dsinfer::eval
