// `dsinfer tokenize` / `dsinfer detokenize`: the model's tokenizer on stdin.
//
//   dsinfer tokenize   [--model DIR | --tokenizer FILE] [--lines] < text    → [id, ...]
//   dsinfer detokenize [--model DIR | --tokenizer FILE] [--lines] < ids     → text
//
// With neither --model nor --tokenizer the default model is used (generated on first use, see
// cli/model_dir.h). Without --lines the whole input is one text (tokenize) or one JSON array
// (detokenize); with
// --lines each '\n'-terminated line is one (the '\n' is not part of it), one output per line.
// Ids are those of HF `encode(text, add_special_tokens=False)`: no BOS is added.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "text/tokenizer.h"

namespace dsinfer::cli {
namespace {

struct TokenizeOptions {
  std::string model_dir;
  std::string tokenizer_file;
  bool lines = false;
};

// `--tokenizer FILE`, else the model directory's tokenizer, loaded as every text command does.
text::Tokenizer LoadTokenizer(const TokenizeOptions& o) {
  if (!o.tokenizer_file.empty()) return text::Tokenizer::FromFile(o.tokenizer_file);
  std::optional<std::string> model;
  if (!o.model_dir.empty()) model = o.model_dir;
  return text::Tokenizer::ForModel(ResolveModelDir(model));
}

std::string ReadStdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

// Splits at '\n'; a final line without '\n' counts, an empty remainder after the last '\n' not.
std::vector<std::string_view> Lines(std::string_view all) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < all.size()) {
    size_t nl = all.find('\n', start);
    if (nl == std::string_view::npos) nl = all.size();
    out.push_back(all.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::string IdsJson(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s + "]";
}

int RunTokenize(const TokenizeOptions& o) {
  const auto tok = LoadTokenizer(o);
  const std::string input = ReadStdin();
  std::string out;
  if (o.lines) {
    for (std::string_view line : Lines(input)) out += IdsJson(tok.Encode(line)) + "\n";
  } else {
    out = IdsJson(tok.Encode(input)) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

std::vector<int32_t> ParseIds(std::string_view json_text, size_t line_no) {
  const std::string where = line_no ? "line " + std::to_string(line_no) : "input";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("detokenize: " + where + " is not JSON: " + e.what());
  }
  if (!j.is_array()) throw Error("detokenize: " + where + " is not a JSON array of ids");
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      throw Error("detokenize: " + where + ": " + v.dump() + " is not a token id");
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

int RunDetokenize(const TokenizeOptions& o) {
  const auto tok = LoadTokenizer(o);
  const std::string input = ReadStdin();
  std::string out;
  if (o.lines) {
    size_t n = 0;
    for (std::string_view line : Lines(input)) out += tok.Decode(ParseIds(line, ++n)) + "\n";
  } else {
    out = tok.Decode(ParseIds(input, 0));
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

RunFn AddCommand(CLI::App& app, const char* name, const char* help, bool encode) {
  auto* sub = app.add_subcommand(name, help);
  auto o = std::make_shared<TokenizeOptions>();
  auto* model = sub->add_option(
      "--model", o->model_dir,
      "model directory (uses DIR/tokenizer.json) or GGUF file; default: the default model");
  sub->add_option("--tokenizer", o->tokenizer_file, "tokenizer.json file")->excludes(model);
  sub->add_flag("--lines", o->lines, "one input per line, one output per line");
  return [o, encode] { return encode ? RunTokenize(*o) : RunDetokenize(*o); };
}

CommandRegistrar tokenize_registrar("tokenize", [](CLI::App& app) {
  return AddCommand(app, "tokenize", "text on stdin → token ids (JSON array)", /*encode=*/true);
});
CommandRegistrar detokenize_registrar("detokenize", [](CLI::App& app) {
  return AddCommand(app, "detokenize", "token ids (JSON array) on stdin → text", /*encode=*/false);
});

}  // namespace
}  // namespace dsinfer::cli
