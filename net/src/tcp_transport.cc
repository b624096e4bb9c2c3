#include "tally/net/tcp_transport.h"

#include "io_core.h"
#include "tcp_channel.h"
#include "tcp_server.h"

namespace tally::net {
namespace {

// The owner's handle on a channel: dropping it lets the channel close once
// its pending calls are done.
class TcpChannelHandle final : public Channel {
 public:
  explicit TcpChannelHandle(std::shared_ptr<internal::TcpChannel> impl) : impl_(std::move(impl)) {}
  ~TcpChannelHandle() override { impl_->Release(); }

  void Call(std::string method, std::string payload, CallOptions options,
            CallCallback done) override {
    impl_->Call(std::move(method), std::move(payload), options, std::move(done));
  }
  const std::string& endpoint() const override { return impl_->endpoint(); }

 private:
  std::shared_ptr<internal::TcpChannel> impl_;
};

class TcpServerHandle final : public Server {
 public:
  explicit TcpServerHandle(std::shared_ptr<internal::TcpServer> impl) : impl_(std::move(impl)) {}
  ~TcpServerHandle() override { impl_->Stop(); }

  std::string endpoint() const override { return impl_->endpoint(); }

 private:
  std::shared_ptr<internal::TcpServer> impl_;
};

}  // namespace

TcpTransport::TcpTransport(TcpOptions options)
    : options_(options), core_(std::make_shared<internal::IoCore>(options.io_threads)) {}

TcpTransport::~TcpTransport() { Shutdown(); }

void TcpTransport::Shutdown() { core_->Shutdown(); }

std::shared_ptr<Channel> TcpTransport::Connect(const std::string& endpoint) {
  auto impl = std::make_shared<internal::TcpChannel>(core_, endpoint, options_);
  // If the transport is already shut down the channel is not tracked; its
  // calls are then refused by the core and fail with Cancelled.
  core_->Track(impl);
  return std::make_shared<TcpChannelHandle>(std::move(impl));
}

Result<std::unique_ptr<Server>> TcpTransport::Listen(const std::string& endpoint,
                                                     const ServiceRegistry* services) {
  if (services == nullptr) return InvalidArgument("Listen on " + endpoint + " needs services");
  auto server = internal::TcpServer::Create(core_, options_, endpoint, services);
  if (!server.ok()) return server.status();
  if (!core_->Track(*server)) {
    return Unavailable("cannot listen on " + endpoint + ": the transport is shut down");
  }
  (*server)->Start();
  return std::unique_ptr<Server>(std::make_unique<TcpServerHandle>(std::move(*server)));
}

}  // namespace tally::net
