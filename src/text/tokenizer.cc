#include "text/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "base/error.h"
#include "format/gguf_checkpoint.h"
#include "text/added_vocab.h"
#include "text/bpe.h"
#include "text/pre_tokenizer.h"
#include "text/utf8.h"

namespace dsinfer::text {

struct Tokenizer::Impl {
  std::string source;  // file name for error messages
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int32_t> added_ids;  // content → id
  std::unique_ptr<AddedVocab> raw_trie, normalized_trie;
  std::unique_ptr<PreTokenizer> pre;
  std::unique_ptr<Bpe> bpe;
  std::vector<std::string> id_to_token;  // "" = no token
  std::vector<std::string> decoded;      // per id: decoded bytes
  std::vector<bool> special;
  size_t vocab_size = 0;
  std::optional<int32_t> bos, eos;

  [[noreturn]] void Bad(const std::string& what) const { throw Error(source + ": " + what); }
  void CheckTopLevel(const nlohmann::json& j) const;
  void CheckNormalizer(const nlohmann::json& n) const;
  void LoadAddedTokens(const nlohmann::json& list);
  void BuildIdTables();
  void LoadSpecialIds(std::string_view config_json_text);
  void EncodePlain(std::string_view text, std::vector<int32_t>& out) const;
};

namespace {

std::string ReadFile(const std::string& path) {
  // A FIFO or device would block or never end: only regular files (symlinks to them) are read.
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    throw Error("tokenizer file '" + path + "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open tokenizer file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read tokenizer file '" + path + "'");
  return ss.str();
}

bool Flag(const nlohmann::json& j, const char* name, bool fallback) {
  auto it = j.find(name);
  return it == j.end() || it->is_null() ? fallback : it->get<bool>();
}

// ByteLevel decoding of one token: its characters' bytes if all are in the ByteLevel alphabet,
// else the token's own UTF-8 (HF decoders/byte_level.rs).
std::string ByteLevelDecode(const std::string& token) {
  static const std::unordered_map<uint32_t, char> char_to_byte = [] {
    std::unordered_map<uint32_t, char> m;
    for (int b = 0; b < 256; ++b)
      m[DecodeUtf8Step(ByteLevelChars()[b]).code_point] = static_cast<char>(b);
    return m;
  }();
  std::string out;
  for (size_t i = 0; i < token.size();) {
    Utf8Step step = DecodeUtf8Step(std::string_view(token).substr(i));
    auto it = char_to_byte.find(step.code_point);
    if (step.kind != Utf8Step::kValid || it == char_to_byte.end()) return token;
    out += it->second;
    i += step.length;
  }
  return out;
}

}  // namespace

void Tokenizer::Impl::CheckTopLevel(const nlohmann::json& j) const {
  if (!j.is_object()) Bad("not a JSON object");
  if (j.contains("version") && j["version"] != "1.0")
    Bad("unsupported version " + j["version"].dump());
  for (const char* f : {"truncation", "padding"})
    if (j.contains(f) && !j[f].is_null()) Bad(std::string("\"") + f + "\" is not supported");
  if (!j.contains("model") || !j["model"].is_object()) Bad("missing \"model\"");
  const auto type = j["model"].value("type", std::string("BPE"));
  if (type != "BPE") Bad("unsupported model type \"" + type + "\" (only BPE)");
  const auto& dec = j.value("decoder", nlohmann::json());
  if (!dec.is_object() || dec.value("type", "") != "ByteLevel")
    Bad("unsupported decoder " + dec.dump() + " (only ByteLevel)");
}

void Tokenizer::Impl::CheckNormalizer(const nlohmann::json& n) const {
  if (n.is_null()) return;
  const std::string type = n.value("type", "");
  if (type != "Sequence") Bad("unsupported normalizer \"" + type + "\"");
  for (const auto& sub : n.at("normalizers")) CheckNormalizer(sub);
}

// Ids as HF assigns them (added_vocabulary.rs `add_tokens`): an existing token keeps its id,
// a new one takes the next free id after the model vocab. HF only warns when that differs from
// the file's "id"; a checkpoint with such a file would be inconsistent, so it is an error here.
void Tokenizer::Impl::LoadAddedTokens(const nlohmann::json& list) {
  const auto& vocab = bpe->vocab();
  int32_t max_id = -1;
  for (const auto& t : list) {
    AddedToken tok{.content = t.at("content").get<std::string>(),
                   .id = t.at("id").get<int32_t>(),
                   .special = Flag(t, "special", false),
                   .lstrip = Flag(t, "lstrip", false),
                   .rstrip = Flag(t, "rstrip", false),
                   .single_word = Flag(t, "single_word", false),
                   .normalized = Flag(t, "normalized", !Flag(t, "special", false))};
    if (tok.content.empty()) continue;
    if (tok.id < 0 || tok.id >= kMaxTokenId)
      Bad("added token \"" + tok.content + "\" has id " + std::to_string(tok.id) + " outside [0, " +
          std::to_string(kMaxTokenId) + ")");
    int32_t id;
    if (auto it = added_ids.find(tok.content); it != added_ids.end()) {
      id = it->second;
    } else if (auto v = vocab.find(tok.content); v != vocab.end()) {
      id = v->second;
    } else {
      const auto base = static_cast<int32_t>(vocab.size());
      id = max_id >= base ? max_id + 1 : base;
    }
    if (id != tok.id)
      Bad("added token \"" + tok.content + "\" has id " + std::to_string(tok.id) +
          " but Hugging Face tokenizers would give it id " + std::to_string(id));
    max_id = std::max(max_id, id);
    if (added_ids.emplace(tok.content, id).second) {
      added.push_back(tok);
    } else {
      for (auto& a : added)
        if (a.content == tok.content) a = tok;
    }
  }
  raw_trie = std::make_unique<AddedVocab>(added, /*normalized_set=*/false);
  normalized_trie = std::make_unique<AddedVocab>(added, /*normalized_set=*/true);
}

void Tokenizer::Impl::BuildIdTables() {
  int32_t limit = 0;
  for (const auto& [token, id] : bpe->vocab()) limit = std::max(limit, id + 1);
  for (const auto& a : added) limit = std::max(limit, a.id + 1);
  id_to_token.assign(limit, std::string());
  special.assign(limit, false);
  for (const auto& [token, id] : bpe->vocab()) id_to_token[id] = token;
  vocab_size = bpe->vocab().size();
  for (const auto& a : added) {
    if (!bpe->vocab().contains(a.content)) ++vocab_size;
    id_to_token[a.id] = a.content;  // added tokens take precedence, as in HF id_to_token
    special[a.id] = a.special;
  }
  decoded.resize(limit);
  for (int32_t id = 0; id < limit; ++id) decoded[id] = ByteLevelDecode(id_to_token[id]);
}

void Tokenizer::Impl::LoadSpecialIds(std::string_view config_json_text) {
  auto lookup = [&](const std::string& content) -> std::optional<int32_t> {
    if (auto it = added_ids.find(content); it != added_ids.end()) return it->second;
    if (auto it = bpe->vocab().find(content); it != bpe->vocab().end()) return it->second;
    return std::nullopt;
  };
  bos = lookup("<｜begin▁of▁sentence｜>");
  eos = lookup("<｜end▁of▁sentence｜>");
  if (config_json_text.empty()) return;
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(config_json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("tokenizer_config.json: malformed JSON: " + std::string(e.what()));
  }
  for (auto [field, slot] : {std::pair{"bos_token", &bos}, std::pair{"eos_token", &eos}}) {
    if (!config.is_object() || !config.contains(field) || config[field].is_null()) continue;
    const auto& v = config[field];
    std::string content;
    if (v.is_string()) {
      content = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
      content = v["content"].get<std::string>();
    } else {
      throw Error(std::string("tokenizer_config.json: ") + field +
                  " is neither a string nor {\"content\": string}");
    }
    *slot = lookup(content);
    if (!*slot)
      throw Error(std::string("tokenizer_config.json: ") + field + " \"" + content +
                  "\" is not a token of the tokenizer");
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::FromFile(const std::string& path) {
  const std::string text = ReadFile(path);
  const auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::string config;
  if (std::filesystem::exists(config_path)) config = ReadFile(config_path.string());
  return FromJson(text, config, path);
}

Tokenizer Tokenizer::ForModel(const std::string& dir) {
  if (IsGgufPath(dir)) return FromGguf(dir);
  const std::string path = dir + "/tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error(path +
                ": missing: the model has no tokenizer, so it takes token ids only "
                "(`logits`, `run --ids`); text needs the model's tokenizer.json");
  return FromFile(path);
}

Tokenizer Tokenizer::FromJson(std::string_view json_text, std::string_view config_json_text,
                              const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed JSON: " + std::string(e.what()));
  }
  return FromJsonValue(j, config_json_text, source);
}

Tokenizer Tokenizer::FromJsonValue(const nlohmann::json& j, std::string_view config_json_text,
                                   const std::string& source) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  try {
    impl->CheckTopLevel(j);
    impl->CheckNormalizer(j.value("normalizer", nlohmann::json()));
    impl->pre = std::make_unique<PreTokenizer>(j.value("pre_tokenizer", nlohmann::json()));
    impl->bpe = std::make_unique<Bpe>(j["model"], impl->pre->byte_level());
    impl->LoadAddedTokens(j.value("added_tokens", nlohmann::json::array()));
  } catch (const nlohmann::json::exception& e) {
    impl->Bad("unexpected structure: " + std::string(e.what()));
  } catch (const Error& e) {
    if (std::string_view(e.what()).starts_with(source)) throw;
    impl->Bad(e.what());
  }
  impl->BuildIdTables();
  impl->LoadSpecialIds(config_json_text);
  return Tokenizer(std::move(impl));
}

namespace {

// `segments` with every added-token match that does not cover one of `control` (sorted) turned
// into plain text and joined with the plain text next to it. Plain segments not next to such a
// match stay as they are, so with nothing turned the result is `segments`.
std::vector<Segment> TextOutsideControlTokens(const std::vector<Segment>& segments,
                                              const std::vector<TextSpan>& control) {
  std::vector<Segment> out;
  bool back_joined = false;  // out.back() holds a match turned into text
  size_t k = 0;              // the first control span not before the current segment
  for (Segment s : segments) {
    while (k < control.size() && control[k].offset < s.begin) ++k;
    const bool turned = s.token >= 0 && !(k < control.size() && control[k].offset >= s.begin &&
                                          control[k].offset + control[k].size <= s.end);
    if (turned) s.token = -1;
    if (s.token < 0 && !out.empty() && out.back().token < 0 && out.back().end == s.begin &&
        (turned || back_joined)) {
      out.back().end = s.end;
      back_joined = true;
    } else {
      out.push_back(s);
      back_joined = turned;
    }
  }
  return out;
}

}  // namespace

void Tokenizer::Impl::EncodePlain(std::string_view text, std::vector<int32_t>& out) const {
  pre->Run(text, [&](std::string_view piece) { bpe->Tokenize(piece, out); });
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text) const {
  return EncodeImpl(text, nullptr);
}

std::vector<int32_t> Tokenizer::EncodeWithControlTokensAt(
    std::string_view text, const std::vector<TextSpan>& control_tokens) const {
  if (!IsValidUtf8(text)) throw Error("EncodeWithControlTokensAt: the text is not valid UTF-8");
  return EncodeImpl(text, &control_tokens);
}

std::vector<int32_t> Tokenizer::EncodeImpl(std::string_view text,
                                           const std::vector<TextSpan>* control_tokens) const {
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = ReplaceInvalidUtf8(text);
    text = repaired;
  }
  std::vector<Segment> first, segments;
  impl_->raw_trie->Split(text, 0, first);
  for (const Segment& s : first) {
    if (s.token >= 0) {
      segments.push_back(s);
    } else {  // the (identity) normalizer runs here, then the normalized added tokens
      impl_->normalized_trie->Split(text.substr(s.begin, s.end - s.begin), s.begin, segments);
    }
  }
  if (control_tokens) segments = TextOutsideControlTokens(segments, *control_tokens);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const Segment& s : segments) {
    if (s.token >= 0) {
      ids.push_back(impl_->added[s.token].id);
    } else {
      impl_->EncodePlain(text.substr(s.begin, s.end - s.begin), ids);
    }
  }
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += DecodedBytes(id);
  return IsValidUtf8(bytes) ? bytes : ReplaceInvalidUtf8(bytes);
}

const std::string& Tokenizer::DecodedBytes(int32_t id) const {
  static const std::string kNone;
  return id >= 0 && id < IdLimit() ? impl_->decoded[id] : kNone;
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= IdLimit() || impl_->id_to_token[id].empty()) return std::nullopt;
  return impl_->id_to_token[id];
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  const std::string key(token);
  if (auto it = impl_->added_ids.find(key); it != impl_->added_ids.end()) return it->second;
  if (auto it = impl_->bpe->vocab().find(key); it != impl_->bpe->vocab().end()) return it->second;
  return std::nullopt;
}

size_t Tokenizer::VocabSize() const { return impl_->vocab_size; }
int32_t Tokenizer::IdLimit() const { return static_cast<int32_t>(impl_->id_to_token.size()); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < IdLimit() && impl_->special[id];
}
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

}  // namespace dsinfer::text
