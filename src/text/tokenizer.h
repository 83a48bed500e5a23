// Tokenizer: Hugging Face `tokenizer.json` (byte-level BPE, as DeepSeek-V3/V3.2 ship it),
// bit-exact with HF `tokenizers` (the Rust core; checked against its node binding on the corpus
// in tests/text/golden).
//
// `Encode(text)` == HF `encode(text, add_special_tokens=False)`: no BOS/EOS or post-processor
// template is applied; in DeepSeek's chat encoding BOS is text (`<｜begin▁of▁sentence｜>`).
// Pipeline, as in HF: added tokens (non-normalized ones on the raw text, then normalized ones on
// the rest; leftmost-longest; lstrip/rstrip/single_word) → normalizer (only an empty Sequence or
// null) → pre-tokenizers (Split with any behaviour and `invert`, ByteLevel, Sequence) → BPE.
// Components not implemented raise `dsinfer::Error` naming them.
//
// Invalid UTF-8 input: the reference is reached through strings (Rust &str, JS strings), so
// bytes that are not UTF-8 arrive there as U+FFFD, one per maximal subpart (WHATWG decoder).
// `Encode` applies the same replacement first, so it returns the reference's ids for the same
// bytes.
//
// `Decode(ids)` == HF `decode(ids, skip_special_tokens=False)` with the ByteLevel decoder:
// each token maps back to bytes (added tokens with characters outside the ByteLevel alphabet
// pass as their UTF-8 text), the concatenation becomes UTF-8 with U+FFFD per maximal subpart;
// ids outside the vocabulary are skipped, as HF does.
//
// Thread-safety: immutable after construction except an internal word cache (mutex-guarded);
// all const methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsinfer::text {

// A byte range [offset, offset + size) of a text.
struct TextSpan {
  size_t offset = 0;
  size_t size = 0;
  bool operator==(const TextSpan&) const = default;
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = true;
};

class Tokenizer {
 public:
  // Reads `path` (tokenizer.json). BOS/EOS come from `tokenizer_config.json` in the same folder
  // when present (fields `bos_token` / `eos_token`, string or {"content": ...}).
  static Tokenizer FromFile(const std::string& path);
  // The tokenizer of model `dir`: the GGUF keys (`FromGguf`) if it names a .gguf file, else
  // `dir/tokenizer.json` by `FromFile`. Every command
  // that turns text into tokens (`run -p`/`--chat`, `serve`, `eval`, the default job) and
  // `inspect` load it through this call, so they refuse the same directories with the same
  // message: a missing file is an `Error` saying so (commands that take token ids do not read
  // the tokenizer, docs/checkpoint.md), a broken one the parse error naming the file.
  static Tokenizer ForModel(const std::string& dir);
  // `json_text` is the content of tokenizer.json; `config_json_text` optionally the content of
  // tokenizer_config.json. `source` names the input in error messages.
  static Tokenizer FromJson(std::string_view json_text, std::string_view config_json_text = {},
                            const std::string& source = "tokenizer.json");
  // The same from an already parsed tokenizer.json.
  static Tokenizer FromJsonValue(const nlohmann::json& json, std::string_view config_json_text = {},
                                 const std::string& source = "tokenizer.json");

  // The tokenizer stored in a GGUF file (`tokenizer.ggml.*` keys, as llama.cpp writes a
  // DeepSeek-V3 BPE vocabulary; gguf_tokenizer.cc). Errors name the file and the key.
  static Tokenizer FromGguf(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> Encode(std::string_view text) const;
  // `Encode`, except that an added token becomes its id only where it lies at one of
  // `control_tokens` (sorted by offset): added-token strings anywhere else are encoded as the
  // plain text they are, merged with the text around them (HF's result for the same text with
  // that occurrence not matched). With every match listed, equal to `Encode`. `text` must be
  // valid UTF-8 (Error otherwise: the offsets would not survive the repair).
  std::vector<int32_t> EncodeWithControlTokensAt(std::string_view text,
                                                 const std::vector<TextSpan>& control_tokens) const;
  std::string Decode(const std::vector<int32_t>& ids) const;

  // Bytes that `id` contributes to a decoded string (before UTF-8 repair); empty if unknown.
  const std::string& DecodedBytes(int32_t id) const;

  // Token string as stored in the file (ByteLevel alphabet for vocab tokens); nullopt if none.
  std::optional<std::string> IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;

  // HF `get_vocab_size(with_added_tokens=True)`: model vocab + added tokens not in it.
  size_t VocabSize() const;
  // One past the largest id (the size an embedding table needs at least).
  int32_t IdLimit() const;

  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool IsSpecial(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::vector<int32_t> EncodeImpl(std::string_view text,
                                  const std::vector<TextSpan>* control_tokens) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsinfer::text
