#pragma once

// The RPC seam. A Transport connects to endpoints and serves methods; the
// real one (tcp_transport.h) speaks length-prefixed protobuf Frames over
// Boost.Asio coroutines, the in-process one (inproc_transport.h) delivers
// the same Frames through queues so that a whole cluster can run in one
// process. Code above net/ sees only these interfaces.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "tally/base/result.h"
#include "tally/base/status.h"

namespace tally::net {

// Completes one server-side call. Call exactly once, from any thread. A
// non-OK status travels back as the response's Error; the payload is then
// ignored.
using Responder = std::function<void(Status status, std::string payload)>;

// Serves one method. Runs on a transport thread: must not block (hand
// blocking work to another thread and respond from there).
using Handler = std::function<void(std::string payload, Responder respond)>;

// Method name -> handler. Populated before Listen; read-only afterwards.
class ServiceRegistry {
 public:
  void Register(std::string method, Handler handler) {
    handlers_[std::move(method)] = std::move(handler);
  }
  const Handler* Find(std::string_view method) const {
    auto it = handlers_.find(std::string(method));
    return it == handlers_.end() ? nullptr : &it->second;
  }

 private:
  std::unordered_map<std::string, Handler> handlers_;
};

struct CallOptions {
  // Deadline for the whole call, from when it is issued. On expiry the
  // callback gets Timeout; a late response is dropped.
  std::chrono::milliseconds timeout{5000};
};

using CallCallback = std::function<void(Result<std::string> response_payload)>;

// A client's view of one remote endpoint. Many calls may be in flight at
// once; responses may arrive in any order. Reconnects by itself (with
// backoff) after the connection breaks; calls issued while disconnected wait
// for the connection until their deadline. Thread-safe.
class Channel {
 public:
  virtual ~Channel() = default;

  // Issues `method(payload)`. `done` runs exactly once, on a transport
  // thread, with the response payload or an error: Timeout, Unavailable
  // (connection lost with the call in flight: it may or may not have run),
  // Overloaded (too many calls queued), or the server's error.
  virtual void Call(std::string method, std::string payload, CallOptions options,
                    CallCallback done) = 0;

  // The endpoint this channel talks to.
  virtual const std::string& endpoint() const = 0;
};

// A running server. Destroying it stops accepting, closes connections and
// waits for its threads; in-flight responders become no-ops.
class Server {
 public:
  virtual ~Server() = default;
  // The bound endpoint ("127.0.0.1:40123"), with the real port when 0 was asked.
  virtual std::string endpoint() const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // A channel to `endpoint` ("host:port" for TCP). Never fails: connection
  // errors surface on calls.
  virtual std::shared_ptr<Channel> Connect(const std::string& endpoint) = 0;

  // Serves `services` at `endpoint` ("127.0.0.1:0" picks a free port).
  // `services` must outlive the returned server.
  virtual Result<std::unique_ptr<Server>> Listen(const std::string& endpoint,
                                                 const ServiceRegistry* services) = 0;
};

// Limits shared by every transport.
inline constexpr uint32_t kMaxFrameBytes = 64u << 20;  // one frame, serialized

}  // namespace tally::net
