#include "tally/net/caching_transport.h"

namespace tally::net {

std::shared_ptr<Channel> CachingTransport::Connect(const std::string& endpoint) {
  std::lock_guard lock(mu_);
  std::shared_ptr<Channel>& ch = channels_[endpoint];
  if (ch == nullptr) ch = inner_->Connect(endpoint);
  return ch;
}

}  // namespace tally::net
