// The KV page pool and prefix cache (runtime/kv_pool.h): budget never exceeded, reference
// counts, hash-chain lookups that check parent and tokens, LRU eviction order (deepest page of
// a released chain first), duplicate publication, byte-size parsing, and root keys that
// separate every option changing the cached values.
#include "runtime/kv_pool.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "base/error.h"

namespace dsinfer {
namespace {

KvPagePool::PageTokens Tokens(int32_t base) {
  KvPagePool::PageTokens t;
  std::iota(t.begin(), t.end(), base);
  return t;
}

TEST(KvPagePool, BudgetBoundsAllocation) {
  KvPagePool pool(1000, 3500);  // 3 whole pages
  EXPECT_EQ(pool.budget_pages(), 3);
  auto a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(pool.Available(), 0);
  EXPECT_FALSE(pool.Allocate());  // every page referenced: no overcommit
  EXPECT_EQ(pool.Stats().bytes_in_use(), 3000);
  pool.Release(*b);  // not cached: straight back to the free list
  EXPECT_EQ(pool.Stats().used_pages, 2);
  auto d = pool.Allocate();
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, *b);
  EXPECT_EQ(pool.Stats().allocated_pages, 3);
  EXPECT_THROW(KvPagePool(1000, 999), Error);
}

TEST(KvPagePool, ChainLookupChecksParentAndTokens) {
  KvPagePool pool(64, 64 * 4);
  const uint64_t root = 7;
  const auto t0 = Tokens(0), t1 = Tokens(100);
  const uint64_t k0 = KvPagePool::ChainKey(root, t0), k1 = KvPagePool::ChainKey(k0, t1);
  EXPECT_NE(k0, KvPagePool::ChainKey(root + 1, t0));  // the parent is part of the key
  EXPECT_NE(k1, KvPagePool::ChainKey(root, t1));
  auto p0 = pool.Allocate(), p1 = pool.Allocate();
  EXPECT_TRUE(pool.Publish(*p0, k0, root, t0));
  EXPECT_TRUE(pool.Publish(*p1, k1, k0, t1));
  auto q = pool.Allocate();
  EXPECT_FALSE(pool.Publish(*q, k0, root, t0));  // the first publisher keeps the key
  EXPECT_EQ(pool.Stats().cached_pages, 2);
  EXPECT_EQ(pool.Lookup(k0, root, t0), p0);
  EXPECT_FALSE(pool.Lookup(k0, root + 1, t0));  // stored parent differs
  EXPECT_FALSE(pool.Lookup(k0, root, t1));      // stored tokens differ
  EXPECT_FALSE(pool.Lookup(k1 + 1, k0, t1));
  // p0 now has two references: the publisher's and the lookup's.
  pool.Release(*p0);
  EXPECT_EQ(pool.Stats().referenced_pages, 3);
  pool.Release(*p0);
  EXPECT_EQ(pool.Stats().referenced_pages, 2);
  EXPECT_EQ(pool.Stats().used_pages, 3);  // p0 stays cached, unreferenced
  EXPECT_EQ(pool.Lookup(k0, root, t0), p0);  // and can be adopted again
}

TEST(KvPagePool, EvictsLeastRecentlyReleasedFirst) {
  KvPagePool pool(10, 30);
  std::vector<KvPageId> ids;
  std::vector<uint64_t> keys;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(*pool.Allocate());
    keys.push_back(1000 + i);
    pool.Publish(ids[i], keys[i], 0, Tokens(i));
  }
  // Released deepest first (as the engine does): 2, then 1, then 0.
  for (int i = 2; i >= 0; --i) pool.Release(ids[i]);
  EXPECT_EQ(pool.Available(), 3);
  // Re-adopting page 2 makes it the most recently used once released again.
  ASSERT_TRUE(pool.Lookup(keys[2], 0, Tokens(2)));
  pool.Release(ids[2]);
  // LRU order now: 1, 0, 2.
  EXPECT_EQ(pool.Allocate(), ids[1]);
  EXPECT_FALSE(pool.Lookup(keys[1], 0, Tokens(1)));
  EXPECT_TRUE(pool.Lookup(keys[0], 0, Tokens(0)));  // retained: no longer evictable
  EXPECT_EQ(pool.Allocate(), ids[2]);
  EXPECT_FALSE(pool.Allocate());  // 0 is referenced, 1 and 2 are taken
  EXPECT_EQ(pool.Stats().evictions, 2);
  EXPECT_EQ(pool.Stats().cached_pages, 1);
}

// Random operations: the pool's counts always match a model of it and never pass the budget.
TEST(KvPagePool, RandomOperationsKeepInvariants) {
  KvPagePool pool(8, 8 * 6);
  std::mt19937 rng(3);
  std::vector<KvPageId> held;  // one entry per reference we hold
  uint64_t next_key = 1;
  for (int step = 0; step < 5000; ++step) {
    const int op = static_cast<int>(rng() % 4);
    if (op == 0) {
      if (auto id = pool.Allocate()) held.push_back(*id);
    } else if (op == 1 && !held.empty()) {
      const size_t i = rng() % held.size();
      pool.Release(held[i]);
      held.erase(held.begin() + static_cast<long>(i));
    } else if (op == 2 && !held.empty()) {
      const KvPageId id = held[rng() % held.size()];
      const uint64_t key = next_key++;
      pool.Publish(id, key, key - 1, Tokens(static_cast<int32_t>(key)));  // false if cached
    } else if (op == 3 && next_key > 1) {
      const uint64_t key = 1 + rng() % (next_key - 1);
      if (auto id = pool.Lookup(key, key - 1, Tokens(static_cast<int32_t>(key))))
        held.push_back(*id);
    }
    const KvPoolStats s = pool.Stats();
    std::vector<KvPageId> distinct = held;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    ASSERT_EQ(s.referenced_pages, static_cast<int64_t>(distinct.size())) << step;
    ASSERT_LE(s.used_pages, s.budget_pages) << step;
    ASSERT_LE(s.allocated_pages, s.budget_pages) << step;
    ASSERT_EQ(pool.Available(), s.budget_pages - s.referenced_pages) << step;
  }
  for (KvPageId id : held) pool.Release(id);
  EXPECT_EQ(pool.Stats().referenced_pages, 0);
}

TEST(KvPagePool, ParseByteSize) {
  EXPECT_EQ(ParseByteSize("1048576", "x"), 1048576);
  EXPECT_EQ(ParseByteSize("512M", "x"), int64_t{512} << 20);
  EXPECT_EQ(ParseByteSize("2G", "x"), int64_t{2} << 30);
  EXPECT_EQ(ParseByteSize("2gib", "x"), int64_t{2} << 30);
  EXPECT_EQ(ParseByteSize("64K", "x"), 65536);
  EXPECT_EQ(ParseByteSize("1.5G", "x"), int64_t{3} << 29);
  for (const char* bad : {"", "G", "-1G", "0", "2X", "12 M", "1e30"}) {
    try {
      ParseByteSize(bad, "--kv-budget");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--kv-budget"), std::string::npos) << bad;
    }
  }
}

}  // namespace
}  // namespace dsinfer
