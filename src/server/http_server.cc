#include "server/http_server.h"

#include <dirent.h>
#include <httplib.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/threads.h"
#include "server/api_error.h"

namespace dsinfer::server {
namespace {

// The numeric host and the port of a socket address, as httplib reports a request's peer.
bool NumericAddress(const sockaddr_storage& a, socklen_t len, std::string& host, int& port) {
  char h[NI_MAXHOST], p[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, h, sizeof h, p, sizeof p,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  host = h;
  port = std::atoi(p);
  return true;
}

// Whether `fd` is the connection from `remote_addr:remote_port` to our `local_port`.
bool IsConnection(int fd, const std::string& remote_addr, int remote_port, int local_port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  std::string host;
  int port = -1;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      !NumericAddress(a, len, host, port) || host != remote_addr || port != remote_port)
    return false;
  len = sizeof a;
  return ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
         NumericAddress(a, len, host, port) && port == local_port;
}

// The socket of a request's connection. httplib 0.11.4 does not expose it, but the request
// names both ends, and a TCP connection is unique by them: the process's sockets are searched
// (/proc/self/fd). -1 when not found.
int FindConnectionSocket(const std::string& remote_addr, int remote_port, int local_port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    struct stat st {};
    if (::fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    if (IsConnection(static_cast<int>(fd), remote_addr, remote_port, local_port)) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// Whether the peer of connected socket `fd` has not closed it: no hang-up, and if readable,
// data rather than end-of-stream (a pipelined request counts as open).
bool SocketOpen(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) < 0) return errno == EINTR;
  if (p.revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) return false;
  if (!(p.revents & POLLIN)) return true;
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

// `HttpRequest::connection_open` for a request being served on the calling thread: finds the
// socket on its first call (the connection is not closed while its handler runs).
std::function<bool()> ConnectionProbe(const httplib::Request& req) {
  auto fd = std::make_shared<int>(-2);  // -2: not looked up yet, -1: not found
  return [fd, addr = req.remote_addr, port = req.remote_port, local = req.local_port] {
    if (*fd == -2) *fd = FindConnectionSocket(addr, port, local);
    return *fd < 0 || SocketOpen(*fd);
  };
}

HttpRequest FromHttplib(const httplib::Request& req) {
  HttpRequest r;
  r.method = req.method;
  r.path = req.path;
  for (const auto& [k, v] : req.headers) {
    std::string key = k;
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    r.headers.emplace(std::move(key), v);
  }
  return r;
}

// The request bytes being read or handled at once (Content-Length of each request from its
// head until its handler returned): a request that would exceed the budget is refused at its
// head (503), unless nothing else is in flight. The reservation lives in its connection's
// thread and is released when the handler returns, or when the connection ends (a client that
// sent a head and never the body).
class BodyBudget {
 public:
  explicit BodyBudget(size_t budget) : budget_(budget) {}
  bool Reserve(size_t n) {
    Release();
    std::lock_guard<std::mutex> lock(mu_);
    if (in_flight_ > 0 && in_flight_ + n > budget_) return false;
    in_flight_ += n;
    held_ = n;
    owner_ = this;
    return true;
  }
  // The calling thread's reservation, if any.
  static void Release() {
    if (!owner_) return;
    std::lock_guard<std::mutex> lock(owner_->mu_);
    owner_->in_flight_ -= held_;
    owner_ = nullptr;
    held_ = 0;
  }

 private:
  const size_t budget_;
  std::mutex mu_;
  size_t in_flight_ = 0;
  static thread_local BodyBudget* owner_;
  static thread_local size_t held_;
};
thread_local BodyBudget* BodyBudget::owner_ = nullptr;
thread_local size_t BodyBudget::held_ = 0;

// httplib serves each connection on one thread for its whole life, and its ThreadPool has a
// fixed size: as many slow clients as threads (slowloris: a header byte every few seconds)
// stop the server, /health included. This pool starts a thread whenever a connection arrives
// and none is idle, up to `max_threads` (beyond it connections wait, as in httplib's pool);
// threads stay for later connections.
class GrowingPool : public httplib::TaskQueue {
 public:
  explicit GrowingPool(size_t max_threads) : max_threads_(max_threads) {}

  void enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    if (jobs_.size() > idle_ && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { Work(); });
        return;
      } catch (const std::system_error&) {  // no more threads: the connection waits
      }
    }
    cv_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Work() {
    // HTTP threads parse, tokenize and stream, never compute: the thread statistics
    // (base/threads.h) show that no parallel region starts on one.
    SetThreadRole(ThreadRole::kHttp);
    while (true) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ++idle_;
        cv_.wait(lock, [this] { return !jobs_.empty() || shutdown_; });
        --idle_;
        if (jobs_.empty()) return;  // shut down, nothing left to serve
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      fn();
      BodyBudget::Release();  // the connection ended, perhaps before its body came
    }
  }

  const size_t max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t idle_ = 0;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;  // the accepting thread's only
};

// httplib's DataSink as a ChunkSink.
class HttplibSink : public ChunkSink {
 public:
  explicit HttplibSink(httplib::DataSink& sink) : sink_(sink) {}
  bool Write(std::string_view data) override {
    if (!sink_.is_writable()) return false;
    return sink_.write(data.data(), data.size());
  }

 private:
  httplib::DataSink& sink_;
};

void ToHttplib(HttpResponse r, httplib::Response& res) {
  res.status = r.status;
  for (const auto& [k, v] : r.headers) res.set_header(k, v);
  if (!r.stream) {
    res.set_content(r.body, r.content_type);
    return;
  }
  auto stream = std::make_shared<std::function<void(ChunkSink&)>>(std::move(r.stream));
  res.set_chunked_content_provider(r.content_type, [stream](size_t, httplib::DataSink& sink) {
    HttplibSink s(sink);
    (*stream)(s);
    sink.done();
    return true;
  });
}

// An error response for the head checks, in the OpenAI shape.
void Refuse(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(e.Body(), "application/json");
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

void ServeHttp(const HttpServerOptions& options, const HttpHandler& handler,
               const std::function<void(int port)>& on_listening, const HttpAdmission& admit,
               HttpStopper* stopper) {
  httplib::Server svr;
  const size_t threads = static_cast<size_t>(std::max(options.threads, 2));
  svr.new_task_queue = [threads] { return new GrowingPool(threads); };
  svr.set_payload_max_length(options.max_body_bytes);
  // httplib's default sets SO_REUSEPORT: a second server could bind the same port and take
  // half the connections. SO_REUSEADDR alone only allows a restart over TIME_WAIT.
  int listen_fd = -1;
  svr.set_socket_options([&listen_fd](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd = sock;
  });
  // Runs on the head, before httplib reads (or inflates) a body. Its own body limit holds only
  // for Content-Length bodies; chunked and compressed ones would be read whole, so they are
  // refused here, as are requests the application refuses from the head alone.
  const size_t max_body = options.max_body_bytes;
  BodyBudget bodies(std::max(options.body_budget_bytes, max_body));
  svr.set_pre_routing_handler(
      [&admit, max_body, &bodies](const httplib::Request& req, httplib::Response& res) {
        using R = httplib::Server::HandlerResponse;
        if (req.has_header("Transfer-Encoding")) {
          Refuse(res, ApiError(411, "invalid_request_error",
                               "chunked request bodies are not accepted: send Content-Length",
                               std::nullopt, "length_required"));
          return R::Handled;
        }
        const std::string encoding = Lower(req.get_header_value("Content-Encoding"));
        if (!encoding.empty() && encoding != "identity") {
          Refuse(res, ApiError(415, "invalid_request_error",
                               "compressed request bodies (Content-Encoding: " + encoding +
                                   ") are not accepted",
                               std::nullopt, "unsupported_content_encoding"));
          return R::Handled;
        }
        const std::string length = req.get_header_value("Content-Length");
        if (!length.empty()) {
          char* end = nullptr;
          const unsigned long long n = std::strtoull(length.c_str(), &end, 10);
          if (end == length.c_str() || *end != '\0' || n > max_body) {
            Refuse(res, ApiError::PayloadTooLarge());
            return R::Handled;
          }
          if (n > 0 && !bodies.Reserve(n)) {
            Refuse(res, ApiError(503, "server_error",
                                 "too many large request bodies at once (--body-budget); retry",
                                 std::nullopt, "server_busy"));
            res.set_header("Retry-After", "1");
            return R::Handled;
          }
        }
        if (admit) {
          HttpRequest head = FromHttplib(req);  // the body is not read yet
          if (std::optional<HttpResponse> refused = admit(head)) {
            BodyBudget::Release();
            ToHttplib(std::move(*refused), res);
            return R::Handled;
          }
        }
        return R::Unhandled;
      });
  auto route = [&handler](const httplib::Request& req, httplib::Response& res) {
    const size_t body_bytes = req.body.size();
    {
      HttpRequest r = FromHttplib(req);
      // httplib does not read the body after the handler: move it rather than hold 2 copies.
      r.body = std::move(const_cast<std::string&>(req.body));
      r.connection_open = ConnectionProbe(req);
      ToHttplib(handler(r), res);
    }
    BodyBudget::Release();
    // A large body's parse left freed memory in this thread's malloc arena, which glibc keeps
    // (resident) for the arena's next use: give it back.
    if (body_bytes >= (1u << 20)) ::malloc_trim(0);
  };
  svr.Get(".*", route);
  svr.Post(".*", route);
  svr.Put(".*", route);
  svr.Delete(".*", route);
  svr.Patch(".*", route);
  // Errors httplib produces itself (body over the limit: 413, bad request line: 400) get an
  // OpenAI-style body too; responses that already have one pass unchanged.
  svr.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        const ApiError e = res.status == 413 ? ApiError::PayloadTooLarge()
                                             : ApiError(res.status, "invalid_request_error",
                                                        "HTTP error " + std::to_string(res.status));
        res.set_content(e.Body(), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  int port = options.port;
  if (port == 0) {
    port = svr.bind_to_any_port(options.host);
    if (port < 0) throw Error("cannot bind " + options.host + " (any port)");
  } else if (!svr.bind_to_port(options.host, port)) {
    throw Error("cannot bind " + options.host + ":" + std::to_string(port) +
                " (in use by another process?)");
  }
  // The library listens with a compiled-in backlog of 5: a burst of connections beyond it is
  // refused or retried by the kernel. Calling listen() again on the bound socket raises it.
  if (listen_fd >= 0) ::listen(listen_fd, 1024);
  std::atomic<bool> listen_returned{false};
  if (stopper && !stopper->Attach([&svr, &listen_returned] {
        // httplib's stop() does nothing before its listen loop has started: wait for it.
        while (!svr.is_running() && !listen_returned)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        svr.stop();
      }))
    return;
  struct Detach {
    HttpStopper* stopper;
    std::atomic<bool>& listen_returned;
    ~Detach() {
      listen_returned = true;
      if (stopper) stopper->Detach();
    }
  } detach{stopper, listen_returned};
  if (on_listening) on_listening(port);
  // Returns once stopped and every connection being served has ended.
  svr.listen_after_bind();
}

void HttpStopper::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  requested_ = true;
  if (stop_) stop_();
}

bool HttpStopper::Attach(std::function<void()> stop) {
  std::lock_guard<std::mutex> lock(mu_);
  if (requested_) return false;
  stop_ = std::move(stop);
  return true;
}

void HttpStopper::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = nullptr;
}

}  // namespace dsinfer::server
