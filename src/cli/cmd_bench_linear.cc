// `dsinfer bench gemv` and `dsinfer bench gemm`: achieved GB/s and GFLOP/s of the Linear kernels
// (kernels/linear.h) on the projection shapes of a model config — default the layer671b preset,
// or `--model DIR`'s config.json, or explicit `--shape NAME=ROWSxCOLS` — as a fraction of this
// machine's roofline measured in the same run (kernels/roofline.h; or given with
// --roofline-gbps / --roofline-gflops).
//
// Weights are synthetic and live in memory: random finite e4m3 codes with positive block scales
// (or random BF16/F16/F32 values, or random ggml blocks — every byte random but the f16 scales,
// which are small and finite), never a checkpoint's. `--dtype` takes a comma-separated list, so
// one run compares weight types on the same shapes (e.g. fp8,bf16,q8_0,q4_k,q4_k.i8; `.i8`:
// int8 activations on VNNI, kernels/qblocks.h). MLA's wkv_b products are measured for the
// non-block types only (a GGUF kv_b is decoded to f32 at load). The GEMV bench reads them cold: it
// cycles through enough copies of each matrix to exceed the last-level cache many times over,
// as decode streams every layer's weights once per step. MLA's per-head products of `wkv_b`
// (`absorb`: q_abs = W_UKᵀ q_nope, `project`: o = W_UV o_lat) run as the model would call them:
// one kernel call per head inside a statically scheduled parallel loop over heads (absorb through
// the transposed W_UK copy made at load, `TransposeHeads`, when the FP8 blocks allow it, as for the
// official dimensions).
//
// `bench gemm` measures, in the same run, the f32 GEMM the model uses (`--numerics f32`) and the
// bf16-activation GEMM (`--numerics bf16`, `LinearRowsBf16`: activations rounded to bf16,
// `vdpbf16ps`; docs/numerics.md "bf16 numerics"), by default both when this CPU has
// AVX512-BF16, and reports each as a fraction of the f32 FMA peak and of the BF16 dot peak.
// `bench gemv` measures the bf16 numerics too when asked (`--numerics f32,bf16`; default f32).
// `--bf16-kernel gemv|gemm` forces one of the bf16 path's two kernels (kernels/linear_bf16.h;
// they give the same bits) instead of the model's choice by n.
//
// Roofline fraction = max(bytes / bandwidth, flops / peak) / time: the attainable time of the
// bound that applies (memory read bandwidth; the f32 FMA peak for f32 numerics, the BF16 dot peak
// for bf16 numerics, the VNNI int8 dot peak for block weights with int8 activations, `.i8`)
// over the measured time. bytes = weight codes + block scales (activations
// stay in cache).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mix.h"
#include "base/threads.h"
#include "cli/commands.h"
#include "format/config.h"
#include "format/dtype.h"
#include "format/ggml_types.h"
#include "kernels/cpu.h"
#include "kernels/linear.h"
#include "kernels/linear_bf16.h"
#include "kernels/qblocks.h"
#include "kernels/roofline.h"
#include "tools/gen_model.h"

namespace dsinfer::cli {
namespace {

enum class Kind { kLinear, kAbsorb, kProject };

struct Shape {
  std::string name;
  int64_t rows = 0, cols = 0;  // the weight matrix [rows, cols]
  Kind kind = Kind::kLinear;
  int64_t heads = 0, dn = 0, dv = 0;  // kAbsorb / kProject: wkv_b viewed [heads, dn+dv, cols]

  // Weight rows the product reads and multiply-adds per activation row.
  int64_t used_rows() const {
    return kind == Kind::kAbsorb ? heads * dn : kind == Kind::kProject ? heads * dv : rows;
  }
};

struct Options {
  bool gemm = false;  // gemm: compute-bound batch; gemv: decode
  std::optional<std::string> model;
  std::string preset = "layer671b";
  std::vector<std::string> shapes;  // NAME=ROWSxCOLS, replaces the config's shapes
  std::vector<int64_t> ns;
  std::vector<std::string> dtypes = {"fp8"};
  double seconds = 0.3;
  double roofline_gbps = 0, roofline_gflops = 0, roofline_bf16_gflops = 0,
         roofline_int8_gops = 0;
  std::vector<std::string> numerics;  // f32 and/or bf16 (default: gemm both if it can, gemv f32)
  std::string bf16_kernel = "auto";   // auto | gemv | gemm (kernels/linear_bf16.h)
  std::string bf16_layout = "rows";   // rows | pairs (FP8 codes repacked: RepackFp8Pairs)
  std::string int8_layout = "tiles";  // tiles (the .i8 tile types on VNNI/AVX2: the loader's copy) | rows
  bool json = false;
};

// The distinct projection shapes of one layer of `c` (names joined when shapes coincide).
std::vector<Shape> ConfigShapes(const ModelConfig& c) {
  std::vector<Shape> s;
  auto add = [&s](std::string name, int64_t rows, int64_t cols) {
    for (Shape& e : s)
      if (e.kind == Kind::kLinear && e.rows == rows && e.cols == cols) {
        e.name += "|" + name;
        return;
      }
    s.push_back({std::move(name), rows, cols});
  };
  const int64_t H = c.num_attention_heads, hidden = c.hidden_size;
  if (c.q_lora_rank) {
    add("wq_a", *c.q_lora_rank, hidden);
    add("wq_b", H * c.qk_head_dim(), *c.q_lora_rank);
  } else {
    add("q_proj", H * c.qk_head_dim(), hidden);
  }
  add("wkv_a", c.kv_lora_rank + c.qk_rope_head_dim, hidden);
  const int64_t wkv_b_rows = H * (c.qk_nope_head_dim + c.v_head_dim);
  for (Kind k : {Kind::kAbsorb, Kind::kProject})
    s.push_back({k == Kind::kAbsorb ? "wkv_b.absorb" : "wkv_b.project", wkv_b_rows, c.kv_lora_rank,
                 k, H, c.qk_nope_head_dim, c.v_head_dim});
  add("wo", hidden, H * c.v_head_dim);
  if (c.has_indexer() && c.q_lora_rank) {
    add("indexer.wq_b", *c.index_n_heads * *c.index_head_dim, *c.q_lora_rank);
    add("indexer.wk", *c.index_head_dim, hidden);
  }
  bool dense = false, moe = false;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) (c.is_moe_layer(l) ? moe : dense) = true;
  if (moe) {
    add("expert.w1", c.moe_intermediate_size, hidden);
    add("expert.w3", c.moe_intermediate_size, hidden);
    add("expert.w2", hidden, c.moe_intermediate_size);
    if (c.n_shared_experts > 0) {
      add("shared.w1", c.n_shared_experts * c.moe_intermediate_size, hidden);
      add("shared.w3", c.n_shared_experts * c.moe_intermediate_size, hidden);
      add("shared.w2", hidden, c.n_shared_experts * c.moe_intermediate_size);
    }
  }
  if (dense) {
    add("mlp.w1", c.intermediate_size, hidden);
    add("mlp.w3", c.intermediate_size, hidden);
    add("mlp.w2", hidden, c.intermediate_size);
  }
  return s;
}

Shape ParseShape(const std::string& spec) {
  const size_t eq = spec.find('='), x = spec.find('x', eq == std::string::npos ? 0 : eq);
  Shape s;
  try {
    if (eq == 0 || eq == std::string::npos || x == std::string::npos)
      throw std::invalid_argument("");
    size_t used = 0;
    s.name = spec.substr(0, eq);
    s.rows = std::stoll(spec.substr(eq + 1, x - eq - 1), &used);
    if (used != x - eq - 1) throw std::invalid_argument("");
    s.cols = std::stoll(spec.substr(x + 1), &used);
    if (used != spec.size() - x - 1) throw std::invalid_argument("");
  } catch (const std::exception&) {
    throw Error("--shape '" + spec + "': expected NAME=ROWSxCOLS, e.g. w1=2048x7168");
  }
  if (s.rows <= 0 || s.cols <= 0 || s.rows * s.cols > (int64_t{1} << 34))
    throw Error("--shape '" + spec + "': rows and cols must be positive (at most 2^34 elements)");
  return s;
}

// A weight type of the bench: a dtype, and for a block type whether activations go int8.
struct WeightKind {
  DType dtype = DType::kF8E4M3;
  bool int8 = false;
  std::string name;
};

WeightKind ParseDtype(const std::string& d) {
  static const std::vector<WeightKind> kinds = {
      {DType::kF8E4M3, false, "fp8"},      {DType::kBF16, false, "bf16"},
      {DType::kF16, false, "f16"},         {DType::kF32, false, "f32"},
      {DType::kQ8_0, false, "q8_0"},       {DType::kQ4_K, false, "q4_k"},
      {DType::kQ5_K, false, "q5_k"},       {DType::kQ6_K, false, "q6_k"},
      {DType::kQ8_0, true, "q8_0.i8"},     {DType::kQ4_K, true, "q4_k.i8"},
      {DType::kQ5_K, true, "q5_k.i8"},     {DType::kQ6_K, true, "q6_k.i8"},
      {DType::kQ2_K, false, "q2_k"},       {DType::kQ3_K, false, "q3_k"},
      {DType::kQ2_K, true, "q2_k.i8"},     {DType::kQ3_K, true, "q3_k.i8"},
      {DType::kIQ4_NL, false, "iq4_nl"},   {DType::kIQ4_XS, false, "iq4_xs"},
      {DType::kIQ4_NL, true, "iq4_nl.i8"}, {DType::kIQ4_XS, true, "iq4_xs.i8"}};
  for (const WeightKind& k : kinds)
    if (k.name == d) return k;
  throw Error("--dtype '" + d +
              "': expected fp8, bf16, f16, f32, q8_0, q4_k, q5_k, q6_k, q8_0.i8, q4_k.i8, "
              "q5_k.i8, q6_k.i8, q2_k, q3_k, q2_k.i8, q3_k.i8, iq4_nl, iq4_xs, iq4_nl.i8 or "
              "iq4_xs.i8 (or a comma-separated list of them)");
}

// One synthetic weight matrix with its storage.
struct Weight {
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  WeightView view;
  std::shared_ptr<const OwnedWeight> wuk_t;  // kAbsorb: the model's transposed W_UK copy
  std::shared_ptr<const OwnedWeight> pairs;  // --bf16-layout pairs: the FP8 codes repacked
};

// splitmix64: fast deterministic fill for hundreds of MiB of synthetic weights.
uint64_t Next(uint64_t& state) { return Mix64(state += kSplitMixGamma); }

// Values ~ ±0.05 for BF16/F16/F32: a uniform draw, exactly representable after rounding.
float SmallValue(uint64_t r) { return (static_cast<int>(r % 2001) - 1000) * 5e-5f; }

Weight MakeWeight(const WeightKind& kind, int64_t rows, int64_t cols, uint64_t seed) {
  Weight w;
  uint64_t state = seed;
  const DType dtype = kind.dtype;
  const int64_t count = rows * cols;
  w.bytes.resize(static_cast<size_t>(rows * DTypeRowBytes(dtype, cols)));
  if (dtype == DType::kF8E4M3 || IsBlockDType(dtype)) {
    for (size_t i = 0; i < w.bytes.size(); i += 8) {
      const uint64_t r = Next(state);
      for (size_t b = 0; b < 8 && i + b < w.bytes.size(); ++b) {
        const auto code = static_cast<uint8_t>(r >> (8 * b));
        w.bytes[i + b] = (code & 0x7f) == 0x7f ? code - 1 : code;  // finite codes only
      }
    }
  }
  if (dtype == DType::kF8E4M3) {
    w.scales.resize(((rows + 127) / 128) * ((cols + 127) / 128));
    for (float& s : w.scales) s = 1e-4f + (Next(state) % 1000) * 1e-6f;
  } else if (IsBlockDType(dtype)) {  // small finite f16 scales (d, and dmin where the type has one)
    const size_t bb = DTypeSize(dtype);
    const bool one_d = dtype == DType::kQ8_0 || dtype == DType::kIQ4_NL || dtype == DType::kIQ4_XS;
    const std::vector<size_t> fields = one_d                   ? std::vector<size_t>{0}
                                       : dtype == DType::kQ6_K ? std::vector<size_t>{208}
                                       : dtype == DType::kQ2_K ? std::vector<size_t>{80, 82}
                                       : dtype == DType::kQ3_K ? std::vector<size_t>{108}
                                                               : std::vector<size_t>{0, 2};
    for (size_t off = 0; off < w.bytes.size(); off += bb)
      for (size_t f : fields) {
        const uint16_t h = FloatToF16(1e-4f + (Next(state) % 1000) * 1e-6f);
        std::memcpy(&w.bytes[off + f], &h, 2);
      }
  } else {
    for (int64_t i = 0; i < count; ++i) {
      const float v = SmallValue(Next(state));
      if (dtype == DType::kF32) {
        std::memcpy(&w.bytes[4 * i], &v, 4);
      } else {
        const uint16_t h = dtype == DType::kBF16 ? FloatToBF16(v) : FloatToF16(v);
        std::memcpy(&w.bytes[2 * i], &h, 2);
      }
    }
  }
  w.view = WeightView{.dtype = dtype,
                      .rows = rows,
                      .cols = cols,
                      .data = w.bytes.data(),
                      .scales = w.scales.empty() ? nullptr : w.scales.data()};
  w.view.int8_activations = kind.int8;
  return w;
}

// Whether the bf16-activation GEMM can run the product of `s` (it has no transposed form: the
// absorption needs the transposed W_UK copy).
bool Bf16Runs(const Shape& s, const Weight& weight) {
  return s.kind != Kind::kAbsorb || weight.wuk_t != nullptr;
}

// The bf16-activation product `LinearRowsBf16` on `kernel` (kAuto: as the model calls it).
void RowsBf16(Bf16Kernel kernel, const float* x, int64_t xs, int64_t n, const WeightView& w,
              int64_t rb, int64_t re, float* y, int64_t ys) {
  if (kernel == Bf16Kernel::kAuto)
    return LinearRowsBf16(LinearBf16Path(), x, xs, n, w, rb, re, y, ys);
  LinearRowsBf16Kernel(kernel, x, xs, n, w, rb, re, y, ys);
}

// One call of the product of `s` on `n` activation rows, as the model makes it (`bf16`: with the
// bf16-activation GEMM, on `LinearBf16Path()` and `kernel`; requires Bf16Runs).
void RunProduct(const Shape& s, const Weight& weight, int64_t n, const float* x, float* y,
                bool bf16, Bf16Kernel kernel) {
  const WeightView& w = weight.view;
  if (s.kind == Kind::kLinear) {
    if (bf16) {
      const WeightView& wb = weight.pairs ? weight.pairs->view : w;
      return RowsBf16(kernel, x, w.cols, n, wb, 0, w.rows, y, w.rows);
    }
    return Linear(x, n, w, y);
  }
  const int64_t H = s.heads, R = s.cols, dq = s.dn + s.dv;
  if (s.kind == Kind::kAbsorb) {  // x = q_nope [n, H, dn], y = q_abs [n, H, R]
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < H; ++h) {
      DSINFER_NOTE_THREAD("bench_linear.absorb_q");
      if (bf16)
        RowsBf16(kernel, x + h * s.dn, H * s.dn, n, weight.wuk_t->view, h * R, (h + 1) * R,
                 y + h * R, H * R);
      else if (weight.wuk_t)  // as the model does when the FP8 blocks allow the copy
        LinearRows(x + h * s.dn, H * s.dn, n, weight.wuk_t->view, h * R, (h + 1) * R, y + h * R,
                   H * R);
      else
        LinearTransposed(x + h * s.dn, H * s.dn, n, w, h * dq, h * dq + s.dn, y + h * R, H * R);
    }
    return;
  }
#pragma omp parallel for schedule(static)  // x = o_lat [n, H, R], y = o [n, H, dv]
  for (int64_t h = 0; h < H; ++h) {
    DSINFER_NOTE_THREAD("bench_linear.expand_o");
    if (bf16)
      RowsBf16(kernel, x + h * R, H * R, n, w, h * dq + s.dn, h * dq + s.dn + s.dv, y + h * s.dv,
               H * s.dv);
    else
      LinearRows(x + h * R, H * R, n, w, h * dq + s.dn, h * dq + s.dn + s.dv, y + h * s.dv,
                 H * s.dv);
  }
}

struct Measurement {
  double seconds = 0;  // best time of one call
  int64_t bytes = 0, flops = 0;
};

// Copies of one synthetic matrix: enough to exceed the last-level cache many times over when
// the weights must be read cold (`cold`), else one.
std::vector<Weight> MakeCopies(const Shape& s, const WeightKind& kind, bool cold, bool pairs,
                               bool bf16_blocks, bool int8_tiles) {
  const int64_t bytes = s.rows * DTypeRowBytes(kind.dtype, s.cols);
  const int64_t copies = cold ? std::max<int64_t>(1, (int64_t{256} << 20) / bytes + 1) : 1;
  std::vector<Weight> ws;
  for (int64_t i = 0; i < copies; ++i) {
    ws.push_back(MakeWeight(kind, s.rows, s.cols, 1000 + i));
    if (s.kind == Kind::kAbsorb)
      ws.back().wuk_t = TransposeHeads(ws.back().view, s.heads, s.dn + s.dv, 0, s.dn);
    if (pairs && s.kind == Kind::kLinear && kind.dtype == DType::kF8E4M3)
      ws.back().pairs = RepackFp8Pairs(ws.back().view);
    // Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* in bf16 numerics run only repacked (as the model with --block-acts bf16)
    if (bf16_blocks && s.kind == Kind::kLinear && Bf16BlockDtype(kind.dtype) && !kind.int8)
      ws.back().pairs = RepackBlocksBf16(ws.back().view);
    // Block weights (every type) with int8 activations on VNNI or AVX2: the 16-row tile copy the loader makes (the
    // int8 tile kernels), unless --int8-layout rows.
    if (int8_tiles && s.kind == Kind::kLinear && qblocks::Int8TileDtype(kind.dtype) && kind.int8 &&
        qblocks::Int8TilesOn(LinearIsa())) {
      ws.back().pairs = RepackBlocksBf16(ws.back().view);
      ws.back().view.repacked = &ws.back().pairs->view;
      ws.back().view.repacked_int8 = true;
    }
  }
  return ws;
}

// Best time of one call, each call on the next copy (after one warm-up round through all
// copies), until `seconds` have passed and every copy was timed at least twice.
Measurement Measure(const Shape& s, const std::vector<Weight>& ws, int64_t n, double seconds,
                    bool bf16, Bf16Kernel kernel) {
  using Clock = std::chrono::steady_clock;
  const int64_t in = s.kind == Kind::kLinear   ? s.cols
                     : s.kind == Kind::kAbsorb ? s.heads * s.dn
                                               : s.heads * s.cols;
  const int64_t out = s.kind == Kind::kLinear   ? s.rows
                      : s.kind == Kind::kAbsorb ? s.heads * s.cols
                                                : s.heads * s.dv;
  std::vector<float> x(n * in), y(n * out);  // [n, in] activations, [n, out] results
  uint64_t state = 7;
  for (float& v : x) v = SmallValue(Next(state)) * 20;
  const WeightView& w0 = ws[0].view;
  Measurement m;
  m.bytes = s.used_rows() * DTypeRowBytes(w0.dtype, s.cols) +
            static_cast<int64_t>(ws[0].scales.size() * sizeof(float)) * s.used_rows() / s.rows;
  m.flops = 2 * n * s.used_rows() * s.cols;
  m.seconds = 1e30;
  const auto start = Clock::now();
  for (size_t call = 0;; ++call) {
    const Weight& w = ws[call % ws.size()];
    const auto t0 = Clock::now();
    RunProduct(s, w, n, x.data(), y.data(), bf16, kernel);
    const auto t1 = Clock::now();
    if (call >= ws.size())
      m.seconds = std::min(m.seconds, std::chrono::duration<double>(t1 - t0).count());
    if (call >= 3 * ws.size() && std::chrono::duration<double>(t1 - start).count() >= seconds)
      break;
  }
  return m;
}

void Progress(const char* what) { std::fprintf(stderr, "bench: measuring %s...\n", what); }

// The roofline: the given figures, the rest measured now (memory only when no bandwidth was
// given; the BF16 dot peak exists only on CPUs whose bf16 GEMM path is usable, the int8 one only
// with AVX-512 VNNI).
roofline::Result Roofline(const Options& o, bool need_bf16, bool need_int8) {
  roofline::Result r;
  r.read_gbps = o.roofline_gbps;
  r.fma_gflops = o.roofline_gflops;
  r.bf16_gflops = o.roofline_bf16_gflops;
  r.int8_gops = o.roofline_int8_gops;
  if (r.read_gbps > 0 && r.fma_gflops > 0 && (!need_bf16 || r.bf16_gflops > 0) &&
      (!need_int8 || r.int8_gops > 0))
    return r;
  roofline::Options opts;
  opts.bytes = size_t{512} << 20;
  opts.seconds = 0.3;
  opts.memory = r.read_gbps <= 0;
  opts.progress = Progress;
  const roofline::Result m = roofline::Measure(opts);
  if (r.read_gbps <= 0) r.read_gbps = m.read_gbps;
  if (r.fma_gflops <= 0) r.fma_gflops = m.fma_gflops;
  if (r.bf16_gflops <= 0) r.bf16_gflops = m.bf16_gflops;
  if (r.int8_gops <= 0) r.int8_gops = m.int8_gops;
  return r;
}

// The numerics a bench measures: --numerics as given (checked against the CPU and the weight
// dtype), else `gemm` f32 plus bf16 when this CPU runs the bf16 GEMM on these weights, `gemv` f32.
std::vector<std::string> NumericsToRun(const Options& o, const WeightKind& kind) {
  const bool bf16_weights = kind.dtype == DType::kF8E4M3 || kind.dtype == DType::kBF16 ||
                            (Bf16BlockDtype(kind.dtype) && !kind.int8);
  if (o.numerics.empty()) {
    if (o.gemm && DetectCpu().Bf16DotUsable() && bf16_weights) return {"f32", "bf16"};
    return {"f32"};
  }
  for (const std::string& m : o.numerics) {
    if (m != "f32" && m != "bf16") throw Error("--numerics '" + m + "': expected f32 or bf16");
    if (m == "bf16" && !bf16_weights)
      throw Error("--numerics bf16 needs fp8, bf16, q8_0, q4_k, q5_k, q6_k, iq4_nl or iq4_xs weights (not .i8), not --dtype " +
                  kind.name);
    if (m == "bf16" && !DetectCpu().Bf16DotUsable())
      throw Error("--numerics bf16: no AVX512-BF16 GEMM on this CPU (" + DetectCpu().Describe() +
                  "); its scalar specification is too slow to benchmark");
  }
  return o.numerics;
}

int RunLinearBench(const Options& o) {
  Bf16Kernel kernel = Bf16Kernel::kAuto;
  if (o.bf16_kernel == "gemv") {
    kernel = Bf16Kernel::kGemv;
  } else if (o.bf16_kernel == "gemm") {
    kernel = Bf16Kernel::kGemm;
  } else if (o.bf16_kernel != "auto") {
    throw Error("--bf16-kernel '" + o.bf16_kernel + "': expected auto, gemv or gemm");
  }
  if (o.bf16_layout != "rows" && o.bf16_layout != "pairs")
    throw Error("--bf16-layout '" + o.bf16_layout + "': expected rows or pairs");
  const bool pairs = o.bf16_layout == "pairs";
  if (o.int8_layout != "tiles" && o.int8_layout != "rows")
    throw Error("--int8-layout '" + o.int8_layout + "': expected tiles or rows");
  std::vector<WeightKind> kinds;
  std::string kind_names;
  for (const std::string& d : o.dtypes) {
    kinds.push_back(ParseDtype(d));
    kind_names += (kind_names.empty() ? "" : ",") + d;
  }
  bool any_fp8 = false, any_int8 = false;
  for (const WeightKind& k : kinds) {
    any_fp8 |= k.dtype == DType::kF8E4M3;
    any_int8 |= k.int8;
  }
  // Every (weight type, numerics) pair that runs: bf16 numerics only for fp8/bf16 weights.
  std::vector<std::vector<std::string>> numerics;
  bool any_bf16 = false;
  for (const WeightKind& k : kinds) {
    numerics.push_back(NumericsToRun(o, k));
    for (const std::string& m : numerics.back()) any_bf16 |= m == "bf16";
  }
  std::vector<Shape> shapes;
  std::string source;
  if (!o.shapes.empty()) {
    for (const std::string& spec : o.shapes) shapes.push_back(ParseShape(spec));
    source = "--shape";
  } else {
    const ModelConfig c =
        o.model ? ModelConfig::FromFile(*o.model + "/config.json") : PresetConfig(o.preset);
    shapes = ConfigShapes(c);
    source = o.model ? *o.model + "/config.json" : "preset " + o.preset;
  }
  for (const WeightKind& k : kinds)
    for (const Shape& s : shapes)
      if (IsBlockDType(k.dtype) && s.kind == Kind::kLinear &&
          s.cols % DTypeBlockElems(k.dtype) != 0)
        throw Error("--dtype " + k.name + ": shape '" + s.name + "' has " + std::to_string(s.cols) +
                    " columns, not a multiple of the " + std::to_string(DTypeBlockElems(k.dtype)) +
                    "-element block");
  const char* bench = o.gemm ? "gemm" : "gemv";
  const std::vector<int64_t> ns = !o.ns.empty() ? o.ns
                                  : o.gemm      ? std::vector<int64_t>{512}
                                                : std::vector<int64_t>{1, 32};
  // The int8 dot peak is the bound of the int8 products only when they run on VNNI.
  const bool int8_peak = any_int8 && qblocks::Int8UsesVnni(LinearIsa());
  const roofline::Result roof = Roofline(o, any_bf16, int8_peak);
  const int threads = omp_get_max_threads();
  const std::string isa = IsaName(LinearIsa());
  if (!o.json) {
    std::printf("bench %s: shapes of %s; synthetic %s weights in memory (random codes%s)%s\n",
                bench, source.c_str(), kind_names.c_str(),
                any_fp8 ? ", FP8 with 128x128 block scales" : "",
                o.gemm ? "" : ", read cold (cycling through > 256 MiB of copies)");
    std::printf("isa %s, %d threads; roofline: read %.1f GB/s, f32 FMA %.1f GFLOP/s", isa.c_str(),
                threads, roof.read_gbps, roof.fma_gflops);
    if ((o.gemm || any_bf16) && roof.bf16_gflops > 0)
      std::printf(", BF16 dot %.1f GFLOP/s", roof.bf16_gflops);
    if (int8_peak) std::printf(", int8 dot (VNNI) %.1f GOP/s", roof.int8_gops);
    const bool given = o.roofline_gbps > 0 && o.roofline_gflops > 0 &&
                       (!any_bf16 || o.roofline_bf16_gflops > 0) &&
                       (!int8_peak || o.roofline_int8_gops > 0);
    std::printf("%s\n", given ? " (given)" : " (measured now)");
    if (o.gemm || any_bf16) {
      char kernels[64];
      if (kernel == Bf16Kernel::kAuto)
        std::snprintf(kernels, sizeof kernels, "GEMV for n <= %lld, GEMM above",
                      static_cast<long long>(Bf16GemvMaxN()));
      else
        std::snprintf(kernels, sizeof kernels, "the %s kernel at every n", Bf16KernelName(kernel));
      std::printf(
          "numerics: f32 = f32 activations, f32 FMA (the model's default); bf16 = activations "
          "rounded to bf16, vdpbf16ps (%s; %s)\n",
          Bf16PathName(LinearBf16Path()), kernels);
    }
    if (o.gemm) {
      std::printf("%-28s %-8s %7s %7s %5s %-4s %10s %8s %8s %9s %8s %9s %7s %s\n", "shape", "dtype",
                  "rows", "cols", "n", "num", "time_us", "GB/s", "Gw/s", "GFLOP/s", "fraction",
                  "bf16_peak", "vs_f32", "bound");
    } else {
      std::printf("%-28s %-8s %7s %7s %5s %-4s %10s %8s %8s %9s %9s %7s\n", "shape", "dtype",
                  "rows", "cols", "n", "num", "time_us", "GB/s", "Gw/s", "GFLOP/s", "fraction",
                  "vs_f32");
    }
  }
  size_t total = 0;
  for (const Shape& s : shapes)
    for (size_t ki = 0; ki < kinds.size(); ++ki)
      if (s.kind == Kind::kLinear || !IsBlockDType(kinds[ki].dtype))
        total += ns.size() * numerics[ki].size();
  size_t done = 0;
  for (const Shape& s : shapes) {
    for (size_t ki = 0; ki < kinds.size(); ++ki) {
      const WeightKind& kind = kinds[ki];
      if (s.kind != Kind::kLinear && IsBlockDType(kind.dtype)) continue;  // kv_b is f32 in GGUF
      const bool any_bf16 = std::find(numerics[ki].begin(), numerics[ki].end(), "bf16") !=
                            numerics[ki].end();
      const std::vector<Weight> copies = MakeCopies(s, kind, /*cold=*/!o.gemm, pairs, any_bf16,
                                                    o.int8_layout == "tiles");
      for (int64_t n : ns) {
        double f32_seconds = 0;  // this shape's f32 time, for the bf16 line's speed-up
        for (const std::string& num : numerics[ki]) {
          const bool bf16 = num == "bf16";
          std::fprintf(stderr, "bench %s: [%zu/%zu] %s %s n=%lld %s\n", bench, ++done, total,
                       s.name.c_str(), kind.name.c_str(), static_cast<long long>(n), num.c_str());
          if (bf16 && !Bf16Runs(s, copies[0])) {
            std::fprintf(stderr, "bench %s: %s has no bf16 form here (no transposed W_UK copy)\n",
                         bench, s.name.c_str());
            continue;
          }
          const Measurement m = Measure(s, copies, n, o.seconds, bf16, kernel);
          if (!bf16) f32_seconds = m.seconds;
          const double gbps = m.bytes / m.seconds / 1e9, gflops = m.flops / m.seconds / 1e9;
          const double gweights = double(s.used_rows()) * s.cols / m.seconds / 1e9;
          // The compute peak of the product that ran: int8 activations on VNNI count each
          // weight × activation product as 2 ops, as the f32 and bf16 FLOPs do.
          const double peak = bf16                      ? roof.bf16_gflops
                              : kind.int8 && int8_peak ? roof.int8_gops
                                                       : roof.fma_gflops;
          const double mem_t = m.bytes / (roof.read_gbps * 1e9), fma_t = m.flops / (peak * 1e9);
          const double fraction = std::max(mem_t, fma_t) / m.seconds;
          const char* bound = mem_t >= fma_t ? "memory" : "compute";
          const double of_bf16 = roof.bf16_gflops > 0 ? gflops / roof.bf16_gflops : 0;
          if (o.json) {
            nlohmann::json j = {{"bench", bench},
                                {"shape", s.name},
                                {"rows", s.used_rows()},
                                {"cols", s.cols},
                                {"n", n},
                                {"dtype", kind.name},
                                {"bytes", m.bytes},
                                {"flops", m.flops},
                                {"seconds", m.seconds},
                                {"gbps", gbps},
                                {"gweights_per_s", gweights},
                                {"gflops", gflops},
                                {"fraction_of_roofline", fraction},
                                {"bound", bound},
                                {"roofline_gbps", roof.read_gbps},
                                {"roofline_gflops", roof.fma_gflops},
                                {"roofline_int8_gops",
                                 int8_peak ? nlohmann::json(roof.int8_gops) : nlohmann::json()},
                                {"isa", bf16 ? std::string(Bf16PathName(LinearBf16Path())) : isa},
                                {"threads", threads},
                                {"weights", "synthetic"},
                                {"numerics", num}};
            if (o.gemm) {
              j["roofline_bf16_gflops"] =
                  roof.bf16_gflops > 0 ? nlohmann::json(roof.bf16_gflops) : nlohmann::json();
              j["fraction_of_bf16_peak"] =
                  roof.bf16_gflops > 0 ? nlohmann::json(of_bf16) : nlohmann::json();
            }
            std::printf("%s\n", j.dump().c_str());
          } else if (o.gemm) {
            char peak_col[16] = "-", speed_col[16] = "-";
            if (roof.bf16_gflops > 0) std::snprintf(peak_col, sizeof peak_col, "%.3f", of_bf16);
            if (bf16 && f32_seconds > 0)
              std::snprintf(speed_col, sizeof speed_col, "%.2fx", f32_seconds / m.seconds);
            std::printf(
                "%-28s %-8s %7lld %7lld %5lld %-4s %10.1f %8.2f %8.2f %9.1f %8.3f %9s %7s %s\n",
                s.name.c_str(), kind.name.c_str(), static_cast<long long>(s.used_rows()),
                static_cast<long long>(s.cols), static_cast<long long>(n), num.c_str(),
                m.seconds * 1e6, gbps, gweights, gflops, fraction, peak_col, speed_col, bound);
          } else {
            char speed_col[16] = "-";
            if (bf16 && f32_seconds > 0)
              std::snprintf(speed_col, sizeof speed_col, "%.2fx", f32_seconds / m.seconds);
            std::printf("%-28s %-8s %7lld %7lld %5lld %-4s %10.1f %8.2f %8.2f %9.1f %8.3f %7s %s\n",
                        s.name.c_str(), kind.name.c_str(), static_cast<long long>(s.used_rows()),
                        static_cast<long long>(s.cols), static_cast<long long>(n), num.c_str(),
                        m.seconds * 1e6, gbps, gweights, gflops, fraction, speed_col, bound);
          }
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}

RunFn AddLinearBench(CLI::App& bench, bool gemm) {
  auto o = std::make_shared<Options>();
  o->gemm = gemm;
  auto* sub = bench.add_subcommand(
      gemm ? "gemm" : "gemv",
      gemm ? "Prefill GEMM GFLOP/s on a model's projection shapes vs the f32 FMA and BF16 dot peaks"
           : "Decode GEMV GB/s on a model's projection shapes vs the memory bandwidth");
  auto* model = sub->add_option("--model", o->model,
                                "Checkpoint directory: its config.json gives the shapes");
  auto* preset = sub->add_option("--preset", o->preset,
                                 "gen-model preset giving the shapes (default layer671b)");
  auto* shape = sub->add_option("--shape", o->shapes,
                                "NAME=ROWSxCOLS instead of the config's shapes (repeatable)");
  model->excludes(preset)->excludes(shape);
  preset->excludes(shape);
  sub->add_option("--n", o->ns,
                  gemm ? "Activation rows (default 512)" : "Activation rows (default 1,32)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  sub->add_option(
         "--dtype", o->dtypes,
         "Weight dtypes, comma-separated: fp8 (default), bf16, f16, f32, q8_0, q4_k, q5_k, "
         "q6_k, q2_k, q3_k, iq4_nl, iq4_xs, q8_0.i8, q4_k.i8, q5_k.i8, q6_k.i8, q2_k.i8, "
         "q3_k.i8, iq4_nl.i8, iq4_xs.i8 (int8 activations)")
      ->delimiter(',');
  sub->add_option("--seconds", o->seconds, "Time per measurement")->check(CLI::Range(0.0, 60.0));
  AddThreadsOption(sub);
  sub->add_option("--roofline-gbps", o->roofline_gbps,
                  "Memory read bandwidth to use instead of measuring")
      ->check(CLI::PositiveNumber);
  sub->add_option("--roofline-gflops", o->roofline_gflops,
                  "f32 FMA peak to use instead of measuring")
      ->check(CLI::PositiveNumber);
  sub->add_option("--numerics", o->numerics,
                  gemm ? "f32 (the model's default), bf16 (bf16 activations, vdpbf16ps) or both "
                         "(default: both when this CPU has AVX512-BF16)"
                       : "f32 (the model's default, and this bench's), bf16 (bf16 activations, "
                         "vdpbf16ps) or both")
      ->delimiter(',');
  sub->add_option("--bf16-layout", o->bf16_layout,
                  "bf16 numerics, FP8 weights: rows (as stored) or pairs (the codes repacked in "
                  "tiles of 64 rows' column pairs, what the kernels multiply: no transposes)");
  sub->add_option("--int8-layout", o->int8_layout,
                  "every .i8 dtype on a CPU with AVX-512 VNNI or AVX2: tiles (the 16-row tile copy the model "
                  "loads, the int8 tile kernels) or rows (as stored, the row kernels)");
  sub->add_option("--bf16-kernel", o->bf16_kernel,
                  "bf16 numerics: auto (the model's choice by n), gemv or gemm (the same bits)");
  sub->add_option("--roofline-bf16-gflops", o->roofline_bf16_gflops,
                  "BF16 dot peak to use instead of measuring")
      ->check(CLI::PositiveNumber);
  sub->add_option("--roofline-int8-gops", o->roofline_int8_gops,
                  "int8 dot (VNNI) peak to use instead of measuring (the bound of .i8 dtypes)")
      ->check(CLI::PositiveNumber);
  sub->add_flag("--json", o->json, "One JSON object per measurement");
  return [o] { return RunLinearBench(*o); };
}

BenchRegistrar gemv_reg("gemv", [](CLI::App& bench) { return AddLinearBench(bench, false); });
BenchRegistrar gemm_reg("gemm", [](CLI::App& bench) { return AddLinearBench(bench, true); });

}  // namespace
}  // namespace dsinfer::cli
