#include "tcp_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

#include "endpoint.h"

namespace tally::net::internal {
namespace {

using tcp = asio::ip::tcp;

std::string ToEndpointString(const tcp::endpoint& ep) {
  return FormatEndpoint(ep.address().to_string(), ep.port());
}

// Shared by a Responder and its copies: makes the first call win. Holds
// only a weak reference: a Responder may outlive the connection and even the
// transport, and must then neither keep nor touch Asio objects.
struct ReplyState {
  ReplyState(std::weak_ptr<ServerConnection> c, uint64_t id) : conn(std::move(c)), request_id(id) {}
  std::weak_ptr<ServerConnection> conn;
  uint64_t request_id;
  std::atomic<bool> used{false};
};

}  // namespace

Result<std::shared_ptr<TcpServer>> TcpServer::Create(std::shared_ptr<IoCore> core,
                                                     const TcpOptions& options,
                                                     const std::string& endpoint,
                                                     const ServiceRegistry* services) {
  auto hp = ParseEndpoint(endpoint);
  if (!hp.ok()) return hp.status();
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(hp->host, ec);
  if (ec) {
    tcp::resolver resolver(core->io());
    auto results = resolver.resolve(hp->host, std::to_string(hp->port), ec);
    if (ec || results.empty()) {
      return InvalidArgument(fmt::format("cannot resolve listen endpoint '{}': {}", endpoint,
                                         ec ? ec.message() : "no addresses"));
    }
    address = results.begin()->endpoint().address();
  }
  auto server = std::make_shared<TcpServer>(std::move(core), options, services);
  tcp::endpoint ep(address, hp->port);
  auto& acc = server->acceptor_;
  auto fail = [&](const char* what) {
    return IoError(fmt::format("cannot listen on {}: {} failed: {}", endpoint, what, ec.message()));
  };
  if (acc.open(ep.protocol(), ec)) return fail("open");
  if (acc.set_option(tcp::acceptor::reuse_address(true), ec)) return fail("SO_REUSEADDR");
  if (acc.bind(ep, ec)) return fail("bind");
  if (acc.listen(asio::socket_base::max_listen_connections, ec)) return fail("listen");
  tcp::endpoint bound = acc.local_endpoint(ec);
  if (ec) return fail("getsockname");
  server->endpoint_ = ToEndpointString(bound);
  return server;
}

TcpServer::TcpServer(std::shared_ptr<IoCore> core, const TcpOptions& options,
                     const ServiceRegistry* services)
    : core_(std::move(core)),
      options_(options),
      services_(services),
      strand_(asio::make_strand(core_->io())),
      acceptor_(strand_) {}

void TcpServer::Start() {
  auto self = shared_from_this();
  // Through the gate: a coroutine spawned after shutdown drained would never
  // run and would be destroyed inside ~io_context.
  core_->Post(strand_, [self] {
    asio::co_spawn(
        self->strand_, [self]() { return self->AcceptLoop(); },
        [self](std::exception_ptr e) {
          if (e) spdlog::error("net: accept loop of {} died of an exception", self->endpoint_);
        });
  });
}

asio::awaitable<void> TcpServer::AcceptLoop() {
  auto self = shared_from_this();
  while (!closing_) {
    Strand conn_strand = asio::make_strand(core_->io());
    auto [ec, socket] =
        co_await acceptor_.async_accept(conn_strand, asio::as_tuple(asio::use_awaitable));
    if (closing_) break;
    if (ec) {
      if (ec == asio::error::operation_aborted) break;
      // Typically EMFILE: keep serving the connections we have.
      spdlog::warn("net: accept on {} failed: {}", endpoint_, ec.message());
      asio::steady_timer pause(strand_, std::chrono::milliseconds(10));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    boost::system::error_code opt_ec;
    socket.set_option(tcp::no_delay(true), opt_ec);
    tcp::endpoint remote = socket.remote_endpoint(opt_ec);
    std::string peer = opt_ec ? std::string("unknown peer") : ToEndpointString(remote);
    auto conn = std::make_shared<ServerConnection>(conn_strand, std::move(socket), peer, self);
    {
      std::lock_guard<std::mutex> lock(mu_);
      conns_.insert(conn);
    }
    spdlog::debug("net: {} accepted a connection from {}", endpoint_, peer);
    conn->Start();
  }
}

void TcpServer::CloseOnStrand() {
  if (closing_) return;
  closing_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  std::vector<std::shared_ptr<ServerConnection>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    acceptor_closed_ = true;
    conns.assign(conns_.begin(), conns_.end());
  }
  cv_.notify_all();
  for (auto& conn : conns) {
    asio::post(conn->strand(), [conn, ep = endpoint_] {
      conn->Close(Unavailable("server " + ep + " is shutting down"));
    });
  }
}

void TcpServer::Stop() {
  auto self = shared_from_this();
  if (!core_->Post(strand_, [self] { self->CloseOnStrand(); })) {
    return;  // the transport shut down, which closed this server already
  }
  if (core_->InIoThread()) return;  // waiting here could block the thread we need
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return acceptor_closed_ && conns_.empty(); });
}

void TcpServer::CloseForShutdown() {
  auto self = shared_from_this();
  asio::post(strand_, [self] { self->CloseOnStrand(); });
}

void TcpServer::Remove(const std::shared_ptr<ServerConnection>& conn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns_.erase(conn);
  }
  cv_.notify_all();
}

ServerConnection::ServerConnection(Strand strand, asio::ip::tcp::socket socket, std::string peer,
                                   std::shared_ptr<TcpServer> server)
    : FramedConnection(server->core(), std::move(strand), std::move(socket), std::move(peer),
                       server->options().max_queued_bytes_per_connection,
                       /*pause_reads_when_full=*/true),
      server_(std::move(server)),
      server_endpoint_(server_->endpoint()),
      max_inflight_(server_->options().max_inflight_per_connection) {}

void ServerConnection::OnFrame(proto::Frame frame) {
  if (frame.kind() != proto::Frame::REQUEST) {
    Status s =
        Malformed(fmt::format("server {} got a frame of kind {} from {}; only REQUEST "
                              "frames may be sent to a server; closing connection",
                              server_endpoint_, static_cast<int>(frame.kind()), peer()));
    spdlog::error("net: {}", s.message());
    Close(s);
    return;
  }
  const uint64_t id = frame.request_id();
  if (inflight_ >= max_inflight_) {
    SendResponse(id,
                 Overloaded(fmt::format("{} already runs {} requests from this connection; "
                                        "back off and retry",
                                        server_endpoint_, inflight_)),
                 {});
    return;
  }
  const Handler* handler = server_->services()->Find(frame.method());
  if (handler == nullptr) {
    SendResponse(id,
                 UnknownMethod(fmt::format("method '{}' is not served at {}", frame.method(),
                                           server_endpoint_)),
                 {});
    return;
  }
  ++inflight_;
  auto state = std::make_shared<ReplyState>(
      std::static_pointer_cast<ServerConnection>(shared_from_this()), id);
  Responder respond = [state](Status status, std::string payload) {
    if (state->used.exchange(true)) return;  // exactly once; later calls ignored
    auto conn = state->conn.lock();
    if (!conn) return;  // connection gone: nobody to answer
    // The locked connection keeps its strand and the io_context alive here.
    const Strand strand = conn->strand();
    if (strand.running_in_this_thread()) {
      conn->Reply(state->request_id, status, std::move(payload));
      return;
    }
    IoCore* core = conn->core();
    core->Post(strand, [conn = std::move(conn), id = state->request_id, status = std::move(status),
                        payload = std::move(payload)]() mutable {
      conn->Reply(id, status, std::move(payload));
    });
  };
  try {
    (*handler)(std::move(*frame.mutable_payload()), respond);
  } catch (const std::exception& e) {
    respond(Internal(fmt::format("handler of '{}' threw: {}", frame.method(), e.what())), {});
  }
}

void ServerConnection::Reply(uint64_t request_id, const Status& status, std::string payload) {
  if (closed()) return;
  if (inflight_ > 0) --inflight_;
  SendResponse(request_id, status, std::move(payload));
}

void ServerConnection::SendResponse(uint64_t request_id, const Status& status,
                                    std::string payload) {
  proto::Frame frame;
  frame.set_kind(proto::Frame::RESPONSE);
  frame.set_request_id(request_id);
  if (status.ok()) {
    frame.set_payload(std::move(payload));
  } else {
    *frame.mutable_error() = ToProto(status);
  }
  Status s = Send(frame);
  if (s.code() == Code::kTooLarge) {
    frame.clear_payload();
    *frame.mutable_error() = ToProto(s.WithContext("response"));
    s = Send(frame);
  }
  if (!s.ok()) spdlog::debug("net: dropping response to {}: {}", peer(), s.ToString());
}

void ServerConnection::OnClosed(const Status& why) {
  spdlog::debug("net: {} closed connection from {}: {}", server_endpoint_, peer(), why.ToString());
  auto server = std::move(server_);
  server->Remove(std::static_pointer_cast<ServerConnection>(shared_from_this()));
}

}  // namespace tally::net::internal
