#include "text/bpe.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/utf8.h"

namespace dsinfer::text {
namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};

// `field` of the BPE model if present and not null.
const nlohmann::json* Field(const nlohmann::json& model, const char* field) {
  auto it = model.find(field);
  return it == model.end() || it->is_null() ? nullptr : &*it;
}

[[noreturn]] void Bad(const std::string& what) { throw Error("tokenizer.json: model: " + what); }

}  // namespace

const std::vector<std::string>& ByteLevelChars() {
  // GPT-2's table: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100+n.
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      AppendUtf8(printable ? b : 256 + n++, t[b]);
    }
    return t;
  }();
  return table;
}

void Bpe::MergeTable::Reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  keys_.assign(cap, kEmptyKey);
  values_.assign(cap, MergeValue{});
  mask_ = cap - 1;
}

void Bpe::MergeTable::Insert(int32_t a, int32_t b, MergeValue v) {
  const uint64_t key = Key(a, b);
  size_t i = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask_;
  while (keys_[i] != kEmptyKey && keys_[i] != key) i = (i + 1) & mask_;
  keys_[i] = key;
  values_[i] = v;  // a repeated pair keeps the last rank, as HF's map does
}

const Bpe::MergeValue* Bpe::MergeTable::Find(int32_t a, int32_t b) const {
  const uint64_t key = Key(a, b);
  size_t i = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask_;
  while (keys_[i] != kEmptyKey) {
    if (keys_[i] == key) return &values_[i];
    i = (i + 1) & mask_;
  }
  return nullptr;
}

Bpe::Bpe(const nlohmann::json& model, bool byte_level) : byte_level_(byte_level) {
  if (const auto* d = Field(model, "dropout"); d && d->get<double>() != 0.0)
    Bad("\"dropout\" is not supported (non-deterministic)");
  if (Field(model, "continuing_subword_prefix"))
    Bad("\"continuing_subword_prefix\" is not supported");
  if (Field(model, "end_of_word_suffix")) Bad("\"end_of_word_suffix\" is not supported");
  const auto* vocab = Field(model, "vocab");
  if (!vocab || !vocab->is_object()) Bad("\"vocab\" missing or not an object");
  vocab_.reserve(vocab->size());
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxTokenId)
      Bad("vocab id of \"" + token + "\" is not an integer in [0, " + std::to_string(kMaxTokenId) +
          ")");
    vocab_.emplace(token, id.get<int32_t>());
  }
  if (const auto* unk = Field(model, "unk_token")) {
    auto it = vocab_.find(unk->get<std::string>());
    if (it == vocab_.end()) Bad("unk_token \"" + unk->get<std::string>() + "\" not in vocab");
    unk_id_ = it->second;
  }
  if (const auto* f = Field(model, "fuse_unk")) fuse_unk_ = f->get<bool>();
  if (const auto* f = Field(model, "byte_fallback")) byte_fallback_ = f->get<bool>();
  if (const auto* f = Field(model, "ignore_merges")) ignore_merges_ = f->get<bool>();
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(ByteLevelChars()[b]);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  const auto* merges = Field(model, "merges");
  if (!merges || !merges->is_array()) Bad("\"merges\" missing or not an array");
  LoadMerges(*merges);
}

void Bpe::LoadMerges(const nlohmann::json& merges) {
  merges_.Reserve(merges.size());
  auto id_of = [&](const std::string& token, size_t rank) {
    auto it = vocab_.find(token);
    if (it == vocab_.end())
      Bad("merge " + std::to_string(rank + 1) + ": token \"" + token + "\" not in vocab");
    return it->second;
  };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {  // legacy "a b": exactly two space-separated parts
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        Bad("merge " + std::to_string(rank + 1) + " \"" + s + "\" is not \"a b\"");
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      Bad("merge " + std::to_string(rank + 1) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    const int32_t id_a = id_of(a, rank), id_b = id_of(b, rank);
    merges_.Insert(id_a, id_b, {static_cast<uint32_t>(rank), id_of(a + b, rank)});
  }
}

void Bpe::AddUnit(std::string_view unit, std::vector<Symbol>& symbols, int32_t& unk_id,
                  uint32_t& unk_len) const {
  auto push = [&](int32_t id, uint32_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, len});
  };
  const auto len = static_cast<uint32_t>(unit.size());
  int32_t id = -1;
  if (byte_level_) {
    id = byte_ids_[static_cast<uint8_t>(unit[0])];
  } else if (auto it = vocab_.find(std::string(unit)); it != vocab_.end()) {
    id = it->second;
  }
  if (id >= 0) {
    if (unk_id >= 0) push(unk_id, unk_len), unk_id = -1;
    return push(id, len);
  }
  if (byte_fallback_) {
    std::vector<int32_t> ids;
    for (unsigned char c : unit) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", c);
      auto it = vocab_.find(name);
      if (it == vocab_.end()) break;
      ids.push_back(it->second);
    }
    if (ids.size() == unit.size()) {
      for (int32_t b : ids) push(b, 1);
      return;
    }
  }
  if (unk_id_ < 0) return;  // no unk token: the character is dropped, as in HF
  if (unk_id >= 0 && fuse_unk_) {
    unk_len += len;
    return;
  }
  if (unk_id >= 0) push(unk_id, unk_len);
  unk_id = unk_id_;
  unk_len = len;
}

void Bpe::InitialSymbols(std::string_view word, std::vector<Symbol>& symbols) const {
  int32_t unk_id = -1;
  uint32_t unk_len = 0;
  size_t i = 0;
  while (i < word.size()) {
    // Byte-level words are raw bytes (one unit each); otherwise units are UTF-8 characters.
    const size_t n = byte_level_ ? 1 : DecodeUtf8Step(word.substr(i)).length;
    AddUnit(word.substr(i, n), symbols, unk_id, unk_len);
    i += n;
  }
  if (unk_id >= 0) {
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({unk_id, n - 1, -1, unk_len});
  }
}

void Bpe::MergeAll(std::vector<Symbol>& symbols) const {
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Candidate& o) const {  // max-heap → pop lowest (rank, pos)
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  thread_local std::vector<Candidate> heap;
  heap.clear();
  auto consider = [&](int32_t pos) {
    const Symbol& s = symbols[pos];
    if (s.next < 0) return;
    if (const MergeValue* m = merges_.Find(s.id, symbols[s.next].id)) {
      heap.push_back({m->rank, pos, m->new_id});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const Symbol right = symbols[cur.next];
    const MergeValue* now = merges_.Find(cur.id, right.id);
    if (now == nullptr || now->new_id != top.new_id) continue;  // stale candidate
    symbols[cur.next].len = 0;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) consider(cur.prev);
    consider(top.pos);
  }
}

void Bpe::Uncached(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  InitialSymbols(word, symbols);
  MergeAll(symbols);
  for (const Symbol& s : symbols)
    if (s.len != 0) out.push_back(s.id);
}

void Bpe::Tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    std::string key;
    if (byte_level_) {
      for (unsigned char c : word) key += ByteLevelChars()[c];
    } else {
      key = word;
    }
    if (auto it = vocab_.find(key); it != vocab_.end()) return out.push_back(it->second);
  }
  if (word.size() == 1 && byte_level_ && byte_ids_[static_cast<uint8_t>(word[0])] >= 0)
    return out.push_back(byte_ids_[static_cast<uint8_t>(word[0])]);
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  CacheEntry* slot = nullptr;
  if (cacheable) {
    slot = &cache_[std::hash<std::string_view>()(word) & (kCacheSlots - 1)];
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (slot->word == word) {
      out.insert(out.end(), slot->ids.begin(), slot->ids.end());
      return;
    }
  }
  const size_t before = out.size();
  Uncached(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    slot->word.assign(word);
    slot->ids.assign(out.begin() + before, out.end());
  }
}

}  // namespace dsinfer::text
