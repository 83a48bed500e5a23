// `dsinfer serve`: the OpenAI-compatible HTTP server (docs/server.md). Loads the model and its
// tokenizer, starts the scheduler's worker and serves on loopback by default. Prints
// "listening on http://HOST:PORT" on stderr once bound (with --port 0: the chosen port).
// SIGTERM / SIGINT shut it down gracefully (docs/server.md): no new connections or requests,
// running requests get --shutdown-timeout seconds to finish, the rest are cancelled; exit 0.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "cli/mpi_job.h"
#include "dist/world.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/kv_pool.h"
#include "server/api_key.h"
#include "server/http_server.h"
#include "server/openai_app.h"
#include "text/tokenizer.h"

namespace dsinfer::cli {
namespace {

struct ServeOptions {
  std::optional<std::string> model;
  server::HttpServerOptions http;
  std::optional<std::string> api_key;
  std::optional<std::string> api_key_file;
  std::vector<std::string> allow_hosts;
  std::string model_name = "deepseek-v3.2";
  int64_t ctx = 0;
  int parallel = 4;
  int queue = 64;
  int64_t prefill_chunk = 64;
  std::string kv_budget;         // empty: DefaultKvBudget()
  std::string kv_cache = "fp8";  // V3.2's production cache layout (656 B per token and layer)
  std::string attention = "dsa";
  NumericsFlags numerics;
  SpecFlags spec;  // --spec, --draft, --spec-min-acceptance, --spec-window
  std::string prices = "0.028,0.28,0.42";
  std::optional<std::string> test_script;
  double shutdown_timeout = 10;  // seconds running requests get after SIGTERM / SIGINT
  int max_connections = 512;     // requests handled at once (a thread each)
  std::string body_budget = "16M";
};

// SIGTERM and SIGINT, blocked in every thread (set before any thread starts, inherited) and
// taken by one thread with sigtimedwait, so shutdown runs as ordinary code, not in a handler.
class SignalWatch {
 public:
  SignalWatch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  // The next signal within `timeout` (0: none).
  int Wait(std::chrono::milliseconds timeout) const {
    timespec ts{static_cast<time_t>(timeout.count() / 1000),
                static_cast<long>(timeout.count() % 1000) * 1000000};
    const int sig = sigtimedwait(&set_, nullptr, &ts);
    return sig > 0 ? sig : 0;
  }

 private:
  sigset_t set_;
};

// The shutdown sequence, on its own thread: on the first signal the app refuses new work and
// the HTTP server stops accepting; running requests may finish until the deadline (a second
// signal cuts it short), then every generation left is cancelled. The server returns once its
// connections have ended. A signal before the app exists (model loading) exits at once.
class Shutdown {
 public:
  Shutdown(const SignalWatch& signals, double timeout_s)
      : signals_(signals), timeout_(std::chrono::duration<double>(timeout_s)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Shutdown() {
    done_ = true;
    thread_.join();
  }
  void SetApp(server::OpenAiApp* app) {
    std::lock_guard<std::mutex> lock(mu_);
    app_ = app;
  }
  server::HttpStopper& stopper() { return stopper_; }

 private:
  void Run() {
    using Clock = std::chrono::steady_clock;
    constexpr auto kPoll = std::chrono::milliseconds(100);
    int sig = 0;
    while (!done_ && !(sig = signals_.Wait(kPoll))) {
    }
    if (!sig) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (!app_) {
      std::fprintf(stderr, "%s: exiting (nothing served yet)\n", strsignal(sig));
      std::_Exit(0);
    }
    std::fprintf(stderr, "%s: shutting down; running requests get %.3g s to finish\n",
                 strsignal(sig), timeout_.count());
    app_->BeginShutdown();
    stopper_.Stop();  // closes the listening socket
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout_);
    bool idle = false;
    while (!(idle = app_->WaitIdle(std::min(deadline, Clock::now() + kPoll))) &&
           Clock::now() < deadline) {
      if (signals_.Wait(std::chrono::milliseconds(0))) break;  // a second signal: now
    }
    if (!idle) {
      std::fprintf(stderr, "cancelling %zu unfinished requests\n", app_->jobs_in_flight());
      app_->CancelAll();
    }
    std::fflush(stderr);
  }

  const SignalWatch& signals_;
  std::chrono::duration<double> timeout_;
  std::mutex mu_;
  server::OpenAiApp* app_ = nullptr;
  server::HttpStopper stopper_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// The engine options of the command line (across ranks the followers get rank 0's).
EngineOptions ServeEngineOptions(const ServeOptions& o) {
  EngineOptions eo;
  eo.parallel = o.parallel;
  eo.queue_capacity = o.queue;
  eo.prefill_chunk = o.prefill_chunk;
  // 0: the engine takes DefaultKvBudget() (across ranks, rank 0's).
  eo.kv_budget_bytes = o.kv_budget.empty() ? 0 : ParseByteSize(o.kv_budget, "--kv-budget");
  eo.sequence.kv_cache = ParseKvCacheType(o.kv_cache, "--kv-cache");
  eo.sequence.attention = o.attention == "dense" ? AttentionMode::kDense : AttentionMode::kDsa;
  o.spec.Apply(eo);
  return eo;
}

// A rank other than 0 of `serve` across ranks (docs/mpi.md): no HTTP server, no tokenizer; its
// engine runs rank 0's rounds with this rank's experts until rank 0's engine stops.
int FollowServe(const ServeOptions& o, dist::World& world) {
  const SignalWatch signals;  // SIGTERM / SIGINT are rank 0's to act on (it stops every rank)
  WorldReplica replica(world);
  EngineOptions eo = ServeEngineOptions(o);
  eo.replica = &replica;
  Engine engine(LoadModelOnRanks(world, ResolveModelDir(o.model),
                                 o.numerics.Load()),
                eo);
  engine.Follow();
  return 0;
}

int RunServe(const ServeOptions& o) {
  dist::World* world = dist::CurrentWorld();
  if (world && world->ranks() == 1) world = nullptr;
  if (world && !o.model) throw Error("--model is required across MPI ranks");
  if (world && world->rank() != 0) return FollowServe(o, *world);
  const SignalWatch signals;  // first: every thread started later inherits the blocked set
  // Request bodies and the buffers built from them (MiBs) are mmapped and returned to the
  // system when freed: glibc's default threshold rises after the first such free, and the
  // memory of later ones would stay resident in the heap.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  Shutdown shutdown(signals, o.shutdown_timeout);
  server::AppOptions app_options;
  app_options.api_key =
      server::ResolveApiKey(o.api_key, o.api_key_file, std::getenv(server::kApiKeyEnv));
  app_options.allowed_hosts = o.allow_hosts;
  if (o.http.host != "0.0.0.0" && o.http.host != "::")  // the address it was told to bind
    app_options.allowed_hosts.push_back(o.http.host);
  const std::string dir = ResolveModelDir(o.model);
  app_options.model_name = o.model_name;
  app_options.ctx = o.ctx;
  app_options.prices = server::ParsePrices(o.prices);
  app_options.max_body_bytes = o.http.max_body_bytes;
  if (o.test_script) {
    app_options.test_script = server::LoadTestScript(*o.test_script);
    std::fprintf(stderr,
                 "WARNING: --test-script replaces sampling for matching prompts "
                 "(test-only)\n");
  }
  const text::Tokenizer tokenizer = text::Tokenizer::ForModel(dir);
  EngineOptions eo = ServeEngineOptions(o);
  const LoadOptions load = o.numerics.Load();
  std::optional<WorldReplica> replica;
  if (world) eo.replica = &replica.emplace(*world);
  struct ReportExchanges {  // once the engine (whose worker makes the exchanges) is gone
    dist::World* world;
    ~ReportExchanges() {
      if (!world) return;
      const dist::ExchangeStats x = world->exchange_stats();
      std::fprintf(stderr, "serve: rank 0 spent %.3f s in %lld expert exchanges\n", x.seconds,
                   static_cast<long long>(x.calls));
    }
  } report{world};
  Engine engine(world ? LoadModelOnRanks(*world, dir, load) : Model::Load(dir, load), eo);
  if (world)
    std::fprintf(stderr, "serve: expert parallel over %d MPI ranks (%s)\n", world->ranks(),
                 DescribeAssignment(engine.config().n_routed_experts, world->ranks()).c_str());
  const KvPoolStats kv = engine.Stats().kv;
  std::fprintf(stderr, "KV budget: %lld pages of %lld bytes (%lld tokens; %s cache, %s)\n",
               static_cast<long long>(kv.budget_pages), static_cast<long long>(kv.page_bytes),
               static_cast<long long>(kv.budget_pages * kKvPageRows), o.kv_cache.c_str(),
               o.attention.c_str());
  server::OpenAiApp app(engine, tokenizer, app_options);
  shutdown.SetApp(&app);
  struct Unset {  // the shutdown thread must not see the app once it is gone
    Shutdown& s;
    ~Unset() { s.SetApp(nullptr); }
  } unset{shutdown};
  server::HttpServerOptions http = o.http;
  http.body_budget_bytes = static_cast<size_t>(ParseByteSize(o.body_budget, "--body-budget"));
  http.threads = std::max(o.max_connections, o.parallel + o.queue + 4);
  server::ServeHttp(
      http, [&app](const server::HttpRequest& r) { return app.Handle(r); },
      [&](int port) {
        std::fprintf(stderr, "listening on http://%s:%d (model %s)\n", http.host.c_str(), port,
                     o.model_name.c_str());
        std::fflush(stderr);
      },
      [&app](const server::HttpRequest& head) { return app.Admit(head); }, &shutdown.stopper());
  if (shutdown.stopper().stop_requested()) std::fprintf(stderr, "stopped\n");
  return 0;
}

CommandRegistrar reg("serve", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server (docs/server.md)");
  auto o = std::make_shared<ServeOptions>();
  AddThreadsOption(sub);
  sub->add_option("--model", o->model, "checkpoint directory (default: the default model)");
  sub->add_option("--host", o->http.host, "address to bind")->capture_default_str();
  sub->add_option("--port", o->http.port, "port (0: any free port)")->capture_default_str();
  sub->add_option("--api-key", o->api_key,
                  "require 'Authorization: Bearer KEY' on /v1/* (visible in ps: prefer "
                  "--api-key-file or DSINFER_API_KEY)");
  sub->add_option("--api-key-file", o->api_key_file, "read the API key from this file");
  sub->add_option("--allow-host", o->allow_hosts,
                  "without an API key, also accept this Host/Origin host name ('*': any; "
                  "default: loopback names only)");
  sub->add_option("--model-name", o->model_name, "served model id (and ID-reasoner)")
      ->capture_default_str();
  sub->add_option("--ctx", o->ctx, "context limit, prompt + max_tokens (0: the model's)")
      ->capture_default_str();
  sub->add_option("--parallel", o->parallel, "sequences generated at the same time")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  sub->add_option("--queue", o->queue, "waiting requests before 429")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  sub->add_option("--prefill-chunk", o->prefill_chunk, "prompt tokens per prefill step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  sub->add_option("--kv-budget", o->kv_budget,
                  "KV cache + prefix cache memory, e.g. 2G, 512M (default: half of available "
                  "memory)");
  sub->add_option("--kv-cache", o->kv_cache, "cached latent rows: f32 | bf16 | fp8")
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}))
      ->capture_default_str();
  sub->add_option("--attention", o->attention, "dsa | dense")
      ->check(CLI::IsMember({"dsa", "dense"}))
      ->capture_default_str();
  AddSpecOptions(sub, o->spec);
  AddNumericsOptions(sub, &o->numerics);
  sub->add_option("--prices", o->prices, "USD per 1M tokens: cache hit,cache miss,output")
      ->capture_default_str();
  sub->add_option("--max-body", o->http.max_body_bytes, "request body limit in bytes (413)")
      ->capture_default_str();
  sub->add_option("--body-budget", o->body_budget,
                  "request bytes read or handled at once, in total (more: 503 + Retry-After); "
                  "bounds request memory")
      ->capture_default_str();
  sub->add_option(
         "--max-connections", o->max_connections,
         "requests handled at once, a thread each, started as they come (more wait, holding no "
         "thread; open connections cost no thread)")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  sub->add_option("--shutdown-timeout", o->shutdown_timeout,
                  "seconds running requests get to finish after SIGTERM/SIGINT before they are "
                  "cancelled")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  sub->add_option("--test-script", o->test_script,
                  "TEST ONLY: JSON rules replaying scripted completions (docs/server.md)");
  return [o] { return RunServe(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
