#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>

#include "base/error.h"
#include "base/threads.h"
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

// httplib's thread pool whose threads call themselves HTTP threads (base/threads.h), so the
// thread statistics can show that no parallel region starts on one.
class HttpThreadPool : public httplib::TaskQueue {
 public:
  explicit HttpThreadPool(int n) : pool_(static_cast<size_t>(n)) {}
  void enqueue(std::function<void()> fn) override {
    pool_.enqueue([fn = std::move(fn)] {
      SetThreadRole(ThreadRole::kHttp);
      fn();
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
};

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
               const std::function<void(int port)>& on_listening, const HttpAdmission& admit) {
  httplib::Server svr;
  const int threads = std::max(options.threads, 2);
  svr.new_task_queue = [threads] { return new HttpThreadPool(threads); };
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
  svr.set_pre_routing_handler(
      [&admit, max_body](const httplib::Request& req, httplib::Response& res) {
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
        }
        if (admit) {
          HttpRequest head = FromHttplib(req);  // the body is not read yet
          if (std::optional<HttpResponse> refused = admit(head)) {
            ToHttplib(std::move(*refused), res);
            return R::Handled;
          }
        }
        return R::Unhandled;
      });
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
    throw Error("cannot bind " + options.host + ":" + std::to_string(port) +
                " (in use by another process?)");
  }
  // The library listens with a compiled-in backlog of 5: a burst of connections beyond it is
  // refused or retried by the kernel. Calling listen() again on the bound socket raises it.
  if (listen_fd >= 0) ::listen(listen_fd, 1024);
  if (on_listening) on_listening(port);
  svr.listen_after_bind();
}

}  // namespace dsinfer::server
