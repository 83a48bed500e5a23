// `dsinfer run`: generates after a prompt — token ids (`--ids`), a text prompt (`-p`, wrapped in
// the V3.2 chat encoding as one user turn unless `--raw`), or an interactive multi-turn chat
// (`--chat`) — streaming the text as it is produced (UTF-8 safe), and reports prefill and decode
// throughput on stderr. Greedy at temperature 0, else temperature/top-p sampling with a seed.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "cli/mpi_job.h"
#include "cli/run.h"
#include "cli/token_ids.h"
#include "dist/world.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "text/chat_encoding.h"
#include "text/completion_parser.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"

namespace dsinfer::cli {
namespace {

using Clock = std::chrono::steady_clock;
using text::ThinkingMode;

struct RunOptions {
  std::optional<std::string> model;
  std::optional<std::string> ids;
  std::optional<std::string> prompt;
  bool raw = false;
  bool think = false;
  bool chat = false;
  int64_t max_new = 64;
  SamplerOptions sampler;
  std::string kv_cache = "f32";
  std::string attention = "dsa";
  NumericsFlags numerics;
  SpecFlags spec;  // --spec, --draft, --spec-min-acceptance, --spec-window
};

// The engine options of `run` (the same on every rank of an MPI job).
EngineOptions RunEngineOptions(const RunOptions& o) {
  EngineOptions eo;
  eo.parallel = 1;
  eo.queue_capacity = 1;
  eo.prefill_chunk = int64_t{1} << 20;  // the whole prompt in one forward, as before
  eo.sequence.kv_cache = ParseKvCacheType(o.kv_cache, "--kv-cache");
  eo.sequence.attention = o.attention == "dense" ? AttentionMode::kDense : AttentionMode::kDsa;
  o.spec.Apply(eo);
  return eo;
}

// `run` on the serving engine (runtime/engine.h) with one slot and one EngineSession: a new
// prompt that extends the cached tokens only runs its new suffix (multi-turn chat reuses the
// conversation so far). Across the ranks of an MPI job (`world`; docs/mpi.md) this is rank 0's
// engine, the leader of the others' (FollowRun): no EngineSession there (sessions stay in one
// process), the engine's prefix cache reuses the conversation instead.
class Session {
 public:
  Session(const RunOptions& o, const std::string& dir, dist::World* world = nullptr)
      : options_(o) {
    EngineOptions eo = RunEngineOptions(o);
    if (world) {
      replica_ = std::make_unique<WorldReplica>(*world);
      eo.replica = replica_.get();
      session_.reset();
      engine_ = std::make_unique<Engine>(LoadModelOnRanks(*world, dir, o.numerics.Load()), eo);
    } else {
      engine_ = std::make_unique<Engine>(Model::Load(dir, o.numerics.Load()), eo);
    }
  }
  ~Session() { session_.reset(); }  // its pages go back to the pool before the engine ends

  const ModelConfig& config() const { return engine_->config(); }

  // Runs `prompt` (the whole conversation so far) and generates; `on_token` gets each new id.
  // Returns the generated ids (ending with EOS if the model stopped).
  template <class OnToken>
  std::vector<int32_t> Generate(const std::vector<int32_t>& prompt, OnToken&& on_token) {
    const ModelConfig& c = config();
    if (prompt.empty()) throw Error("empty prompt");
    CheckTokenIds(prompt, c, "prompt");
    if (static_cast<int64_t>(prompt.size()) + options_.max_new > c.max_position_embeddings)
      throw Error("prompt (" + std::to_string(prompt.size()) + " tokens) + -n " +
                  std::to_string(options_.max_new) + " exceed max_position_embeddings (" +
                  std::to_string(c.max_position_embeddings) + ")");
    GenerationRequest req;
    req.prompt = prompt;
    req.max_tokens = options_.max_new;
    req.sampler = options_.sampler;
    req.stop_ids = {static_cast<int32_t>(c.eos_token_id)};
    req.session = session_;
    const auto t0 = Clock::now();
    std::shared_ptr<Generation> gen = engine_->Submit(std::move(req));
    if (!gen) throw Error("the engine's queue is full");
    std::vector<int32_t> out;
    Clock::time_point first;
    for (;;) {
      Generation::Update u = gen->Wait(std::chrono::milliseconds(100));
      for (int32_t id : u.tokens) {
        if (out.empty()) first = Clock::now();
        out.push_back(id);
        on_token(id);
      }
      if (!u.done) continue;
      if (u.finish == FinishReason::kError) throw Error("generation failed: " + u.error);
      break;
    }
    const auto end = Clock::now();
    stats_.reused_tokens = gen->cache_hit_tokens();
    stats_.prefill_tokens = prompt.size() - stats_.reused_tokens;
    stats_.prefill_s = std::chrono::duration<double>((out.empty() ? end : first) - t0).count();
    stats_.decode_tokens = out.size();
    stats_.decode_s = out.empty() ? 0 : std::chrono::duration<double>(end - first).count();
    return out;
  }

  void ReportSpeed() const {
    const Stats& s = stats_;
    std::fprintf(stderr,
                 "\n[prefill: %zu tokens (%zu reused from cache), %.2f tok/s; decode: %zu "
                 "tokens, %.2f tok/s]\n",
                 s.prefill_tokens, s.reused_tokens, s.prefill_tokens / std::max(s.prefill_s, 1e-9),
                 s.decode_tokens,
                 s.decode_tokens > 1 ? (s.decode_tokens - 1) / std::max(s.decode_s, 1e-9) : 0.0);
    if (options_.spec.spec == "mtp") {  // since the session started
      const EngineStats e = engine_->Stats();
      std::fprintf(
          stderr,
          "[spec mtp, draft %lld: %lld of %lld drafts accepted (%.1f%%), %.2f tokens/step]\n",
          static_cast<long long>(options_.spec.draft), static_cast<long long>(e.accepted_tokens),
          static_cast<long long>(e.draft_tokens),
          e.draft_tokens ? 100.0 * e.accepted_tokens / e.draft_tokens : 0.0,
          e.decode_steps ? static_cast<double>(e.decode_tokens) / e.decode_steps : 0.0);
    }
  }

 private:
  struct Stats {
    size_t prefill_tokens = 0, reused_tokens = 0, decode_tokens = 0;
    double prefill_s = 0, decode_s = 0;
  };
  RunOptions options_;
  std::unique_ptr<WorldReplica> replica_;  // across ranks; outlives the engine
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<EngineSession> session_ = std::make_shared<EngineSession>();
  Stats stats_;
};

// Streams generated ids as UTF-8-safe text; returns the whole text.
std::string GenerateText(Session& s, const text::Tokenizer& tok, const std::vector<int32_t>& ids) {
  text::Detokenizer detok(tok);
  std::string all;
  auto eos = s.config().eos_token_id;
  s.Generate(ids, [&](int32_t id) {
    if (id == eos) return;
    std::string piece = detok.Add(id);
    all += piece;
    std::fputs(piece.c_str(), stdout);
    std::fflush(stdout);
  });
  std::string tail = detok.Flush();
  all += tail;
  std::fputs(tail.c_str(), stdout);
  std::fputs("\n", stdout);
  return all;
}

std::string ChatPrompt(const nlohmann::ordered_json& messages, bool think) {
  return text::EncodeMessages(
      messages, {.thinking_mode = think ? ThinkingMode::kThinking : ThinkingMode::kChat});
}

// The assistant turn for the history, split into reasoning and content by the completion
// parser (the chat encoding drops reasoning before the last user turn anyway).
nlohmann::ordered_json AssistantMessage(const std::string& generated, bool think) {
  const ThinkingMode mode = think ? ThinkingMode::kThinking : ThinkingMode::kChat;
  return text::ToOpenAiMessage(text::ParseCompletion(generated, mode), mode);
}

int RunChat(const RunOptions& o, Session& s, const text::Tokenizer& tok) {
  bool think = o.think;
  const bool tty = isatty(STDIN_FILENO);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  std::fprintf(stderr,
               "dsinfer chat: type a message; /think toggles thinking mode (now %s), "
               "/reset clears the conversation, /quit or end of input exits.\n",
               think ? "on" : "off");
  std::string line;
  for (;;) {
    if (tty) std::fputs("> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line) || line == "/quit") break;
    if (line.empty()) continue;
    if (line == "/think") {
      think = !think;
      std::fprintf(stderr, "[thinking mode %s]\n", think ? "on" : "off");
      continue;
    }
    if (line == "/reset") {
      messages = nlohmann::ordered_json::array();
      std::fprintf(stderr, "[conversation cleared]\n");
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", line}});
    std::string generated = GenerateText(s, tok, tok.Encode(ChatPrompt(messages, think)));
    s.ReportSpeed();
    messages.push_back(AssistantMessage(generated, think));
  }
  return 0;
}

// A rank other than 0 of `run` across ranks (docs/mpi.md): no tokenizer, no output; its engine
// runs rank 0's rounds with this rank's experts until rank 0's engine stops.
int FollowRun(const RunOptions& o, dist::World& world) {
  WorldReplica replica(world);
  EngineOptions eo = RunEngineOptions(o);
  eo.replica = &replica;
  Engine engine(LoadModelOnRanks(world, ResolveModelDir(o.model), o.numerics.Load()), eo);
  engine.Follow();
  return 0;
}

// Rank 0's report of an expert-parallel run over `experts` routed experts, after its engine has
// stopped.
void ReportRanks(dist::World& world, int64_t experts) {
  const dist::ExchangeStats x = world.exchange_stats();
  std::fprintf(stderr,
               "[expert parallel over %d MPI ranks (%s): rank 0 spent %.3f s in %lld expert "
               "exchanges]\n",
               world.ranks(), DescribeAssignment(experts, world.ranks()).c_str(),
               x.seconds, static_cast<long long>(x.calls));
}

// Rank 0's (or the only process's) `run`; sets `*experts` to the model's routed experts.
int RunOnRank0(const RunOptions& o, dist::World* world, int64_t* experts);

int RunGenerate(const RunOptions& o) {
  if (!!o.ids + !!o.prompt + o.chat != 1) throw Error("give exactly one of --ids, -p, --chat");
  dist::World* world = dist::CurrentWorld();
  if (world && world->ranks() == 1) world = nullptr;
  if (world && !o.model) throw Error("--model is required across MPI ranks");
  if (world && world->rank() != 0) return FollowRun(o, *world);
  int64_t experts = 0;
  const int status = RunOnRank0(o, world, &experts);
  if (world) ReportRanks(*world, experts);
  return status;
}

int RunOnRank0(const RunOptions& o, dist::World* world, int64_t* experts) {
  const std::string dir = ResolveModelDir(o.model);
  // Text needs the tokenizer; token ids do not read it (docs/checkpoint.md). Loaded first, so
  // a missing or broken one fails before the weights load.
  std::optional<text::Tokenizer> tok;
  if (!o.ids) tok = text::Tokenizer::ForModel(dir);
  Session s(o, dir, world);
  *experts = s.config().n_routed_experts;
  if (o.ids) {
    std::vector<int32_t> ids = ParseTokenIds(*o.ids, "--ids");
    bool first = true;
    s.Generate(ids, [&](int32_t id) {
      std::printf("%s%d", first ? "" : ",", id);
      std::fflush(stdout);
      first = false;
    });
    std::printf("\n");
    s.ReportSpeed();
    return 0;
  }
  if (o.chat) return RunChat(o, s, *tok);
  std::string prompt = o.raw ? "<｜begin▁of▁sentence｜>" + *o.prompt
                             : ChatPrompt({{{"role", "user"}, {"content", *o.prompt}}}, o.think);
  GenerateText(s, *tok, tok->Encode(prompt));
  s.ReportSpeed();
  return 0;
}

CommandRegistrar reg("run", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand(
      "run", "Generate text (or token ids) after a prompt; --chat for a conversation");
  auto o = std::make_shared<RunOptions>();
  AddThreadsOption(sub);
  sub->add_option("--model", o->model, "checkpoint directory (default: the default model)");
  sub->add_option("-p,--prompt", o->prompt,
                  "text prompt (one user turn of the V3.2 chat encoding)");
  sub->add_option("--ids", o->ids, "prompt token ids, e.g. 0,128803,33310 (prints ids)");
  sub->add_flag("--chat", o->chat, "interactive multi-turn chat on standard input");
  sub->add_flag("--raw", o->raw, "with -p: feed BOS + the text as is, no chat encoding");
  sub->add_flag("--think", o->think, "thinking mode (the prompt ends with <think>)");
  sub->add_option("-n", o->max_new, "tokens to generate (per turn)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--temp", o->sampler.temperature, "temperature (0: greedy)")
      ->capture_default_str();
  sub->add_option("--top-p", o->sampler.top_p, "nucleus sampling mass")->capture_default_str();
  sub->add_option("--top-k", o->sampler.top_k, "keep the k most likely tokens (0: all)")
      ->capture_default_str();
  sub->add_option("--seed", o->sampler.seed, "sampling seed")->capture_default_str();
  sub->add_option("--kv-cache", o->kv_cache, "f32 | bf16 | fp8")
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}))
      ->capture_default_str();
  AddSpecOptions(sub, o->spec);
  sub->add_option("--attention", o->attention, "dsa | dense")
      ->check(CLI::IsMember({"dsa", "dense"}))
      ->capture_default_str();
  AddNumericsOptions(sub, &o->numerics);
  return [o] { return RunGenerate(*o); };
});

}  // namespace

void GenerateFromPrompt(const std::string& model_dir, const std::string& prompt, int64_t max_new) {
  RunOptions o;
  o.max_new = max_new;
  text::Tokenizer tok = text::Tokenizer::ForModel(model_dir);
  Session s(o, model_dir);
  std::printf("prompt: %s\n", prompt.c_str());
  std::fflush(stdout);
  GenerateText(s, tok, tok.Encode(ChatPrompt({{{"role", "user"}, {"content", prompt}}}, false)));
  s.ReportSpeed();
}

}  // namespace dsinfer::cli
