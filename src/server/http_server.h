// Serves an `HttpHandler` over HTTP/1.1 with cpp-httplib (the only file that sees httplib).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "server/http.h"

namespace dsinfer::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port
  int threads = 16;                  // connection threads
  size_t max_body_bytes = 8u << 20;  // larger bodies get 413
};

// Blocks serving until the process is stopped. `on_listening(port)` runs once bound.
// Throws Error when the address cannot be bound.
void ServeHttp(const HttpServerOptions& options, const HttpHandler& handler,
               const std::function<void(int port)>& on_listening);

}  // namespace dsinfer::server
