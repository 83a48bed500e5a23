// Byte-pair-encoding model of a Hugging Face `tokenizer.json` ("model": {"type": "BPE"}).
//
// Merging follows HF `tokenizers` (models/bpe/word.rs) step for step: a heap of candidate
// merges ordered by (rank, position); a popped candidate is applied only if the pair now at its
// position still produces the same new id. Unknown characters use `byte_fallback` (<0xXX>
// tokens), then `unk_token` (fused if `fuse_unk`), else are dropped, as in HF.
//
// With `byte_level` set (the pre-tokenizer ends in ByteLevel), words are raw bytes and each byte
// stands for its ByteLevel character, so no byte→char string is ever built.
//
// Thread-safety: `Tokenize` is const and safe to call concurrently (the word cache has a mutex).
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsinfer::text {

// Ids index dense tables: anything this large is a broken file, not a vocabulary.
inline constexpr int64_t kMaxTokenId = int64_t{1} << 24;

class Bpe {
 public:
  // `model` is the "model" object of tokenizer.json; `byte_level` as above.
  Bpe(const nlohmann::json& model, bool byte_level);

  // Appends the ids of `word` (one pre-tokenized piece; raw bytes if byte-level) to `out`.
  void Tokenize(std::string_view word, std::vector<int32_t>& out) const;

  // vocab: token string (as in the file) → id.
  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  struct MergeValue {
    uint32_t rank;
    int32_t new_id;
  };
  // Open-addressing map (id_a, id_b) → merge, the hot lookup of the merge loop.
  class MergeTable {
   public:
    void Reserve(size_t n);
    void Insert(int32_t a, int32_t b, MergeValue v);
    const MergeValue* Find(int32_t a, int32_t b) const;

   private:
    static uint64_t Key(int32_t a, int32_t b) {
      return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
    }
    std::vector<uint64_t> keys_;  // kEmpty = ~0
    std::vector<MergeValue> values_;
    size_t mask_ = 0;
  };
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    uint32_t len;  // bytes; 0 once merged into its left neighbour
  };

  void LoadMerges(const nlohmann::json& merges);
  void InitialSymbols(std::string_view word, std::vector<Symbol>& symbols) const;
  void AddUnit(std::string_view unit, std::vector<Symbol>& symbols, int32_t& unk_id,
               uint32_t& unk_len) const;
  void MergeAll(std::vector<Symbol>& symbols) const;
  void Uncached(std::string_view word, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  MergeTable merges_;
  bool byte_level_;
  int32_t byte_ids_[256];  // byte-level: id of each byte's ByteLevel character, -1 if absent
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;

  // Word → ids cache, direct-mapped by hash (a collision replaces the entry). It changes no
  // result; HF keeps a similar cache of words shorter than 256 bytes.
  struct CacheEntry {
    std::string word;
    std::vector<int32_t> ids;
  };
  static constexpr size_t kCacheSlots = size_t{1} << 15;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::vector<CacheEntry> cache_ = std::vector<CacheEntry>(kCacheSlots);
};

// The ByteLevel byte → character table of GPT-2 / HF (`bytes_char`), as UTF-8 strings.
const std::vector<std::string>& ByteLevelChars();

}  // namespace dsinfer::text
