#pragma once

// A Transport that opens one channel per endpoint and hands it out again on
// every later Connect to that endpoint. For callers that talk to the same
// peers over and over (a failure detector pinging every 50 ms): without it,
// each round costs a TCP connect, accept and close on both nodes. A cached
// channel reconnects by itself after its peer restarts (see
// TcpOptions::reconnect_backoff_*).
//
// Calls share the cached channel, so a large transfer on it delays the
// small calls queued behind it: keep bulk traffic on channels of its own.

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "tally/net/transport.h"

namespace tally::net {

class CachingTransport final : public Transport {
 public:
  // `inner` must outlive this transport.
  explicit CachingTransport(Transport* inner) : inner_(inner) {}

  std::shared_ptr<Channel> Connect(const std::string& endpoint) override;
  // Not cached: servers are the inner transport's.
  Result<std::unique_ptr<Server>> Listen(const std::string& endpoint,
                                         const ServiceRegistry* services) override {
    return inner_->Listen(endpoint, services);
  }

 private:
  Transport* const inner_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Channel>> channels_;  // GUARDED_BY(mu_)
};

}  // namespace tally::net
