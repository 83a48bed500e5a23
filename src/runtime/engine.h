// The request scheduler: one worker thread owns the Model and interleaves up to `parallel`
// sequences. Requests wait in a bounded FIFO queue; each round the worker admits waiting
// requests into free slots, then gives every active sequence one step — a prefill chunk of at
// most `prefill_chunk` prompt tokens (so a long prompt does not stall the other streams) or
// one decode token — in round-robin order. Steps are independent `Model::Forward` calls on
// separate `SequenceState`s, so each sequence's tokens equal those of the same request run
// alone (a batched forward is the next step; the interface does not change).
//
// A `Generation` is the channel between the worker and the request's client: the worker
// appends tokens and the finish reason; the client waits for them and may `Cancel`, which
// frees the sequence at the worker's next round. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace dsinfer {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };

struct GenerationRequest {
  std::vector<int32_t> prompt;  // non-empty, ids < vocab_size
  int64_t max_tokens = 16;      // ≥ 1
  SamplerOptions sampler;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these (EOS)
  // TEST-ONLY (`dsinfer serve --test-script`): these ids are emitted instead of sampled ones,
  // still through the real forward pass; the generation stops when they run out.
  std::vector<int32_t> forced_tokens;
};

class Generation {
 public:
  struct Update {
    std::vector<int32_t> tokens;  // new since the previous Wait
    bool done = false;
    FinishReason finish = FinishReason::kNone;
    std::string error;  // kError: what went wrong
  };
  // Waits until there are new tokens or the generation ended, or `timeout` passed.
  Update Wait(std::chrono::milliseconds timeout);
  // Asks the worker to stop and free the sequence (no effect once done).
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Worker side.
  void Push(int32_t token);
  void Finish(FinishReason reason, std::string error = {});

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> pending_;
  bool done_ = false;
  FinishReason finish_ = FinishReason::kNone;
  std::string error_;
  std::atomic<bool> cancelled_{false};
};

struct EngineOptions {
  int parallel = 4;            // active sequences
  int queue_capacity = 64;     // waiting requests
  int64_t prefill_chunk = 64;  // prompt tokens per Forward call
  SequenceOptions sequence;
};

struct EngineStats {
  int64_t queued = 0;
  int64_t running = 0;
  int64_t prompt_tokens = 0;     // prefilled so far (all requests)
  int64_t generated_tokens = 0;  // emitted so far
};

class Engine {
 public:
  // Throws Error for parallel < 1, queue_capacity < 0 or prefill_chunk < 1.
  Engine(std::unique_ptr<Model> model, const EngineOptions& options);
  ~Engine();  // cancels every request and joins the worker
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return model_->config(); }
  // Queues a request; nullptr when the queue is full. Throws Error for an invalid request.
  std::shared_ptr<Generation> Submit(GenerationRequest request);
  EngineStats Stats() const;

 private:
  struct Active;
  void Validate(const GenerationRequest& r) const;
  void WorkerLoop();
  bool AdmitWaiting(std::vector<std::unique_ptr<Active>>& active);
  bool Step(Active& a);  // false once the sequence is finished
  bool Emit(Active& a, const float* logits);

  std::unique_ptr<Model> model_;
  EngineOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<Generation>, GenerationRequest>> queue_;
  bool stop_ = false;
  std::atomic<int64_t> running_{0}, prompt_tokens_{0}, generated_tokens_{0};
  std::thread worker_;
};

}  // namespace dsinfer
