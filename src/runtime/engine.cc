#include "runtime/engine.h"

#include <algorithm>
#include <exception>
#include <span>

#include "base/error.h"

namespace dsinfer {

Generation::Update Generation::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  Update u;
  u.tokens.swap(pending_);
  u.done = done_;
  u.finish = finish_;
  u.error = error_;
  return u;
}

void Generation::Push(int32_t token) {
  {
    std::lock_guard lock(mu_);
    pending_.push_back(token);
  }
  cv_.notify_all();
}

void Generation::Finish(FinishReason reason, std::string error) {
  {
    std::lock_guard lock(mu_);
    if (done_) return;
    done_ = true;
    finish_ = reason;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

// One admitted request: its cache, sampler and progress.
struct Engine::Active {
  std::shared_ptr<Generation> gen;
  GenerationRequest req;
  SequenceState seq;
  Sampler sampler;
  int64_t prefilled = 0;  // prompt tokens already forwarded
  int64_t generated = 0;  // tokens emitted
  int32_t last = -1;      // the last emitted token, forwarded at the next decode step
};

Engine::Engine(std::unique_ptr<Model> model, const EngineOptions& options)
    : model_(std::move(model)), options_(options) {
  if (options.parallel < 1) throw Error("parallel must be ≥ 1");
  if (options.queue_capacity < 0) throw Error("queue capacity must be ≥ 0");
  if (options.prefill_chunk < 1) throw Error("prefill chunk must be ≥ 1");
  worker_ = std::thread([this] { WorkerLoop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  for (auto& [gen, req] : queue_) gen->Finish(FinishReason::kCancelled);
}

void Engine::Validate(const GenerationRequest& r) const {
  const ModelConfig& c = model_->config();
  if (r.prompt.empty()) throw Error("empty prompt");
  if (r.max_tokens < 1) throw Error("max_tokens must be ≥ 1");
  if (static_cast<int64_t>(r.prompt.size()) + r.max_tokens > c.max_position_embeddings)
    throw Error("prompt + max_tokens exceed the model context (" +
                std::to_string(c.max_position_embeddings) + ")");
  auto bad = [&](int32_t id) { return id < 0 || id >= c.vocab_size; };
  if (std::any_of(r.prompt.begin(), r.prompt.end(), bad) ||
      std::any_of(r.forced_tokens.begin(), r.forced_tokens.end(), bad))
    throw Error("token id outside the vocabulary (" + std::to_string(c.vocab_size) + ")");
  Sampler check(r.sampler);  // throws for bad temperature / top_p
}

std::shared_ptr<Generation> Engine::Submit(GenerationRequest request) {
  Validate(request);
  auto gen = std::make_shared<Generation>();
  {
    std::lock_guard lock(mu_);
    if (static_cast<int64_t>(queue_.size()) >= options_.queue_capacity) return nullptr;
    queue_.emplace_back(gen, std::move(request));
  }
  cv_.notify_all();
  return gen;
}

EngineStats Engine::Stats() const {
  EngineStats s;
  {
    std::lock_guard lock(mu_);
    s.queued = static_cast<int64_t>(queue_.size());
  }
  s.running = running_.load();
  s.prompt_tokens = prompt_tokens_.load();
  s.generated_tokens = generated_tokens_.load();
  return s;
}

// Moves waiting requests into free slots. Returns false when the engine is stopping.
bool Engine::AdmitWaiting(std::vector<std::unique_ptr<Active>>& active) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !active.empty(); });
  if (stop_) return false;
  while (!queue_.empty() && static_cast<int>(active.size()) < options_.parallel) {
    auto [gen, req] = std::move(queue_.front());
    queue_.pop_front();
    if (gen->cancelled()) {
      gen->Finish(FinishReason::kCancelled);
      continue;
    }
    Sampler sampler(req.sampler);
    SequenceState seq = model_->NewSequence(options_.sequence);
    active.push_back(std::unique_ptr<Active>(
        new Active{std::move(gen), std::move(req), std::move(seq), sampler}));
  }
  running_.store(static_cast<int64_t>(active.size()));
  return true;
}

void Engine::WorkerLoop() {
  std::vector<std::unique_ptr<Active>> active;
  while (AdmitWaiting(active)) {
    for (auto& a : active) {
      bool alive = !a->gen->cancelled();
      if (!alive) a->gen->Finish(FinishReason::kCancelled);
      try {
        if (alive) alive = Step(*a);
      } catch (const std::exception& e) {
        a->gen->Finish(FinishReason::kError, e.what());
        alive = false;
      }
      if (!alive) a.reset();  // frees the sequence's caches now
    }
    std::erase(active, nullptr);
    running_.store(static_cast<int64_t>(active.size()));
  }
  for (auto& a : active) a->gen->Finish(FinishReason::kCancelled);
  running_.store(0);
}

// One prefill chunk (emitting the first token when the prompt is done) or one decode step.
bool Engine::Step(Active& a) {
  const int64_t n = static_cast<int64_t>(a.req.prompt.size());
  if (a.prefilled < n) {
    const int64_t len = std::min(options_.prefill_chunk, n - a.prefilled);
    std::span<const int32_t> chunk(a.req.prompt.data() + a.prefilled, len);
    ForwardResult r = model_->Forward(a.seq, chunk, a.seq.length, /*all_logits=*/false);
    a.prefilled += len;
    prompt_tokens_ += len;
    if (a.prefilled < n) return true;
    return Emit(a, r.logits.data());
  }
  ForwardResult r = model_->Forward(a.seq, std::span<const int32_t>(&a.last, 1), a.seq.length,
                                    /*all_logits=*/false);
  return Emit(a, r.logits.data());
}

// Picks the next token from `logits` [vocab] and sends it; false when the generation ends.
bool Engine::Emit(Active& a, const float* logits) {
  const bool forced = !a.req.forced_tokens.empty();
  const int32_t token = forced ? a.req.forced_tokens[a.generated]
                               : a.sampler.Sample(logits, model_->config().vocab_size);
  a.last = token;
  ++a.generated;
  ++generated_tokens_;
  a.gen->Push(token);
  const auto& stops = a.req.stop_ids;
  const bool script_done =
      forced && a.generated == static_cast<int64_t>(a.req.forced_tokens.size());
  if (script_done || std::find(stops.begin(), stops.end(), token) != stops.end()) {
    a.gen->Finish(FinishReason::kStop);
    return false;
  }
  if (a.generated >= a.req.max_tokens) {
    a.gen->Finish(FinishReason::kLength);
    return false;
  }
  return true;
}

}  // namespace dsinfer
