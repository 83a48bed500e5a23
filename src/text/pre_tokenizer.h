// Pre-tokenization of HF `tokenizer.json`: the `pre_tokenizer` tree flattened into a list of
// steps applied in order to every piece (Split with its behaviour and `invert`; ByteLevel as an
// optional prefix space plus, with `use_regex`, GPT-2's split). The ByteLevel byte→char mapping
// itself is left to the BPE model, which works on raw bytes. Immutable: thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string_view>
#include <vector>

#include "text/regex.h"

namespace dsinfer::text {

class PreTokenizer {
 public:
  // `config` is the "pre_tokenizer" value (may be null).
  explicit PreTokenizer(const nlohmann::json& config);

  // True if the chain contains ByteLevel (then the model sees bytes).
  bool byte_level() const { return byte_level_; }

  // Calls `sink` with every final piece of `text`, in order.
  void Run(std::string_view text, const std::function<void(std::string_view)>& sink) const;

 private:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    std::unique_ptr<Regex> regex;  // null: the ByteLevel prefix-space step
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
  };

  void Add(const nlohmann::json& config);
  void AddSplit(const nlohmann::json& config);
  void AddByteLevel(const nlohmann::json& config);
  void RunStep(std::string_view piece, size_t step,
               const std::function<void(std::string_view)>& sink) const;
  void SplitPiece(const Step& step, std::string_view piece,
                  std::vector<std::pair<size_t, size_t>>& spans) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace dsinfer::text
