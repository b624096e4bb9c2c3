#pragma once

// The production transport: length-prefixed Frames (frame.h) over TCP, on
// Boost.Asio C++20 coroutines. One io_context, run by `io_threads` threads,
// serves every channel and server created from one TcpTransport; each
// connection's state lives on its own strand.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tally/net/transport.h"

namespace tally::net {

namespace internal {
class IoCore;
}

struct TcpOptions {
  // Threads running the io_context. Handlers and callbacks run on them.
  int io_threads = 1;
  // Requests a server connection runs at once; further requests on that
  // connection are answered Overloaded until responses go out.
  uint32_t max_inflight_per_connection = 4096;
  // Encoded bytes waiting to be written on one connection. A server stops
  // reading from a peer above it (backpressure); a client answers new calls
  // Overloaded. Must exceed kMaxFrameBytes so one largest frame fits.
  size_t max_queued_bytes_per_connection = size_t{128} << 20;
  // Calls a channel holds while it has no connection; beyond it, Overloaded.
  size_t max_waiting_calls = 65536;
  // Reconnect backoff: starts at min, doubles per failed attempt up to max,
  // each delay drawn uniformly from [delay/2, delay] (jitter).
  std::chrono::milliseconds reconnect_backoff_min{5};
  std::chrono::milliseconds reconnect_backoff_max{1000};
  // One connection attempt gives up after this long.
  std::chrono::milliseconds connect_timeout{3000};
};

// Thread-safe. Channels and servers it returns may outlive it: after
// Shutdown their calls fail with Cancelled at once (on the caller's thread,
// as no transport thread remains).
class TcpTransport final : public Transport {
 public:
  // Starts options.io_threads threads. Never fails.
  explicit TcpTransport(TcpOptions options = {});
  // Shutdown().
  ~TcpTransport() override;

  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  // Stops everything and joins the threads: servers stop accepting and
  // close their connections, pending calls complete with Cancelled, new
  // calls fail with Cancelled and Listen with Unavailable. Idempotent.
  // Must not be called from a transport thread (a handler or callback).
  void Shutdown();

  // See Transport::Connect. `endpoint` is "host:port" ("[::1]:7000" for
  // IPv6); a bad endpoint surfaces as InvalidArgument on each call. The
  // channel connects on its first call. Dropping the last reference closes
  // the channel once its pending calls have completed.
  std::shared_ptr<Channel> Connect(const std::string& endpoint) override;

  // See Transport::Listen. Binds with SO_REUSEADDR, so a restarted server
  // can take the port of a stopped one. Errors: InvalidArgument (bad
  // endpoint), IoError (bind/listen failed, e.g. port in use), Unavailable
  // (transport shut down). Destroying the server closes its connections
  // and returns once no handler of `services` is running or will run,
  // unless it is destroyed on a transport thread, where it returns at once.
  Result<std::unique_ptr<Server>> Listen(const std::string& endpoint,
                                         const ServiceRegistry* services) override;

  const TcpOptions& options() const { return options_; }

 private:
  TcpOptions options_;
  std::shared_ptr<internal::IoCore> core_;
};

}  // namespace tally::net
