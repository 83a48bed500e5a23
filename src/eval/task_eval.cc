#include "eval/task_eval.h"

#include <algorithm>
#include <climits>
#include <fstream>

#include "base/error.h"
#include "format/json_util.h"
#include "text/completion_parser.h"

namespace dsinfer::eval {
namespace {

// Calls `on_line(line_number, object)` for every non-blank line of a JSONL file; errors are
// "<path>:<line>: ...". Stops after `limit` objects if limit > 0. Returns the objects read.
template <class OnLine>
int64_t ForEachJsonLine(const std::string& path, int64_t limit, OnLine&& on_line) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::string line;
  int64_t number = 0, count = 0;
  while ((limit <= 0 || count < limit) && std::getline(in, line)) {
    ++number;
    if (StripWhitespace(line).empty()) continue;
    const std::string where = path + ":" + std::to_string(number);
    const auto j = ParseJsonStrict<nlohmann::ordered_json>(line, where);
    if (!j.is_object()) throw Error(where + ": expected a JSON object, got " + j.type_name());
    on_line(number, where, j);
    ++count;
  }
  if (count == 0) throw Error(path + ": no entries (expected one JSON object per line)");
  return count;
}

EvalTask ParseTask(int64_t number, const std::string& where, const nlohmann::ordered_json& j) {
  EvalTask t;
  t.line = number;
  auto it = j.find("messages");
  if (it == j.end()) throw Error(where + ": missing \"messages\"");
  if (!it->is_array() || it->empty())
    throw Error(where + ": \"messages\" must be a non-empty array of chat messages");
  t.messages = *it;
  it = j.find("answer");
  if (it == j.end()) throw Error(where + ": missing \"answer\"");
  if (!it->is_string())
    throw Error(where + ": \"answer\" must be a string, got " + std::string(it->type_name()));
  t.answer = it->get<std::string>();
  it = j.find("thinking");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) throw Error(where + ": \"thinking\" must be true or false");
    t.mode = it->get<bool>() ? text::ThinkingMode::kThinking : text::ThinkingMode::kChat;
  }
  it = j.find("kind");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().empty())
      throw Error(where + ": \"kind\" must be a non-empty string");
    t.kind = it->get<std::string>();
  }
  return t;
}

}  // namespace

std::string_view StripWhitespace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) + 1 - b);
}

std::vector<EvalTask> ReadTaskFile(const std::string& path, int64_t limit) {
  std::vector<EvalTask> tasks;
  ForEachJsonLine(path, limit, [&](int64_t number, const std::string& where,
                                   const nlohmann::ordered_json& j) {
    tasks.push_back(ParseTask(number, where, j));
  });
  return tasks;
}

std::vector<TextDocument> ReadTextFile(const std::string& path, int64_t limit) {
  std::vector<TextDocument> docs;
  ForEachJsonLine(path, limit, [&](int64_t number, const std::string& where,
                                   const nlohmann::ordered_json& j) {
    TextDocument d;
    d.line = number;
    auto text = j.find("text"), ids = j.find("ids");
    if ((text == j.end()) == (ids == j.end()))
      throw Error(where + ": expected exactly one of \"text\" and \"ids\"");
    if (text != j.end()) {
      if (!text->is_string())
        throw Error(where + ": \"text\" must be a string, got " + std::string(text->type_name()));
      d.text = text->get<std::string>();
    } else {
      if (!ids->is_array() || ids->size() < 2)
        throw Error(where + ": \"ids\" must be an array of at least 2 token ids");
      d.ids.emplace();
      for (const auto& id : *ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
          throw Error(where + ": \"ids\" holds " + id.dump() + ", not a token id");
        d.ids->push_back(id.get<int32_t>());
      }
    }
    docs.push_back(std::move(d));
  });
  return docs;
}

std::string AnswerOf(std::string_view completion, text::ThinkingMode mode) {
  return std::string(StripWhitespace(text::ParseCompletion(completion, mode).content));
}

void Tally::Add(bool ok, int64_t prompt_tokens) {
  prompt_min = n ? std::min(prompt_min, prompt_tokens) : prompt_tokens;
  prompt_max = n ? std::max(prompt_max, prompt_tokens) : prompt_tokens;
  prompt_sum += prompt_tokens;
  ++n;
  correct += ok;
}

void Tally::Merge(const Tally& o) {
  if (o.n == 0) return;
  prompt_min = n ? std::min(prompt_min, o.prompt_min) : o.prompt_min;
  prompt_max = n ? std::max(prompt_max, o.prompt_max) : o.prompt_max;
  prompt_sum += o.prompt_sum;
  n += o.n;
  correct += o.correct;
}

TaskFileResult EvalTasks(Model& model, const text::Tokenizer& tokenizer,
                         const SequenceOptions& options, const std::string& file,
                         const std::vector<EvalTask>& tasks, const GreedyOptions& greedy,
                         const ProgressFn& progress) {
  const ModelConfig& c = model.config();
  std::vector<std::vector<int32_t>> prompts;
  for (const EvalTask& t : tasks) {
    const std::string where = file + ":" + std::to_string(t.line);
    std::string text;
    try {
      text = text::EncodeMessages(t.messages, {.thinking_mode = t.mode});
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    prompts.push_back(tokenizer.Encode(text));
    const int64_t n = static_cast<int64_t>(prompts.back().size());
    if (n + greedy.max_new > c.max_position_embeddings)
      throw Error(where + ": prompt (" + std::to_string(n) + " tokens) + --max-new " +
                  std::to_string(greedy.max_new) + " exceed max_position_embeddings (" +
                  std::to_string(c.max_position_embeddings) + ")");
    for (int32_t id : prompts.back())
      if (id >= c.vocab_size)
        throw Error(where + ": the tokenizer gives id " + std::to_string(id) +
                    ", beyond the model's vocab_size (" + std::to_string(c.vocab_size) + ")");
  }
  TaskFileResult r;
  r.file = file;
  const std::vector<std::vector<int32_t>> gens =
      GreedyGenerate(model, options, prompts, greedy, &r.stats, progress);
  for (size_t i = 0; i < tasks.size(); ++i) {
    std::vector<int32_t> ids = gens[i];
    TaskOutcome o;
    o.line = tasks[i].line;
    o.kind = tasks[i].kind;
    o.prompt_tokens = static_cast<int64_t>(prompts[i].size());
    o.generated_tokens = static_cast<int64_t>(ids.size());
    o.stopped = !ids.empty() && ids.back() == greedy.eos;
    if (o.stopped) ids.pop_back();
    o.got = AnswerOf(tokenizer.Decode(ids), tasks[i].mode);
    o.expected = tasks[i].answer;
    o.correct = o.got == o.expected;
    r.all.Add(o.correct, o.prompt_tokens);
    r.kinds[o.kind].Add(o.correct, o.prompt_tokens);
    r.outcomes.push_back(std::move(o));
  }
  return r;
}

std::vector<std::vector<int32_t>> TokenizeDocuments(const text::Tokenizer& tokenizer,
                                                    const ModelConfig& config,
                                                    const std::string& file,
                                                    const std::vector<TextDocument>& docs) {
  std::vector<std::vector<int32_t>> out;
  for (const TextDocument& d : docs) {
    std::vector<int32_t> ids;
    if (d.ids) {
      ids = *d.ids;
    } else {
      ids.push_back(static_cast<int32_t>(config.bos_token_id));
      for (int32_t id : tokenizer.Encode(d.text)) ids.push_back(id);
      ids.push_back(static_cast<int32_t>(config.eos_token_id));
    }
    for (int32_t id : ids)
      if (id >= config.vocab_size)
        throw Error(file + ":" + std::to_string(d.line) + ": token id " + std::to_string(id) +
                    " is beyond the model's vocab_size (" + std::to_string(config.vocab_size) +
                    ")");
    out.push_back(std::move(ids));
  }
  return out;
}

}  // namespace dsinfer::eval
