#include "server/http_server.h"

#include <fcntl.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <vector>

#include "base/error.h"
#include "base/threads.h"
#include "server/api_error.h"

// How requests flow (docs/server.md, "The HTTP layer"). libmicrohttpd reads and writes every
// connection on one event-driven thread (epoll): a connection that trickles its head costs a
// few KiB of its memory pool and a file descriptor, not a thread. When a request has arrived
// whole, its connection is suspended (libmicrohttpd stops polling it) and the request goes to a
// worker thread, which runs the handler (it blocks for a whole generation) and resumes the
// connection with the response. A streaming response's chunks pass from the worker to the
// polling thread through a bounded queue; when the queue is empty the connection is suspended
// until the next chunk.

namespace dsinfer::server {
namespace {

using Clock = std::chrono::steady_clock;

// Per-connection memory pool: the request head (line and headers) must fit in about half of
// it; the rest buffers body and response bytes in transit.
constexpr size_t kConnectionMemory = 64u << 10;
// Seconds without any byte moving before a connection is closed (a client that stopped
// reading a response, or sending a body). Suspended connections (a request being handled)
// are exempt.
constexpr unsigned kIdleTimeoutSeconds = 60;
// Bytes of a streaming response queued between the handler and the socket (more: the
// handler's Write waits for the client to read).
constexpr size_t kStreamQueueBytes = 1u << 20;
constexpr unsigned kListenBacklog = 1024;
// At shutdown, once no handler runs: how long answers still being sent get to reach clients.
constexpr std::chrono::seconds kSendGrace(5);

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
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

// Open connections at most: the process's file descriptor limit, less a reserve for the model's
// files and the rest of the process.
unsigned ConnectionLimit() {
  rlimit r{};
  rlim_t fds = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0)
    fds = r.rlim_cur == RLIM_INFINITY ? rlim_t{1} << 16 : r.rlim_cur;
  const rlim_t reserve = 128;
  return static_cast<unsigned>(
      std::clamp<rlim_t>(fds > 2 * reserve ? fds - reserve : fds / 2, 16, rlim_t{1} << 16));
}

// The listening socket: resolved, bound and listening with a backlog of kListenBacklog.
// SO_REUSEADDR (a restart may bind over connections in TIME_WAIT) but never SO_REUSEPORT: a
// second server on the port fails here instead of taking half the connections.
int Listen(const std::string& host, int port, int& bound_port, int& family) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string where = port == 0 ? host + " (any port)" : host + ":" + std::to_string(port);
  if (const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                                   std::to_string(port).c_str(), &hints, &list);
      rc != 0)
    throw Error("cannot bind " + where + ": " + ::gai_strerror(rc));
  int fd = -1, err = 0;
  for (addrinfo* a = list; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, kListenBacklog) != 0) {
      err = errno;
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(list);
  if (fd < 0)
    throw Error("cannot bind " + where + ": " + std::strerror(err) +
                (err == EADDRINUSE ? " (in use by another process?)" : ""));
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  char serv[NI_MAXSERV];
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      ::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, nullptr, 0, serv, sizeof serv,
                    NI_NUMERICSERV) != 0) {
    ::close(fd);
    throw Error("cannot bind " + where + ": no local port");
  }
  bound_port = std::atoi(serv);
  family = a.ss_family;
  return fd;
}

// The request bytes being read or handled at once (Content-Length of each request from its
// head until its handler returned, or its connection ended): a request that would exceed the
// budget is refused at its head (503), unless nothing else is in flight.
class BodyBudget {
 public:
  explicit BodyBudget(size_t budget) : budget_(budget) {}
  bool Reserve(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    if (in_flight_ > 0 && in_flight_ + n > budget_) return false;
    in_flight_ += n;
    return true;
  }
  void Release(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ -= n;
  }

 private:
  const size_t budget_;
  std::mutex mu_;
  size_t in_flight_ = 0;
};

// Threads that run handlers: one is started whenever a request arrives and none is idle, up to
// `max_threads` (beyond it requests wait, holding no thread); threads stay for later requests.
class WorkerPool {
 public:
  explicit WorkerPool(size_t max_threads) : max_threads_(max_threads) {
    threads_.emplace_back([this] { Work(); });  // at least one, or nothing would ever run
  }
  ~WorkerPool() { Shutdown(); }

  void Post(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    if (jobs_.size() > idle_ && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { Work(); });
        return;
      } catch (const std::system_error&) {  // no more threads: the request waits
      }
    }
    cv_.notify_one();
  }

  // Runs the jobs left, then joins the threads.
  void Shutdown() {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (std::thread& t : threads) t.join();
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
        if (jobs_.empty()) return;  // shut down, nothing left to run
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      fn();
    }
  }

  const size_t max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t idle_ = 0;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

// A streaming response between the handler's thread (Write, Finish) and the polling thread
// (Read, libmicrohttpd's content reader). The connection is suspended by Read when nothing is
// queued and resumed by the next Write or Finish; `suspended` is set under `mu` in the same
// step as the suspension, so a resume never precedes its suspend.
class StreamState {
 public:
  explicit StreamState(MHD_Connection* connection) : connection_(connection) {}

  bool Write(std::string_view data) {
    std::unique_lock<std::mutex> lock(mu_);
    if (data.empty()) return !gone_;  // nothing to send (an empty read would spin)
    cv_.wait(lock, [this] { return gone_ || queued_ < kStreamQueueBytes; });
    if (gone_) return false;
    chunks_.emplace_back(data);
    queued_ += data.size();
    ResumeLocked(lock);
    return true;
  }

  // The handler is done: Read ends the body once the queue is empty.
  void Finish() {
    std::unique_lock<std::mutex> lock(mu_);
    done_ = true;
    ResumeLocked(lock);
  }

  // The request ended (sent whole, or the client left): Write returns false from now on.
  void MarkGone() {
    std::lock_guard<std::mutex> lock(mu_);
    gone_ = true;
    cv_.notify_all();
  }

  // libmicrohttpd's content reader; `cls` is a heap shared_ptr<StreamState> (freed by Free).
  static ssize_t Read(void* cls, uint64_t, char* buf, size_t max) {
    StreamState& s = **static_cast<std::shared_ptr<StreamState>*>(cls);
    std::lock_guard<std::mutex> lock(s.mu_);
    if (s.gone_) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (s.queued_ == 0) {
      if (s.done_) return MHD_CONTENT_READER_END_OF_STREAM;
      s.suspended_ = true;
      MHD_suspend_connection(s.connection_);
      return 0;
    }
    size_t n = 0;
    while (n < max && !s.chunks_.empty()) {
      std::string& front = s.chunks_.front();
      const size_t take = std::min(front.size() - s.front_offset_, max - n);
      std::memcpy(buf + n, front.data() + s.front_offset_, take);
      n += take;
      s.front_offset_ += take;
      if (s.front_offset_ == front.size()) {
        s.chunks_.pop_front();
        s.front_offset_ = 0;
      }
    }
    s.queued_ -= n;
    s.cv_.notify_all();
    return static_cast<ssize_t>(n);
  }
  static void Free(void* cls) { delete static_cast<std::shared_ptr<StreamState>*>(cls); }

 private:
  // Resumes the connection if Read suspended it (it is then alive: libmicrohttpd does not
  // close a suspended connection). Called with `mu_` held; resumes after releasing it.
  void ResumeLocked(std::unique_lock<std::mutex>& lock) {
    const bool resume = suspended_;
    suspended_ = false;
    lock.unlock();
    if (resume) MHD_resume_connection(connection_);
  }

  MHD_Connection* const connection_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;
  size_t front_offset_ = 0;  // bytes of chunks_.front() already read
  size_t queued_ = 0;
  bool done_ = false, gone_ = false, suspended_ = false;
};

class StreamSink : public ChunkSink {
 public:
  explicit StreamSink(StreamState& s) : s_(s) {}
  bool Write(std::string_view data) override { return s_.Write(data); }

 private:
  StreamState& s_;
};

// Lingering close for requests refused at their head while their client may still be sending
// the body: libmicrohttpd answers and closes, and closing a socket with unread bytes resets
// the connection (RST), which makes a client that is still writing its body fail before it
// reads the answer. The socket is duplicated at the refusal; after libmicrohttpd has sent the
// answer (and its FIN), this thread reads and discards what the client still sends, up to
// the announced length, its end of stream or 5 s, then closes the duplicate.
class Lingerer {
 public:
  Lingerer() {
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_ >= 0) thread_ = std::thread([this] { Run(); });
  }
  ~Lingerer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    Wake();
    if (thread_.joinable()) thread_.join();
    for (const Entry& e : entries_) ::close(e.fd);
    if (wake_ >= 0) ::close(wake_);
  }

  // Takes `fd` (a duplicate of a connection's socket) to drain up to `bytes` and close.
  void Add(int fd, uint64_t bytes) {
    if (wake_ < 0) {
      ::close(fd);
      return;
    }
    try {
      std::lock_guard<std::mutex> lock(mu_);
      entries_.push_back({fd, bytes, Clock::now() + std::chrono::seconds(5)});
    } catch (const std::exception&) {
      ::close(fd);
      return;
    }
    Wake();
  }

 private:
  struct Entry {
    int fd;
    uint64_t left;  // bytes still expected
    Clock::time_point deadline;
  };

  void Wake() {
    const uint64_t one = 1;
    if (wake_ >= 0) (void)!::write(wake_, &one, sizeof one);
  }

  void Run() {
    SetThreadRole(ThreadRole::kHttp);
    std::vector<pollfd> fds;
    std::vector<char> scratch(64u << 10);
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
        fds.assign(1, pollfd{wake_, POLLIN, 0});
        for (const Entry& e : entries_) fds.push_back(pollfd{e.fd, POLLIN | POLLRDHUP, 0});
      }
      ::poll(fds.data(), fds.size(), 100);
      if (fds[0].revents & POLLIN) {
        uint64_t n;
        (void)!::read(wake_, &n, sizeof n);
      }
      std::lock_guard<std::mutex> lock(mu_);
      const auto now = Clock::now();
      // Entries added since the poll are after the polled ones: index i + 1 is entries_[i].
      for (size_t i = 0, polled = fds.size() - 1; i < entries_.size();) {
        Entry& e = entries_[i];
        bool done = now >= e.deadline;
        if (!done && i < polled && fds[i + 1].revents) {
          const ssize_t n = ::recv(e.fd, scratch.data(), scratch.size(), MSG_DONTWAIT);
          if (n > 0) e.left -= std::min<uint64_t>(e.left, static_cast<uint64_t>(n));
          done = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
                 e.left == 0;
        }
        if (done) {
          ::close(e.fd);
          entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
          if (i < polled) {
            fds.erase(fds.begin() + static_cast<std::ptrdiff_t>(i) + 1);
            --polled;
          }
        } else {
          ++i;
        }
      }
    }
  }

  int wake_ = -1;
  std::mutex mu_;
  bool stop_ = false;
  std::vector<Entry> entries_;
  std::thread thread_;
};

// A connection, from accept to close. `waiting_since`: when it started waiting for a request
// (accepted, or its previous request ended); a request that has not arrived whole within the
// request timeout gets its connection shut down.
struct ConnectionState {
  int fd = -1;
  Clock::time_point waiting_since;
  bool in_request = false;  // a request arrived whole and is being handled or answered
  bool cut = false;
};

// One request, from its head (first call of the access handler) to its end (NOTIFY_COMPLETED).
struct RequestState {
  MHD_Connection* connection = nullptr;
  ConnectionState* conn = nullptr;
  HttpRequest request;
  size_t reserved = 0;      // body budget held
  bool dispatched = false;  // given to a worker (counted in in_flight_ until it ends)
  bool answered = false;    // the worker's response is ready (the connection was resumed)
  bool overflow = false;    // more body than announced (not expected: libmicrohttpd checks)
  uint64_t announced = 0;   // Content-Length (or unknown: UINT64_MAX for a chunked body)
  int linger_fd = -1;       // refused at the head with a body unread: drained after the answer
  std::optional<HttpResponse> refusal;  // refused at the head, answered once the request is whole
  HttpResponse response;
  std::shared_ptr<StreamState> stream;
};

MHD_Result CollectHeader(void* cls, MHD_ValueKind, const char* key, const char* value) {
  try {
    static_cast<std::map<std::string, std::string>*>(cls)->emplace(Lower(key), value ? value : "");
    return MHD_YES;
  } catch (const std::exception&) {  // out of memory: the headers seen so far
    return MHD_NO;
  }
}

HttpResponse FromApiError(const ApiError& e) {
  HttpResponse r;
  r.status = e.status();
  r.body = e.Body();
  return r;
}

class Server {
 public:
  Server(const HttpServerOptions& options, const HttpHandler& handler, const HttpAdmission& admit)
      : handler_(handler),
        admit_(admit),
        max_body_(options.max_body_bytes),
        request_timeout_(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(std::clamp(options.request_timeout_seconds, 0.0, 1e6)))),
        budget_(std::max(options.body_budget_bytes, options.max_body_bytes)),
        workers_(static_cast<size_t>(std::max(options.threads, 2))) {}
  ~Server() { Shutdown(); }

  // Binds and starts serving; returns the port.
  int Start(const HttpServerOptions& options) {
    int port = 0;
    int family = AF_INET;
    listen_fd_ = Listen(options.host, options.port, port, family);
    // MHD_USE_IPv6 only tells libmicrohttpd what the given socket is.
    const unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                           (family == AF_INET6 ? unsigned{MHD_USE_IPv6} : 0u);
    daemon_ = MHD_start_daemon(
        flags, 0, nullptr, nullptr, &Server::Access, this, MHD_OPTION_LISTEN_SOCKET,
        static_cast<MHD_socket>(listen_fd_), MHD_OPTION_CONNECTION_LIMIT, ConnectionLimit(),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_CONNECTION_TIMEOUT,
        kIdleTimeoutSeconds, MHD_OPTION_NOTIFY_COMPLETED, &Server::Completed, this,
        MHD_OPTION_NOTIFY_CONNECTION, &Server::Notify, this, MHD_OPTION_END);
    if (!daemon_) {
      // Some of libmicrohttpd's failure paths close the socket it was given, others do not:
      // left open (the process is about to report the error and exit).
      listen_fd_ = -1;
      throw Error("cannot start the HTTP server (libmicrohttpd) on " + options.host + ":" +
                  std::to_string(port));
    }
    if (request_timeout_.count() > 0) watchdog_ = std::thread([this] { Watch(); });
    return port;
  }

  // Blocks until RequestStop.
  void WaitForStop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return stop_requested_; });
  }

  void RequestStop() {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
    cv_.notify_all();
  }

  // Closes the listening socket, waits for the requests being handled (and their streams),
  // then closes every connection and joins the threads. Idempotent.
  void Shutdown() {
    if (!daemon_) return;
    // Quiesced, the listening socket is ours to close (after MHD_stop_daemon; until then its
    // thread may still hold it); shut down now, it refuses new connections. Otherwise
    // MHD_stop_daemon closes it.
    const bool quiesced = MHD_quiesce_daemon(daemon_) != MHD_INVALID_SOCKET;
    if (quiesced) ::shutdown(listen_fd_, SHUT_RDWR);
    {
      std::unique_lock<std::mutex> lock(mu_);
      stopping_ = true;
      // No connection may be suspended at MHD_stop_daemon: wait until no request is with a
      // worker, then (same lock) let no new one be dispatched.
      cv_.wait(lock, [this] { return busy_ == 0; });
      final_ = true;
      cv_.notify_all();  // the watchdog
      // Then the answers being sent (a stream's last events, a whole response) get a grace
      // period to reach their clients: MHD_stop_daemon drops what is unsent.
      cv_.wait_for(lock, kSendGrace, [this] { return in_flight_ == 0; });
    }
    MHD_stop_daemon(daemon_);
    daemon_ = nullptr;
    if (watchdog_.joinable()) watchdog_.join();
    if (quiesced) ::close(listen_fd_);
    listen_fd_ = -1;
    workers_.Shutdown();
  }

 private:
  // ---- libmicrohttpd callbacks (on its polling thread) ----

  static void Notify(void* cls, MHD_Connection* connection, void** socket_context,
                     MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<Server*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      SetThreadRole(ThreadRole::kHttp);  // the polling thread
      auto* c = new (std::nothrow) ConnectionState;
      if (!c) return;  // not watched by the request deadline
      const MHD_ConnectionInfo* info =
          MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
      c->fd = info ? info->connect_fd : -1;
      c->waiting_since = Clock::now();
      std::lock_guard<std::mutex> lock(self->conns_mu_);
      try {
        self->conns_.insert(c);
        *socket_context = c;
      } catch (const std::exception&) {
        delete c;  // not watched by the request deadline
      }
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
      auto* c = static_cast<ConnectionState*>(*socket_context);
      if (!c) return;
      {
        // Under the lock: the watchdog never touches a socket after this (it is closed next).
        std::lock_guard<std::mutex> lock(self->conns_mu_);
        self->conns_.erase(c);
      }
      delete c;
      *socket_context = nullptr;
    }
  }

  static void Completed(void* cls, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    auto* self = static_cast<Server*>(cls);
    auto* rs = static_cast<RequestState*>(*con_cls);
    if (!rs) return;
    if (rs->stream) rs->stream->MarkGone();
    if (rs->reserved) self->budget_.Release(rs->reserved);  // refused, or the client left
    if (rs->linger_fd >= 0) self->lingerer_.Add(rs->linger_fd, rs->announced);
    if (rs->dispatched) {
      std::lock_guard<std::mutex> lock(self->mu_);
      --self->in_flight_;
      self->cv_.notify_all();
    }
    if (rs->conn) {
      std::lock_guard<std::mutex> lock(self->conns_mu_);
      rs->conn->in_request = false;
      rs->conn->waiting_since = Clock::now();
    }
    delete rs;
    *con_cls = nullptr;
  }

  // libmicrohttpd is C: no exception may leave a callback (out of memory closes the connection).
  static MHD_Result Access(void* cls, MHD_Connection* connection, const char* url,
                           const char* method, const char*, const char* upload_data,
                           size_t* upload_data_size, void** con_cls) {
    try {
      return static_cast<Server*>(cls)->OnAccess(connection, url, method, upload_data,
                                                 upload_data_size, con_cls);
    } catch (const std::exception&) {
      return MHD_NO;
    }
  }

  MHD_Result OnAccess(MHD_Connection* connection, const char* url, const char* method,
                      const char* upload_data, size_t* upload_data_size, void** con_cls) {
    Server* const self = this;
    auto* rs = static_cast<RequestState*>(*con_cls);
    if (!rs) {  // the head has arrived; no body byte has been read
      rs = new RequestState;
      *con_cls = rs;
      rs->connection = connection;
      if (const MHD_ConnectionInfo* info =
              MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT))
        rs->conn = static_cast<ConnectionState*>(info->socket_context);
      rs->request.method = method;
      rs->request.path = url;
      MHD_get_connection_values(connection, MHD_HEADER_KIND, &CollectHeader, &rs->request.headers);
      if (std::optional<HttpResponse> refused = self->CheckHead(*rs)) {
        if (rs->announced == 0) {
          // No body: answered when the request is complete (next call), which keeps the
          // connection open; an answer queued at the head always closes it.
          rs->refusal = std::move(refused);
          return MHD_YES;
        }
        // The client may be sending a body: answered now, the body drained after the answer.
        const MHD_ConnectionInfo* info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info) rs->linger_fd = ::fcntl(info->connect_fd, F_DUPFD_CLOEXEC, 0);
        return self->Queue(connection, std::move(*refused), nullptr);
      }
      return MHD_YES;
    }
    if (*upload_data_size != 0) {
      if (rs->refusal) {
        // discarded (not expected: refused requests without a body announced none)
      } else if (rs->request.body.size() + *upload_data_size > self->max_body_) {
        rs->overflow = true;
      } else {
        rs->request.body.append(upload_data, *upload_data_size);
      }
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (rs->refusal) return self->Queue(connection, std::move(*rs->refusal), nullptr);
    if (rs->answered) {  // resumed by the worker with the handler's response
      std::shared_ptr<StreamState> stream = rs->stream;
      return self->Queue(connection, std::move(rs->response), std::move(stream));
    }
    if (rs->overflow) return self->Queue(connection, FromApiError(ApiError::PayloadTooLarge()), {});
    // The request is whole: to a worker, with the connection suspended meanwhile (suspended
    // first, so that the worker's resume cannot come before it).
    bool closing = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing = final_;
      if (!closing) {
        ++busy_;
        ++in_flight_;
      }
    }
    if (closing)
      return Queue(connection,
                   FromApiError(ApiError(503, "server_error", "the server is shutting down",
                                         std::nullopt, "server_shutting_down")),
                   nullptr);
    if (rs->conn) {
      std::lock_guard<std::mutex> lock(self->conns_mu_);
      rs->conn->in_request = true;
    }
    const MHD_ConnectionInfo* info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    const int fd = info ? info->connect_fd : -1;
    // Valid while the handler runs: the connection is suspended, so it stays open.
    rs->request.connection_open = [fd] { return fd < 0 || SocketOpen(fd); };
    rs->dispatched = true;
    MHD_suspend_connection(connection);
    try {
      workers_.Post([self, rs] { self->Handle(rs); });
    } catch (const std::exception&) {  // out of memory: answered at once, no worker
      rs->response = FromApiError(
          ApiError(503, "server_error", "out of memory; retry", std::nullopt, "server_busy"));
      rs->response.headers.emplace_back("Retry-After", "1");
      rs->answered = true;
      MHD_resume_connection(connection);
      std::lock_guard<std::mutex> lock(mu_);
      --busy_;
      cv_.notify_all();
    }
    return MHD_YES;
  }

  // The checks on a request's head, before its body is read: framing (a body needs
  // Content-Length within the limit; chunked and compressed bodies are refused), the body
  // budget, then the application's admission. A response refuses the request.
  std::optional<HttpResponse> CheckHead(RequestState& rs) {
    const HttpRequest& req = rs.request;
    const std::string length = req.Header("content-length");
    bool length_ok = true;
    unsigned long long n = 0;
    if (!length.empty()) {
      char* end = nullptr;
      errno = 0;
      n = std::strtoull(length.c_str(), &end, 10);
      length_ok = end != length.c_str() && *end == '\0' && errno != ERANGE;
    }
    const bool chunked = req.headers.count("transfer-encoding") > 0;
    rs.announced = chunked || !length_ok ? UINT64_MAX : n;
    if (chunked)
      return FromApiError(ApiError(411, "invalid_request_error",
                                   "chunked request bodies are not accepted: send Content-Length",
                                   std::nullopt, "length_required"));
    const std::string encoding = Lower(req.Header("content-encoding"));
    if (!encoding.empty() && encoding != "identity")
      return FromApiError(ApiError(
          415, "invalid_request_error",
          "compressed request bodies (Content-Encoding: " + encoding + ") are not accepted",
          std::nullopt, "unsupported_content_encoding"));
    if (!length_ok || n > max_body_) return FromApiError(ApiError::PayloadTooLarge());
    if (n > 0) {
      if (!budget_.Reserve(n)) {
        HttpResponse r = FromApiError(ApiError(
            503, "server_error", "too many large request bodies at once (--body-budget); retry",
            std::nullopt, "server_busy"));
        r.headers.emplace_back("Retry-After", "1");
        return r;
      }
      rs.reserved = n;
      rs.request.body.reserve(n);
    }
    if (admit_) {
      if (std::optional<HttpResponse> refused = admit_(req)) return refused;
    }
    return std::nullopt;
  }

  // Sends `r` on `connection` (from the access handler): a whole body, or a stream read from
  // `stream`.
  MHD_Result Queue(MHD_Connection* connection, HttpResponse r,
                   std::shared_ptr<StreamState> stream) {
    MHD_Response* res = nullptr;
    if (stream) {
      auto* holder = new std::shared_ptr<StreamState>(std::move(stream));
      res = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16u << 10, &StreamState::Read,
                                              holder, &StreamState::Free);
      if (!res) delete holder;
    } else {
      res = MHD_create_response_from_buffer(r.body.size(), r.body.data(), MHD_RESPMEM_MUST_COPY);
    }
    if (!res) return MHD_NO;  // out of memory: close the connection
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
    for (const auto& [k, v] : r.headers) MHD_add_response_header(res, k.c_str(), v.c_str());
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping = stopping_;
    }
    if (stopping) MHD_add_response_header(res, MHD_HTTP_HEADER_CONNECTION, "close");
    const MHD_Result ok = MHD_queue_response(connection, static_cast<unsigned>(r.status), res);
    MHD_destroy_response(res);  // the connection holds it until sent
    return ok;
  }

  // ---- worker threads ----

  // Runs the handler for a whole request whose connection is suspended, then resumes it with
  // the response; a streaming response is produced here afterwards.
  void Handle(RequestState* rs) {
    HttpResponse res;
    std::function<void(ChunkSink&)> produce;
    std::shared_ptr<StreamState> stream;
    const size_t body_bytes = rs->request.body.size();
    try {
      res = handler_(rs->request);
      produce = std::move(res.stream);
      res.stream = nullptr;
      if (produce) stream = std::make_shared<StreamState>(rs->connection);
    } catch (const ApiError& e) {
      res = FromApiError(e);
      produce = nullptr;
    } catch (const std::exception&) {
      res = FromApiError(ApiError(500, "server_error", "internal error"));
      produce = nullptr;
    }
    rs->request = HttpRequest();  // the body's memory, before the next request can come
    budget_.Release(rs->reserved);
    rs->reserved = 0;
    // A large body's parse left freed memory in this thread's malloc arena, which glibc keeps
    // (resident) for the arena's next use: give it back.
    if (body_bytes >= (1u << 20)) ::malloc_trim(0);
    rs->stream = stream;
    rs->response = std::move(res);
    rs->answered = true;
    MHD_Connection* const connection = rs->connection;
    MHD_resume_connection(connection);  // from here `rs` belongs to the polling thread
    if (produce) {
      StreamSink sink(*stream);
      try {
        produce(sink);
      } catch (const std::exception&) {  // the stream ends where it stopped
      }
      stream->Finish();
    }
    std::lock_guard<std::mutex> lock(mu_);
    --busy_;
    cv_.notify_all();
  }

  // ---- the request deadline ----

  // Shuts down the connections that have waited longer than the request timeout for a whole
  // request (a head or body trickled byte by byte: slowloris). libmicrohttpd's own timeout
  // only measures inactivity, which such a client never shows.
  void Watch() {
    const auto period = std::clamp<Clock::duration>(
        request_timeout_ / 4, std::chrono::milliseconds(50), std::chrono::seconds(1));
    std::unique_lock<std::mutex> lock(mu_);
    while (!final_) {
      cv_.wait_for(lock, period, [this] { return final_; });
      if (final_) break;
      lock.unlock();
      {
        const auto deadline = Clock::now() - request_timeout_;
        std::lock_guard<std::mutex> conns(conns_mu_);
        for (ConnectionState* c : conns_)
          if (!c->in_request && !c->cut && c->fd >= 0 && c->waiting_since < deadline) {
            ::shutdown(c->fd, SHUT_RDWR);  // libmicrohttpd sees the end and closes it
            c->cut = true;
          }
      }
      lock.lock();
    }
  }

  const HttpHandler& handler_;
  const HttpAdmission& admit_;
  const size_t max_body_;
  const Clock::duration request_timeout_;  // 0: none
  BodyBudget budget_;
  WorkerPool workers_;
  Lingerer lingerer_;
  int listen_fd_ = -1;
  MHD_Daemon* daemon_ = nullptr;
  std::thread watchdog_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  bool stopping_ = false;  // responses close their connections
  bool final_ = false;     // no request goes to a worker any more
  size_t busy_ = 0;        // requests with a worker (handler or stream running)
  size_t in_flight_ = 0;   // requests given to a worker and not yet ended (answer being sent)

  std::mutex conns_mu_;
  std::unordered_set<ConnectionState*> conns_;
};

}  // namespace

void ServeHttp(const HttpServerOptions& options, const HttpHandler& handler,
               const std::function<void(int port)>& on_listening, const HttpAdmission& admit,
               HttpStopper* stopper) {
  Server server(options, handler, admit);
  const int port = server.Start(options);
  if (stopper && !stopper->Attach([&server] { server.RequestStop(); })) return;
  struct Detach {  // before `server` is destroyed: no Stop reaches it afterwards
    HttpStopper* stopper;
    ~Detach() {
      if (stopper) stopper->Detach();
    }
  } detach{stopper};
  if (on_listening) on_listening(port);
  server.WaitForStop();
  server.Shutdown();
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
