#include "runtime/engine.h"

#include <algorithm>
#include <exception>
#include <span>
#include <string>

#include "base/error.h"
#include "base/threads.h"

namespace dsinfer {

Generation::Update Generation::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  Update u;
  u.tokens.swap(pending_);
  u.logprobs.swap(pending_logprobs_);
  u.done = done_;
  u.finish = finish_;
  u.error = error_;
  return u;
}

void Generation::Push(int32_t token, std::optional<TokenLogprobs> logprobs) {
  {
    std::lock_guard lock(mu_);
    pending_.push_back(token);
    if (logprobs) pending_logprobs_.push_back(std::move(*logprobs));
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

namespace {

int64_t CeilPages(int64_t rows) { return (rows + kKvPageRows - 1) / kKvPageRows; }

std::span<const int32_t> PageTokens(const std::vector<int32_t>& prompt, int64_t page) {
  return {prompt.data() + page * kKvPageRows, static_cast<size_t>(kKvPageRows)};
}

}  // namespace

// One admitted request: its cache, its pool pages, sampler and progress.
struct Engine::Active {
  Active(Engine* e, std::shared_ptr<Generation> g, GenerationRequest r, SequenceState s)
      : engine(e), gen(std::move(g)), req(std::move(r)), seq(std::move(s)), sampler(req.sampler) {}
  Engine* engine;
  std::shared_ptr<Generation> gen;
  GenerationRequest req;
  SequenceState seq;
  Sampler sampler;
  std::vector<KvPageId> pages;   // [pages installed] page i holds rows [64 i, 64 i + 64)
  std::vector<uint64_t> keys;    // [full prompt pages] prefix-cache chain keys
  int64_t reserved = 0;          // pages still to allocate (part of engine->reserved_pages_)
  int64_t published = 0;         // pages [0, published) are adopted or offered to the cache
  int64_t prefilled = 0;         // prompt tokens in the cache (adopted or forwarded)
  int64_t generated = 0;         // tokens emitted
  int32_t last = -1;             // the last emitted token, forwarded at the next decode step

  ~Active() { engine->ReleasePages(*this); }
};

// The tokens one active sequence forwards this round.
struct Engine::StepInput {
  Active* a;
  std::span<const int32_t> tokens;
  bool prefill;
  ForwardResult result;
  std::string error;  // non-empty: the step failed
};

Engine::Engine(std::unique_ptr<Model> model, const EngineOptions& options)
    : model_(std::move(model)), options_(options) {
  if (options.parallel < 1) throw Error("parallel must be ≥ 1");
  if (options.queue_capacity < 0) throw Error("queue capacity must be ≥ 0");
  if (options.prefill_chunk < 1) throw Error("prefill chunk must be ≥ 1");
  if (options.sequence.mtp) throw Error("the engine does not run the MTP module");
  proto_ = model_->NewSequence(options_.sequence);
  page_layout_ = KvPageLayout::Of(proto_);
  root_key_ = KvPagePool::RootKey(proto_);
  const int64_t budget =
      options_.kv_budget_bytes > 0 ? options_.kv_budget_bytes : DefaultKvBudget();
  pool_ = std::make_unique<KvPagePool>(page_layout_.bytes, budget);
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

int64_t Engine::max_sequence_tokens() const {
  return std::min(model_->config().max_position_embeddings,
                  pool_->budget_pages() * kKvPageRows);
}

// Cache rows the request may write: every prompt token and every emitted token but the last.
int64_t Engine::PagesNeeded(const GenerationRequest& r) const {
  return CeilPages(static_cast<int64_t>(r.prompt.size()) + r.max_tokens - 1);
}

void Engine::Validate(const GenerationRequest& r) const {
  const ModelConfig& c = model_->config();
  if (r.prompt.empty()) throw Error("empty prompt");
  if (r.max_tokens < 1) throw Error("max_tokens must be ≥ 1");
  // Subtracted, not added: max_tokens may be anything up to 2^63 − 1. After this check
  // prompt + max_tokens is at most the context, so PagesNeeded cannot overflow.
  const auto prompt_size = static_cast<int64_t>(r.prompt.size());
  if (r.max_tokens > c.max_position_embeddings - prompt_size)
    throw Error("prompt + max_tokens exceed the model context (" +
                std::to_string(c.max_position_embeddings) + ")");
  if (PagesNeeded(r) > pool_->budget_pages())
    throw Error("prompt + max_tokens need " + std::to_string(PagesNeeded(r) * kKvPageRows) +
                " tokens of KV cache; the KV budget holds " +
                std::to_string(pool_->budget_pages() * kKvPageRows) + " (" +
                std::to_string(pool_->budget_pages()) + " pages of " +
                std::to_string(pool_->page_bytes()) + " bytes)");
  auto bad = [&](int32_t id) { return id < 0 || id >= c.vocab_size; };
  if (std::any_of(r.prompt.begin(), r.prompt.end(), bad) ||
      std::any_of(r.forced_tokens.begin(), r.forced_tokens.end(), bad))
    throw Error("token id outside the vocabulary (" + std::to_string(c.vocab_size) + ")");
  if (r.top_logprobs > 20) throw Error("top_logprobs must be at most 20");
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
  s.cache_hit_tokens = cache_hit_tokens_.load();
  s.generated_tokens = generated_tokens_.load();
  {
    std::lock_guard lock(rate_mu_);
    const auto since = std::chrono::steady_clock::now() - std::chrono::seconds(10);
    for (const RateSample& r : rates_)
      if (r.time > since) {
        s.prompt_tokens_per_s += r.prompt / 10.0;
        s.generated_tokens_per_s += r.generated / 10.0;
      }
  }
  s.kv = pool_->Stats();
  return s;
}

void Engine::RecordRate(int64_t prompt, int64_t generated) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(rate_mu_);
  rates_.push_back({now, prompt, generated});
  while (!rates_.empty() && rates_.front().time < now - std::chrono::seconds(10))
    rates_.pop_front();
}

// The request's prefix-cache hit (its pages retained) and page reservation, or nullptr (nothing
// held) while the budget cannot hold what it may need.
std::unique_ptr<Engine::Active> Engine::Prepare(std::shared_ptr<Generation>& gen,
                                                GenerationRequest& req) {
  const int64_t n = static_cast<int64_t>(req.prompt.size());
  std::vector<uint64_t> keys;
  std::vector<KvPageId> hits;
  if (options_.prefix_cache) {
    for (int64_t i = 0; i < n / kKvPageRows; ++i)
      keys.push_back(KvPagePool::ChainKey(i ? keys.back() : root_key_, PageTokens(req.prompt, i)));
    // Adopt at most n − 1 tokens: the last prompt token is always computed (its logits).
    for (int64_t i = 0; i < (n - 1) / kKvPageRows; ++i) {
      auto page = pool_->Lookup(keys[i], i ? keys[i - 1] : root_key_, PageTokens(req.prompt, i));
      if (!page) break;
      hits.push_back(*page);
    }
  }
  const int64_t fresh = PagesNeeded(req) - static_cast<int64_t>(hits.size());
  if (pool_->Available() - reserved_pages_ < fresh) {
    for (auto it = hits.rbegin(); it != hits.rend(); ++it) pool_->Release(*it);
    return nullptr;
  }
  auto a = std::make_unique<Active>(this, std::move(gen), std::move(req),
                                    model_->NewSequence(options_.sequence));
  reserved_pages_ += fresh;
  a->reserved = fresh;
  a->keys = std::move(keys);
  a->pages = std::move(hits);
  for (KvPageId id : a->pages) page_layout_.Install(a->seq, pool_->data(id));
  const int64_t hit_tokens = static_cast<int64_t>(a->pages.size()) * kKvPageRows;
  a->seq.length = a->prefilled = hit_tokens;
  a->published = static_cast<int64_t>(a->pages.size());
  a->gen->SetCacheHitTokens(hit_tokens);
  cache_hit_tokens_ += hit_tokens;
  return a;
}

// Deepest page first, so a released chain leaves the LRU from its tail.
void Engine::ReleasePages(Active& a) {
  for (auto it = a.pages.rbegin(); it != a.pages.rend(); ++it) pool_->Release(*it);
  a.pages.clear();
  reserved_pages_ -= a.reserved;
  a.reserved = 0;
}

// Moves waiting requests into free slots, in FIFO order, while their pages fit. Returns false
// when the engine is stopping.
bool Engine::AdmitWaiting(std::vector<std::unique_ptr<Active>>& active) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !active.empty(); });
  if (stop_) return false;
  while (!queue_.empty() && static_cast<int>(active.size()) < options_.parallel) {
    auto& [gen, req] = queue_.front();
    if (gen->cancelled()) {
      gen->Finish(FinishReason::kCancelled);
      queue_.pop_front();
      continue;
    }
    std::unique_ptr<Active> a = Prepare(gen, req);
    if (!a) break;  // waits for running sequences to release pages
    queue_.pop_front();
    active.push_back(std::move(a));
  }
  running_.store(static_cast<int64_t>(active.size()));
  return true;
}

void Engine::WorkerLoop() {
  UseComputeThreads();  // OpenMP's team size is per thread: this one runs every forward pass
  SetThreadRole(ThreadRole::kEngine);
  std::vector<std::unique_ptr<Active>> active;
  while (AdmitWaiting(active)) {
    RunRound(active);
    std::erase(active, nullptr);
    running_.store(static_cast<int64_t>(active.size()));
  }
  for (auto& a : active) a->gen->Finish(FinishReason::kCancelled);
  active.clear();
  running_.store(0);
}

// Takes pool pages (reserved at admission) until the cache holds `rows` rows.
void Engine::EnsurePages(Active& a, int64_t rows) {
  while (static_cast<int64_t>(a.pages.size()) * kKvPageRows < rows) {
    std::optional<KvPageId> id = pool_->Allocate();
    if (!id || a.reserved == 0) {  // the reservation makes this unreachable
      if (id) pool_->Release(*id);
      throw Error("KV page pool exhausted");
    }
    a.pages.push_back(*id);
    --a.reserved;
    --reserved_pages_;
    page_layout_.Install(a.seq, pool_->data(*id));
  }
}

// Offers the sequence's full, prefilled prompt pages to the prefix cache.
void Engine::Publish(Active& a) {
  if (!options_.prefix_cache) return;
  const int64_t full = std::min(a.prefilled / kKvPageRows, static_cast<int64_t>(a.keys.size()));
  for (; a.published < full; ++a.published) {
    const int64_t i = a.published;
    pool_->Publish(a.pages[i], a.keys[i], i ? a.keys[i - 1] : root_key_,
                   PageTokens(a.req.prompt, i));
  }
}

// One step for every active sequence: a prefill chunk (emitting the first token when the
// prompt is done) or one decode token. Finished, cancelled and failed sequences are reset.
void Engine::RunRound(std::vector<std::unique_ptr<Active>>& active) {
  std::vector<StepInput> steps;
  for (auto& a : active) {
    if (a->gen->cancelled()) {
      a->gen->Finish(FinishReason::kCancelled);
      a.reset();  // releases the sequence's pages now
      continue;
    }
    const int64_t n = static_cast<int64_t>(a->req.prompt.size());
    StepInput s{a.get(), std::span<const int32_t>(&a->last, 1), a->prefilled < n, {}, {}};
    if (s.prefill)
      s.tokens = std::span<const int32_t>(a->req.prompt.data() + a->prefilled,
                                          std::min(options_.prefill_chunk, n - a->prefilled));
    try {
      EnsurePages(*a, a->seq.length + static_cast<int64_t>(s.tokens.size()));
    } catch (const std::exception& e) {
      s.error = e.what();
    }
    steps.push_back(std::move(s));
  }
  // One batched forward for the round: each result equals (bitwise) that sequence run alone.
  std::vector<BatchEntry> batch;
  std::vector<StepInput*> in_batch;
  for (StepInput& s : steps)
    if (s.error.empty()) {
      batch.push_back({&s.a->seq, s.tokens, /*all_logits=*/false});
      in_batch.push_back(&s);
    }
  if (!batch.empty()) {
    try {
      std::vector<ForwardResult> results = model_->ForwardBatch(batch);
      for (size_t i = 0; i < in_batch.size(); ++i) in_batch[i]->result = std::move(results[i]);
    } catch (const std::exception& e) {
      for (StepInput* s : in_batch) s->error = e.what();
    }
  }
  int64_t round_prompt = 0, round_generated = 0;
  for (StepInput& s : steps) {
    Active& a = *s.a;
    bool alive = s.error.empty();
    if (!alive) a.gen->Finish(FinishReason::kError, s.error);
    if (alive && s.prefill) {
      a.prefilled += static_cast<int64_t>(s.tokens.size());
      round_prompt += static_cast<int64_t>(s.tokens.size());
      prompt_tokens_ += static_cast<int64_t>(s.tokens.size());  // counted before the token is sent
      Publish(a);
    }
    if (alive && (!s.prefill || a.prefilled == static_cast<int64_t>(a.req.prompt.size()))) {
      ++round_generated;
      alive = Emit(a, s.result.logits.data());
    }
    if (!alive)
      for (auto& slot : active)
        if (slot.get() == &a) slot.reset();
  }
  RecordRate(round_prompt, round_generated);
}

// Picks the next token from `logits` [vocab] and sends it; false when the generation ends.
bool Engine::Emit(Active& a, const float* logits) {
  const int64_t vocab = model_->config().vocab_size;
  const bool forced = !a.req.forced_tokens.empty();
  const int32_t token =
      forced ? a.req.forced_tokens[a.generated] : a.sampler.Sample(logits, vocab);
  a.last = token;
  ++a.generated;
  ++generated_tokens_;
  std::optional<TokenLogprobs> lp;
  if (a.req.top_logprobs >= 0) lp = ComputeLogprobs(logits, vocab, token, a.req.top_logprobs);
  a.gen->Push(token, std::move(lp));
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
