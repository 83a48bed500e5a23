// Serves an `HttpHandler` over HTTP/1.1 with cpp-httplib (the only file that sees httplib).
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
  int port = 8080;                   // 0: any free port
  int threads = 16;                  // connection threads at most (started as connections come)
  size_t max_body_bytes = 8u << 20;  // larger bodies get 413
  // Request bytes read or handled at once, in total (at least max_body_bytes): beyond it a
  // request is refused at its head with 503 + Retry-After. Bounds the memory requests take.
  size_t body_budget_bytes = 16u << 20;
};

// Stops a `ServeHttp` from another thread (a signal handler's thread): it closes the listening
// socket, lets the connections being served finish, and returns. Thread-safe; a Stop before
// ServeHttp binds makes it return at once.
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
// or inflated beyond the limit. Each request's `connection_open` polls its client's socket (closed
// by the peer: false).
void ServeHttp(const HttpServerOptions& options, const HttpHandler& handler,
               const std::function<void(int port)>& on_listening,
               const HttpAdmission& admit = nullptr, HttpStopper* stopper = nullptr);

}  // namespace dsinfer::server
