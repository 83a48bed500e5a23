// Serves an `HttpHandler` over HTTP/1.1 with GNU libmicrohttpd (the only file that sees it).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>

#include "server/http.h"

namespace dsinfer::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  // Requests handled at once, a thread each (started as requests come; more wait, holding no
  // thread). Open connections cost no thread: they are read and written by one event-driven
  // thread, up to the process's file descriptor limit.
  int threads = 16;
  size_t max_body_bytes = 8u << 20;  // larger bodies get 413
  // Request bytes read or handled at once, in total (at least max_body_bytes): beyond it a
  // request is refused at its head with 503 + Retry-After. Bounds the memory requests take.
  size_t body_budget_bytes = 16u << 20;
  // A connection's next request (head and body) must arrive whole within this many seconds of
  // the connection opening or of its previous response; else the connection is closed.
  double request_timeout_seconds = 60;
};

// Stops a `ServeHttp` from another thread (a signal handler's thread): it closes the listening
// socket, lets the requests being handled finish (streams included), then closes the remaining
// connections and returns. Thread-safe; a Stop before ServeHttp binds makes it return at once.
class HttpStopper {
 public:
  void Stop();
  bool stop_requested() const { return requested_; }
  // ServeHttp's side: what Stop calls while a server runs (false: stop was already requested).
  bool Attach(std::function<void()> stop);
  void Detach();

 private:
  std::mutex mu_;
  std::atomic<bool> requested_{false};
  std::function<void()> stop_;  // set while a server runs
};

// Blocks serving until the process is stopped or `stopper` (if given) stops it.
// `on_listening(port)` runs once bound. Throws Error when the address cannot be bound (also when
// another process listens on the port: no SO_REUSEPORT). Before a body is read: `admit` (if set)
// sees the head; a body must come with Content-Length (chunked: 411), uncompressed
// (Content-Encoding other than identity: 415) and within `max_body_bytes` (413), so nothing is read
// or inflated beyond the limit. Requests pipelined on a connection are answered in order. Each
// request's `connection_open` polls its client's socket (closed by the peer: false); a streaming
// response's ChunkSink::Write returns false once the client is gone.
void ServeHttp(const HttpServerOptions& options, const HttpHandler& handler,
               const std::function<void(int port)>& on_listening,
               const HttpAdmission& admit = nullptr, HttpStopper* stopper = nullptr);

}  // namespace dsinfer::server
