// The server's KV memory: a pool of pages within a byte budget (`--kv-budget`), and the prefix
// cache on top of it.
//
// One pool page holds `kKvPageRows` (64) consecutive tokens of EVERY layer of a sequence:
// for each layer its latent rows then its indexer keys (`KvPageLayout`). Pages are ref-counted:
// a sequence holds one reference on each page it uses. A full page of prompt tokens can be
// published in the prefix cache under a hash chain key
//   key_i = ChainKey(key_{i-1}, tokens[64 i, 64 i + 64)),  key_{-1} = RootKey(options)
// (the root folds in everything else that changes the cached values: attention mode, top-k,
// cache type, layer layout). With speculative decoding a page also holds the MTP layer's rows
// of its 64 tokens; MTP row i depends on token i + 1, so the last row of page i depends on the
// first token of page i + 1: the engine then folds that token into the page's key too
// (`ChainKey` over 65 tokens) and publishes a page only once its MTP rows are computed. Another
// sequence whose prompt walks the same chain adopts the page read-only (reference + 1) instead of
// prefilling it. A lookup compares the stored parent key and the 64 tokens too, so a hit needs a
// 64-bit collision of the parent key alone.
//
// Unreferenced published pages stay cached, in LRU order; `Allocate` reuses a free page, grows
// the pool while it is under budget, then evicts the least recently released cached page.
// Pages are never overcommitted: when every page is referenced `Allocate` returns nothing
// (the engine reserves pages at admission so this does not happen to a running sequence).
// Released sequences put their pages in the LRU deepest-first, so a chain is evicted from its
// tail and its head (the most shared prefix) survives longest.
//
// Thread-safe (one mutex): the engine's worker allocates, HTTP threads read `Stats`.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "model/model.h"

namespace dsinfer {

using KvPageId = int32_t;

// Parses a byte count with an optional binary suffix: "1048576", "512M", "2G", "64K", "1T"
// (also "2GiB"/"2GB", meaning 2^31). Throws Error naming `what` otherwise.
int64_t ParseByteSize(const std::string& text, const std::string& what);

// The default `--kv-budget`: half of MemAvailable (/proc/meminfo) at start, or 4 GiB when
// that cannot be read.
int64_t DefaultKvBudget();

// Where each layer's part sits inside one pool page, for sequences shaped like `proto`.
struct KvPageLayout {
  std::vector<int64_t> offsets;  // [num_layers (+ 1: the MTP layer)] byte offset of each part
  int64_t bytes = 0;             // the whole page

  static KvPageLayout Of(const SequenceState& proto);
  // Appends `page` [bytes] to every layer cache of `seq` (rows [capacity, capacity + 64)).
  void Install(SequenceState& seq, std::byte* page) const;
};

struct KvPoolStats {
  int64_t page_bytes = 0;
  int64_t budget_pages = 0;
  int64_t allocated_pages = 0;   // pages whose memory exists (≤ budget_pages)
  int64_t referenced_pages = 0;  // pages used by at least one sequence
  int64_t cached_pages = 0;      // pages published in the prefix cache (referenced or not)
  int64_t used_pages = 0;        // referenced or cached: what `bytes_in_use` counts
  int64_t evictions = 0;
  int64_t bytes_in_use() const { return used_pages * page_bytes; }
  int64_t budget_bytes() const { return budget_pages * page_bytes; }
};

class KvPagePool {
 public:
  using PageTokens = std::array<int32_t, kKvPageRows>;

  // Throws Error when the budget holds no page.
  KvPagePool(int64_t page_bytes, int64_t budget_bytes);

  int64_t page_bytes() const { return page_bytes_; }
  int64_t budget_pages() const { return budget_pages_; }

  // Pages `Allocate` could hand out now: never allocated, free, or cached but unreferenced.
  int64_t Available() const;
  // A fresh page with one reference (contents undefined); nullopt when all are referenced.
  std::optional<KvPageId> Allocate();
  void Retain(KvPageId id);
  void Release(KvPageId id);  // the last reference: cached → LRU, else → free
  std::byte* data(KvPageId id);

  // Prefix cache. Lookup retains the page on a hit.
  std::optional<KvPageId> Lookup(uint64_t key, uint64_t parent, std::span<const int32_t> tokens);
  // Publishes a full page the caller holds; false (no effect) when `key` is already cached or
  // the page already is.
  bool Publish(KvPageId id, uint64_t key, uint64_t parent, std::span<const int32_t> tokens);

  KvPoolStats Stats() const;

  static uint64_t RootKey(const SequenceState& proto);
  static uint64_t ChainKey(uint64_t parent, std::span<const int32_t> tokens);

 private:
  struct Page {
    std::unique_ptr<std::byte[]> mem;
    int refs = 0;
    bool cached = false;
    uint64_t key = 0, parent = 0;
    PageTokens tokens{};
    std::list<KvPageId>::iterator lru;  // valid while cached && refs == 0
  };
  void Evict(KvPageId id);

  const int64_t page_bytes_, budget_pages_;
  mutable std::mutex mu_;
  std::vector<Page> pages_;
  std::vector<KvPageId> free_;
  std::list<KvPageId> lru_;  // unreferenced cached pages, least recently released first
  std::unordered_map<uint64_t, KvPageId> index_;
  int64_t referenced_ = 0, evictions_ = 0;
};

}  // namespace dsinfer
