// Logits after a prefix-cache hit equal logits after a miss, bitwise: a sequence that adopts
// the pool pages another sequence wrote (latent rows AND indexer keys of every layer) and then
// computes its own suffix runs exactly the operations of a sequence that computed everything
// itself (same kernels, same rows, same chunk boundaries). DSA with a context well above
// index_topk (16 in the tiny preset), so the cached indexer keys decide which rows are read.
// Also: the prefix-cache root key separates every option that changes the cached values.
#include <gtest/gtest.h>

#include <cstring>

#include "model/model.h"
#include "runtime/kv_pool.h"
#include "tests/unit/model/tiny_checkpoint.h"

namespace dsinfer {
namespace {

// A tiny DSA checkpoint (small vocabulary), generated once per build tree.
std::string TinyDsaDir() { return MakeCheckpoint("prefix_tiny", 9); }

std::vector<int32_t> Ids(int64_t n, uint32_t seed) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7919 + seed * 104729) % 1000);
  return ids;
}

// (cache type, numerics): the rule holds in bf16 numerics too (docs/numerics.md "bf16 numerics").
struct PrefixCase {
  KvCacheType kv_cache;
  Numerics numerics;
};

class PrefixCacheTest : public ::testing::TestWithParam<PrefixCase> {};

TEST_P(PrefixCacheTest, LogitsAfterHitEqualLogitsAfterMiss) {
  auto model = Model::Load(TinyDsaDir(), {.numerics = GetParam().numerics});
  SequenceOptions so;
  so.kv_cache = GetParam().kv_cache;
  const SequenceState proto = model->NewSequence(so);
  ASSERT_TRUE(proto.use_indexer);
  ASSERT_EQ(proto.index_topk, 16);
  const KvPageLayout layout = KvPageLayout::Of(proto);
  KvPagePool pool(layout.bytes, layout.bytes * 16);
  auto install_fresh = [&](SequenceState& seq, int pages, std::vector<KvPageId>& held) {
    for (int i = 0; i < pages; ++i) {
      held.push_back(*pool.Allocate());
      layout.Install(seq, pool.data(held.back()));
    }
  };
  const int64_t P = 2 * kKvPageRows;  // the shared prefix: two full pages
  const std::vector<int32_t> prefix = Ids(P, 1);
  std::vector<int32_t> mine = prefix, theirs = prefix;
  for (int32_t t : Ids(57, 2)) mine.push_back(t);
  for (int32_t t : Ids(40, 3)) theirs.push_back(t);
  auto suffix = [&](const std::vector<int32_t>& v) {
    return std::span<const int32_t>(v).subspan(P);
  };

  // The writer: another request with the same prefix and a different continuation, on pool
  // pages (its pages 0-1 are what the prefix cache would publish).
  SequenceState writer = model->NewSequence(so);
  std::vector<KvPageId> writer_pages;
  install_fresh(writer, 3, writer_pages);
  model->Forward(writer, std::span<const int32_t>(theirs).first(P), 0, false);
  model->Forward(writer, suffix(theirs), P, false);

  // Miss: everything computed by this sequence, in owned pages, same call boundaries.
  SequenceState miss = model->NewSequence(so);
  model->Forward(miss, std::span<const int32_t>(mine).first(P), 0, false);
  const ForwardResult want = model->Forward(miss, suffix(mine), P, /*all_logits=*/true);

  // Hit: adopts the writer's two prefix pages (shared, read-only), computes only the suffix
  // into a fresh page.
  SequenceState hit = model->NewSequence(so);
  std::vector<KvPageId> hit_pages = {writer_pages[0], writer_pages[1]};
  for (KvPageId id : hit_pages) {
    pool.Retain(id);
    layout.Install(hit, pool.data(id));
  }
  hit.length = P;
  install_fresh(hit, 1, hit_pages);
  const std::vector<std::byte> before(pool.data(writer_pages[1]),
                                      pool.data(writer_pages[1]) + layout.bytes);
  const ForwardResult got = model->Forward(hit, suffix(mine), P, /*all_logits=*/true);

  ASSERT_EQ(got.logits.size(), want.logits.size());
  EXPECT_EQ(std::memcmp(got.logits.data(), want.logits.data(), got.logits.size() * sizeof(float)),
            0)
      << "logits after the prefix hit differ from the miss";
  // The shared page was only read.
  EXPECT_EQ(std::memcmp(before.data(), pool.data(writer_pages[1]), layout.bytes), 0);
  // Sanity: the cached rows matter — a hit on pages of a different prefix changes the logits.
  SequenceState wrong = model->NewSequence(so);
  SequenceState other = model->NewSequence(so);
  std::vector<KvPageId> other_pages, wrong_pages;
  install_fresh(other, 2, other_pages);
  model->Forward(other, Ids(P, 4), 0, false);
  for (KvPageId id : other_pages) layout.Install(wrong, pool.data(id));
  wrong.length = P;
  install_fresh(wrong, 1, wrong_pages);
  const ForwardResult bad = model->Forward(wrong, suffix(mine), P, true);
  EXPECT_NE(std::memcmp(bad.logits.data(), want.logits.data(), bad.logits.size() * sizeof(float)),
            0);
}

INSTANTIATE_TEST_SUITE_P(CacheTypes, PrefixCacheTest,
                         ::testing::Values(PrefixCase{KvCacheType::kF32, Numerics::kF32},
                                           PrefixCase{KvCacheType::kFP8, Numerics::kF32},
                                           PrefixCase{KvCacheType::kFP8, Numerics::kBf16}),
                         [](const auto& info) {
                           const std::string kv = KvCacheTypeName(info.param.kv_cache);
                           return info.param.numerics == Numerics::kF32 ? kv
                                                                        : kv + "_bf16_numerics";
                         });

TEST(PrefixCacheKeys, RootKeySeparatesCacheOptions) {
  auto model = Model::Load(TinyDsaDir());
  auto key = [&](SequenceOptions o) { return KvPagePool::RootKey(model->NewSequence(o)); };
  const uint64_t base = key({});
  EXPECT_EQ(base, key({}));
  EXPECT_NE(base, key({.attention = AttentionMode::kDense}));
  EXPECT_NE(base, key({.index_topk = 8}));
  EXPECT_NE(base, key({.kv_cache = KvCacheType::kBF16}));
  EXPECT_NE(base, key({.kv_cache = KvCacheType::kFP8}));
}

}  // namespace
}  // namespace dsinfer
