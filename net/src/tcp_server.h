#pragma once

// Server side of the TCP transport: an acceptor coroutine on the server's
// strand and one ServerConnection (on its own strand) per accepted socket,
// which dispatches requests to the ServiceRegistry.

#include <boost/asio/ip/tcp.hpp>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "framed_connection.h"
#include "io_core.h"
#include "tally/net/tcp_transport.h"

namespace tally::net::internal {

class ServerConnection;

class TcpServer : public Closable, public std::enable_shared_from_this<TcpServer> {
 public:
  // Binds and listens on `endpoint`; see TcpTransport::Listen for errors.
  static Result<std::shared_ptr<TcpServer>> Create(std::shared_ptr<IoCore> core,
                                                   const TcpOptions& options,
                                                   const std::string& endpoint,
                                                   const ServiceRegistry* services);

  TcpServer(std::shared_ptr<IoCore> core, const TcpOptions& options,
            const ServiceRegistry* services);

  // Spawns the accept loop. Call once.
  void Start();

  // Closes the acceptor and every connection; waits for that unless called
  // on an io thread. Thread-safe; idempotent.
  void Stop();

  void CloseForShutdown() override;

  const std::string& endpoint() const { return endpoint_; }
  const ServiceRegistry* services() const { return services_; }
  const TcpOptions& options() const { return options_; }
  const std::shared_ptr<IoCore>& core() const { return core_; }

  // A connection finished closing. Thread-safe.
  void Remove(const std::shared_ptr<ServerConnection>& conn);

 private:
  asio::awaitable<void> AcceptLoop();
  void CloseOnStrand();  // on strand_

  std::shared_ptr<IoCore> core_;
  TcpOptions options_;
  const ServiceRegistry* services_;
  Strand strand_;
  asio::ip::tcp::acceptor acceptor_;
  std::string endpoint_;
  bool closing_ = false;  // on strand_

  std::mutex mu_;
  std::condition_variable cv_;
  bool acceptor_closed_ = false;                                 // GUARDED_BY(mu_)
  std::unordered_set<std::shared_ptr<ServerConnection>> conns_;  // GUARDED_BY(mu_)
};

// One accepted connection. Requests are dispatched on its strand; the
// Responder posts back to it from any thread and is a no-op once closed.
class ServerConnection : public FramedConnection {
 public:
  ServerConnection(Strand strand, asio::ip::tcp::socket socket, std::string peer,
                   std::shared_ptr<TcpServer> server);

  // Sends the response for `request_id`. On strand. No-op when closed.
  void Reply(uint64_t request_id, const Status& status, std::string payload);

 protected:
  void OnFrame(proto::Frame frame) override;
  void OnClosed(const Status& why) override;

 private:
  void SendResponse(uint64_t request_id, const Status& status, std::string payload);

  std::shared_ptr<TcpServer> server_;  // reset on close (breaks the cycle)
  std::string server_endpoint_;
  uint32_t max_inflight_;
  uint32_t inflight_ = 0;
};

}  // namespace tally::net::internal
