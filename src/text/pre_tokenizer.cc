#include "text/pre_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"

namespace dsinfer::text {
namespace {

// GPT-2's pattern, used by ByteLevel when `use_regex` is true (HF pre_tokenizers/byte_level.rs).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

[[noreturn]] void Bad(const std::string& what) {
  throw Error("tokenizer.json: pre_tokenizer: " + what);
}

bool Flag(const nlohmann::json& config, const char* name, bool fallback) {
  auto it = config.find(name);
  return it == config.end() || it->is_null() ? fallback : it->get<bool>();
}

// A literal Split pattern as an Oniguruma regex.
std::string EscapeLiteral(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-/#&~ ").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

PreTokenizer::PreTokenizer(const nlohmann::json& config) {
  if (!config.is_null()) Add(config);
}

void PreTokenizer::Add(const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("type")) Bad("entry without \"type\"");
  const std::string type = config["type"].get<std::string>();
  if (byte_level_) Bad("\"" + type + "\" after ByteLevel is not supported");
  if (type == "Sequence") {
    for (const auto& sub : config.at("pretokenizers")) Add(sub);
  } else if (type == "Split") {
    AddSplit(config);
  } else if (type == "ByteLevel") {
    AddByteLevel(config);
  } else {
    Bad("unsupported pre-tokenizer type \"" + type + "\"");
  }
}

void PreTokenizer::AddSplit(const nlohmann::json& config) {
  const auto& pattern = config.at("pattern");
  std::string onig;
  if (pattern.contains("Regex")) {
    onig = pattern["Regex"].get<std::string>();
  } else if (pattern.contains("String")) {
    onig = EscapeLiteral(pattern["String"].get<std::string>());
  } else {
    Bad("Split pattern is neither {\"Regex\": ...} nor {\"String\": ...}");
  }
  const std::string behavior = config.at("behavior").get<std::string>();
  Step step{.regex = std::make_unique<Regex>(onig), .invert = Flag(config, "invert", false)};
  if (behavior == "Removed") {
    step.behavior = Behavior::kRemoved;
  } else if (behavior == "Isolated") {
    step.behavior = Behavior::kIsolated;
  } else if (behavior == "MergedWithPrevious") {
    step.behavior = Behavior::kMergedWithPrevious;
  } else if (behavior == "MergedWithNext") {
    step.behavior = Behavior::kMergedWithNext;
  } else if (behavior == "Contiguous") {
    step.behavior = Behavior::kContiguous;
  } else {
    Bad("unsupported Split behavior \"" + behavior + "\"");
  }
  steps_.push_back(std::move(step));
}

void PreTokenizer::AddByteLevel(const nlohmann::json& config) {
  if (Flag(config, "add_prefix_space", true)) steps_.push_back(Step{});
  if (Flag(config, "use_regex", true))
    steps_.push_back(Step{.regex = std::make_unique<Regex>(kGpt2Pattern)});
  byte_level_ = true;
}

void PreTokenizer::Run(std::string_view text,
                       const std::function<void(std::string_view)>& sink) const {
  RunStep(text, 0, sink);
}

void PreTokenizer::RunStep(std::string_view piece, size_t step,
                           const std::function<void(std::string_view)>& sink) const {
  if (piece.empty()) return;  // HF drops empty splits
  if (step == steps_.size()) return sink(piece);
  const Step& s = steps_[step];
  if (!s.regex) {  // ByteLevel add_prefix_space
    if (piece[0] == ' ') return RunStep(piece, step + 1, sink);
    const std::string spaced = " " + std::string(piece);
    return RunStep(spaced, step + 1, sink);
  }
  // Per-thread, per-depth buffers: a recursion level reuses its own across calls.
  thread_local std::vector<std::vector<std::pair<size_t, size_t>>> spans_by_depth;
  if (spans_by_depth.size() <= step) spans_by_depth.resize(step + 1);
  std::vector<std::pair<size_t, size_t>> spans = std::move(spans_by_depth[step]);
  spans.clear();
  SplitPiece(s, piece, spans);
  for (auto [b, e] : spans) RunStep(piece.substr(b, e - b), step + 1, sink);
  spans_by_depth[step] = std::move(spans);
}

// HF NormalizedString::split: the matches and the gaps between them, flagged, then combined
// according to the behaviour.
void PreTokenizer::SplitPiece(const Step& step, std::string_view piece,
                              std::vector<std::pair<size_t, size_t>>& spans) const {
  struct Part {
    size_t b, e;
    bool is_match;
  };
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  thread_local std::vector<Part> parts;
  step.regex->FindAll(piece, matches);
  parts.clear();
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (prev != b) parts.push_back({prev, b, step.invert});
    parts.push_back({b, e, !step.invert});
    prev = e;
  }
  if (prev != piece.size()) parts.push_back({prev, piece.size(), step.invert});
  bool previous_match = false;
  switch (step.behavior) {
    case Behavior::kIsolated:
      for (const Part& p : parts) spans.emplace_back(p.b, p.e);
      break;
    case Behavior::kRemoved:
      for (const Part& p : parts)
        if (!p.is_match) spans.emplace_back(p.b, p.e);
      break;
    case Behavior::kContiguous:
      for (const Part& p : parts) {
        if (p.is_match == previous_match && !spans.empty()) {
          spans.back().second = p.e;
        } else {
          spans.emplace_back(p.b, p.e);
        }
        previous_match = p.is_match;
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const Part& p : parts) {
        if (p.is_match && !previous_match && !spans.empty()) {
          spans.back().second = p.e;
        } else {
          spans.emplace_back(p.b, p.e);
        }
        previous_match = p.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (size_t k = parts.size(); k-- > 0;) {
        const Part& p = parts[k];
        if (p.is_match && !previous_match && !spans.empty()) {
          spans.back().first = p.b;
        } else {
          spans.emplace_back(p.b, p.e);
        }
        previous_match = p.is_match;
      }
      std::reverse(spans.begin(), spans.end());
      break;
  }
}

}  // namespace dsinfer::text
