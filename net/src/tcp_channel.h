#pragma once

// Client side of the TCP transport. All state of a TcpChannel lives on its
// strand; Call() posts there from any thread. The channel connects lazily,
// keeps one connection, reconnects with jittered exponential backoff, and
// tracks each call's deadline in one ordered set swept by one timer.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "framed_connection.h"
#include "io_core.h"
#include "tally/net/tcp_transport.h"

namespace tally::net::internal {

class ClientConnection;

class TcpChannel : public Closable, public std::enable_shared_from_this<TcpChannel> {
 public:
  TcpChannel(std::shared_ptr<IoCore> core, std::string endpoint, const TcpOptions& options);

  // Channel::Call. Thread-safe.
  void Call(std::string method, std::string payload, CallOptions options, CallCallback done);

  // Call, continued on the strand.
  void StartCall(std::string method, std::string payload, CallOptions options, CallCallback done);

  // The owner dropped its handle: close once no call is pending. Thread-safe.
  void Release();

  // Closes at once; pending calls complete with `why`. On strand.
  void Close(const Status& why);

  void CloseForShutdown() override;

  const std::string& endpoint() const { return endpoint_; }

  // From ClientConnection, on strand.
  void OnResponse(proto::Frame frame);
  void OnConnectionLost(ClientConnection* conn, const Status& why);

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Pending {
    CallCallback done;
    TimePoint deadline;
    std::string method;
    std::string payload;  // kept only until sent
    uint32_t timeout_ms = 0;
    bool sent = false;
  };

  Status SendCall(uint64_t id, Pending& call);
  void StartConnecting();
  asio::awaitable<void> ConnectLoop();
  asio::awaitable<Status> TryConnect();
  void OnConnected(asio::ip::tcp::socket socket);
  void Finish(uint64_t id, Result<std::string> result);
  void ArmDeadlineTimer(TimePoint deadline);
  void OnDeadlineTimer();
  void MaybeRetire();

  std::shared_ptr<IoCore> core_;
  const std::string endpoint_;
  const TcpOptions options_;
  Strand strand_;
  Status endpoint_status_;  // InvalidArgument when endpoint_ does not parse
  std::string host_;
  uint16_t port_ = 0;

  // Everything below is touched only on strand_.
  std::unordered_map<uint64_t, Pending> pending_;
  std::set<std::pair<TimePoint, uint64_t>> deadlines_;
  std::deque<uint64_t> waiting_;  // ids not yet sent, oldest first (may hold stale ids)
  size_t unsent_ = 0;             // pending_ entries with sent == false
  uint64_t next_id_ = 1;
  std::shared_ptr<ClientConnection> conn_;
  bool connecting_ = false;
  bool closed_ = false;
  bool released_ = false;
  std::string last_error_;
  asio::steady_timer deadline_timer_;
  TimePoint armed_for_ = TimePoint::max();
  asio::steady_timer backoff_timer_;
  asio::steady_timer connect_timer_;
  asio::ip::tcp::resolver resolver_;
  std::optional<asio::ip::tcp::socket> connecting_socket_;
  uint64_t connect_attempt_ = 0;
  bool connect_timed_out_ = false;
  bool connect_refused_ = false;  // the last attempt was actively refused
  std::chrono::milliseconds backoff_;
  std::minstd_rand jitter_;
};

class ClientConnection : public FramedConnection {
 public:
  ClientConnection(std::shared_ptr<IoCore> core, Strand strand, asio::ip::tcp::socket socket,
                   std::string peer, size_t max_queued_bytes, std::shared_ptr<TcpChannel> channel);

 protected:
  void OnFrame(proto::Frame frame) override;
  void OnClosed(const Status& why) override;

 private:
  std::shared_ptr<TcpChannel> channel_;  // reset on close (breaks the cycle)
};

}  // namespace tally::net::internal
