#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <type_traits>

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
  u.first_token_time = first_token_time_;
  u.last_token_time = last_token_time_;
  return u;
}

void Generation::Push(int32_t token, std::optional<TokenLogprobs> logprobs) {
  {
    std::lock_guard lock(mu_);
    last_token_time_ = std::chrono::steady_clock::now();
    if (first_token_time_ == std::chrono::steady_clock::time_point{})
      first_token_time_ = last_token_time_;
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

// The bytes of a replica's messages (EngineReplica): plain values and vectors of them, in
// this machine's representation (every rank of a job runs the same build on x86-64).
class MessageWriter {
 public:
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  template <typename T>
  void PutVector(const std::vector<T>& v) {
    Put<uint64_t>(v.size());
    if (!v.empty()) bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

class MessageReader {
 public:
  explicit MessageReader(const std::string& bytes) : bytes_(bytes) {}
  template <typename T>
  T Get() {
    T v;
    Take(&v, sizeof(v));
    return v;
  }
  template <typename T>
  std::vector<T> GetVector() {
    const auto n = Get<uint64_t>();
    if (n > (bytes_.size() - at_) / sizeof(T)) throw Error("engine replica: message too short");
    std::vector<T> v(n);
    Take(v.data(), n * sizeof(T));
    return v;
  }
  bool done() const { return at_ == bytes_.size(); }

 private:
  void Take(void* out, size_t n) {
    if (n == 0) return;  // an empty vector's data() may be null: no memcpy
    if (n > bytes_.size() - at_) throw Error("engine replica: message too short");
    std::memcpy(out, bytes_.data() + at_, n);
    at_ += n;
  }
  const std::string& bytes_;
  size_t at_ = 0;
};

// 64-bit FNV-1a over plain values (a round's digest).
class Digest {
 public:
  template <typename T>
  void Add(T v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    for (size_t i = 0; i < sizeof(v); ++i) h_ = (h_ ^ p[i]) * 0x100000001b3ULL;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

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
  std::vector<int32_t> emitted;  // [generated]
  // Speculation: the drafts after `last`, their MTP distributions (sampling: for rejection),
  // the step's tokens (last ‖ drafts) and the acceptance so far.
  bool drafting = false;
  std::vector<int32_t> drafts;
  std::vector<std::vector<double>> draft_q;  // [drafts][vocab]
  std::vector<int32_t> step_tokens;
  int64_t drafted = 0, accepted = 0;

  int32_t Token(int64_t i) const {  // the sequence's token at position i (prompt ‖ emitted)
    const int64_t n = static_cast<int64_t>(req.prompt.size());
    return i < n ? req.prompt[i] : emitted[i - n];
  }

  ~Active() { engine->ReleasePages(*this); }
};

// What a session keeps between its requests: the sequence, its pages and the tokens cached.
struct EngineSession::Kept {
  std::unique_ptr<Engine::Active> active;  // pages held, no reservation
  std::vector<int32_t> tokens;             // [active->seq.length] the cached tokens
};

EngineSession::EngineSession() = default;
EngineSession::~EngineSession() = default;

// One line of the step plan: the tokens one active sequence forwards this round, which of its
// rows need logits, and (filled by Execute) the result.
struct Engine::StepInput {
  Active* a;
  std::span<const int32_t> tokens;
  bool prefill;
  bool all_logits = false;  // logits of every row, else of the last one
  ForwardResult result = {};
  std::string error = {};  // non-empty: the step failed
};

Engine::Engine(std::unique_ptr<Model> model, const EngineOptions& options)
    : model_(std::move(model)), options_(options) {
  if (options.parallel < 1) throw Error("parallel must be ≥ 1");
  if (options.queue_capacity < 0) throw Error("queue capacity must be ≥ 0");
  if (options.prefill_chunk < 1) throw Error("prefill chunk must be ≥ 1");
  if (options.sequence.mtp) throw Error("the engine does not run the MTP module");
  if (options.draft < 0 || options.draft > 16) throw Error("--draft must be in [0, 16]");
  if (std::isnan(options.min_acceptance)) throw Error("--spec-min-acceptance must be a number");
  if (options.adaptive_window < 1) throw Error("--spec-window must be ≥ 1");
  if (options.draft > 0 && !model_->has_mtp())
    throw Error("--spec mtp: the checkpoint has no MTP layer (num_nextn_predict_layers = 0)");
  if (options_.kv_budget_bytes <= 0) options_.kv_budget_bytes = DefaultKvBudget();
  if (options_.replica) ShareOptions();
  options_.sequence.mtp_draft = options_.draft > 0;
  proto_ = model_->NewSequence(options_.sequence);
  page_layout_ = KvPageLayout::Of(proto_);
  root_key_ = KvPagePool::RootKey(proto_);
  pool_ = std::make_unique<KvPagePool>(page_layout_.bytes, options_.kv_budget_bytes);
  if (!options_.replica || options_.replica->leader())
    worker_ = std::thread([this] { WorkerLoop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  for (auto& [gen, req] : queue_) gen->Finish(FinishReason::kCancelled);
}

// Everything a follower's engine must share with the leader's to take the same decisions.
void Engine::ShareOptions() {
  EngineReplica& replica = *options_.replica;
  if (options_.test_drafter) throw Error("a test drafter does not run across ranks");
  MessageWriter w;
  if (replica.leader()) {
    const EngineOptions& o = options_;
    w.Put(o.parallel);
    w.Put(o.queue_capacity);
    w.Put(o.prefill_chunk);
    w.Put(o.kv_budget_bytes);
    w.Put(o.prefix_cache);
    w.Put(o.sequence.attention);
    w.Put(o.sequence.index_topk.has_value());
    w.Put(o.sequence.index_topk.value_or(0));
    w.Put(o.sequence.kv_cache);
    w.Put(o.sequence.mtp);
    w.Put(o.draft);
    w.Put(o.min_acceptance);
    w.Put(o.adaptive_window);
  }
  replica.Share(w.bytes());
  if (replica.leader()) return;
  MessageReader r(w.bytes());
  EngineOptions& o = options_;
  o.parallel = r.Get<int>();
  o.queue_capacity = r.Get<int>();
  o.prefill_chunk = r.Get<int64_t>();
  o.kv_budget_bytes = r.Get<int64_t>();
  o.prefix_cache = r.Get<bool>();
  o.sequence.attention = r.Get<AttentionMode>();
  const bool has_topk = r.Get<bool>();
  const auto topk = r.Get<int64_t>();
  o.sequence.index_topk = has_topk ? std::optional<int64_t>(topk) : std::nullopt;
  o.sequence.kv_cache = r.Get<KvCacheType>();
  o.sequence.mtp = r.Get<bool>();
  o.draft = r.Get<int64_t>();
  o.min_acceptance = r.Get<double>();
  o.adaptive_window = r.Get<int64_t>();
  if (!r.done()) throw Error("engine replica: the leader's options message has extra bytes");
  if (o.draft > 0 && !model_->has_mtp())
    throw Error("--spec mtp: the checkpoint has no MTP layer (num_nextn_predict_layers = 0)");
}

void Engine::Follow() {
  if (!options_.replica || options_.replica->leader())
    throw Error("Follow: this engine is not a follower");
  WorkerLoop();
}

int64_t Engine::max_sequence_tokens() const {
  return std::min(model_->config().max_position_embeddings, pool_->budget_pages() * kKvPageRows);
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
  if (options_.replica && !options_.replica->leader())
    throw Error("a follower's engine takes its requests from the leader");
  if (options_.replica && request.session)
    throw Error("sessions do not run across ranks (docs/mpi.md)");
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
  s.decode_steps = decode_steps_.load();
  s.decode_tokens = decode_tokens_.load();
  s.draft_tokens = draft_tokens_.load();
  s.accepted_tokens = accepted_tokens_.load();
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
  if (req.session) return Resume(gen, req);
  const int64_t n = static_cast<int64_t>(req.prompt.size());
  std::vector<uint64_t> keys;
  std::vector<KvPageId> hits;
  if (options_.prefix_cache) {
    // With MTP rows a page's key also covers the next token (its last MTP row depends on it).
    const int64_t extra = options_.draft > 0 ? 1 : 0;
    for (int64_t i = 0; i < KeyedPages(n); ++i)
      keys.push_back(KvPagePool::ChainKey(
          i ? keys.back() : root_key_,
          {req.prompt.data() + i * kKvPageRows, static_cast<size_t>(kKvPageRows + extra)}));
    // Adopt at most n − 1 tokens: the last prompt token is always computed (its logits).
    for (int64_t i = 0; i < std::min<int64_t>((n - 1) / kKvPageRows, KeyedPages(n)); ++i) {
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
  a->seq.mtp_length = options_.draft > 0 ? hit_tokens : 0;  // MTP rows come with the pages
  a->published = static_cast<int64_t>(a->pages.size());
  a->gen->SetCacheHitTokens(hit_tokens);
  cache_hit_tokens_ += hit_tokens;
  return a;
}

// A request on a session: continues from the longest common prefix of its prompt and the
// session's cached tokens (at most prompt − 1: the last prompt token is computed), keeping the
// pages the session holds; nullptr (session untouched) while the budget cannot hold the rest.
std::unique_ptr<Engine::Active> Engine::Resume(std::shared_ptr<Generation>& gen,
                                               GenerationRequest& req) {
  const int64_t n = static_cast<int64_t>(req.prompt.size());
  std::unique_ptr<EngineSession::Kept>& kept = req.session->kept_;
  const int64_t held = kept ? static_cast<int64_t>(kept->active->pages.size()) : 0;
  const int64_t fresh = std::max<int64_t>(0, PagesNeeded(req) - held);
  if (pool_->Available() - reserved_pages_ < fresh) return nullptr;
  auto a = std::make_unique<Active>(this, std::move(gen), std::move(req),
                                    model_->NewSequence(options_.sequence));
  int64_t reuse = 0;
  if (kept) {
    const std::vector<int32_t>& t = kept->tokens;
    const std::vector<int32_t>& p = a->req.prompt;
    while (reuse < static_cast<int64_t>(t.size()) && reuse < n - 1 && t[reuse] == p[reuse]) ++reuse;
    a->seq = std::move(kept->active->seq);
    a->pages = std::move(kept->active->pages);
    kept->active->pages.clear();
    kept.reset();
    SequenceState& seq = a->seq;
    if (options_.draft > 0 && !seq.options.mtp_draft) {  // drafting stopped: MTP rows lag
      // Row mtp_length − 1 saw the old token at mtp_length: valid only if that one is kept.
      const int64_t valid =
          reuse > seq.mtp_length ? seq.mtp_length : std::max<int64_t>(seq.mtp_length - 1, 0);
      reuse = std::min(reuse, valid);
      seq.options.mtp_draft = true;
      seq.mtp_hidden.clear();
      seq.length = reuse;
      seq.mtp_length = reuse;
    }
    reuse = Model::Truncate(seq, reuse);
  }
  reserved_pages_ += fresh;
  a->reserved = fresh;
  a->prefilled = reuse;  // no prefix-cache keys: nothing is published
  a->gen->SetCacheHitTokens(reuse);
  cache_hit_tokens_ += reuse;
  return a;
}

// Full prompt pages that get a prefix-cache key: with MTP rows only those followed by a token.
int64_t Engine::KeyedPages(int64_t prompt_tokens) const {
  return options_.draft > 0 ? (prompt_tokens - 1) / kKvPageRows : prompt_tokens / kKvPageRows;
}

// Deepest page first, so a released chain leaves the LRU from its tail.
void Engine::ReleasePages(Active& a) {
  for (auto it = a.pages.rbegin(); it != a.pages.rend(); ++it) pool_->Release(*it);
  a.pages.clear();
  reserved_pages_ -= a.reserved;
  a.reserved = 0;
}

// A finished sequence of a session stays in it (pages held, reservation returned); any other
// is freed now.
void Engine::Retire(std::unique_ptr<Active>& slot) {
  if (!slot) return;
  if (slot->req.session) {
    auto kept = std::make_unique<EngineSession::Kept>();
    Active& a = *slot;
    kept->tokens = a.req.prompt;
    kept->tokens.insert(kept->tokens.end(), a.emitted.begin(), a.emitted.end());
    kept->tokens.resize(std::min<size_t>(kept->tokens.size(), a.seq.length));
    reserved_pages_ -= a.reserved;
    a.reserved = 0;
    std::shared_ptr<EngineSession> session = std::move(a.req.session);
    kept->active = std::move(slot);
    session->kept_ = std::move(kept);
  }
  slot.reset();
}

// Moves waiting requests into free slots, in FIFO order, while their pages fit. Returns false
// when the engine is stopping.
bool Engine::AdmitWaiting(std::vector<std::unique_ptr<Active>>& active) {
  std::unique_lock lock(mu_);
  if (options_.replica) {
    if (!ShareRound(lock, active)) return false;
  } else {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !active.empty(); });
    if (stop_) return false;
  }
  while (!queue_.empty() && static_cast<int>(active.size()) < options_.parallel) {
    auto& [gen, req] = queue_.front();
    if (options_.replica && gen->replica_id_ == 0) break;  // came after the round's message
    if (Cancelled(*gen)) {
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

// The leader sends (and a follower receives) the requests queued since the last round, the
// cancellations seen since, and whether the engines stop. A request's sampler seed is part of
// it, so sampling draws the same tokens on every rank.
bool Engine::ShareRound(std::unique_lock<std::mutex>& lock,
                        const std::vector<std::unique_ptr<Active>>& active) {
  EngineReplica& replica = *options_.replica;
  MessageWriter w;
  if (replica.leader()) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !active.empty(); });
    w.Put(stop_);
    std::vector<std::pair<Generation*, GenerationRequest*>> fresh;
    for (auto& [gen, req] : queue_)
      if (gen->replica_id_ == 0) fresh.emplace_back(gen.get(), &req);
    w.Put<uint64_t>(fresh.size());
    for (auto& [gen, req] : fresh) {
      gen->replica_id_ = ++last_replica_id_;
      w.Put(gen->replica_id_);
      w.PutVector(req->prompt);
      w.Put(req->max_tokens);
      w.Put(req->sampler.temperature);
      w.Put(req->sampler.top_p);
      w.Put(req->sampler.seed);
      w.Put(req->sampler.top_k);
      w.PutVector(req->stop_ids);
      w.PutVector(req->forced_tokens);
      w.Put(req->top_logprobs);
    }
    // A cancellation counts from the round it is sent in, on every rank.
    std::vector<uint64_t> cancels;
    auto look = [&](Generation& g) {
      if (!g.replica_cancelled_ && g.cancelled()) {
        g.replica_cancelled_ = true;
        cancels.push_back(g.replica_id_);
      }
    };
    for (auto& [gen, req] : queue_)
      if (gen->replica_id_ != 0) look(*gen);
    for (const auto& a : active) look(*a->gen);
    w.PutVector(cancels);
    const bool stop = stop_;
    lock.unlock();
    replica.Share(w.bytes());
    lock.lock();
    return !stop;
  }
  lock.unlock();
  replica.Share(w.bytes());
  lock.lock();
  MessageReader r(w.bytes());
  if (r.Get<bool>()) return false;
  const auto fresh = r.Get<uint64_t>();
  for (uint64_t i = 0; i < fresh; ++i) {
    auto gen = std::make_shared<Generation>();
    gen->replica_id_ = r.Get<uint64_t>();
    GenerationRequest req;
    req.prompt = r.GetVector<int32_t>();
    req.max_tokens = r.Get<int64_t>();
    req.sampler.temperature = r.Get<float>();
    req.sampler.top_p = r.Get<float>();
    req.sampler.seed = r.Get<uint64_t>();
    req.sampler.top_k = r.Get<int64_t>();
    req.stop_ids = r.GetVector<int32_t>();
    req.forced_tokens = r.GetVector<int32_t>();
    req.top_logprobs = r.Get<int>();
    queue_.emplace_back(std::move(gen), std::move(req));
  }
  for (uint64_t id : r.GetVector<uint64_t>()) {
    for (auto& [gen, req] : queue_)
      if (gen->replica_id_ == id) gen->replica_cancelled_ = true;
    for (const auto& a : active)
      if (a->gen->replica_id_ == id) a->gen->replica_cancelled_ = true;
  }
  if (!r.done()) throw Error("engine replica: the leader's round message has extra bytes");
  // Nobody reads a follower's generations: drop what the previous round pushed.
  for (const auto& a : active) a->gen->Wait(std::chrono::milliseconds(0));
  return true;
}

// Before each call that makes collectives (the batched forward, the MTP drafts) every rank's
// digest of what it is about to run must be the leader's: if not, the engines took different
// decisions, and the job ends naming the ranks instead of calling mismatched collectives (a
// hang) or computing garbage. Every rank reaches each check in every round.
void Engine::CheckInSync(const char* stage, uint64_t digest) {
  const std::vector<uint64_t> all = options_.replica->Gather(digest);
  std::string differ;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  if (!differ.empty())
    options_.replica->Fail("the engine of rank(s) " + differ + " diverged from rank 0's at round " +
                           std::to_string(rounds_) + " (" + stage +
                           " differs): stopping every rank");
}

void Engine::WorkerLoop() {
  UseComputeThreads();  // OpenMP's team size is per thread: this one runs every forward pass
  SetThreadRole(ThreadRole::kEngine);
  std::vector<std::unique_ptr<Active>> active;
  while (AdmitWaiting(active)) {
    std::vector<StepInput> plan = Schedule(active);
    Execute(plan);
    PostProcess(plan, active);
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
  int64_t full = std::min(a.prefilled / kKvPageRows, static_cast<int64_t>(a.keys.size()));
  if (options_.draft > 0) full = std::min(full, a.seq.mtp_length / kKvPageRows);
  for (; a.published < full; ++a.published) {
    const int64_t i = a.published;
    pool_->Publish(a.pages[i], a.keys[i], i ? a.keys[i - 1] : root_key_,
                   PageTokens(a.req.prompt, i));
  }
}

// The step plan of a round: for every active sequence a prefill chunk (emitting the first token
// when the prompt is done) or one decode token, with its cache pages in place. Cancelled
// sequences are retired here.
std::vector<Engine::StepInput> Engine::Schedule(std::vector<std::unique_ptr<Active>>& active) {
  std::vector<StepInput> plan;
  for (auto& a : active) {
    if (Cancelled(*a->gen)) {
      a->gen->Finish(FinishReason::kCancelled);
      Retire(a);  // releases the sequence's pages now
      continue;
    }
    const int64_t n = static_cast<int64_t>(a->req.prompt.size());
    StepInput s{
        .a = a.get(), .tokens = std::span<const int32_t>(&a->last, 1), .prefill = a->prefilled < n};
    if (s.prefill) {
      s.tokens = std::span<const int32_t>(a->req.prompt.data() + a->prefilled,
                                          std::min(options_.prefill_chunk, n - a->prefilled));
    } else if (!a->drafts.empty()) {  // verify: last ‖ drafts, logits of every row
      a->step_tokens.assign(1, a->last);
      a->step_tokens.insert(a->step_tokens.end(), a->drafts.begin(), a->drafts.end());
      s.tokens = a->step_tokens;
      s.all_logits = true;
    }
    try {
      EnsurePages(*a, a->seq.length + static_cast<int64_t>(s.tokens.size()));
    } catch (const std::exception& e) {
      s.error = e.what();
    }
    plan.push_back(std::move(s));
  }
  return plan;
}

// Runs the plan as one batched forward: each result equals (bitwise) that sequence run alone.
void Engine::Execute(std::vector<StepInput>& plan) {
  std::vector<BatchEntry> batch;
  std::vector<StepInput*> in_batch;
  for (StepInput& s : plan)
    if (s.error.empty()) {
      batch.push_back({&s.a->seq, s.tokens, s.all_logits});
      in_batch.push_back(&s);
    }
  if (options_.replica) {  // the round's plan
    ++rounds_;
    Digest d;
    for (const StepInput* s : in_batch) {
      d.Add(s->a->gen->replica_id_);
      d.Add(s->a->seq.length);
      d.Add(s->all_logits);
      for (int32_t t : s->tokens) d.Add(t);
    }
    d.Add(pool_->Available());
    d.Add(reserved_pages_);
    CheckInSync("the step plan", d.value());
  }
  if (batch.empty()) return;
  try {
    std::vector<ForwardResult> results = model_->ForwardBatch(batch);
    for (size_t i = 0; i < in_batch.size(); ++i) in_batch[i]->result = std::move(results[i]);
  } catch (const std::exception& e) {
    for (StepInput* s : in_batch) s->error = e.what();
  }
}

// Samples and emits each sequence's next token, publishes prefilled prompt pages, and retires
// finished and failed sequences; the drafting sequences then run the MTP layer as one batch.
void Engine::PostProcess(std::vector<StepInput>& plan,
                         std::vector<std::unique_ptr<Active>>& active) {
  int64_t round_prompt = 0, round_generated = 0;
  std::vector<Active*> drafting, ended;  // the MTP layer runs for `drafting`; `ended` retire
  for (StepInput& s : plan) {
    Active& a = *s.a;
    bool alive = s.error.empty();
    if (!alive) a.gen->Finish(FinishReason::kError, s.error);
    const int64_t before = a.generated;
    if (alive && s.prefill) {
      a.prefilled += static_cast<int64_t>(s.tokens.size());
      round_prompt += static_cast<int64_t>(s.tokens.size());
      prompt_tokens_ += static_cast<int64_t>(s.tokens.size());  // counted before the token is sent
      Publish(a);
    }
    if (alive && s.prefill && a.prefilled == static_cast<int64_t>(a.req.prompt.size()))
      alive = Emit(a, s.result.logits.data());
    else if (alive && !s.prefill) {
      alive = Verify(a, s.result.logits.data());
      ++decode_steps_;
      decode_tokens_ += a.generated - before;
    }
    round_generated += a.generated - before;
    if (!alive)
      ended.push_back(&a);
    else if (a.seq.options.mtp_draft)
      drafting.push_back(&a);
  }
  if (options_.replica) {  // which sequences run the MTP layer, and from where
    Digest d;
    for (Active* a : drafting) {
      d.Add(a->gen->replica_id_);
      d.Add(a->seq.length);
      d.Add(a->seq.mtp_length);
      d.Add(a->generated);
      d.Add(a->last);
    }
    CheckInSync("the drafting sequences", d.value());
  }
  Speculate(drafting, ended);
  for (Active* a : ended)
    for (auto& slot : active)
      if (slot.get() == a) Retire(slot);
  RecordRate(round_prompt, round_generated);
}

// Picks the next token from `logits` [vocab] and sends it; false when the generation ends.
bool Engine::Emit(Active& a, const float* logits) {
  const int64_t vocab = model_->config().vocab_size;
  const bool forced = !a.req.forced_tokens.empty();
  return EmitToken(a, forced ? a.req.forced_tokens[a.generated] : a.sampler.Sample(logits, vocab),
                   logits);
}

// Speculative verification (Leviathan et al. 2023, "Fast Inference from Transformers via
// Speculative Decoding"): logits row i [vocab] is the target distribution p of the token after
// last ‖ d_1..d_i. Draft d_{i+1}, drawn from the MTP distribution q, is accepted with
// probability min(1, p(d)/q(d)); the first rejection emits a token drawn from
// max(0, p − q) / Σ max(0, p − q) instead, and if every draft is accepted the last row gives
// one more token — so every emitted token has exactly the distribution p of decoding without
// drafts. Greedy (temperature 0): a draft is accepted iff it is the argmax, so the output is
// identical to decoding without drafts. The cache rows of rejected drafts are truncated.
bool Engine::Verify(Active& a, const float* logits) {
  const int64_t vocab = model_->config().vocab_size;
  const int64_t k = static_cast<int64_t>(a.drafts.size());
  const bool greedy = a.sampler.options().temperature == 0.0f;
  std::vector<double> p;
  bool alive = true, rejected = false;
  for (int64_t i = 0; i < k && alive && !rejected; ++i) {
    const float* row = logits + i * vocab;
    const int32_t d = a.drafts[i];
    int32_t token = d;
    if (greedy) {
      token = Argmax(row, vocab);
    } else {
      a.sampler.Distribution(row, vocab, p);
      const std::vector<double>& q = a.draft_q[i];
      if (!(a.sampler.Uniform() * q[d] < p[d])) {  // rejected: the residual max(0, p − q)
        double mass = 0;
        for (int64_t t = 0; t < vocab; ++t) mass += (p[t] = std::max(0.0, p[t] - q[t]));
        double u = a.sampler.Uniform() * mass;
        token = static_cast<int32_t>(vocab - 1);
        for (int64_t t = 0; t < vocab; ++t)
          if (p[t] > 0 && (u -= p[t]) < 0) {
            token = static_cast<int32_t>(t);
            break;
          }
        while (token > 0 && p[token] == 0) --token;  // rounding past the end
        if (token == d) token = -1;  // cannot happen: p(d) ≤ q(d) after a rejection
        DSINFER_CHECK(token >= 0, "residual sampling");
      }
    }
    alive = EmitToken(a, token, row);
    rejected = token != d;
    if (!rejected) {
      ++a.accepted;
      ++accepted_tokens_;
    }
  }
  if (alive && !rejected) alive = Emit(a, logits + k * vocab);  // every draft accepted
  a.drafted += k;
  draft_tokens_ += k;
  // Keep the rows of every token but the last emitted one (forwarded at the next step).
  const int64_t cached = static_cast<int64_t>(a.req.prompt.size()) + a.generated - 1;
  if (a.seq.length > cached) Model::Truncate(a.seq, cached);
  a.drafts.clear();
  a.draft_q.clear();
  if (alive && options_.min_acceptance >= 0 && a.drafted >= options_.adaptive_window &&
      a.accepted < options_.min_acceptance * a.drafted) {
    a.drafting = false;  // low acceptance: plain decoding from now on
    a.seq.options.mtp_draft = false;
    a.seq.mtp_hidden.clear();
  }
  return alive;
}

// After a step: the MTP layer consumes, for every drafting sequence at once (one
// `Model::DraftBatch`: its weights are read once per round, not once per sequence), the main
// rows whose next token is now known (the next prompt token mid-prefill, else the token just
// emitted) and, once decoding, proposes min(draft, tokens left − 1) drafts for the next step
// (the reservation covers their rows). Each sequence's drafts and sampler draws are those of
// drafting it alone. A sequence that fails here ends with the error and joins `failed`.
void Engine::Speculate(std::span<Active* const> seqs, std::vector<Active*>& failed) {
  if (seqs.empty()) return;
  const int64_t vocab = model_->config().vocab_size;
  auto fail = [&](Active& a, const std::string& error) {
    a.gen->Finish(FinishReason::kError, error);
    failed.push_back(&a);
  };
  std::vector<std::vector<int32_t>> next(seqs.size());  // sized once: entries hold spans into it
  std::vector<DraftEntry> entries;
  std::vector<Active*> in;  // [entries]
  for (size_t i = 0; i < seqs.size(); ++i) {
    Active& a = *seqs[i];
    SequenceState& seq = a.seq;
    for (int64_t p = seq.mtp_length + 1; p <= seq.length; ++p) next[i].push_back(a.Token(p));
    const bool decoding = a.prefilled == static_cast<int64_t>(a.req.prompt.size());
    if (decoding && a.generated == 1) a.drafting = a.req.forced_tokens.empty();
    const int64_t want =
        decoding && a.drafting ? std::min(options_.draft, a.req.max_tokens - a.generated - 1) : 0;
    try {
      EnsurePages(a, seq.length + want);
    } catch (const std::exception& e) {
      fail(a, e.what());
      continue;
    }
    a.draft_q.clear();
    // Greedy: the argmax; sampling: a draw from the MTP distribution q, kept for Verify.
    auto pick = [pa = &a, vocab](const float* logits) -> int32_t {
      Active& s = *pa;
      if (s.sampler.options().temperature == 0.0f) return Argmax(logits, vocab);
      s.draft_q.emplace_back();
      s.sampler.Distribution(logits, vocab, s.draft_q.back());
      const std::vector<double>& q = s.draft_q.back();
      double u = s.sampler.Uniform();
      for (int64_t t = 0; t < vocab; ++t)
        if (q[t] > 0 && (u -= q[t]) < 0) return static_cast<int32_t>(t);
      int32_t t = static_cast<int32_t>(vocab - 1);
      while (q[t] == 0) --t;
      return t;
    };
    entries.push_back({.seq = &seq, .next = next[i], .n_draft = want, .pick = std::move(pick)});
    in.push_back(&a);
  }
  std::vector<std::vector<int32_t>> drafts;
  try {
    drafts = model_->DraftBatch(entries);
  } catch (const std::exception& e) {
    for (Active* a : in) fail(*a, e.what());
    return;
  }
  for (size_t k = 0; k < in.size(); ++k) {
    Active& a = *in[k];
    a.drafts = std::move(drafts[k]);
    if (options_.test_drafter && !a.drafts.empty()) ReplaceDrafts(a);
    if (a.prefilled == static_cast<int64_t>(a.req.prompt.size()) && !a.drafting) {
      a.seq.options.mtp_draft = false;  // forced tokens: no drafts; stop keeping hidden rows
      a.seq.mtp_hidden.clear();
    }
    try {
      Publish(a);
    } catch (const std::exception& e) {
      fail(a, e.what());
    }
  }
}

// TEST-ONLY: the test drafter's tokens instead of the MTP layer's (which still ran).
void Engine::ReplaceDrafts(Active& a) {
  const int64_t vocab = model_->config().vocab_size;
  const auto want = static_cast<int64_t>(a.drafts.size());
  std::vector<int32_t> tokens = a.req.prompt;
  tokens.insert(tokens.end(), a.emitted.begin(), a.emitted.end());
  a.drafts = options_.test_drafter(tokens, want);
  DSINFER_CHECK(static_cast<int64_t>(a.drafts.size()) == want, "test drafter");
  if (a.sampler.options().temperature != 0.0f)  // deterministic drafts: q is one-hot, still an
    for (int64_t j = 0; j < want; ++j) {        // exact rejection scheme
      a.draft_q[j].assign(vocab, 0.0);
      a.draft_q[j][a.drafts[j]] = 1.0;
    }
}

bool Engine::EmitToken(Active& a, int32_t token, const float* logits) {
  const int64_t vocab = model_->config().vocab_size;
  const bool forced = !a.req.forced_tokens.empty();
  a.last = token;
  a.emitted.push_back(token);
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
