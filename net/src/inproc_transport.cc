#include "tally/net/inproc_transport.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <exception>
#include <unordered_map>

#include "tally/net/frame.h"

namespace tally::net {
namespace internal {
namespace {

// One Listen: the registry plus the calls handed to it and not yet answered.
struct ServerEntry {
  std::string endpoint;
  const ServiceRegistry* services = nullptr;
  // Held while a handler runs, so that stopping the server waits for it.
  // Recursive: a handler may stop its own server.
  std::recursive_mutex run_mu;
  bool alive = true;  // GUARDED_BY(run_mu)
  std::mutex inflight_mu;
  std::unordered_map<uint64_t, std::string> inflight;  // id -> client  GUARDED_BY(inflight_mu)
};

}  // namespace

// Shared by the network, its transports, channels, servers and every
// scheduled task, so that any of them may outlive the others.
class InprocState : public std::enable_shared_from_this<InprocState> {
 public:
  explicit InprocState(Scheduler* scheduler) : scheduler_(scheduler) {}

  void SetPolicy(LinkPolicy policy) {
    auto p = policy ? std::make_shared<const LinkPolicy>(std::move(policy)) : nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    policy_ = std::move(p);
  }

  // Fails pending calls with Cancelled; no more work is scheduled.
  void Shutdown() {
    std::unordered_map<uint64_t, CallCallback> calls;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      scheduler_ = nullptr;
      calls.swap(calls_);
      servers_.clear();
    }
    for (auto& [id, done] : calls) {
      done(Cancelled("in-process network shut down with the call pending"));
    }
  }

  Result<std::shared_ptr<ServerEntry>> Register(std::string endpoint,
                                                const ServiceRegistry* services) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Unavailable("cannot listen on " + endpoint + ": network shut down");
    if (endpoint.ends_with(":0")) {
      endpoint.resize(endpoint.size() - 1);
      endpoint += std::to_string(next_port_++);
    }
    if (servers_.contains(endpoint)) {
      return FailedPrecondition("endpoint " + endpoint + " already has a server; stop it first");
    }
    auto entry = std::make_shared<ServerEntry>();
    entry->endpoint = endpoint;
    entry->services = services;
    servers_[endpoint] = entry;
    return entry;
  }

  // Stops serving: waits for a running handler, then answers calls still in
  // flight with Unavailable (as a closed TCP connection would).
  void Unregister(const std::shared_ptr<ServerEntry>& entry) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = servers_.find(entry->endpoint);
      if (it != servers_.end() && it->second == entry) servers_.erase(it);
    }
    {
      std::lock_guard<std::recursive_mutex> run(entry->run_mu);
      entry->alive = false;
    }
    std::unordered_map<uint64_t, std::string> inflight;
    {
      std::lock_guard<std::mutex> lock(entry->inflight_mu);
      inflight.swap(entry->inflight);
    }
    for (auto& [id, client] : inflight) {
      SendResponse(entry->endpoint, client, id,
                   Unavailable("server " + entry->endpoint +
                               " stopped with the call in flight; it may or may not have run"),
                   {});
    }
  }

  void StartCall(const std::string& from, const std::string& to, std::string method,
                 std::string payload, CallOptions options, CallCallback done) {
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!closed_) {
        id = next_id_++;
        calls_.emplace(id, std::move(done));
      }
    }
    if (id == 0) {  // the network is shut down; `done` was not moved
      done(Cancelled("call to '" + method + "' on " + to + " refused: network shut down"));
      return;
    }
    proto::Frame frame;
    frame.set_kind(proto::Frame::REQUEST);
    frame.set_request_id(id);
    frame.set_method(method);
    frame.set_payload(std::move(payload));
    const int64_t timeout_ms = std::max<int64_t>(options.timeout.count(), 0);
    frame.set_timeout_ms(static_cast<uint32_t>(std::min<int64_t>(timeout_ms, UINT32_MAX)));
    std::string wire;
    Status encoded = AppendFrame(frame, &wire);
    auto self = shared_from_this();
    if (!encoded.ok()) {
      Schedule(0, [self, id, encoded] { self->Complete(id, encoded); });
      return;
    }
    Schedule(timeout_ms * 1'000'000, [self, id, method, to, timeout_ms] {
      self->Complete(id, Timeout(fmt::format(
                             "call to '{}' on {} timed out after {} ms; it may or may not have run",
                             method, to, timeout_ms)));
    });
    LinkAction action = Decide(from, to);
    if (action.drop) return;
    Schedule(action.delay_nanos, [self, from, to, wire = std::move(wire)]() mutable {
      self->DeliverRequest(from, to, std::move(wire));
    });
  }

 private:
  struct ReplyState {
    std::weak_ptr<InprocState> net;
    std::weak_ptr<ServerEntry> entry;
    uint64_t id = 0;
    std::string client;
    std::string server;
    std::atomic<bool> used{false};
  };

  // Schedules unless shut down. Calls the scheduler under mu_ so Shutdown
  // can drop it safely; Scheduler::Schedule never runs the task inline.
  void Schedule(int64_t delay_nanos, std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    scheduler_->Schedule(delay_nanos, std::move(fn));
  }

  LinkAction Decide(std::string_view from, std::string_view to) {
    std::shared_ptr<const LinkPolicy> policy;
    {
      std::lock_guard<std::mutex> lock(mu_);
      policy = policy_;
    }
    return policy ? (*policy)(from, to) : LinkAction::Deliver();
  }

  void DeliverRequest(const std::string& from, const std::string& to, std::string wire) {
    FrameDecoder decoder;
    decoder.Feed(wire);
    auto next = decoder.Next();
    if (!next.ok() || !next->has_value()) {
      // Like a TCP connection closed on a bad frame; the call times out.
      spdlog::error("net: in-process request from {} to {} does not decode: {}", from, to,
                    next.ok() ? "incomplete frame" : next.status().ToString());
      return;
    }
    proto::Frame frame = std::move(**next);
    const uint64_t id = frame.request_id();
    std::shared_ptr<ServerEntry> entry;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = servers_.find(to);
      if (it != servers_.end()) entry = it->second;
    }
    if (entry == nullptr) {
      SendResponse(to, from, id, Unavailable("no server is listening at " + to), {});
      return;
    }
    std::lock_guard<std::recursive_mutex> run(entry->run_mu);
    if (!entry->alive) {
      SendResponse(to, from, id, Unavailable("no server is listening at " + to), {});
      return;
    }
    const Handler* handler = entry->services->Find(frame.method());
    if (handler == nullptr) {
      SendResponse(
          to, from, id,
          UnknownMethod(fmt::format("method '{}' is not served at {}", frame.method(), to)), {});
      return;
    }
    {
      std::lock_guard<std::mutex> lock(entry->inflight_mu);
      entry->inflight.emplace(id, from);
    }
    auto state = std::make_shared<ReplyState>();
    state->net = weak_from_this();
    state->entry = entry;
    state->id = id;
    state->client = from;
    state->server = to;
    Responder respond = [state](Status status, std::string payload) {
      if (state->used.exchange(true)) return;
      auto entry = state->entry.lock();
      if (!entry) return;
      {
        std::lock_guard<std::mutex> lock(entry->inflight_mu);
        // Not in flight: the server stopped and already answered Unavailable.
        if (entry->inflight.erase(state->id) == 0) return;
      }
      if (auto net = state->net.lock()) {
        net->SendResponse(state->server, state->client, state->id, status, std::move(payload));
      }
    };
    try {
      (*handler)(std::move(*frame.mutable_payload()), respond);
    } catch (const std::exception& e) {
      respond(Internal(fmt::format("handler of '{}' threw: {}", frame.method(), e.what())), {});
    }
  }

  void SendResponse(const std::string& server, const std::string& client, uint64_t id,
                    const Status& status, std::string payload) {
    proto::Frame frame;
    frame.set_kind(proto::Frame::RESPONSE);
    frame.set_request_id(id);
    if (status.ok()) {
      frame.set_payload(std::move(payload));
    } else {
      *frame.mutable_error() = ToProto(status);
    }
    std::string wire;
    Status s = AppendFrame(frame, &wire);
    if (!s.ok()) {
      frame.clear_payload();
      *frame.mutable_error() = ToProto(s.WithContext("response"));
      wire.clear();
      if (!AppendFrame(frame, &wire).ok()) return;
    }
    LinkAction action = Decide(server, client);
    if (action.drop) return;
    auto self = shared_from_this();
    Schedule(action.delay_nanos,
             [self, wire = std::move(wire)]() mutable { self->DeliverResponse(std::move(wire)); });
  }

  void DeliverResponse(std::string wire) {
    FrameDecoder decoder;
    decoder.Feed(wire);
    auto next = decoder.Next();
    if (!next.ok() || !next->has_value()) {
      spdlog::error("net: in-process response does not decode");
      return;
    }
    proto::Frame& frame = **next;
    Status s = frame.has_error() ? FromProto(frame.error()) : Status::OK();
    if (s.ok()) {
      Complete(frame.request_id(), std::move(*frame.mutable_payload()));
    } else {
      Complete(frame.request_id(), std::move(s));
    }
  }

  // Runs the call's callback unless it already completed.
  void Complete(uint64_t id, Result<std::string> result) {
    CallCallback done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = calls_.find(id);
      if (it == calls_.end()) return;
      done = std::move(it->second);
      calls_.erase(it);
    }
    done(std::move(result));
  }

  std::mutex mu_;
  Scheduler* scheduler_;                      // GUARDED_BY(mu_); null once closed
  bool closed_ = false;                       // GUARDED_BY(mu_)
  std::shared_ptr<const LinkPolicy> policy_;  // GUARDED_BY(mu_)
  std::unordered_map<std::string, std::shared_ptr<ServerEntry>> servers_;  // GUARDED_BY(mu_)
  std::unordered_map<uint64_t, CallCallback> calls_;                       // GUARDED_BY(mu_)
  uint64_t next_id_ = 1;                                                   // GUARDED_BY(mu_)
  uint64_t next_port_ = 1;                                                 // GUARDED_BY(mu_)
};

namespace {

class InprocChannel final : public Channel {
 public:
  InprocChannel(std::shared_ptr<InprocState> state, std::string from, std::string endpoint)
      : state_(std::move(state)), from_(std::move(from)), endpoint_(std::move(endpoint)) {}

  void Call(std::string method, std::string payload, CallOptions options,
            CallCallback done) override {
    state_->StartCall(from_, endpoint_, std::move(method), std::move(payload), options,
                      std::move(done));
  }
  const std::string& endpoint() const override { return endpoint_; }

 private:
  std::shared_ptr<InprocState> state_;
  std::string from_;
  std::string endpoint_;
};

class InprocServer final : public Server {
 public:
  InprocServer(std::shared_ptr<InprocState> state, std::shared_ptr<ServerEntry> entry)
      : state_(std::move(state)), entry_(std::move(entry)) {}
  ~InprocServer() override { state_->Unregister(entry_); }
  std::string endpoint() const override { return entry_->endpoint; }

 private:
  std::shared_ptr<InprocState> state_;
  std::shared_ptr<ServerEntry> entry_;
};

class InprocTransport final : public Transport {
 public:
  InprocTransport(std::shared_ptr<InprocState> state, std::string local_name)
      : state_(std::move(state)), local_name_(std::move(local_name)) {}

  std::shared_ptr<Channel> Connect(const std::string& endpoint) override {
    return std::make_shared<InprocChannel>(state_, local_name_, endpoint);
  }

  Result<std::unique_ptr<Server>> Listen(const std::string& endpoint,
                                         const ServiceRegistry* services) override {
    if (services == nullptr) return InvalidArgument("Listen on " + endpoint + " needs services");
    auto entry = state_->Register(endpoint, services);
    if (!entry.ok()) return entry.status();
    return std::unique_ptr<Server>(std::make_unique<InprocServer>(state_, std::move(*entry)));
  }

 private:
  std::shared_ptr<InprocState> state_;
  std::string local_name_;
};

}  // namespace
}  // namespace internal

InProcessNetwork::InProcessNetwork(std::shared_ptr<Scheduler> scheduler)
    : scheduler_(std::move(scheduler)),
      state_(std::make_shared<internal::InprocState>(scheduler_.get())) {}

InProcessNetwork::~InProcessNetwork() {
  state_->Shutdown();
  // Tasks still queued in the scheduler hold the state, now inert; dropping
  // the scheduler (when this was its last owner) destroys them.
  scheduler_.reset();
}

std::unique_ptr<Transport> InProcessNetwork::MakeTransport(std::string local_name) {
  return std::make_unique<internal::InprocTransport>(state_, std::move(local_name));
}

void InProcessNetwork::SetLinkPolicy(LinkPolicy policy) { state_->SetPolicy(std::move(policy)); }

}  // namespace tally::net
