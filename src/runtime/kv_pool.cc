#include "runtime/kv_pool.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <limits>
#include <string>

#include "base/error.h"
#include "base/mix.h"

namespace dsinfer {

int64_t ParseByteSize(const std::string& text, const std::string& what) {
  size_t used = 0;
  long double v = -1;
  try {
    v = std::stold(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string suffix = text.substr(used);
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (suffix.size() > 1 && (suffix.substr(1) == "B" || suffix.substr(1) == "IB")) suffix.resize(1);
  static const std::string kUnits = "KMGT";
  int shift = 0;
  if (suffix.size() == 1 && kUnits.find(suffix[0]) != std::string::npos)
    shift = 10 * (static_cast<int>(kUnits.find(suffix[0])) + 1);
  else if (!suffix.empty() && suffix != "B")
    used = 0;
  const long double bytes = v * static_cast<long double>(int64_t{1} << shift);
  if (used == 0 || !(v > 0) || bytes >= static_cast<long double>(int64_t{1} << 62))
    throw Error(what + ": '" + text + "' is not a byte size (e.g. 2G, 512M, 1048576)");
  return static_cast<int64_t>(bytes);
}

int64_t DefaultKvBudget() {
  std::ifstream in("/proc/meminfo");
  std::string name;
  int64_t kib = 0;
  std::string unit;
  while (in >> name >> kib >> unit)
    if (name == "MemAvailable:") return kib * 1024 / 2;
  return int64_t{4} << 30;
}

KvPageLayout KvPageLayout::Of(const SequenceState& proto) {
  KvPageLayout l;
  for (const LayerKvCache& c : proto.caches) {
    l.offsets.push_back(l.bytes);
    l.bytes += c.PageBytes();
  }
  if (proto.mtp_cache) {  // the MTP layer's rows of the same 64 tokens
    l.offsets.push_back(l.bytes);
    l.bytes += proto.mtp_cache->PageBytes();
  }
  return l;
}

void KvPageLayout::Install(SequenceState& seq, std::byte* page) const {
  const size_t layers = seq.caches.size();
  DSINFER_CHECK(layers + (seq.mtp_cache ? 1 : 0) == offsets.size(), "page layout of another model");
  for (size_t l = 0; l < layers; ++l) seq.caches[l].AppendPage(page + offsets[l]);
  if (seq.mtp_cache) seq.mtp_cache->AppendPage(page + offsets[layers]);
}

KvPagePool::KvPagePool(int64_t page_bytes, int64_t budget_bytes)
    : page_bytes_(page_bytes), budget_pages_(page_bytes > 0 ? budget_bytes / page_bytes : 0) {
  if (budget_pages_ < 1)
    throw Error("--kv-budget " + std::to_string(budget_bytes) + " bytes holds no KV page (" +
                std::to_string(page_bytes) + " bytes = 64 tokens of every layer)");
}

int64_t KvPagePool::Available() const {
  std::lock_guard lock(mu_);
  return budget_pages_ - referenced_;
}

std::optional<KvPageId> KvPagePool::Allocate() {
  std::lock_guard lock(mu_);
  KvPageId id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else if (static_cast<int64_t>(pages_.size()) < budget_pages_) {
    id = static_cast<KvPageId>(pages_.size());
    pages_.emplace_back();
    pages_.back().mem = std::make_unique<std::byte[]>(page_bytes_);
  } else if (!lru_.empty()) {
    id = lru_.front();
    Evict(id);
  } else {
    return std::nullopt;
  }
  pages_[id].refs = 1;
  ++referenced_;
  return id;
}

// Drops an unreferenced cached page from the cache (its memory is reused by the caller).
void KvPagePool::Evict(KvPageId id) {
  Page& p = pages_[id];
  lru_.erase(p.lru);
  index_.erase(p.key);
  p.cached = false;
  ++evictions_;
}

void KvPagePool::Retain(KvPageId id) {
  std::lock_guard lock(mu_);
  Page& p = pages_.at(id);
  if (p.refs++ == 0) {
    DSINFER_CHECK(p.cached, "retaining a free KV page");
    lru_.erase(p.lru);
    ++referenced_;
  }
}

void KvPagePool::Release(KvPageId id) {
  std::lock_guard lock(mu_);
  Page& p = pages_.at(id);
  DSINFER_CHECK(p.refs > 0, "releasing an unreferenced KV page");
  if (--p.refs > 0) return;
  --referenced_;
  if (p.cached)
    p.lru = lru_.insert(lru_.end(), id);
  else
    free_.push_back(id);
}

std::byte* KvPagePool::data(KvPageId id) {
  std::lock_guard lock(mu_);
  return pages_.at(id).mem.get();
}

std::optional<KvPageId> KvPagePool::Lookup(uint64_t key, uint64_t parent,
                                           std::span<const int32_t> tokens) {
  std::unique_lock lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  const Page& p = pages_[it->second];
  if (p.parent != parent ||
      !std::equal(tokens.begin(), tokens.end(), p.tokens.begin(), p.tokens.end()))
    return std::nullopt;
  const KvPageId id = it->second;
  lock.unlock();
  Retain(id);
  return id;
}

bool KvPagePool::Publish(KvPageId id, uint64_t key, uint64_t parent,
                         std::span<const int32_t> tokens) {
  std::lock_guard lock(mu_);
  DSINFER_CHECK(tokens.size() == kKvPageRows, "only full pages are published");
  Page& p = pages_.at(id);
  DSINFER_CHECK(p.refs > 0, "publishing a page the caller does not hold");
  if (p.cached || !index_.emplace(key, id).second) return false;
  p.cached = true;
  p.key = key;
  p.parent = parent;
  std::copy(tokens.begin(), tokens.end(), p.tokens.begin());
  return true;
}

KvPoolStats KvPagePool::Stats() const {
  std::lock_guard lock(mu_);
  KvPoolStats s;
  s.page_bytes = page_bytes_;
  s.budget_pages = budget_pages_;
  s.allocated_pages = static_cast<int64_t>(pages_.size());
  s.referenced_pages = referenced_;
  s.cached_pages = static_cast<int64_t>(index_.size());
  s.used_pages = referenced_ + static_cast<int64_t>(lru_.size());
  s.evictions = evictions_;
  return s;
}

namespace {

uint64_t Mix(uint64_t x) { return SplitMix64(x); }

}  // namespace

uint64_t KvPagePool::RootKey(const SequenceState& proto) {
  uint64_t h = Mix(0x64736b76 /* "dskv" */);
  h = Mix(h ^ (proto.use_indexer ? 1u : 0u));
  h = Mix(h ^ static_cast<uint64_t>(proto.use_indexer ? proto.index_topk : 0));
  h = Mix(h ^ static_cast<uint64_t>(proto.options.kv_cache));
  for (const LayerKvCache& c : proto.caches) h = Mix(h ^ static_cast<uint64_t>(c.PageBytes()));
  // With MTP rows a page's key also covers the token after it (KvPagePool docs).
  if (proto.mtp_cache) h = Mix(h ^ (0x6d7470 /* "mtp" */ + proto.mtp_cache->PageBytes()));
  return h;
}

uint64_t KvPagePool::ChainKey(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = Mix(parent);
  for (int32_t t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

}  // namespace dsinfer
