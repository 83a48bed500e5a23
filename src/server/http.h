// The HTTP surface the server's handlers see, independent of the HTTP library: a request in,
// a response out, and for streaming responses a callback that writes chunks to a sink. The
// handlers (openai_app.h) are therefore testable without sockets; http_server.h binds them
// to libmicrohttpd.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsinfer::server {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // without the query string
  std::map<std::string, std::string> headers;  // keys lower-case
  std::string body;
  // Whether the client's connection is still open (asked while a whole response is being
  // generated, to cancel the work when the client left); unset: assume open.
  std::function<bool()> connection_open = nullptr;

  // The header's value, or "" when absent. `name` lower-case.
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Where a streaming response writes its chunks.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  // Sends `data`; false when the client is gone (the producer should stop).
  virtual bool Write(std::string_view data) = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Set for streaming responses: produces the body through the sink (status is sent first).
  std::function<void(ChunkSink&)> stream;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Runs on a request's head (method, path, headers; `body` empty) before its body is read: a
// response refuses the request there (wrong key, unknown URL, ...), nullopt lets it proceed.
using HttpAdmission = std::function<std::optional<HttpResponse>(const HttpRequest&)>;

}  // namespace dsinfer::server
