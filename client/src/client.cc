// The client runtime: layout cache and refresh, channels, reads (with chain
// completion and hole filling, chain.cc), tails and stream maps. Appends
// are in client_append.cc.

#include "tally/client/client.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <map>

#include "client_impl.h"
#include "tally/base/address_map.h"
#include "tally/net/frame.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client {

namespace seqpb = ::tally::proto::seq;

namespace {

void SetStream(const StreamId& id, proto::StreamId* out) {
  out->set_hi(id.hi);
  out->set_lo(id.lo);
}

// Trimmed when the stripe tail `unit` (stripe `k` of `n`) answered `req`
// with a trim mark above the stripe's first address in the request: a range
// read reaching below the mark fails as a whole rather than coming back
// shortened.
Status CheckRangeAboveTrimMark(const std::string& unit, const proto::ReadRangeResponse& resp,
                               const proto::ReadRangeRequest& req, size_t k, size_t n) {
  const uint64_t trim_mark = resp.trim_mark();
  const uint64_t from = req.from();
  const uint64_t to = req.to();
  if (trim_mark <= from) return Status::OK();
  const uint64_t first = from + (k + n - from % n) % n;
  if (first >= to || first >= trim_mark) return Status::OK();
  return Trimmed("address " + std::to_string(first) + " is below the trim mark " +
                 std::to_string(trim_mark) + " of " + unit +
                 "; its data is gone: read from the trim mark on");
}

}  // namespace

// --- Impl: environment, layout, channels ---

Client::Impl::Impl(ClientOptions o) : options(std::move(o)) {
  Env def = DefaultEnv();
  clock = options.env.clock != nullptr ? options.env.clock : def.clock;
  random = options.env.random != nullptr ? options.env.random : def.random;
  threads = options.threads != nullptr ? options.threads : SystemThreads();
  if (options.max_batch == 0) options.max_batch = 1;
  options.max_batch = std::min<size_t>(options.max_batch, 65536);
  if (options.append_threads < 1) options.append_threads = 1;
  // Negative or NaN: off; above 1 the spacing would outlast a batch.
  options.batch_spacing = options.batch_spacing >= 0 ? std::min(options.batch_spacing, 1.0) : 0.0;
  if (options.max_append_attempts < 1) options.max_append_attempts = 1;
}

void Client::Impl::SleepNanos(int64_t nanos) { threads->SleepNanos(nanos); }

int64_t Client::Impl::DeadlineFromNow() const {
  return clock->NowNanos() +
         std::chrono::duration_cast<std::chrono::nanoseconds>(options.retry_deadline).count();
}

std::shared_ptr<const Layout> Client::Impl::CurrentLayout() const {
  std::lock_guard lock(mu);
  return layout;
}

std::shared_ptr<net::Channel> Client::Impl::ChannelTo(const std::string& endpoint) {
  std::lock_guard lock(mu);
  auto& ch = channels[endpoint];
  if (ch == nullptr) ch = options.transport->Connect(endpoint);
  return ch;
}

Result<Layout> Client::Impl::FetchNewestLayout(const std::vector<std::string>& endpoints) {
  // All at once: a node that is down or lags behind the newest committed
  // epoch must not hide it (the first answer is not necessarily the newest),
  // nor delay the answer.
  struct Gather {
    std::mutex mu;
    std::vector<std::pair<std::string, Result<proto::GetLayoutResponse>>>
        answers;         // GUARDED_BY(mu)
    size_t left = 0;     // GUARDED_BY(mu)
    size_t valid = 0;    // GUARDED_BY(mu)
    Threads::Wake wake;  // GUARDED_BY(mu)
  };
  auto g = std::make_shared<Gather>();
  g->left = endpoints.size();
  threads->Wait([&](Threads::Wake wake) {
    {
      std::lock_guard lock(g->mu);
      g->wake = wake;
      if (g->left == 0) {
        wake();
        return;
      }
    }
    net::CallOptions call;
    call.timeout = options.rpc_timeout;
    for (const auto& endpoint : endpoints) {
      net::CallTyped<proto::GetLayoutResponse>(
          *ChannelTo(endpoint), "layout.get", proto::GetLayoutRequest(), call,
          [g, endpoint, total = endpoints.size()](Result<proto::GetLayoutResponse> r) {
            Threads::Wake done;
            {
              std::lock_guard lock(g->mu);
              if (r.ok()) ++g->valid;
              g->answers.emplace_back(endpoint, std::move(r));
              --g->left;
              // Every endpoint, or a majority with a layout among them: a
              // dead node must not cost a whole rpc_timeout, and the newest
              // committed layout is known to a majority of layout servers.
              const size_t answered = total - g->left;
              if (g->left == 0 || (g->valid > 0 && 2 * answered > total)) done = g->wake;
            }
            if (done) done();
          });
    }
  });
  std::lock_guard lock(g->mu);
  std::optional<Layout> best;
  std::string errors;
  for (auto& [endpoint, r] : g->answers) {
    Status st = r.status();
    if (r.ok()) {
      auto layout = Layout::FromProto(std::move(*r->mutable_layout()));
      if (layout.ok() && (!best || layout->epoch() > best->epoch())) best = std::move(*layout);
      st = layout.status();
    }
    if (!st.ok()) errors += "; " + endpoint + ": " + st.ToString();
  }
  if (!best) {
    return Unavailable("no endpoint served a valid layout (layout.get)" + errors +
                       "; check --endpoints / TALLY_ENDPOINTS and that the nodes are up");
  }
  return std::move(*best);
}

bool Client::Impl::RefreshLayout(Epoch seen) {
  std::vector<std::string> endpoints = CurrentLayout()->Endpoints();
  for (const auto& e : options.endpoints) {
    if (std::find(endpoints.begin(), endpoints.end(), e) == endpoints.end()) endpoints.push_back(e);
  }
  auto fetched = FetchNewestLayout(endpoints);
  std::lock_guard lock(mu);
  if (fetched.ok() && fetched->epoch() > layout->epoch()) {
    layout = std::make_shared<const Layout>(std::move(*fetched));
    layout_refreshes++;
  }
  return layout->epoch() > seen;
}

// --- Impl: sequencer ---

namespace {

seqpb::NextRequest NextRequest(Epoch epoch, uint32_t count, const std::vector<StreamId>& streams) {
  seqpb::NextRequest req;
  req.set_epoch(epoch.value());
  req.set_count(count);
  for (const auto& s : streams) SetStream(s, req.add_streams());
  return req;
}

}  // namespace

Result<seqpb::NextResponse> Client::Impl::SeqNext(const Layout& l, uint32_t count,
                                                  const std::vector<StreamId>& streams,
                                                  int64_t deadline) {
  const seqpb::NextRequest req = NextRequest(l.epoch(), count, streams);
  sequencer_calls++;
  auto r = Call<seqpb::NextResponse>(l.primary_sequencer(), "seq.next", req, deadline);
  if (r.ok() && r->count() != count) {
    return Internal("seq.next granted " + std::to_string(r->count()) + " tokens for " +
                    std::to_string(count) + " asked; sequencer bug");
  }
  return r;
}

Result<seqpb::TailResponse> Client::Impl::SeqTail(const Layout& l,
                                                  const std::vector<StreamId>& streams,
                                                  int64_t deadline) {
  seqpb::TailRequest req;
  req.set_epoch(l.epoch().value());
  for (const auto& s : streams) SetStream(s, req.add_streams());
  return Call<seqpb::TailResponse>(l.primary_sequencer(), "seq.tail", req, deadline);
}

// --- RpcReplicaIo ---

namespace {

// A request already in wire form, for the typed call path (which asks its
// request for SerializeToString).
struct EncodedRequest {
  std::string bytes;
  bool SerializeToString(std::string* out) const {
    *out = bytes;
    return true;
  }
};

// Exactly what proto::WriteBatchRequest{epoch, entries}.SerializeToString
// gives (fields in number order), without copying the entries.
std::string EncodeWriteBatchRequest(uint64_t epoch, const std::vector<proto::LogEntry>& entries) {
  using google::protobuf::internal::WireFormatLite;
  using google::protobuf::io::CodedOutputStream;
  size_t total = 0;
  if (epoch != 0) total += 1 + CodedOutputStream::VarintSize64(epoch);
  for (const auto& e : entries) {
    const size_t len = e.ByteSizeLong();
    total += 1 + CodedOutputStream::VarintSize64(len) + len;
  }
  std::string out;
  out.resize(total);
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  if (epoch != 0) {
    p = WireFormatLite::WriteUInt64ToArray(proto::WriteBatchRequest::kEpochFieldNumber, epoch, p);
  }
  for (const auto& e : entries) {
    p = WireFormatLite::WriteTagToArray(proto::WriteBatchRequest::kEntriesFieldNumber,
                                        WireFormatLite::WIRETYPE_LENGTH_DELIMITED, p);
    p = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(e.GetCachedSize()), p);
    p = e.SerializeWithCachedSizesToArray(p);
  }
  return out;
}

// The per-entry results of a log.write_batch answer for `n` entries.
Result<std::vector<Status>> BatchResults(const std::string& unit,
                                         Result<proto::WriteBatchResponse> r, size_t n) {
  if (!r.ok()) return r.status();
  return internal::WriteBatchResults(unit, *r, n);
}

}  // namespace

Result<std::vector<Status>> RpcReplicaIo::WriteBatch(const std::string& unit,
                                                     const std::vector<proto::LogEntry>& entries) {
  // The bytes of a WriteBatchRequest{epoch, entries}, encoded from
  // `entries` in place rather than copied into a request message first.
  const EncodedRequest req{EncodeWriteBatchRequest(layout_.epoch().value(), entries)};
  return BatchResults(
      unit, impl_->Call<proto::WriteBatchResponse>(unit, "log.write_batch", req, deadline_),
      entries.size());
}

namespace {

// One WriteBatchDown: each answer that took every entry sends the request
// on to the next unit from the network thread it arrived on, so the append
// thread sleeps once for the whole chain instead of once per unit.
class DownRun : public std::enable_shared_from_this<DownRun> {
 public:
  using Outcome = internal::DownOutcome;
  DownRun(Client::Impl* impl, const std::vector<std::string>& units, std::string request,
          size_t entries, std::function<void(Outcome)> done)
      : impl_(impl),
        units_(units),
        request_(std::move(request)),
        entries_(entries),
        done_(std::move(done)) {}

  void Send(size_t i) {
    if (i == units_.size()) {
      done_(Outcome{i, Internal("no answer")});
      return;
    }
    net::CallOptions options;
    options.timeout = impl_->options.rpc_timeout;
    // The last unit gets the bytes themselves; the others a copy.
    std::string payload = i + 1 == units_.size() ? std::move(request_) : request_;
    impl_->ChannelTo(units_[i])->Call("log.write_batch", std::move(payload), options,
                                      [self = shared_from_this(), i](Result<std::string> bytes) {
                                        auto parse = [&]() -> Result<proto::WriteBatchResponse> {
                                          if (!bytes.ok()) return bytes.status();
                                          proto::WriteBatchResponse parsed;
                                          if (!parsed.ParseFromString(*bytes)) {
                                            return Malformed("response to log.write_batch on " +
                                                             self->units_[i] + " does not parse");
                                          }
                                          return parsed;
                                        };
                                        auto results =
                                            BatchResults(self->units_[i], parse(), self->entries_);
                                        if (results.ok() && internal::AllOk(*results)) {
                                          self->Send(i + 1);
                                        } else {
                                          self->done_(Outcome{i, std::move(results)});
                                        }
                                      });
  }

 private:
  Client::Impl* const impl_;
  const std::vector<std::string>& units_;
  std::string request_;
  const size_t entries_;
  std::function<void(Outcome)> done_;
};

}  // namespace

size_t RpcReplicaIo::WriteBatchDown(const std::vector<std::string>& units,
                                    const std::vector<proto::LogEntry>& entries,
                                    Result<std::vector<Status>>* stopped) {
  internal::DownOutcome outcome;
  if (run_down_.has_value()) {
    outcome = std::move(*run_down_);
    run_down_.reset();
  } else {
    // Encoded once for every unit: the request is the same down the chain.
    std::string request = EncodeWriteBatchRequest(layout_.epoch().value(), entries);
    outcome = WaitForValue<internal::DownOutcome>(
        *impl_->threads, [&](std::function<void(internal::DownOutcome)> done) {
          std::make_shared<DownRun>(impl_, units, std::move(request), entries.size(),
                                    std::move(done))
              ->Send(0);
        });
  }
  if (outcome.clean < units.size()) *stopped = std::move(outcome.stopped);
  return outcome.clean;
}

Client::Impl::GrantedBatch Client::Impl::GrantAndWriteHead(
    const std::shared_ptr<const Layout>& layout, const std::vector<StreamId>& streams,
    std::vector<proto::LogEntry>& entries) {
  const uint32_t n = static_cast<uint32_t>(entries.size());
  const seqpb::NextRequest req = NextRequest(layout->epoch(), n, streams);
  sequencer_calls++;
  net::CallOptions call;
  call.timeout = options.rpc_timeout;
  std::shared_ptr<net::Channel> sequencer = ChannelTo(layout->primary_sequencer());
  // The callbacks below use this frame's locals: it waits for them. The
  // network thread only places the entries and encodes them; the append
  // thread built them.
  return WaitForValue<GrantedBatch>(*threads, [&](std::function<void(GrantedBatch)> done) {
    net::CallTyped<seqpb::NextResponse>(
        *sequencer, "seq.next", req, call, [&, done](Result<seqpb::NextResponse> grant) {
          GrantedBatch out;
          if (!grant.ok() || grant->count() != n) {
            // The append thread starts over on the retrying path.
            if (!grant.ok()) out.grant = grant.status();
            done(std::move(out));
            return;
          }
          out.grant = std::move(grant);
          PlaceEntries(*out.grant, layout->epoch(), entries);
          const Chain* chain = &layout->ChainFor(Address(entries.front().address()));
          for (const auto& e : entries) {
            if (&layout->ChainFor(Address(e.address())) != chain) {
              done(std::move(out));  // several stripes: written per chain
              return;
            }
          }
          out.chain = chain;
          std::string request = EncodeWriteBatchRequest(layout->epoch().value(), entries);
          auto held = std::make_shared<GrantedBatch>(std::move(out));
          std::make_shared<DownRun>(this, *chain, std::move(request), n,
                                    [held, done](internal::DownOutcome outcome) {
                                      held->down = std::move(outcome);
                                      done(std::move(*held));
                                    })
              ->Send(0);
        });
  });
}

Status RpcReplicaIo::Write(const std::string& unit, const proto::LogEntry& entry) {
  proto::WriteRequest req;
  req.set_epoch(layout_.epoch().value());
  *req.mutable_entry() = entry;
  return impl_->Call<proto::WriteResponse>(unit, "log.write", req, deadline_).status();
}

Result<proto::LogEntry> RpcReplicaIo::Read(const std::string& unit, Address address) {
  proto::ReadRequest req;
  req.set_epoch(layout_.epoch().value());
  req.set_address(address.value());
  auto r = impl_->Call<proto::ReadResponse>(unit, "log.read", req, deadline_);
  if (!r.ok()) return r.status();
  return std::move(*r->mutable_entry());
}

Status RpcReplicaIo::FillHole(const std::string& unit, Address address) {
  proto::FillHoleRequest req;
  req.set_epoch(layout_.epoch().value());
  req.set_address(address.value());
  return impl_->Call<proto::FillHoleResponse>(unit, "log.fill_hole", req, deadline_).status();
}

Result<Address> RpcReplicaIo::GlobalTail() {
  auto r = impl_->SeqTail(layout_, {}, deadline_);
  if (!r.ok()) return r.status();
  return Address(r->global_tail());
}

// --- Client ---

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() { impl_->StopAppendThreads(); }

Result<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.transport == nullptr) {
    return InvalidArgument("ClientOptions.transport is null; pass the transport to talk through");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (impl->options.layout.sequencers_size() > 0 || impl->options.layout.segments_size() > 0) {
    TALLY_ASSIGN_OR_RETURN(Layout layout, Layout::FromProto(impl->options.layout));
    impl->layout = std::make_shared<const Layout>(std::move(layout));
  } else if (!impl->options.endpoints.empty()) {
    TALLY_ASSIGN_OR_RETURN(Layout layout, impl->FetchNewestLayout(impl->options.endpoints));
    impl->layout = std::make_shared<const Layout>(std::move(layout));
  } else {
    return InvalidArgument(
        "ClientOptions has neither a layout nor endpoints; give one (e.g. TALLY_ENDPOINTS)");
  }
  impl->StartAppendThreads();
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Result<proto::LogEntry> Client::Read(Address address) {
  internal::ReadOptions ro;
  ro.hole_fill_timeout_nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(impl_->options.hole_fill_timeout)
          .count();
  return impl_->WithLayout<proto::LogEntry>([&](const Layout& l, int64_t deadline) {
    RpcReplicaIo io(impl_.get(), l, deadline);
    return internal::ReadChain(io, l.ChainFor(address), address, ro, &impl_->chain_counters);
  });
}

Result<std::vector<proto::LogEntry>> Client::ReadRange(Address from, Address to) {
  if (to < from) {
    return InvalidArgument("ReadRange from " + ToString(from) + " to " + ToString(to) +
                           ": 'to' must not be below 'from'");
  }
  TALLY_ASSIGN_OR_RETURN(Address tail, Tail());
  const Address end = std::min(to, tail);
  if (end <= from) return std::vector<proto::LogEntry>();
  using Held = std::map<uint64_t, proto::LogEntry>;
  // One pass of log.read_range per stripe tail collects what is complete;
  // the rest goes through Read (chain completion, hole filling).
  TALLY_ASSIGN_OR_RETURN(
      Held held, impl_->WithLayout<Held>([&](const Layout& l, int64_t deadline) -> Result<Held> {
        Held out;
        for (const auto& seg : l.segments()) {
          const Address lo = std::max(from, seg.start);
          const Address hi = std::min(end, seg.end);
          if (lo >= hi) continue;
          for (size_t k = 0; k < seg.stripes.size(); ++k) {
            proto::ReadRangeRequest req;
            req.set_epoch(l.epoch().value());
            req.set_from(lo.value());
            req.set_to(hi.value());
            while (req.from() < req.to()) {
              auto r = impl_->Call<proto::ReadRangeResponse>(seg.stripes[k].back(),
                                                             "log.read_range", req, deadline);
              if (!r.ok()) return r.status();
              Status trimmed =
                  CheckRangeAboveTrimMark(seg.stripes[k].back(), *r, req, k, seg.stripes.size());
              if (!trimmed.ok()) return trimmed;
              for (auto& e : *r->mutable_entries()) {
                if (e.address() % seg.stripes.size() == k) out[e.address()] = std::move(e);
              }
              if (r->next() <= req.from()) break;
              req.set_from(r->next());
            }
          }
        }
        return out;
      }));
  std::vector<proto::LogEntry> out;
  out.reserve(end.value() - from.value());
  for (uint64_t a = from.value(); a < end.value(); ++a) {
    auto it = held.find(a);
    if (it != held.end()) {
      out.push_back(std::move(it->second));
      continue;
    }
    TALLY_ASSIGN_OR_RETURN(proto::LogEntry e, Read(Address(a)));
    out.push_back(std::move(e));
  }
  return out;
}

Result<Address> Client::Tail() {
  return impl_->WithLayout<Address>([&](const Layout& l, int64_t deadline) -> Result<Address> {
    TALLY_ASSIGN_OR_RETURN(auto resp, impl_->SeqTail(l, {}, deadline));
    return Address(resp.global_tail());
  });
}

Result<Address> Client::StreamTail(StreamId stream) {
  return impl_->WithLayout<Address>([&](const Layout& l, int64_t deadline) -> Result<Address> {
    TALLY_ASSIGN_OR_RETURN(auto resp, impl_->SeqTail(l, {stream}, deadline));
    if (resp.streams_size() != 1) {
      return Malformed("seq.tail answered " + std::to_string(resp.streams_size()) +
                       " stream tails for 1 stream");
    }
    return resp.streams(0).has_tail() ? Address(resp.streams(0).tail()) : kNoAddress;
  });
}

Result<std::vector<Address>> Client::StreamAddresses(StreamId stream, Address from, Address to) {
  return impl_->WithLayout<std::vector<Address>>(
      [&](const Layout& l, int64_t deadline) -> Result<std::vector<Address>> {
        seqpb::StreamAddressesRequest req;
        req.set_epoch(l.epoch().value());
        SetStream(stream, req.mutable_stream());
        req.set_from(from.value());
        req.set_to(to == kNoAddress ? 0 : to.value());
        TALLY_ASSIGN_OR_RETURN(auto resp,
                               impl_->Call<seqpb::StreamAddressesResponse>(
                                   l.primary_sequencer(), "seq.stream_addresses", req, deadline));
        return DecodeAddresses(resp.roaring64());
      });
}

std::shared_ptr<const Layout> Client::layout() const { return impl_->CurrentLayout(); }

ClientStats Client::stats() const {
  ClientStats s;
  s.appends = impl_->appends.load();
  s.sequencer_calls = impl_->sequencer_calls.load();
  s.tokens = impl_->tokens.load();
  s.lost_races = impl_->chain_counters.lost_races.load();
  s.holes_filled = impl_->chain_counters.holes_filled.load();
  s.chains_completed = impl_->chain_counters.chains_completed.load();
  s.layout_refreshes = impl_->layout_refreshes.load();
  return s;
}

}  // namespace tally::client
