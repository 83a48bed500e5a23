// The HTTP layer over real sockets (loopback, port 0), with a handler that computes its answer
// from the request: concurrent clients on kept-alive connections each get their own answer,
// whole and streamed; head checks refuse before the body; HttpStopper ends the server with
// every connection thread joined. Run by the ThreadSanitizer preset too: the connection pool,
// the body budget and the stopper are the server's hand-written concurrency.
#include "server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace dsinfer::server {
namespace {

using namespace std::chrono_literals;

// POST /reverse: the body reversed. GET /stream?n=K: K chunks "chunk i\n". Anything else: 404.
HttpResponse Handler(const HttpRequest& r) {
  HttpResponse res;
  res.content_type = "text/plain";
  if (r.method == "POST" && r.path == "/reverse") {
    res.body.assign(r.body.rbegin(), r.body.rend());
  } else if (r.method == "GET" && r.path == "/stream") {
    res.stream = [](ChunkSink& sink) {
      for (int i = 0; i < 20; ++i)
        if (!sink.Write("chunk " + std::to_string(i) + "\n")) return;
    };
  } else {
    res.status = 404;
    res.body = "no " + r.path;
  }
  return res;
}

std::string Streamed() {
  std::string s;
  for (int i = 0; i < 20; ++i) s += "chunk " + std::to_string(i) + "\n";
  return s;
}

// A server on its own thread; stopped and joined by the destructor.
class TestServer {
 public:
  explicit TestServer(HttpServerOptions o, HttpAdmission admit = nullptr) {
    o.host = "127.0.0.1";
    o.port = 0;
    std::promise<int> bound;
    std::future<int> port = bound.get_future();
    thread_ = std::thread([this, o, admit, &bound] {
      ServeHttp(
          o, Handler, [&bound](int p) { bound.set_value(p); }, admit, &stopper_);
    });
    port_ = port.get();
  }
  ~TestServer() {
    stopper_.Stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  HttpStopper stopper_;
  std::thread thread_;
  int port_ = 0;
};

TEST(HttpServer, ConcurrentClientsEachGetTheirAnswer) {
  HttpServerOptions o;
  o.threads = 4;  // fewer than the clients: connections wait for a thread
  TestServer server(o);
  std::atomic<int> wrong{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c)
    clients.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", server.port());
      cli.set_keep_alive(true);
      for (int k = 0; k < 6; ++k) {
        const std::string body = "client " + std::to_string(c) + " request " + std::to_string(k) +
                                 std::string(static_cast<size_t>(k) * 100, 'x');
        std::string want(body.rbegin(), body.rend());
        auto r = k % 3 == 2 ? cli.Get("/stream") : cli.Post("/reverse", body, "text/plain");
        if (k % 3 == 2) want = Streamed();
        if (!r || r->status != 200 || r->body != want) ++wrong;
      }
    });
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(HttpServer, HeadChecksRefuseBeforeTheBody) {
  HttpServerOptions o;
  o.max_body_bytes = 1000;
  std::atomic<int> admitted{0};
  TestServer server(o, [&admitted](const HttpRequest& head) -> std::optional<HttpResponse> {
    ++admitted;
    if (head.path != "/forbidden") return std::nullopt;
    HttpResponse r;
    r.status = 403;
    r.body = "refused at the head";
    return r;
  });
  httplib::Client cli("127.0.0.1", server.port());
  auto big = cli.Post("/reverse", std::string(1001, 'b'), "text/plain");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  auto refused = cli.Post("/forbidden", "x", "text/plain");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(refused->body, "refused at the head");
  auto ok = cli.Post("/reverse", "abc", "text/plain");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, "cba");
  EXPECT_EQ(admitted.load(), 2);  // the 413 is refused before admission
}

// Stop while clients are connected (one idle keep-alive connection, one mid-stream): ServeHttp
// returns and joins its threads; a Stop before the server binds makes it return at once.
TEST(HttpServer, StopEndsTheServerWithClientsConnected) {
  HttpServerOptions o;
  auto server = std::make_unique<TestServer>(o);
  httplib::Client idle("127.0.0.1", server->port());
  idle.set_keep_alive(true);
  auto r = idle.Post("/reverse", "ab", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "ba");
  std::thread streaming([port = server->port()] {
    httplib::Client c("127.0.0.1", port);
    (void)c.Get("/stream");
  });
  const auto start = std::chrono::steady_clock::now();
  server.reset();  // Stop + join
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  streaming.join();

  HttpStopper early;
  early.Stop();
  HttpServerOptions e;
  e.port = 0;
  bool listened = false;
  ServeHttp(
      e, Handler, [&listened](int) { listened = true; }, nullptr, &early);
  EXPECT_FALSE(listened);
}

}  // namespace
}  // namespace dsinfer::server
