// `dsinfer serve`: the OpenAI-compatible HTTP server (docs/server.md). Loads the model and its
// tokenizer, starts the scheduler's worker and serves on loopback by default. Prints
// "listening on http://HOST:PORT" on stderr once bound (with --port 0: the chosen port).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
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
  std::string kv_budget;  // empty: DefaultKvBudget()
  std::string prices = "0.028,0.28,0.42";
  std::optional<std::string> test_script;
  std::optional<int> threads_http;  // default: parallel + queue + 4
};

int RunServe(const ServeOptions& o) {
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
  const text::Tokenizer tokenizer = text::Tokenizer::FromFile(dir + "/tokenizer.json");
  EngineOptions eo;
  eo.parallel = o.parallel;
  eo.queue_capacity = o.queue;
  eo.prefill_chunk = o.prefill_chunk;
  eo.kv_budget_bytes =
      o.kv_budget.empty() ? DefaultKvBudget() : ParseByteSize(o.kv_budget, "--kv-budget");
  Engine engine(Model::Load(dir), eo);
  const KvPoolStats kv = engine.Stats().kv;
  std::fprintf(stderr, "KV budget: %lld pages of %lld bytes (%lld tokens)\n",
               static_cast<long long>(kv.budget_pages), static_cast<long long>(kv.page_bytes),
               static_cast<long long>(kv.budget_pages * kKvPageRows));
  server::OpenAiApp app(engine, tokenizer, app_options);
  server::HttpServerOptions http = o.http;
  // Connection threads: each holds one connection (a streaming request holds its thread until
  // the generation ends) and sleeps on a condition variable while the engine computes, so the
  // default gives every running and queued request one, plus a few for /health and refusals.
  http.threads = o.threads_http.value_or(o.parallel + o.queue + 4);
  server::ServeHttp(
      http, [&app](const server::HttpRequest& r) { return app.Handle(r); },
      [&](int port) {
        std::fprintf(stderr, "listening on http://%s:%d (model %s)\n", http.host.c_str(), port,
                     o.model_name.c_str());
        std::fflush(stderr);
      },
      [&app](const server::HttpRequest& head) { return app.Admit(head); });
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
  sub->add_option("--threads-http", o->threads_http,
                  "HTTP connection threads (default: --parallel + --queue + 4); they only parse, "
                  "tokenize and stream, never compute")
      ->check(CLI::Range(2, 4096));
  sub->add_option("--prices", o->prices, "USD per 1M tokens: cache hit,cache miss,output")
      ->capture_default_str();
  sub->add_option("--max-body", o->http.max_body_bytes, "request body limit in bytes (413)")
      ->capture_default_str();
  sub->add_option("--test-script", o->test_script,
                  "TEST ONLY: JSON rules replaying scripted completions (docs/server.md)");
  return [o] { return RunServe(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
