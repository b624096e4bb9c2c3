#include "tcp_channel.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <vector>

#include "endpoint.h"

namespace tally::net::internal {
namespace {

using tcp = asio::ip::tcp;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

uint32_t ClampMillis(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  if (ms <= 0) return 0;
  return static_cast<uint32_t>(std::min<int64_t>(ms, UINT32_MAX));
}

// Runs a caller's callback; an exception from it must not cross into Asio.
void RunCallback(CallCallback& done, Result<std::string> result) {
  try {
    done(std::move(result));
  } catch (const std::exception& e) {
    spdlog::error("net: a call's callback threw: {}", e.what());
  } catch (...) {
    spdlog::error("net: a call's callback threw");
  }
}

// One Channel::Call on its way to the strand. A named handler so that when
// the transport refuses the post, `done` is still here to complete.
struct CallTask {
  std::shared_ptr<TcpChannel> channel;
  std::string method;
  std::string payload;
  CallOptions options;
  CallCallback done;

  void operator()() {
    channel->StartCall(std::move(method), std::move(payload), options, std::move(done));
  }
};

}  // namespace

TcpChannel::TcpChannel(std::shared_ptr<IoCore> core, std::string endpoint,
                       const TcpOptions& options)
    : core_(std::move(core)),
      endpoint_(std::move(endpoint)),
      options_(options),
      strand_(asio::make_strand(core_->io())),
      deadline_timer_(strand_),
      backoff_timer_(strand_),
      connect_timer_(strand_),
      resolver_(strand_),
      backoff_(options.reconnect_backoff_min),
      jitter_(std::random_device{}()) {
  auto hp = ParseEndpoint(endpoint_);
  if (hp.ok()) {
    host_ = hp->host;
    port_ = hp->port;
  } else {
    endpoint_status_ = hp.status();
  }
}

void TcpChannel::Call(std::string method, std::string payload, CallOptions options,
                      CallCallback done) {
  CallTask task{shared_from_this(), std::move(method), std::move(payload), options,
                std::move(done)};
  if (!core_->Post(strand_, std::move(task))) {
    // Post refused and did not move from `task`. No transport thread remains
    // to run the callback, so it runs here.
    task.done(Cancelled("call to '" + task.method + "' on " + endpoint_ +
                        " refused: the transport is shut down"));
  }
}

void TcpChannel::StartCall(std::string method, std::string payload, CallOptions options,
                           CallCallback done) {
  if (closed_) {
    RunCallback(done, Cancelled("channel to " + endpoint_ + " is closed"));
    return;
  }
  if (!endpoint_status_.ok()) {
    RunCallback(done, endpoint_status_);
    return;
  }
  const uint64_t id = next_id_++;
  Pending call;
  call.done = std::move(done);
  call.deadline = std::chrono::steady_clock::now() + options.timeout;
  call.method = std::move(method);
  call.payload = std::move(payload);
  call.timeout_ms = ClampMillis(options.timeout);
  if (conn_ != nullptr && !conn_->closed()) {
    if (conn_->queued_bytes() > options_.max_queued_bytes_per_connection) {
      RunCallback(call.done,
                  Overloaded(fmt::format(
                      "connection to {} has {} bytes waiting to be written; back off and retry",
                      endpoint_, conn_->queued_bytes())));
      return;
    }
    Status s = SendCall(id, call);
    if (!s.ok()) {
      RunCallback(call.done, s);
      return;
    }
  } else {
    if (unsent_ >= options_.max_waiting_calls) {
      RunCallback(call.done,
                  Overloaded(fmt::format(
                      "{} calls to {} are already waiting for a connection; back off and retry",
                      unsent_, endpoint_)));
      return;
    }
    waiting_.push_back(id);
    ++unsent_;
  }
  const TimePoint deadline = call.deadline;
  const bool sent = call.sent;
  deadlines_.emplace(deadline, id);
  pending_.emplace(id, std::move(call));
  ArmDeadlineTimer(deadline);
  if (!sent) StartConnecting();
}

Status TcpChannel::SendCall(uint64_t id, Pending& call) {
  proto::Frame frame;
  frame.set_kind(proto::Frame::REQUEST);
  frame.set_request_id(id);
  frame.set_method(call.method);
  frame.set_payload(std::move(call.payload));
  frame.set_timeout_ms(call.timeout_ms);
  call.payload.clear();
  Status s = conn_->Send(frame);
  if (s.ok()) call.sent = true;
  return s;
}

void TcpChannel::Finish(uint64_t id, Result<std::string> result) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // already timed out or failed
  Pending call = std::move(it->second);
  pending_.erase(it);
  deadlines_.erase({call.deadline, id});
  if (!call.sent) --unsent_;
  RunCallback(call.done, std::move(result));
  MaybeRetire();
}

void TcpChannel::OnResponse(proto::Frame frame) {
  Status s = frame.has_error() ? FromProto(frame.error()) : Status::OK();
  if (s.ok()) {
    Finish(frame.request_id(), std::move(*frame.mutable_payload()));
  } else {
    Finish(frame.request_id(), std::move(s));
  }
}

void TcpChannel::ArmDeadlineTimer(TimePoint deadline) {
  if (deadline >= armed_for_ || closed_) return;
  armed_for_ = deadline;
  deadline_timer_.expires_at(deadline);
  deadline_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // re-armed or closed
    self->OnDeadlineTimer();
  });
}

void TcpChannel::OnDeadlineTimer() {
  armed_for_ = TimePoint::max();
  const TimePoint now = std::chrono::steady_clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const uint64_t id = deadlines_.begin()->second;
    auto it = pending_.find(id);
    if (it == pending_.end()) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    const Pending& call = it->second;
    std::string msg =
        call.sent ? fmt::format(
                        "call to '{}' on {} timed out after {} ms; the request was sent, so "
                        "it may or may not have run",
                        call.method, endpoint_, call.timeout_ms)
                  : fmt::format(
                        "call to '{}' on {} timed out after {} ms waiting for a connection "
                        "({}); it did not run",
                        call.method, endpoint_, call.timeout_ms,
                        last_error_.empty() ? "still connecting" : last_error_);
    Finish(id, Timeout(std::move(msg)));
  }
  if (!deadlines_.empty()) ArmDeadlineTimer(deadlines_.begin()->first);
}

void TcpChannel::StartConnecting() {
  if (connecting_ || (conn_ != nullptr && !conn_->closed()) || closed_) return;
  connecting_ = true;
  auto self = shared_from_this();
  asio::co_spawn(
      strand_, [self]() { return self->ConnectLoop(); },
      asio::bind_executor(strand_, [self](std::exception_ptr e) {
        if (!e) return;
        spdlog::error("net: connect loop for {} failed with an exception", self->endpoint_);
        self->connecting_ = false;
      }));
}

asio::awaitable<void> TcpChannel::ConnectLoop() {
  auto self = shared_from_this();
  while (!closed_) {
    Status s = co_await TryConnect();
    if (closed_ || s.ok()) break;
    last_error_ = s.message();
    spdlog::debug("net: {}", last_error_);
    if (connect_refused_) {
      // Nobody listens there (the node is down or restarting): fail the
      // waiting calls now rather than at their deadlines, so callers retry
      // or move on (e.g. to a newer layout) at once, as gRPC's fail-fast.
      auto waiting = std::move(waiting_);
      waiting_.clear();
      for (uint64_t id : waiting) {
        auto it = pending_.find(id);
        if (it == pending_.end() || it->second.sent) continue;
        Finish(id, Unavailable(fmt::format("call to '{}' on {}: {}; it did not run",
                                           it->second.method, endpoint_, last_error_)));
      }
    }
    if (unsent_ == 0) break;  // nobody waits; the next call starts over
    const int64_t cap = backoff_.count();
    std::uniform_int_distribution<int64_t> pick(cap / 2, cap);
    backoff_timer_.expires_after(std::chrono::milliseconds(pick(jitter_)));
    backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
    co_await backoff_timer_.async_wait(kNoThrow);
  }
  connecting_ = false;
}

asio::awaitable<Status> TcpChannel::TryConnect() {
  std::vector<tcp::endpoint> endpoints;
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(host_, ec);
  if (!ec) {
    endpoints.emplace_back(address, port_);
  } else {
    auto [rec, results] = co_await resolver_.async_resolve(host_, std::to_string(port_), kNoThrow);
    if (closed_) co_return Cancelled("channel closed");
    if (rec || results.empty()) {
      co_return Unavailable(
          fmt::format("cannot resolve {}: {}", endpoint_, rec ? rec.message() : "no addresses"));
    }
    for (const auto& r : results) endpoints.push_back(r.endpoint());
  }
  const uint64_t attempt = ++connect_attempt_;
  connect_timed_out_ = false;
  connect_refused_ = false;
  connecting_socket_.emplace(strand_);
  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait([self = shared_from_this(), attempt](boost::system::error_code tec) {
    if (tec || self->connect_attempt_ != attempt || !self->connecting_socket_) return;
    self->connect_timed_out_ = true;
    boost::system::error_code ignored;
    self->connecting_socket_->close(ignored);
  });
  auto [cec, ep] = co_await asio::async_connect(*connecting_socket_, endpoints, kNoThrow);
  connect_timer_.cancel();
  tcp::socket socket = std::move(*connecting_socket_);
  connecting_socket_.reset();
  if (closed_) co_return Cancelled("channel closed");
  if (cec) {
    if (connect_timed_out_) {
      co_return Unavailable(fmt::format("connecting to {} timed out after {} ms", endpoint_,
                                        options_.connect_timeout.count()));
    }
    connect_refused_ = cec == asio::error::connection_refused;
    co_return Unavailable(fmt::format("cannot connect to {}: {}", endpoint_, cec.message()));
  }
  OnConnected(std::move(socket));
  co_return Status::OK();
}

void TcpChannel::OnConnected(tcp::socket socket) {
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  backoff_ = options_.reconnect_backoff_min;
  last_error_.clear();
  spdlog::debug("net: connected to {}", endpoint_);
  conn_ = std::make_shared<ClientConnection>(core_, strand_, std::move(socket), endpoint_,
                                             options_.max_queued_bytes_per_connection,
                                             shared_from_this());
  conn_->Start();
  std::vector<std::pair<uint64_t, Status>> failed;
  for (uint64_t id : waiting_) {
    auto it = pending_.find(id);
    if (it == pending_.end() || it->second.sent) continue;  // timed out meanwhile
    Status s = SendCall(id, it->second);
    if (s.ok()) {
      --unsent_;
    } else {
      failed.emplace_back(id, std::move(s));
    }
  }
  waiting_.clear();
  for (auto& [id, s] : failed) Finish(id, std::move(s));
}

void TcpChannel::OnConnectionLost(ClientConnection* conn, const Status& why) {
  if (conn_.get() != conn) return;
  conn_.reset();
  if (closed_) return;
  last_error_ = why.message();
  std::vector<uint64_t> lost;
  for (const auto& [id, call] : pending_) {
    if (call.sent) lost.push_back(id);
  }
  for (uint64_t id : lost) {
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;
    std::string msg = fmt::format(
        "connection to {} lost with the call to '{}' in flight; it may or may not have run ({})",
        endpoint_, it->second.method, why.message());
    Finish(id, Unavailable(std::move(msg)));
  }
  if (unsent_ > 0) StartConnecting();
}

void TcpChannel::MaybeRetire() {
  if (released_ && pending_.empty() && !closed_) {
    Close(Cancelled("channel to " + endpoint_ + " released by its owner"));
  }
}

void TcpChannel::Release() {
  auto self = shared_from_this();
  core_->Post(strand_, [self] {
    self->released_ = true;
    self->MaybeRetire();
  });
}

void TcpChannel::Close(const Status& why) {
  if (closed_) return;
  closed_ = true;
  deadline_timer_.cancel();
  backoff_timer_.cancel();
  connect_timer_.cancel();
  resolver_.cancel();
  boost::system::error_code ignored;
  if (connecting_socket_) connecting_socket_->close(ignored);
  auto pending = std::move(pending_);
  pending_.clear();
  deadlines_.clear();
  waiting_.clear();
  unsent_ = 0;
  if (conn_ != nullptr) {
    auto conn = std::move(conn_);
    conn->Close(why);
  }
  for (auto& [id, call] : pending) RunCallback(call.done, why);
}

void TcpChannel::CloseForShutdown() {
  auto self = shared_from_this();
  asio::post(strand_, [self] {
    self->Close(Cancelled("call to " + self->endpoint_ + " cancelled: the transport shut down"));
  });
}

ClientConnection::ClientConnection(std::shared_ptr<IoCore> core, Strand strand, tcp::socket socket,
                                   std::string peer, size_t max_queued_bytes,
                                   std::shared_ptr<TcpChannel> channel)
    : FramedConnection(std::move(core), std::move(strand), std::move(socket), std::move(peer),
                       max_queued_bytes,
                       /*pause_reads_when_full=*/false),
      channel_(std::move(channel)) {}

void ClientConnection::OnFrame(proto::Frame frame) {
  if (frame.kind() != proto::Frame::RESPONSE) {
    Status s = Malformed(fmt::format("{} sent a frame of kind {} to a client; closing connection",
                                     peer(), static_cast<int>(frame.kind())));
    spdlog::error("net: {}", s.message());
    Close(s);
    return;
  }
  channel_->OnResponse(std::move(frame));
}

void ClientConnection::OnClosed(const Status& why) {
  auto channel = std::move(channel_);
  if (channel) channel->OnConnectionLost(this, why);
}

}  // namespace tally::net::internal
