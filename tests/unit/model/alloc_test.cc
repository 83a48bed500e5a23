// No allocation on the per-token hot path (issue #5): after warm-up, a steady-state decode step
// of a batch (N sequences, one token each, no cache growth into a new page) must allocate nothing
// — neither in the model code nor in the kernels it calls — apart from the returned results (the
// vector of N `ForwardResult`s and their N logits vectors). This binary replaces the global
// operator new/delete with counting versions that, while recording, keep each allocation's return
// addresses; the addresses are then named from the executable's own symbol table and each
// allocation is charged to the kernel entry point on its stack or else to the model, so a
// failure names the culprit.
#include <cxxabi.h>
#include <elf.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "kernels/topk.h"
#include "model/model.h"
#include "tiny_checkpoint.h"

namespace {

constexpr int kMaxRecords = 4096;
constexpr int kMaxFrames = 40;

struct Record {
  int frames;
  void* pc[kMaxFrames];
};

std::atomic<bool> g_recording{false};
std::atomic<int> g_count{0};
Record g_records[kMaxRecords];

void* TryAllocate(std::size_t n, std::size_t align) noexcept {
  if (g_recording.load(std::memory_order_relaxed)) {
    const int i = g_count.fetch_add(1, std::memory_order_relaxed);
    if (i < kMaxRecords) g_records[i].frames = backtrace(g_records[i].pc, kMaxFrames);
  }
  if (n == 0) n = 1;
  return align <= alignof(std::max_align_t)
             ? std::malloc(n)
             : std::aligned_alloc(align, (n + align - 1) / align * align);
}

void* Allocate(std::size_t n, std::size_t align) {
  void* p = TryAllocate(n, align);
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return Allocate(n, 0); }
void* operator new[](std::size_t n) { return Allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return Allocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return Allocate(n, static_cast<std::size_t>(a));
}
// Every form, nothrow ones included (a sanitizer runtime defines those separately; a
// replacement must cover them all so that nothing pairs its allocator with ours).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return TryAllocate(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return TryAllocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return TryAllocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return TryAllocate(n, static_cast<std::size_t>(a));
}
// (GCC at -O1 takes these frees for ones that mismatch `new`: they pair with Allocate above.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace dsinfer {
namespace {

// Function symbols of this executable (from its ELF .symtab), demangled, at run-time addresses.
class Symbols {
 public:
  Symbols() {
    const int fd = ::open("/proc/self/exe", O_RDONLY);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) return;
    void* map = ::mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) return;
    const auto* base = static_cast<const char*>(map);
    const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    const uintptr_t bias = LoadBias();
    for (int i = 0; i < eh->e_shnum; ++i) {
      if (sh[i].sh_type != SHT_SYMTAB) continue;
      const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
      const char* names = base + sh[sh[i].sh_link].sh_offset;
      for (size_t j = 0; j < sh[i].sh_size / sizeof(Elf64_Sym); ++j)
        if (ELF64_ST_TYPE(syms[j].st_info) == STT_FUNC && syms[j].st_size > 0)
          funcs_.push_back({bias + syms[j].st_value, bias + syms[j].st_value + syms[j].st_size,
                            Demangle(names + syms[j].st_name)});
    }
    ::munmap(map, st.st_size);
    std::sort(funcs_.begin(), funcs_.end(),
              [](const Func& a, const Func& b) { return a.lo < b.lo; });
  }
  bool empty() const { return funcs_.empty(); }

  // Name of the function containing return address pc ("" if not in the executable).
  std::string Name(void* pc) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(pc) - 1;  // inside the call instruction
    auto it = std::upper_bound(funcs_.begin(), funcs_.end(), a,
                               [](uintptr_t x, const Func& f) { return x < f.lo; });
    if (it == funcs_.begin()) return "";
    --it;
    return a < it->hi ? it->name : "";
  }

 private:
  struct Func {
    uintptr_t lo, hi;
    std::string name;
  };
  static uintptr_t LoadBias() {
    uintptr_t bias = 0;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* out) {
          *static_cast<uintptr_t*>(out) = info->dlpi_addr;
          return 1;  // the first object is the executable
        },
        &bias);
    return bias;
  }
  static std::string Demangle(const char* name) {
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string s = status == 0 && d ? d : name;
    std::free(d);
    return s;
  }
  std::vector<Func> funcs_;
};

// Public kernel entry points (src/kernels): an allocation with one of these on its stack is the
// kernel's (including OpenMP regions outlined from it, "... [clone ._omp_fn.N]").
const char* const kKernels[] = {
    "dsinfer::Linear(",         "dsinfer::Dot(",          "dsinfer::DecodeRow(",
    "dsinfer::TopK(",           "dsinfer::IndexerScores(", "dsinfer::SparseMlaAttention(",
    "dsinfer::RmsNorm(",        "dsinfer::LayerNorm(",    "dsinfer::Hadamard(",
    "dsinfer::ActQuant(",       "dsinfer::Dequant(",      "dsinfer::LatentLayout::",
    "dsinfer::RopeTable::",     "dsinfer::Silu(",         "dsinfer::Sigmoid(",
    "dsinfer::Softmax(",        "dsinfer::LinearRows(",   "dsinfer::LinearTransposed(",
    "dsinfer::IndexerTopK(",    "dsinfer::IndexerTopKSplitKeys(",
    "dsinfer::SparseMlaAttentionChunk(", "dsinfer::DenseMlaAttentionChunk(",
};

struct Charge {
  std::string owner;  // a kernel entry, or the innermost dsinfer function
  bool kernel = false;
};

Charge ChargeOf(const Symbols& syms, const Record& r) {
  Charge c;
  for (int f = 0; f < r.frames; ++f) {
    const std::string name = syms.Name(r.pc[f]);
    if (name.rfind("dsinfer::", 0) != 0) continue;
    if (c.owner.empty()) c.owner = name;
    for (const char* k : kKernels)
      if (name.rfind(k, 0) == 0) return {name.substr(0, name.find('(')), true};
  }
  if (c.owner.empty()) c.owner = "(no dsinfer frame)";
  return c;
}

TEST(AllocTest, SteadyStateDecodeAllocatesOnlyTheResults) {
  auto model = Model::Load(MakeCheckpoint("batch_tiny", 1));
  const int64_t V = model->config().vocab_size;
  // DSA with the indexer active, another top-k, dense, and an fp8 cache; lengths chosen so the
  // decode steps below stay inside each sequence's current 64-token page.
  const std::vector<SequenceOptions> options = {
      {}, {.index_topk = 5}, {.attention = AttentionMode::kDense}, {.kv_cache = KvCacheType::kFP8}};
  const std::vector<int64_t> prefill = {20, 33, 17, 40};
  std::vector<SequenceState> seqs;
  for (size_t i = 0; i < options.size(); ++i) {
    seqs.push_back(model->NewSequence(options[i]));
    model->Forward(seqs.back(), Ids(prefill[i], V, 70 + i), 0, false);
  }
  const std::vector<int32_t> next = Ids(8, V, 99);
  auto step = [&](int k) {
    std::vector<BatchEntry> batch;
    for (SequenceState& s : seqs) batch.push_back({&s, {&next[k], 1}, false});
    return batch;
  };
  for (int k = 0; k < 2; ++k) model->ForwardBatch(step(k));  // warm-up: workspace sizes
  void* warm[4];
  backtrace(warm, 4);  // loads the unwinder before recording
  const Symbols syms;
  ASSERT_FALSE(syms.empty()) << "no symbol table in /proc/self/exe";

  constexpr int kSteps = 3;
  std::vector<std::vector<BatchEntry>> batches;
  for (int k = 0; k < kSteps; ++k) batches.push_back(step(2 + k));
  std::vector<std::vector<ForwardResult>> results(kSteps);
  g_count = 0;
  g_recording = true;
  for (int k = 0; k < kSteps; ++k) results[k] = model->ForwardBatch(batches[k]);
  g_recording = false;
  const int n = g_count.load();
  ASSERT_LE(n, kMaxRecords);

  std::map<std::string, int> kernel, model_level;
  int result_allocs = 0;
  for (int i = 0; i < n; ++i) {
    const Charge c = ChargeOf(syms, g_records[i]);
    if (c.kernel)
      ++kernel[c.owner];
    else if (c.owner.rfind("dsinfer::Model::ForwardBatch(", 0) == 0)
      ++result_allocs;
    else
      ++model_level[c.owner];
  }
  std::printf("%d allocations in %d decode steps of %zu sequences\n", n, kSteps, seqs.size());
  for (const auto& [name, count] : kernel)
    ADD_FAILURE() << count << " allocation(s) in kernel " << name << " ("
                  << double(count) / kSteps << " per step)";
  for (const auto& [name, count] : model_level)
    ADD_FAILURE() << count << " allocation(s) in model code: " << name;
  // Per step: the vector of results + one logits vector per sequence.
  EXPECT_EQ(result_allocs, kSteps * (1 + static_cast<int>(seqs.size())));
  for (const SequenceState& s : seqs) EXPECT_LE(s.length, kKvPageRows);  // no page growth
}

// The counting hook itself: an allocation in a kernel and one in this test are told apart.
TEST(AllocTest, HookChargesKernelsAndOthers) {
  void* warm[4];
  backtrace(warm, 4);
  const Symbols syms;
  std::vector<float> scores = {3, 1, 2};
  g_count = 0;
  g_recording = true;
  std::vector<int32_t> top = TopK(scores.data(), 3, 2);
  auto* mine = new std::vector<int>(5);
  g_recording = false;
  delete mine;
  ASSERT_GE(g_count.load(), 2);
  int topk = 0, other = 0;
  for (int i = 0; i < g_count.load(); ++i) {
    const Charge c = ChargeOf(syms, g_records[i]);
    topk += c.kernel && c.owner == "dsinfer::TopK";
    other += !c.kernel;
  }
  EXPECT_GE(topk, 1);
  EXPECT_GE(other, 1);
}

}  // namespace
}  // namespace dsinfer
