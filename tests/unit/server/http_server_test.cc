// The HTTP layer over real sockets (loopback, port 0), with a handler that computes its answer
// from the request, and a client of our own (raw sockets, every read bounded by a timeout) so
// that what is checked is what goes over the wire: concurrent clients on kept-alive connections
// each get their own answer, whole and streamed; pipelined requests are answered in order; head
// checks refuse before the body; slow clients hold no thread and are cut at the request
// deadline; a client that leaves is seen by connection_open and by a stream's Write; a second
// server cannot share the port; HttpStopper ends the server with every thread joined. Run by the
// ThreadSanitizer preset too: the worker pool, the stream queue, suspend/resume, the body budget
// and the stopper are the server's hand-written concurrency.
#include "server/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/error.h"

namespace dsinfer::server {
namespace {

using namespace std::chrono_literals;

// POST /reverse: the body reversed. GET /stream: 20 chunks "chunk i\n". Anything else: 404.
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
  explicit TestServer(HttpServerOptions o, HttpAdmission admit = nullptr,
                      HttpHandler handler = Handler) {
    o.host = "127.0.0.1";
    o.port = 0;
    std::promise<int> bound;
    std::future<int> port = bound.get_future();
    thread_ = std::thread([this, o, admit, handler, &bound] {
      ServeHttp(
          o, handler, [&bound](int p) { bound.set_value(p); }, admit, &stopper_);
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

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // keys lower-case
  std::string body;
};

// One client connection to 127.0.0.1:port; every send and receive waits at most `timeout`.
class Conn {
 public:
  explicit Conn(int port, std::chrono::milliseconds timeout = 5000ms) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Conn() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool connected() const { return connected_; }
  // Whether the last failed read saw the server end the connection (not a timeout).
  bool ended() const { return ended_; }

  bool Send(std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Waits for some bytes of a response (kept for Read).
  bool ReadSome() { return Fill(); }

  // The next response on the connection; nullopt if it ended or timed out first.
  std::optional<Response> Read() {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!Fill()) return std::nullopt;
    const std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    Response r;
    size_t eol = head.find("\r\n");
    const std::string status_line = head.substr(0, eol);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) return std::nullopt;
    r.status = std::atoi(status_line.c_str() + 9);
    while (eol != std::string::npos) {
      const size_t start = eol + 2;
      eol = head.find("\r\n", start);
      const std::string line = head.substr(start, eol == std::string::npos ? eol : eol - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string key = line.substr(0, colon);
      std::transform(key.begin(), key.end(), key.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      const size_t value = line.find_first_not_of(' ', colon + 1);
      r.headers[key] = value == std::string::npos ? std::string() : line.substr(value);
    }
    if (r.headers["transfer-encoding"] == "chunked") {
      while (true) {
        size_t le;
        while ((le = buf_.find("\r\n")) == std::string::npos)
          if (!Fill()) return std::nullopt;
        const size_t size = std::strtoul(buf_.c_str(), nullptr, 16);
        buf_.erase(0, le + 2);
        if (size == 0) {  // trailers (none expected), then the empty line
          while ((le = buf_.find("\r\n")) == std::string::npos)
            if (!Fill()) return std::nullopt;
          buf_.erase(0, le + 2);
          return r;
        }
        while (buf_.size() < size + 2)
          if (!Fill()) return std::nullopt;
        r.body += buf_.substr(0, size);
        buf_.erase(0, size + 2);
      }
    }
    if (r.headers.count("content-length")) {
      const size_t n = std::strtoul(r.headers["content-length"].c_str(), nullptr, 10);
      while (buf_.size() < n)
        if (!Fill()) return std::nullopt;
      r.body = buf_.substr(0, n);
      buf_.erase(0, n);
      return r;
    }
    while (Fill()) {
    }
    if (!ended_) return std::nullopt;  // timed out before the end of a close-delimited body
    r.body.swap(buf_);
    return r;
  }

 private:
  bool Fill() {
    char b[65536];
    const ssize_t n = ::recv(fd_, b, sizeof b, 0);
    if (n <= 0) {
      ended_ = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
      return false;
    }
    buf_.append(b, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool ended_ = false;
  std::string buf_;
};

std::string Post(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}
std::string Get(const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}

// One request on a new connection.
std::optional<Response> Fetch(int port, const std::string& request) {
  Conn c(port);
  if (!c.connected() || !c.Send(request)) return std::nullopt;
  return c.Read();
}

TEST(HttpServer, ConcurrentClientsEachGetTheirAnswer) {
  HttpServerOptions o;
  o.threads = 4;  // fewer than the clients: requests wait for a thread
  TestServer server(o);
  std::atomic<int> wrong{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c)
    clients.emplace_back([&, c] {
      Conn conn(server.port());  // kept alive for all six requests
      for (int k = 0; k < 6; ++k) {
        const std::string body = "client " + std::to_string(c) + " request " + std::to_string(k) +
                                 std::string(static_cast<size_t>(k) * 100, 'x');
        std::string want(body.rbegin(), body.rend());
        if (k % 3 == 2) want = Streamed();
        std::optional<Response> r;
        if (conn.Send(k % 3 == 2 ? Get("/stream") : Post("/reverse", body))) r = conn.Read();
        if (!r || r->status != 200 || r->body != want) ++wrong;
      }
    });
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Requests written in one send on one connection are each answered, in order (httplib 0.11.4
// dropped the ones after the first).
TEST(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  TestServer server(HttpServerOptions{});
  Conn c(server.port());
  ASSERT_TRUE(c.Send(Post("/reverse", "abc") + Get("/stream") + Post("/reverse", "pipelined") +
                     Get("/missing")));
  const std::vector<std::pair<int, std::string>> want = {
      {200, "cba"}, {200, Streamed()}, {200, "denilepip"}, {404, "no /missing"}};
  for (const auto& [status, body] : want) {
    std::optional<Response> r = c.Read();
    ASSERT_TRUE(r) << "no response for the request expecting " << body;
    EXPECT_EQ(r->status, status);
    EXPECT_EQ(r->body, body);
  }
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
  const int port = server.port();
  // Heads alone (no body sent): each is answered from its head.
  auto big = Fetch(port, "POST /reverse HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  auto chunked =
      Fetch(port, "POST /reverse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->status, 411);
  auto gzip = Fetch(port,
                    "POST /reverse HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
                    "Content-Length: 10\r\n\r\n");
  ASSERT_TRUE(gzip);
  EXPECT_EQ(gzip->status, 415);
  auto refused = Fetch(port, "POST /forbidden HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(refused->body, "refused at the head");
  auto ok = Fetch(port, Post("/reverse", std::string(1000, 'a') + "b"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 413);  // 1001 bytes
  ok = Fetch(port, Post("/reverse", "abc"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, "cba");
  EXPECT_EQ(admitted.load(), 2);  // 413, 411 and 415 are refused before admission
}

// Requests refused at their head whose clients write the whole body before reading (as most
// clients do): the server drains the body after answering, so the writes succeed and the
// answer is read (closing with the body unread would reset the connection first).
TEST(HttpServer, RefusedClientsStillSendingReadTheAnswer) {
  HttpServerOptions o;
  o.max_body_bytes = 1u << 20;
  TestServer server(o, [](const HttpRequest& head) -> std::optional<HttpResponse> {
    if (head.path != "/forbidden") return std::nullopt;
    HttpResponse r;
    r.status = 403;
    return r;
  });
  const std::string body(4u << 20, 'b');
  for (const auto& [path, status] : {std::pair{"/reverse", 413}, std::pair{"/forbidden", 403}}) {
    Conn c(server.port());
    ASSERT_TRUE(c.Send(std::string("POST ") + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                       std::to_string(status == 413 ? body.size() : size_t{1} << 20) + "\r\n\r\n" +
                       (status == 413 ? body : body.substr(0, size_t{1} << 20))))
        << path << ": the connection was reset while the body was being sent";
    auto r = c.Read();
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, status) << path;
  }
}

// Slow clients (slowloris: a header byte at a time) hold no thread: with 4 handler threads,
// 20 connections trickling their heads leave the server answering at once. (httplib served a
// connection on one thread for its whole life: the 20 took every thread.)
TEST(HttpServer, SlowClientsHoldNoThread) {
  HttpServerOptions o;
  o.threads = 4;
  TestServer server(o);
  std::vector<std::unique_ptr<Conn>> slow;
  for (int i = 0; i < 20; ++i) {
    slow.push_back(std::make_unique<Conn>(server.port()));
    ASSERT_TRUE(slow.back()->Send("GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    while (!stop)
      for (auto& c : slow) {
        c->Send("a");
        std::this_thread::sleep_for(5ms);  // each connection: a byte every 100 ms
      }
  });
  std::this_thread::sleep_for(300ms);
  // Waits at most 3 s (a liveness bound, not a speed check).
  Conn c(server.port(), 3000ms);
  std::optional<Response> r;
  if (c.Send(Post("/reverse", "still here"))) r = c.Read();
  stop = true;
  trickle.join();
  ASSERT_TRUE(r) << "no answer while 20 slow clients were connected";
  EXPECT_EQ(r->body, "ereh llits");
}

// A request must arrive whole within the request timeout: a connection that trickles its head
// (never idle, so an inactivity timeout never fires) is closed by the server; one that sends
// in time is answered.
TEST(HttpServer, RequestDeadlineClosesTrickledHeads) {
  HttpServerOptions o;
  o.request_timeout_seconds = 1;
  TestServer server(o);
  Conn slow(server.port());
  ASSERT_TRUE(slow.Send("GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {  // at most ~10 s; the deadline is 1 s
    std::this_thread::sleep_for(100ms);
    closed = !slow.Send("a");
  }
  if (!closed) closed = !slow.Read() && slow.ended();
  EXPECT_TRUE(closed) << "a head trickled for 10 s was not cut at the 1 s deadline";
  auto r = Fetch(server.port(), Post("/reverse", "in time"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "emit ni");
}

// A handler that waits for its client to leave: `connection_open` turns false once the client
// closed its socket (the handler gives up after 10 s).
TEST(HttpServer, ConnectionOpenSeesTheClientLeave) {
  std::promise<bool> seen;
  std::future<bool> result = seen.get_future();
  auto handler = [&seen](const HttpRequest& r) {
    HttpResponse res;
    bool left = false;
    for (int i = 0; i < 1000 && !left; ++i) {
      if (r.connection_open && !r.connection_open()) left = true;
      std::this_thread::sleep_for(10ms);
    }
    seen.set_value(left);
    return res;
  };
  TestServer server(HttpServerOptions{}, nullptr, handler);
  {
    Conn c(server.port());
    ASSERT_TRUE(c.Send(Post("/wait", "x")));
    std::this_thread::sleep_for(100ms);
  }  // closed
  EXPECT_TRUE(result.get()) << "connection_open stayed true for 10 s after the client left";
}

// A streaming handler whose client leaves after the first chunk: Write returns false (the
// handler gives up after 10 s of writing).
TEST(HttpServer, StreamWriteSeesTheClientLeave) {
  std::promise<bool> seen;
  std::future<bool> result = seen.get_future();
  auto handler = [&seen](const HttpRequest&) {
    HttpResponse res;
    res.content_type = "text/event-stream";
    res.stream = [&seen](ChunkSink& sink) {
      bool failed = false;
      for (int i = 0; i < 1000 && !failed; ++i) {
        failed = !sink.Write("data: " + std::to_string(i) + "\n\n");
        std::this_thread::sleep_for(10ms);
      }
      seen.set_value(failed);
    };
    return res;
  };
  TestServer server(HttpServerOptions{}, nullptr, handler);
  {
    Conn c(server.port());
    ASSERT_TRUE(c.Send(Get("/events")));
    ASSERT_TRUE(c.ReadSome()) << "no byte of the stream arrived";
  }
  EXPECT_TRUE(result.get()) << "Write kept succeeding for 10 s after the client left";
}

// A second server on the same port fails to bind with a clear error (no SO_REUSEPORT: it would
// share the port and take half the connections).
TEST(HttpServer, SecondServerOnThePortFails) {
  TestServer first(HttpServerOptions{});
  HttpServerOptions o;
  o.port = first.port();
  try {
    ServeHttp(o, Handler, nullptr);
    FAIL() << "a second server bound port " << o.port;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot bind 127.0.0.1:" + std::to_string(o.port)),
              std::string::npos)
        << e.what();
  }
  auto r = Fetch(first.port(), Post("/reverse", "first"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "tsrif");
}

// Stop while clients are connected (one idle keep-alive connection, one mid-stream): ServeHttp
// returns and joins its threads; a Stop before the server binds makes it return at once.
TEST(HttpServer, StopEndsTheServerWithClientsConnected) {
  HttpServerOptions o;
  auto server = std::make_unique<TestServer>(o);
  Conn idle(server->port());
  ASSERT_TRUE(idle.Send(Post("/reverse", "ab")));
  auto r = idle.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "ba");
  std::thread streaming([port = server->port()] { (void)Fetch(port, Get("/stream")); });
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
