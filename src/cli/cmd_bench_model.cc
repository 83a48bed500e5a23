// `dsinfer bench model`: prefill and decode tokens/s of the whole model in llama-bench's shapes
// (docs/bench.md): `ppP` runs a P-token prompt, `tgN` generates N tokens one at a time, each
// `@ dD` on top of a context that already holds D tokens (filled first, untimed). Every test is
// repeated `-r` times; the table gives mean ± sample standard deviation of the per-repetition
// tokens/s, as llama-bench does, for DSA and dense attention side by side.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "base/error.h"
#include "base/mix.h"
#include "base/threads.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "format/checkpoint.h"
#include "model/model.h"
#include "tools/bench_layer.h"

namespace dsinfer::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::optional<std::string> model;
  std::optional<std::string> preset;
  std::vector<std::string> sets;
  std::string prompts = "512";
  std::string gens = "128";
  std::string depths = "0";
  std::optional<std::string> threads;  // default: ComputeThreads()
  int reps = 5;
  std::optional<std::string> attention;  // default: dsa,dense (dense alone without an indexer)
  int64_t batch = 512;
  std::string kv_cache = "f32";
  std::string numerics = "auto";  // comma-separated: f32, bf16, auto (docs/numerics.md)
  std::string block_acts = "auto";  // --block-acts auto | int8 | f32 | bf16
  std::string output = "md";
  std::optional<std::string> output_err;
  bool no_warmup = false;
};

// One test: a prompt of `prompt` tokens or `gen` decode steps (the other is 0) at `depth`.
struct Test {
  AttentionMode attention = AttentionMode::kDsa;
  Numerics numerics = Numerics::kF32;
  int threads = 1;
  int64_t depth = 0;
  int64_t prompt = 0;
  int64_t gen = 0;

  int64_t tokens() const { return prompt > 0 ? prompt : gen; }
  // llama-bench's names: "pp512", "tg128", "pp512 @ d4096".
  std::string Name() const {
    std::string s = (prompt > 0 ? "pp" : "tg") + std::to_string(tokens());
    return depth > 0 ? s + " @ d" + std::to_string(depth) : s;
  }
};

// Tokens given to Model::Forward for one test, by purpose.
struct TokenCounts {
  int64_t depth = 0;   // filling the context (0 when the previous test's context was reused)
  int64_t warmup = 0;  // the untimed warm-up call
  int64_t timed = 0;   // reps × tokens()
};

struct Result {
  Test test;
  std::vector<int64_t> samples_ns;
  std::vector<int64_t> context_after;  // cached tokens after each timed repetition
  TokenCounts counts;

  std::vector<double> TokensPerSecond() const {
    std::vector<double> ts;
    for (int64_t ns : samples_ns) ts.push_back(1e9 * static_cast<double>(test.tokens()) / ns);
    return ts;
  }
};

// Mean and sample standard deviation (n - 1; 0 for one sample), as llama-bench reports them.
std::pair<double, double> MeanSd(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = v.empty() ? 0 : sum / static_cast<double>(v.size());
  if (v.size() < 2) return {mean, 0.0};
  double sq = 0;
  for (double x : v) sq += (x - mean) * (x - mean);
  return {mean, std::sqrt(sq / static_cast<double>(v.size() - 1))};
}

// A token count: decimal digits with an optional suffix K (= 1024), e.g. "512", "4K".
int64_t ParseCount(const std::string& item, const std::string& what, const char* noun) {
  size_t digits = 0;
  while (digits < item.size() && item[digits] >= '0' && item[digits] <= '9') ++digits;
  const std::string suffix = item.substr(digits);
  if (digits == 0 || !(suffix.empty() || suffix == "K" || suffix == "k"))
    throw Error(what + ": bad " + noun + " '" + item +
                "' (expected a whole number >= 0, optionally with K = 1024, e.g. 4K)");
  if (digits > 9) throw Error(what + ": " + noun + " '" + item + "' is too large");
  return std::stoll(item.substr(0, digits)) * (suffix.empty() ? 1 : 1024);
}

// A comma-separated list of token counts, in the given order.
std::vector<int64_t> ParseCounts(const std::string& list, const std::string& what,
                                 const char* noun = "token count") {
  std::vector<int64_t> out;
  size_t begin = 0;
  while (true) {
    const size_t comma = list.find(',', begin);
    const std::string item = list.substr(begin, comma == std::string::npos ? comma : comma - begin);
    if (item.empty()) throw Error(what + " '" + list + "': empty item in the comma-separated list");
    out.push_back(ParseCount(item, what, noun));
    if (comma == std::string::npos) return out;
    begin = comma + 1;
  }
}

// The --numerics list, in the given order.
std::vector<Numerics> ParseNumericsList(const std::string& list) {
  std::vector<Numerics> out;
  size_t begin = 0;
  while (true) {
    const size_t comma = list.find(',', begin);
    out.push_back(ParseNumerics(
        list.substr(begin, comma == std::string::npos ? comma : comma - begin), "--numerics"));
    if (comma == std::string::npos) return out;
    begin = comma + 1;
  }
}

// llama-bench's order: for each attention, numerics, thread count and depth, the prompt tests,
// then the decode tests.
std::vector<Test> PlanTests(const std::vector<AttentionMode>& attentions, const Options& o) {
  std::vector<int> threads{ComputeThreads()};
  if (o.threads) {
    threads.clear();
    for (int64_t n : ParseCounts(*o.threads, "--threads", "thread count")) {
      if (n < 1 || n > 4096)
        throw Error("--threads: " + std::to_string(n) + " is not a thread count (1..4096)");
      threads.push_back(static_cast<int>(n));
    }
  }
  const std::vector<int64_t> prompts = ParseCounts(o.prompts, "-p");
  const std::vector<int64_t> gens = ParseCounts(o.gens, "-n");
  const std::vector<int64_t> depths = ParseCounts(o.depths, "-d");
  const std::vector<Numerics> numerics = ParseNumericsList(o.numerics);
  std::vector<Test> tests;
  for (AttentionMode a : attentions)
    for (Numerics m : numerics)
      for (int th : threads)
        for (int64_t d : depths) {
          auto test = [&](int64_t prompt, int64_t gen) {
            return Test{.attention = a,
                        .numerics = m,
                        .threads = th,
                        .depth = d,
                        .prompt = prompt,
                        .gen = gen};
          };
          for (int64_t p : prompts)
            if (p > 0) tests.push_back(test(p, 0));
          for (int64_t n : gens)
            if (n > 0) tests.push_back(test(0, n));
        }
  if (tests.empty()) throw Error("nothing to measure: every -p and -n value is 0");
  return tests;
}

void CheckFits(const Test& t, const ModelConfig& c) {
  const int64_t need = t.depth + t.tokens();
  if (need > c.max_position_embeddings)
    throw Error(t.Name() + " needs " + std::to_string(need) +
                " positions (depth + tokens), more than the model's max_position_embeddings (" +
                std::to_string(c.max_position_embeddings) + ")");
}

// What the table's first columns say about the model (as llama-bench: name, size, parameters).
struct ModelInfo {
  std::string dir, name, type;
  uint64_t bytes = 0;
  uint64_t params = 0;  // elements of every tensor except the FP8 block scales
  bool blocks = false;  // any GGUF block-quantised tensor (Q8_0, K-quants, IQ4_*)
};

ModelInfo DescribeModel(const std::string& dir) {
  const Checkpoint ckpt = Checkpoint::Open(dir);
  ModelInfo info;
  info.dir = dir;
  info.type = ckpt.config().model_type;
  info.name = std::filesystem::path(dir).lexically_normal().filename().string();
  if (info.name.empty()) info.name = std::filesystem::path(dir).parent_path().filename().string();
  for (const std::string& name : ckpt.Names()) {
    const TensorView t = ckpt.Get(name);
    info.bytes += t.nbytes();
    info.blocks = info.blocks || IsBlockDType(t.dtype());
    if (!name.ends_with("_scale_inv")) info.params += static_cast<uint64_t>(t.numel());
  }
  return info;
}

std::string Format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string SizeText(uint64_t bytes) {
  return bytes >= (uint64_t{1} << 30) ? Format("%.2f GiB", bytes / 1073741824.0)
                                      : Format("%.2f MiB", bytes / 1048576.0);
}

std::string ParamsText(uint64_t n) {
  return n >= 1000000000 ? Format("%.2f B", n / 1e9) : Format("%.2f M", n / 1e6);
}

// Progress on stderr: a redrawn line on a TTY, a line per test (and per context fill) otherwise.
class Progress {
 public:
  explicit Progress(size_t total) : total_(total), tty_(::isatty(STDERR_FILENO) == 1) {}
  void Start(size_t i, const Test& t) {
    label_ = "bench model [" + std::to_string(i + 1) + "/" + std::to_string(total_) + "] " +
             layerbench::AttentionName(t.attention) + " " + NumericsName(t.numerics) + " " +
             t.Name();
  }
  // The context is being filled from `from` to `depth` tokens; `done` of them are cached.
  void Fill(int64_t from, int64_t done, int64_t depth) {
    if (!tty_) {
      if (done == from)
        std::fprintf(stderr, "%s: filling the context (%lld tokens, %lld to compute)\n",
                     label_.c_str(), static_cast<long long>(depth),
                     static_cast<long long>(depth - from));
      return;
    }
    std::fprintf(stderr, "\r\033[K%s: context %lld/%lld", label_.c_str(),
                 static_cast<long long>(done), static_cast<long long>(depth));
    std::fflush(stderr);
  }
  void Rep(int rep, int reps) {
    if (!tty_) return;
    std::fprintf(stderr, "\r\033[K%s: repetition %d/%d", label_.c_str(), rep + 1, reps);
    std::fflush(stderr);
  }
  void Done(double mean, double sd) {
    std::fprintf(stderr, "%s%s: %.2f ± %.2f t/s\n", tty_ ? "\r\033[K" : "", label_.c_str(), mean,
                 sd);
  }

 private:
  size_t total_;
  bool tty_;
  std::string label_;
};

// Runs the tests on one model. The context is one fixed pseudo-random token stream, so a test
// at depth D reuses the first D cached positions whenever they hold that stream (a test
// overwrites the positions after its depth) and computes only the missing ones: the cache then
// equals what refilling it from scratch, as llama-bench does for every repetition, would give,
// because a cached row depends only on the tokens before it. Not thread-safe.
class ModelBench {
 public:
  ModelBench(Model& model, const Options& o, KvCacheType kv) : model_(model), o_(o) {
    options_.kv_cache = kv;
  }

  Result Run(const Test& t, Progress& progress) {
    Result r;
    r.test = t;
    SetComputeThreads(t.threads);  // every parallel region of this (the main) thread
    // A new sequence per attention mode and numerics (cached rows depend on both).
    if (!seq_ || t.attention != options_.attention || t.numerics != model_.numerics()) {
      options_.attention = t.attention;
      model_.set_numerics(t.numerics);
      seq_ = model_.NewSequence(options_);
      valid_ = 0;
    }
    Model::Truncate(*seq_, std::min(valid_, t.depth));
    if (valid_ < t.depth) {
      progress.Fill(valid_, valid_, t.depth);
      Feed(kContextStream, valid_, t.depth - valid_, r.counts.depth,
           [&](int64_t done) { progress.Fill(valid_, valid_ + done, t.depth); });
    }
    valid_ = t.depth;
    DSINFER_CHECK(seq_->length == t.depth);
    if (!o_.no_warmup) {  // weights paged in, workspace sized, as llama-bench's warm-up run
      Step(t, std::min(t.tokens(), t.prompt > 0 ? o_.batch : int64_t{1}), r.counts.warmup);
      Model::Truncate(*seq_, t.depth);
    }
    for (int rep = 0; rep < o_.reps; ++rep) {
      progress.Rep(rep, o_.reps);
      Model::Truncate(*seq_, t.depth);
      const auto t0 = Clock::now();
      Step(t, t.tokens(), r.counts.timed);
      r.samples_ns.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
      r.context_after.push_back(seq_->length);
    }
    return r;
  }

 private:
  static constexpr uint64_t kContextStream = 1, kPromptStream = 2, kGenStream = 3;

  // Token `i` of pseudo-random stream `stream`: any id of the vocabulary (as llama-bench's).
  int32_t TokenAt(uint64_t stream, int64_t i) const {
    const uint64_t z = Mix64(stream * kSplitMixGamma + static_cast<uint64_t>(i));
    return static_cast<int32_t>(z % static_cast<uint64_t>(model_.config().vocab_size));
  }

  // The test's work on `count` tokens: a prompt in calls of at most --batch-size tokens, or
  // `count` decode steps of one token.
  void Step(const Test& t, int64_t count, int64_t& counter) {
    if (t.prompt > 0) {
      Feed(kPromptStream, 0, count, counter, nullptr);
      return;
    }
    for (int64_t i = 0; i < count; ++i) Forward(kGenStream, i, 1, counter);
  }

  template <class OnChunk>
  void Feed(uint64_t stream, int64_t from, int64_t count, int64_t& counter, OnChunk&& on_chunk) {
    for (int64_t done = 0; done < count;) {
      const int64_t n = std::min(o_.batch, count - done);
      Forward(stream, from + done, n, counter);
      done += n;
      if constexpr (!std::is_same_v<std::decay_t<OnChunk>, std::nullptr_t>) on_chunk(done);
    }
  }

  // One forward call on tokens [from, from + n) of `stream`; only the last token's logits, as
  // in generation.
  void Forward(uint64_t stream, int64_t from, int64_t n, int64_t& counter) {
    tokens_.resize(static_cast<size_t>(n));  // [n]
    for (int64_t i = 0; i < n; ++i) tokens_[i] = TokenAt(stream, from + i);
    const int64_t before = seq_->length;
    model_.Forward(*seq_, tokens_, before, /*all_logits=*/false);
    DSINFER_CHECK(seq_->length == before + n);
    counter += n;
  }

  Model& model_;
  const Options& o_;
  SequenceOptions options_;
  std::optional<SequenceState> seq_;
  int64_t valid_ = 0;  // leading cache positions that hold the context stream
  std::vector<int32_t> tokens_;
};

struct RunInfo {
  ModelInfo model;
  std::string block_acts;  // --block-acts resolved at load (ResolveBlockActs)
  int64_t batch = 0;
  std::string kv_cache;
  bool warmup = true;
};

// The activations the block weights of a test multiply: the resolved --block-acts, where bf16
// applies to the bf16-numerics tests only (the f32 ones read the mapped originals, with int8
// activations); "-" for a model without block weights.
std::string BlockActsOf(const Test& t, const RunInfo& info) {
  if (!info.model.blocks) return "-";
  if (info.block_acts == "bf16" && t.numerics != Numerics::kBf16) return "int8";
  return info.block_acts;
}

nlohmann::ordered_json ToJson(const Result& r, const RunInfo& info) {
  const std::vector<double> ts = r.TokensPerSecond();
  std::vector<double> ns(r.samples_ns.begin(), r.samples_ns.end());
  const auto [avg_ts, sd_ts] = MeanSd(ts);
  const auto [avg_ns, sd_ns] = MeanSd(ns);
  return {{"model_filename", info.model.dir},
          {"model_type", info.model.type},
          {"model_size", info.model.bytes},
          {"model_n_params", info.model.params},
          {"n_threads", r.test.threads},
          {"n_batch", info.batch},
          {"type_kv", info.kv_cache},
          {"attention", layerbench::AttentionName(r.test.attention)},
          {"numerics", NumericsName(r.test.numerics)},
          {"block_acts", BlockActsOf(r.test, info)},
          {"test", r.test.Name()},
          {"n_prompt", r.test.prompt},
          {"n_gen", r.test.gen},
          {"n_depth", r.test.depth},
          {"repetitions", r.samples_ns.size()},
          {"warmup", info.warmup},
          {"avg_ns", avg_ns},
          {"stddev_ns", sd_ns},
          {"avg_ts", avg_ts},
          {"stddev_ts", sd_ts},
          {"samples_ns", r.samples_ns},
          {"samples_ts", ts},
          {"context_after", r.context_after},
          {"forward_tokens",
           {{"depth", r.counts.depth}, {"warmup", r.counts.warmup}, {"timed", r.counts.timed}}}};
}

// llama-bench's markdown table; rows are printed as the tests finish.
class MarkdownTable {
 public:
  explicit MarkdownTable(std::FILE* out) : out_(out) {}
  void Header() {
    Row({"model", "size", "params", "attention", "numerics", "acts", "threads", "test", "t/s"});
    std::string rule = "|";
    for (size_t i = 0; i < kWidths.size(); ++i)
      rule +=
          " " + std::string(kWidths[i] - (kRight[i] ? 1 : 0), '-') + (kRight[i] ? ":" : "") + " |";
    std::fprintf(out_, "%s\n", rule.c_str());
    std::fflush(out_);
  }
  void Add(const Result& r, const RunInfo& info) {
    const auto [mean, sd] = MeanSd(r.TokensPerSecond());
    Row({info.model.name, SizeText(info.model.bytes), ParamsText(info.model.params),
         layerbench::AttentionName(r.test.attention), NumericsName(r.test.numerics),
         BlockActsOf(r.test, info), std::to_string(r.test.threads), r.test.Name(),
         Format("%.2f", mean) + " ± " + Format("%.2f", sd)});
  }

 private:
  static constexpr std::array<int, 9> kWidths{24, 10, 10, 9, 8, 4, 7, 15, 20};
  static constexpr std::array<bool, 9> kRight{false, true, true, false, false, false,
                                              true,  true, true};
  void Row(const std::vector<std::string>& cells) {
    std::string line = "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      // "±" is two bytes and one column wide.
      const int chars =
          static_cast<int>(cells[i].size()) - (cells[i].find("±") != std::string::npos ? 1 : 0);
      const std::string pad(std::max(0, kWidths[i] - chars), ' ');
      line += " " + (kRight[i] ? pad + cells[i] : cells[i] + pad) + " |";
    }
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }
  std::FILE* out_;
};

std::vector<AttentionMode> Attentions(const Options& o, const ModelConfig& c) {
  if (!o.attention)
    return c.has_indexer() ? std::vector{AttentionMode::kDsa, AttentionMode::kDense}
                           : std::vector{AttentionMode::kDense};
  std::vector<AttentionMode> a = layerbench::ParseAttentions(*o.attention);
  if (!c.has_indexer() && std::count(a.begin(), a.end(), AttentionMode::kDsa) > 0)
    throw Error(
        "--attention dsa: the checkpoint has no lightning indexer (a V3-style model); "
        "use --attention dense");
  return a;
}

void CheckOutput(const std::string& fmt, const char* what) {
  if (fmt != "md" && fmt != "json")
    throw Error(std::string(what) + ": unknown output format '" + fmt + "' (expected md or json)");
}

int RunBenchModel(const Options& o) {
  CheckOutput(o.output, "-o");
  if (o.output_err) CheckOutput(*o.output_err, "--output-err");
  if (o.model && o.preset) throw Error("give --model DIR or --preset NAME, not both");
  if (!o.preset && !o.sets.empty()) throw Error("--set applies to --preset, not to --model");
  const KvCacheType kv = ParseKvCacheType(o.kv_cache, "--kv-cache");
  const std::string dir = o.preset ? PresetModelDir(*o.preset, o.sets) : ResolveModelDir(o.model);
  // Loaded in bf16 numerics when any test runs them, so the bf16 tests multiply the repacked
  // FP8 weights the model makes then (the f32 tests read the mapped originals, as ever).
  const std::vector<Numerics> listed = ParseNumericsList(o.numerics);
  const bool load_bf16 = std::find(listed.begin(), listed.end(), Numerics::kBf16) != listed.end();
  const std::string acts = ResolveBlockActs(o.block_acts, load_bf16 ? Numerics::kBf16 : Numerics::kF32);
  std::unique_ptr<Model> model =
      Model::Load(dir, {.numerics = load_bf16 ? Numerics::kBf16 : Numerics::kF32,
                        .int8_block_activations = acts != "f32",
                        .bf16_block_activations = acts == "bf16"});
  const ModelConfig& c = model->config();
  const std::vector<Test> tests = PlanTests(Attentions(o, c), o);
  for (const Test& t : tests) CheckFits(t, c);  // fail before minutes of measuring
  const bool any_bf16 = std::any_of(tests.begin(), tests.end(),
                                    [](const Test& t) { return t.numerics == Numerics::kBf16; });
  if (any_bf16 && LinearBf16Path() == Bf16Path::kScalar)
    std::fprintf(stderr,
                 "note: this CPU has no usable AVX512-BF16 (%s): bf16 numerics run the scalar "
                 "specification of the bf16 GEMM, far slower than f32\n",
                 DetectCpu().Describe().c_str());
  RunInfo info{.model = DescribeModel(dir),
               .block_acts = acts,
               .batch = o.batch,
               .kv_cache = o.kv_cache,
               .warmup = !o.no_warmup};
  std::vector<MarkdownTable> tables;
  if (o.output == "md") tables.emplace_back(stdout);
  if (o.output_err == "md") tables.emplace_back(stderr);
  for (MarkdownTable& t : tables) t.Header();
  ModelBench bench(*model, o, kv);
  Progress progress(tests.size());
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (size_t i = 0; i < tests.size(); ++i) {
    progress.Start(i, tests[i]);
    const Result r = bench.Run(tests[i], progress);
    const auto [mean, sd] = MeanSd(r.TokensPerSecond());
    progress.Done(mean, sd);
    for (MarkdownTable& t : tables) t.Add(r, info);
    all.push_back(ToJson(r, info));
  }
  if (o.output == "json") std::printf("%s\n", all.dump(2).c_str());
  if (o.output_err == "json") std::fprintf(stderr, "%s\n", all.dump(2).c_str());
  return 0;
}

BenchRegistrar reg("model", [](CLI::App& bench) -> RunFn {
  auto o = std::make_shared<Options>();
  auto* sub = bench.add_subcommand(
      "model", "Prefill and decode tokens/s of the whole model (llama-bench's pp/tg tests)");
  sub->add_option("--model", o->model, "Checkpoint directory (default: the default model)");
  sub->add_option(
      "--preset", o->preset,
      "Generated preset (tiny, mini, ...), kept in ~/.cache/dsinfer/<preset>-seed0[-sets]");
  sub->add_option("--set", o->sets, "key=value override of the preset's config (repeatable)");
  sub->add_option("-t,--threads", o->threads,
                  "Thread counts, comma-separated, e.g. 1,2 (default: the cores this process may "
                  "use, " +
                      std::to_string(AvailableCores()) + ", or OMP_NUM_THREADS)");
  sub->add_option("-p,--n-prompt", o->prompts, "Prompt lengths, comma-separated (0: no pp test)")
      ->capture_default_str();
  sub->add_option("-n,--n-gen", o->gens, "Generation lengths, comma-separated (0: no tg test)")
      ->capture_default_str();
  sub->add_option("-d,--n-depth", o->depths,
                  "Context depths: tokens already cached before each test (filled untimed)")
      ->capture_default_str();
  sub->add_option("-r,--repetitions", o->reps, "Timed repetitions of each test")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  sub->add_option("--attention", o->attention,
                  "dsa, dense or both (default: dsa,dense; dense without an indexer)");
  sub->add_option("-b,--batch-size", o->batch,
                  "Prompt tokens per forward call (pp tests and context filling)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  sub->add_option("--kv-cache", o->kv_cache, "Latent cache type: f32, bf16, fp8")
      ->capture_default_str();
  sub->add_option("--numerics", o->numerics,
                  "Matrix-product numerics, comma-separated: f32 (the reference), bf16 "
                  "(activations rounded to bf16 at the GEMM inputs; docs/numerics.md) or both; "
                  "auto: bf16 on a CPU with AVX512-BF16, else f32")
      ->capture_default_str();
  AddBlockActsOption(sub, &o->block_acts);
  sub->add_option("-o,--output", o->output, "Output on stdout: md (a table) or json (every sample)")
      ->capture_default_str();
  sub->add_option("--output-err", o->output_err, "Also print this format (md or json) on stderr");
  sub->add_flag("--no-warmup", o->no_warmup, "Skip the untimed warm-up call before each test");
  return [o] { return RunBenchModel(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
