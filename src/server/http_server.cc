#include "server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>

#include "base/error.h"
#include "server/api_error.h"

namespace dsinfer::server {
namespace {

HttpRequest FromHttplib(const httplib::Request& req) {
  HttpRequest r;
  r.method = req.method;
  r.path = req.path;
  r.body = req.body;
  for (const auto& [k, v] : req.headers) {
    std::string key = k;
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    r.headers.emplace(std::move(key), v);
  }
  return r;
}

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

}  // namespace

void ServeHttp(const HttpServerOptions& options, const HttpHandler& handler,
               const std::function<void(int port)>& on_listening) {
  httplib::Server svr;
  const int threads = std::max(options.threads, 2);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(options.max_body_bytes);
  auto route = [&handler](const httplib::Request& req, httplib::Response& res) {
    ToHttplib(handler(FromHttplib(req)), res);
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
    throw Error("cannot bind " + options.host + ":" + std::to_string(port));
  }
  if (on_listening) on_listening(port);
  svr.listen_after_bind();
}

}  // namespace dsinfer::server
