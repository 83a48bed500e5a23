// Tokenizer::FromGguf: a GGUF file's tokenizer (the `tokenizer.ggml.*` keys) turned
// back into the tokenizer.json structure the HF-exact tokenizer reads.
//
// llama.cpp's converter (`_set_vocab_gpt2`) writes a byte-level BPE vocabulary as
//   tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre = "deepseek-v3" (the pre-tokenizer's name),
//   tokenizer.ggml.tokens[id] (byte-level strings; "[PADn]" for ids without a token),
//   tokenizer.ggml.token_type[id] (1 normal, 3 control = HF special added token,
//   4 user-defined = HF non-special added token, 5 unused), tokenizer.ggml.merges ("a b", by
//   rank), tokenizer.ggml.bos_token_id / eos_token_id.
// The pre-tokenizer is not stored, only its name: "deepseek-v3" is DeepSeek-V3's split sequence
// (written below as tokenizer.json states it); other names are refused by name.
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "format/gguf.h"
#include "format/gguf_checkpoint.h"
#include "text/tokenizer.h"

namespace dsinfer::text {
namespace {

// DeepSeek-V3's pre_tokenizer (tokenizer.json of deepseek-ai/DeepSeek-V3 and V3.2).
constexpr const char* kDeepseekV3Pre = R"JSON({"type": "Sequence", "pretokenizers": [
 {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
 {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})JSON";

constexpr int kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

[[noreturn]] void Bad(const std::string& path, const std::string& key, const std::string& what) {
  throw Error(path + ": key '" + key + "' " + what);
}

const GgufValue& Need(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.FindKey(key);
  if (!v) Bad(f.path(), key, "is missing: the file has no tokenizer dsinfer can use");
  return *v;
}

const GgufValue& NeedArray(const GgufFile& f, const std::string& key, GgufType elem) {
  const GgufValue& v = Need(f, key);
  if (v.type != GgufType::kArray || v.elem_type != elem)
    Bad(f.path(), key, "is not an array of " + std::string(GgufTypeName(elem)));
  return v;
}

std::string NeedString(const GgufFile& f, const std::string& key) {
  const GgufValue& v = Need(f, key);
  if (v.type != GgufType::kString) Bad(f.path(), key, "is not a string");
  return v.str;
}

}  // namespace

Tokenizer Tokenizer::FromGguf(const std::string& path) {
  const GgufFile f = GgufFile::Open(GgufSplitPaths(path).front());
  const std::string model = NeedString(f, "tokenizer.ggml.model");
  if (model != "gpt2")
    Bad(f.path(), "tokenizer.ggml.model",
        "= '" + model + "': only 'gpt2' (byte-level BPE) is supported");
  const std::string pre = NeedString(f, "tokenizer.ggml.pre");
  if (pre != "deepseek-v3")
    Bad(f.path(), "tokenizer.ggml.pre", "= '" + pre + "': only 'deepseek-v3' is supported");
  const GgufValue& tokens = NeedArray(f, "tokenizer.ggml.tokens", GgufType::kString);
  const GgufValue& types = NeedArray(f, "tokenizer.ggml.token_type", GgufType::kI32);
  const GgufValue& merges = NeedArray(f, "tokenizer.ggml.merges", GgufType::kString);
  if (types.count != tokens.count)
    Bad(f.path(), "tokenizer.ggml.token_type",
        "has " + std::to_string(types.count) + " entries for " + std::to_string(tokens.count) +
            " tokens");
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (uint64_t id = 0; id < tokens.count; ++id) {
    const int64_t type = types.At(id).i;
    const std::string& tok = tokens.strings[id];
    if (type == kUnused) continue;
    if (type != kNormal && type != kControl && type != kUserDefined)
      Bad(f.path(), "tokenizer.ggml.token_type",
          std::string("[")
              .append(std::to_string(id))
              .append("] = ")
              .append(std::to_string(type))
              .append(" is not supported (1, 3, 4, 5)"));
    if (vocab.contains(tok))
      Bad(f.path(), "tokenizer.ggml.tokens",
          "has \"" + tok + "\" twice (ids " + std::to_string(vocab[tok].get<int64_t>()) + " and " +
              std::to_string(id) + ")");
    // Added tokens are split off before BPE, so also listing them in the BPE vocabulary changes
    // no id (merges never produce them) and keeps HF's id rule (an added token already in the
    // vocabulary keeps its id) satisfied.
    vocab[tok] = id;
    if (type == kControl || type == kUserDefined)
      added.push_back({{"id", id},
                       {"content", tok},
                       {"special", type == kControl},
                       {"normalized", type != kControl},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"single_word", false}});
  }
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}}},
      {"pre_tokenizer", nlohmann::json::parse(kDeepseekV3Pre)},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", std::move(vocab)},
        {"merges", merges.strings},
        {"byte_fallback", false}}}};
  nlohmann::json config = nlohmann::json::object();
  for (auto [key, field] : {std::pair{"tokenizer.ggml.bos_token_id", "bos_token"},
                            std::pair{"tokenizer.ggml.eos_token_id", "eos_token"}}) {
    const GgufValue* v = f.FindKey(key);
    if (!v) continue;
    const uint64_t id =
        v->type == GgufType::kI32 || v->type == GgufType::kI64 ? static_cast<uint64_t>(v->i) : v->u;
    if (id >= tokens.count) Bad(f.path(), key, "= " + std::to_string(id) + " is not a token id");
    config[field] = tokens.strings[id];
  }
  return FromJsonValue(j, config.dump(), f.path());
}


}  // namespace dsinfer::text
