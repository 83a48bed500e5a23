// No heap allocation on the per-token hot path: after one warm-up call (workspaces sized), the
// fused indexer + top-k (also with the key-range split) and the chunked sparse / dense MLA
// kernels allocate nothing. Counted by replacing the global operator new for this test binary
// (every std::vector / std::string / new goes through it).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/attention.h"
#include "kernels/indexer.h"
#include "kernels/quant.h"
#include "test_util.h"

// AddressSanitizer owns operator new (and reports new/free pairs across the two allocators), so
// the count runs in non-sanitizer builds only; the tests skip themselves under ASan.
#if defined(__SANITIZE_ADDRESS__)
#define DSINFER_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DSINFER_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef DSINFER_COUNT_ALLOCATIONS
#define DSINFER_COUNT_ALLOCATIONS 1
#endif

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

#if DSINFER_COUNT_ALLOCATIONS
// GCC flags free() of memory from operator new, not knowing this operator new is malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push  // (popped below: the unity build compiles later test files after it)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

namespace dsinfer {
namespace {

#define SKIP_WITHOUT_COUNTER() \
  if (!DSINFER_COUNT_ALLOCATIONS) GTEST_SKIP() << "operator new belongs to the sanitizer"

template <class F>
int64_t AllocationsOf(F&& f) {
  const int64_t before = g_allocations.load();
  f();
  return g_allocations.load() - before;
}

TEST(HotPathAllocationTest, CounterSeesVectors) {
  SKIP_WITHOUT_COUNTER();
  EXPECT_GE(AllocationsOf([] {
              std::vector<int> v(10);
              v[3] = 1;
              EXPECT_EQ(v[3], 1);
            }),
            1);
}

TEST(HotPathAllocationTest, IndexerTopKAllocatesNothingOnceWarm) {
  SKIP_WITHOUT_COUNTER();
  const int64_t S = 4, H = 16, d = 128, n = 700, k = 64, p0 = n - S;
  std::vector<float> qf = test::RandomVector(S * H * d, 1), kf = test::RandomVector(d, 2);
  std::vector<uint8_t> qc(S * H * d);
  std::vector<float> qs(S * H), w = test::RandomVector(S * H, 3);
  for (int64_t i = 0; i < S * H; ++i) ActQuant(&qf[i * d], d, &qc[i * d], &qs[i]);
  test::PagedBuffer keys(n, IndexKeyLayout{d}.RowBytes(), 6);
  for (int64_t t = 0; t < n; ++t) {
    kf[t % d] += 0.5f;
    ActQuant(kf.data(), d, reinterpret_cast<uint8_t*>(keys.row(t)),
             reinterpret_cast<float*>(keys.row(t) + d));
  }
  const IndexerChunk c{qc.data(), qs.data(), w.data(), S, H, d, p0};
  std::vector<int32_t> sel(S * k);
  for (IndexerPath path : SupportedIndexerPaths(d)) {
    if (path == IndexerPath::kScalar) continue;  // the specification path is not the hot path
    IndexerWorkspace ws;
    IndexerTopK(c, keys.view(), k, sel.data(), ws, path);
    EXPECT_EQ(AllocationsOf([&] { IndexerTopK(c, keys.view(), k, sel.data(), ws, path); }), 0)
        << IndexerPathName(path);
    IndexerTopKSplitKeys(c, keys.view(), k, sel.data(), path);
    EXPECT_EQ(AllocationsOf([&] { IndexerTopKSplitKeys(c, keys.view(), k, sel.data(), path); }), 0)
        << IndexerPathName(path) << " split";
  }
}

TEST(HotPathAllocationTest, MlaAttentionAllocatesNothingOnceWarm) {
  SKIP_WITHOUT_COUNTER();
  const int64_t S = 3, H = 8, R = 128, dr = 32, n = 2500, k = 100, p0 = n - S;  // 3 split blocks
  const LatentLayout l{KvCacheType::kFP8, R, dr};
  test::PagedBuffer cache(n, l.RowBytes(), 6);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> c = test::RandomVector(R, 10 + t), pe = test::RandomVector(dr, 900 + t);
    l.Encode(c.data(), pe.data(), cache.row(t));
  }
  std::vector<float> qa = test::RandomVector(S * H * R, 1), qp = test::RandomVector(S * H * dr, 2);
  const MlaChunk q{qa.data(), qp.data(), S, H, 0.2f, p0};
  std::vector<int32_t> sel(S * k);
  for (size_t i = 0; i < sel.size(); ++i) sel[i] = static_cast<int32_t>((i * 13) % p0);
  std::vector<float> o(S * H * R);
  for (int i = 1; i <= static_cast<int>(DetectCpu().best); ++i) {
    const Isa isa = static_cast<Isa>(i);
    MlaWorkspace ws;
    SparseMlaAttentionChunk(q, l, cache.view(), sel.data(), k, o.data(), ws, isa);
    DenseMlaAttentionChunk(q, l, cache.view(), o.data(), ws, isa);
    DenseMlaAttentionSplitKeys(q, l, cache.view(), o.data(), isa);
    EXPECT_EQ(AllocationsOf([&] {
                SparseMlaAttentionChunk(q, l, cache.view(), sel.data(), k, o.data(), ws, isa);
                DenseMlaAttentionChunk(q, l, cache.view(), o.data(), ws, isa);
                DenseMlaAttentionSplitKeys(q, l, cache.view(), o.data(), isa);
              }),
              0)
        << IsaName(isa);
  }
}

}  // namespace
}  // namespace dsinfer
