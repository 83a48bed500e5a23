// The generation engine of `dsinfer serve` and `dsinfer run`: one worker thread owns the Model
// and runs up to `parallel` sequences with continuous batching. Each round is split the way
// small serving engines (nano-vllm) are: the scheduler admits requests and produces a plain
// step plan (which sequences, which tokens, which logits rows: `Engine::Schedule`), the runner
// executes it with one `Model::ForwardBatch` (`Engine::Execute`), and post-processing samples,
// emits and retires (`Engine::PostProcess`). Requests wait in a bounded FIFO queue; each round the
// worker admits waiting requests into free slots (new requests join the running batch), then gives
// every active sequence one step — a prefill chunk of at most `prefill_chunk` prompt tokens (so a
// long prompt does not stall the other streams) or one decode token — all of them in one
// `Model::ForwardBatch` (weights read once per round); with MTP speculation the drafting
// sequences then run the MTP layer together (`Model::DraftBatch`). Each sequence has its own
// `SequenceState` and the batched forward computes every row as alone, so its tokens equal
// those of the same request run alone.
//
// KV memory comes from a `KvPagePool` of `kv_budget_bytes` (kv_pool.h) with the prefix cache:
// at admission a request adopts the cached pages of its prompt's longest cached prefix (whole
// 64-token pages, at most prompt − 1 tokens, so at least one token is computed), reserves the
// fresh pages its worst case needs (prompt + max_tokens − 1 rows), and waits in the queue while
// the budget cannot hold that reservation. Full prompt pages are published once prefilled.
// A request that could never fit the budget is refused by Submit.
//
// Across the ranks of an expert-parallel job (`mpirun ... dsinfer serve`, docs/mpi.md) every rank
// runs an Engine over its own share of the routed experts, and the engines run the same rounds:
// see `EngineReplica`.
//
// A `Generation` is the channel between the worker and the request's client: the worker
// appends tokens and the finish reason; the client waits for them and may `Cancel`, which
// frees the sequence (and releases its pages) at the worker's next round. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "runtime/kv_pool.h"
#include "runtime/sampler.h"

namespace dsinfer {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };

class EngineSession;

struct GenerationRequest {
  std::vector<int32_t> prompt;  // non-empty, ids < vocab_size
  int64_t max_tokens = 16;      // ≥ 1
  SamplerOptions sampler;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these (EOS)
  // TEST-ONLY (`dsinfer serve --test-script`): these ids are emitted instead of sampled ones,
  // still through the real forward pass; the generation stops when they run out.
  std::vector<int32_t> forced_tokens;
  int top_logprobs = -1;  // ≥ 0: report logprobs of each token and its top N (0..20)
  // Continue the conversation kept in this session (`dsinfer run --chat`); see EngineSession.
  std::shared_ptr<EngineSession> session;
};

class Generation {
 public:
  struct Update {
    std::vector<int32_t> tokens;          // new since the previous Wait
    std::vector<TokenLogprobs> logprobs;  // one per token when the request asked for them
    bool done = false;
    FinishReason finish = FinishReason::kNone;
    std::string error;  // kError: what went wrong
    // When the worker pushed the first and the latest token (default-constructed before the
    // first): the timings the server reports, free of how late its thread wakes up.
    std::chrono::steady_clock::time_point first_token_time, last_token_time;
  };
  // Waits until there are new tokens or the generation ended, or `timeout` passed.
  Update Wait(std::chrono::milliseconds timeout);
  // Asks the worker to stop and free the sequence (no effect once done).
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  // Prompt tokens served from the prefix cache (set before the first token).
  int64_t cache_hit_tokens() const { return cache_hit_tokens_.load(); }

  // Worker side.
  void SetCacheHitTokens(int64_t n) { cache_hit_tokens_.store(n); }
  void Push(int32_t token, std::optional<TokenLogprobs> logprobs = std::nullopt);
  void Finish(FinishReason reason, std::string error = {});

 private:
  friend class Engine;
  // Worker only, with an EngineReplica: the id the request has on every rank (0: not yet sent
  // to the other ranks) and the cancellation as the rounds see it (set at a round's start).
  uint64_t replica_id_ = 0;
  bool replica_cancelled_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> pending_;
  std::vector<TokenLogprobs> pending_logprobs_;
  bool done_ = false;
  FinishReason finish_ = FinishReason::kNone;
  std::string error_;
  std::chrono::steady_clock::time_point first_token_time_, last_token_time_;
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> cache_hit_tokens_{0};
};

// A conversation's sequence kept between requests (`dsinfer run --chat`). A request naming a
// session continues from the longest prefix (any number of tokens, not only whole pages) its
// prompt shares with the tokens the session's cache holds, instead of using the prefix cache,
// and leaves its sequence (with its cache pages, which stay referenced) in the session when it
// ends. One request per session at a time; destroy the session before the engine. Touched by
// the worker only while one of its requests runs.
class EngineSession {
 public:
  EngineSession();
  ~EngineSession();  // releases the held pages
  EngineSession(const EngineSession&) = delete;
  EngineSession& operator=(const EngineSession&) = delete;

 private:
  friend class Engine;
  struct Kept;
  std::unique_ptr<Kept> kept_;
};

// The engines of an expert-parallel job's ranks, kept in step (docs/mpi.md, "Serving across
// ranks"). Each round begins with the leader (rank 0, whose engine the HTTP server feeds)
// sending the round's inputs — the requests queued since the previous round, the cancellations
// it has seen, whether it stops — which the followers' engines (the other ranks, fed by nothing
// else) take in; the rest of the round (admission, the step plan, sampling, speculation, the KV
// pool and the prefix cache) is a deterministic function of those inputs and of the logits,
// which are bitwise the same on every rank, so every engine takes the same decisions and calls
// the model's collectives in the same order. Before each batched forward and each MTP batch the
// ranks compare a digest of what they are about to run, so a divergence ends the job with a
// message instead of mismatched collectives (a hang) or a silent difference. At
// construction the leader's engine options replace the followers' (the default KV budget
// depends on each machine's memory). Called from the engine's worker thread only.
class EngineReplica {
 public:
  virtual ~EngineReplica() = default;
  virtual bool leader() const = 0;
  // The leader's `bytes` replace every follower's. A collective. Followers may wait long here
  // (an idle server): the wait should not spin.
  virtual void Share(std::string& bytes) = 0;
  // Every rank's `value`, in rank order. A collective.
  virtual std::vector<uint64_t> Gather(uint64_t value) = 0;
  // Ends the whole job (every rank) with `message`.
  [[noreturn]] virtual void Fail(const std::string& message) = 0;
};

struct EngineOptions {
  int parallel = 4;             // active sequences
  int queue_capacity = 64;      // waiting requests
  int64_t prefill_chunk = 64;   // prompt tokens per Forward call
  int64_t kv_budget_bytes = 0;  // KV page pool; 0: DefaultKvBudget()
  bool prefix_cache = true;     // adopt / publish cached prompt pages
  SequenceOptions sequence;     // mtp (inline) must be off; mtp_draft is set from `draft`
  // MTP speculative decoding (`--spec mtp --draft N`): N > 0 drafts per decode step from the
  // MTP layer (chained for N > 1), verified in the step's batched forward; 0: off.
  int64_t draft = 0;
  // Adaptive speculation (`--spec-min-acceptance`, `--spec-window`): a sequence whose
  // acceptance rate (accepted / verified drafts, since its start) is below this once it has
  // `adaptive_window` or more drafts verified stops drafting for good (negative: never stops;
  // > 1: always stops after the window). docs/spec.md explains the default.
  double min_acceptance = 0.3;
  int64_t adaptive_window = 16;  // ≥ 1
  // TEST-ONLY: replaces the MTP drafts (the MTP layer still runs), given the sequence's tokens
  // so far (prompt + emitted) and the number of drafts wanted.
  std::function<std::vector<int32_t>(const std::vector<int32_t>& tokens, int64_t n)> test_drafter;
  // Serving across ranks (not owned; outlives the engine): the leader's engine runs its worker
  // thread as usual; a follower's starts none and runs its rounds in `Follow`.
  EngineReplica* replica = nullptr;
};

struct EngineStats {
  int64_t queued = 0;
  int64_t running = 0;
  int64_t prompt_tokens = 0;          // prefilled (computed) so far, all requests
  int64_t cache_hit_tokens = 0;       // prompt tokens adopted from the prefix cache
  int64_t generated_tokens = 0;       // emitted so far
  int64_t decode_steps = 0;           // decode steps (one per sequence per round)
  int64_t decode_tokens = 0;          // tokens those steps emitted (> steps with speculation)
  int64_t draft_tokens = 0;           // MTP drafts verified
  int64_t accepted_tokens = 0;        // drafts accepted
  double prompt_tokens_per_s = 0;     // computed prompt tokens over the last 10 s, / 10
  double generated_tokens_per_s = 0;  // emitted tokens over the last 10 s, / 10
  KvPoolStats kv;
};

class Engine {
 public:
  // Throws Error for parallel < 1, queue_capacity < 0, prefill_chunk < 1, an MTP sequence
  // or a budget that holds no page.
  Engine(std::unique_ptr<Model> model, const EngineOptions& options);
  ~Engine();  // cancels every request and joins the worker
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return model_->config(); }
  // Tokens one sequence can hold within the KV budget (≤ the model's context).
  int64_t max_sequence_tokens() const;
  // Queues a request; nullptr when the queue is full. Throws Error for an invalid request (and
  // on a follower, whose requests come from the leader).
  std::shared_ptr<Generation> Submit(GenerationRequest request);
  EngineStats Stats() const;
  // A follower's engine: runs the leader's rounds on the calling thread until the leader stops.
  void Follow();

 private:
  friend class EngineSession;
  struct Active;
  struct StepInput;
  void Validate(const GenerationRequest& r) const;
  int64_t PagesNeeded(const GenerationRequest& r) const;
  void WorkerLoop();
  bool AdmitWaiting(std::vector<std::unique_ptr<Active>>& active);
  // With a replica: the round's inputs, sent (leader) or received and queued (follower); false
  // when the engines stop. Called with `lock` held on mu_ (released while sharing).
  bool ShareRound(std::unique_lock<std::mutex>& lock,
                  const std::vector<std::unique_ptr<Active>>& active);
  // With a replica: every rank's `digest` of what it is about to run must be the leader's.
  void CheckInSync(const char* stage, uint64_t digest);
  void ShareOptions();  // constructor, with a replica: the leader's options replace ours
  bool Cancelled(const Generation& g) const {
    return options_.replica ? g.replica_cancelled_ : g.cancelled();
  }
  std::unique_ptr<Active> Prepare(std::shared_ptr<Generation>& gen, GenerationRequest& req);
  std::unique_ptr<Active> Resume(std::shared_ptr<Generation>& gen, GenerationRequest& req);
  void ReleasePages(Active& a);
  void Retire(std::unique_ptr<Active>& slot);  // frees the slot (keeps a session's sequence)
  // One round: plan → forward → sample/emit/retire.
  std::vector<StepInput> Schedule(std::vector<std::unique_ptr<Active>>& active);
  void Execute(std::vector<StepInput>& plan);
  void PostProcess(std::vector<StepInput>& plan, std::vector<std::unique_ptr<Active>>& active);
  void EnsurePages(Active& a, int64_t rows);
  void Publish(Active& a);
  bool Emit(Active& a, const float* logits);  // false once the generation ended
  bool EmitToken(Active& a, int32_t token, const float* logits);
  // Verifies the step's drafts against its logits rows, emits the accepted prefix and the
  // next token, and truncates the rejected rows; false once the generation ended.
  bool Verify(Active& a, const float* logits);
  // Runs the MTP layer, as one batch for all of `seqs`, over the rows whose next token is now
  // known and proposes the drafts of the next step; sequences that fail join `failed`.
  void Speculate(std::span<Active* const> seqs, std::vector<Active*>& failed);
  void ReplaceDrafts(Active& a);  // TEST-ONLY: options_.test_drafter
  int64_t KeyedPages(int64_t prompt_tokens) const;
  void RecordRate(int64_t prompt, int64_t generated);

  std::unique_ptr<Model> model_;
  EngineOptions options_;
  SequenceState proto_;  // an empty sequence: page layout and prefix-cache root key
  KvPageLayout page_layout_;
  uint64_t root_key_ = 0;
  std::unique_ptr<KvPagePool> pool_;
  int64_t reserved_pages_ = 0;  // worker only: pages promised to active sequences, not yet taken
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<Generation>, GenerationRequest>> queue_;
  bool stop_ = false;
  std::atomic<int64_t> running_{0}, prompt_tokens_{0}, cache_hit_tokens_{0}, generated_tokens_{0},
      decode_steps_{0}, decode_tokens_{0}, draft_tokens_{0}, accepted_tokens_{0};
  struct RateSample {
    std::chrono::steady_clock::time_point time;
    int64_t prompt, generated;
  };
  mutable std::mutex rate_mu_;
  std::deque<RateSample> rates_;  // one per round of the last 10 s
  uint64_t last_replica_id_ = 0;  // worker only: the last request id the leader sent
  int64_t rounds_ = 0;            // worker only: rounds run (with a replica)
  std::thread worker_;
};

}  // namespace dsinfer
