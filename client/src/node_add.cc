#include "tally/client/node_add.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "rpc.h"
#include "tally/client/log_unit_client.h"
#include "tally/client/reconfigure.h"

namespace tally::client {

bool InAnyChain(const proto::Layout& layout, const std::string& endpoint) {
  for (const auto& seg : layout.segments()) {
    for (const auto& stripe : seg.stripes()) {
      const auto& units = stripe.log_units();
      if (std::find(units.begin(), units.end(), endpoint) != units.end()) return true;
    }
  }
  return false;
}

namespace {

// One chain that gains the node: where its data comes from.
struct Gain {
  int stripe = 0;
  std::string source;      // the chain's tail in the current layout
  uint64_t copied_to = 0;  // the catch-up copy covered [start, copied_to)
};

void AddUp(TransferStats* total, const TransferStats& s) {
  total->entries += s.entries;
  total->holes += s.holes;
  total->bytes += s.bytes;
  total->skipped += s.skipped;
  total->trim_mark = std::max(total->trim_mark, s.trim_mark);
}

bool IsDivergent(const Status& st) { return st.code() == Code::kFailedPrecondition; }

// The first address of `stripe` (of `stripes`) at or above `from` that
// `unit` holds, if any. Such an entry lies beyond everything the chain
// acknowledged, so the chain never had it: divergent data.
Result<std::optional<uint64_t>> FirstHeldFrom(net::Transport& transport, const std::string& unit,
                                              uint64_t epoch, uint64_t from, uint32_t stripes,
                                              uint32_t stripe, std::chrono::milliseconds timeout,
                                              Threads* threads) {
  LogUnitClient c(transport.Connect(unit), Epoch(epoch), timeout, threads);
  uint64_t p = from;
  const uint64_t end = std::numeric_limits<uint64_t>::max();
  while (p < end) {
    auto r = c.ReadRange(Address(p), Address(end), 1024);
    // A lost message costs one (short, after the seal) timeout, not the heal.
    for (int retry = 0; retry < 5 && !r.ok() && internal::IsTransient(r.status()); ++retry) {
      r = c.ReadRange(Address(p), Address(end), 1024);
    }
    if (!r.ok()) return r.status().WithContext("log.read_range on " + unit);
    for (const auto& e : r->entries()) {
      if (e.address() % stripes == stripe) return std::optional<uint64_t>(e.address());
    }
    if (r->next() <= p) break;
    p = r->next();
  }
  return std::optional<uint64_t>();
}

Status BeyondTail(const std::string& unit, uint64_t address, const std::string& source,
                  uint64_t tail) {
  return FailedPrecondition(unit + " holds divergent data at address " + std::to_string(address) +
                            ", beyond the chain's tail " + std::to_string(tail) + " on " + source +
                            " (an entry the chain never acknowledged); it must be wiped before "
                            "it rejoins (`tallyctl node add --wipe`): state transfer never "
                            "overwrites");
}

class Adder {
 public:
  Adder(net::Transport& transport, const proto::Layout& current, const proto::Layout& next,
        const std::string& endpoint, const AddNodeOptions& options)
      : transport_(transport),
        current_(current),
        next_(next),
        endpoint_(endpoint),
        options_(options),
        threads_(options.threads != nullptr ? options.threads : SystemThreads()) {
    // The chains of the last segment that gain the node, each fed by its tail.
    const auto& old_seg = current.segments(current.segments_size() - 1);
    const auto& new_seg = next.segments(next.segments_size() - 1);
    start_ = old_seg.start();
    stripes_ = static_cast<uint32_t>(new_seg.stripes_size());
    for (int s = 0; s < new_seg.stripes_size(); ++s) {
      const auto& before = old_seg.stripes(s).log_units();
      const auto& after = new_seg.stripes(s).log_units();
      if (std::find(before.begin(), before.end(), endpoint) != before.end()) continue;
      if (std::find(after.begin(), after.end(), endpoint) == after.end()) continue;
      gains_.push_back({s, before.Get(before.size() - 1), start_});
    }
  }

  // `rpc_timeout` per RPC: the state transfer's before the seal, the short
  // reconfiguration one after it (writes wait; CopyRange retries a lost
  // message rather than waiting out a long timeout).
  CopyOptions CopyFor(int stripe, std::chrono::milliseconds rpc_timeout) const {
    CopyOptions c = options_.copy;
    c.rpc_timeout = rpc_timeout;
    c.stripes = stripes_;
    c.stripe = static_cast<uint32_t>(stripe);
    c.threads = threads_;
    return c;
  }

  ProgressFn Progress(const Gain& g, const char* phase) const {
    if (!options_.progress) return nullptr;
    auto fn = options_.progress;
    const int stripe = g.stripe;
    const std::string source = g.source;
    return [fn, stripe, phase, source](const TransferStats& s) {
      fn(stripe, phase, source, s, false);
    };
  }

  // Step 1 for one chain: the source's current tail, a check that the node
  // holds nothing at or above it, and the copy below it.
  Result<TransferStats> CatchUp(Gain& g) {
    LogUnitClient src(transport_.Connect(g.source), Epoch(current_.epoch()), options_.rpc_timeout,
                      threads_);
    auto tail = src.Tail();
    if (!tail.ok()) return tail.status().WithContext("log.tail on " + g.source);
    const uint64_t to = std::max(tail->local_tail(), start_);
    TALLY_ASSIGN_OR_RETURN(auto beyond, FirstHeldFrom(transport_, endpoint_, current_.epoch(), to,
                                                      stripes_, static_cast<uint32_t>(g.stripe),
                                                      options_.rpc_timeout, threads_));
    if (beyond.has_value()) return BeyondTail(endpoint_, *beyond, g.source, to);
    if (to <= start_) return TransferStats{.next = start_};
    auto r =
        CopyRange(transport_, g.source, endpoint_, Address(start_), Address(to), current_.epoch(),
                  Progress(g, "catch-up"), CopyFor(g.stripe, options_.rpc_timeout));
    if (r.ok() && options_.progress) options_.progress(g.stripe, "catch-up", g.source, *r, true);
    return r;
  }

  // Step 1 for every chain at once.
  Status CatchUpAll(TransferStats* total) {
    std::vector<Result<TransferStats>> caught(gains_.size(), Internal("not copied"));
    std::vector<std::unique_ptr<ThreadHandle>> copiers;
    for (size_t k = 0; k < gains_.size(); ++k) {
      copiers.push_back(threads_->Start("copy-stripe-" + std::to_string(gains_[k].stripe),
                                        [this, &caught, k] { caught[k] = CatchUp(gains_[k]); }));
    }
    for (auto& t : copiers) t->Join();
    // A divergence first: it is the one error a wipe cures.
    for (const auto& r : caught) {
      if (!r.ok() && IsDivergent(r.status())) return r.status();
    }
    for (size_t k = 0; k < gains_.size(); ++k) {
      if (!caught[k].ok()) return caught[k].status();
      AddUp(total, *caught[k]);
      // Not past an address the source lacked: a write to it may have been
      // in flight (writes finish out of address order), and the delta after
      // the seal must copy it.
      gains_[k].copied_to = std::min(caught[k]->next, caught[k]->first_absent);
    }
    return Status::OK();
  }

  // Wipes the node at the current epoch. Only a node in no chain.
  Result<uint64_t> Wipe() {
    if (InAnyChain(current_, endpoint_)) {
      return FailedPrecondition("refusing to wipe " + endpoint_ + ": it is a log unit of epoch " +
                                std::to_string(current_.epoch()) + "'s layout");
    }
    LogUnitClient c(transport_.Connect(endpoint_), Epoch(current_.epoch()), options_.rpc_timeout,
                    threads_);
    auto r = c.Reset();
    if (!r.ok()) return r.status().WithContext("log.reset on " + endpoint_);
    return r->entries_dropped();
  }

  // Steps 3: the delta written before the seal, [copied_to, sealed tail),
  // at the new epoch, and the check that the node holds nothing beyond.
  Status Delta(const std::map<std::string, proto::SealResponse>& sealed,
               std::chrono::milliseconds rpc_timeout, TransferStats* total) {
    for (const auto& g : gains_) {
      const auto& answer = sealed.at(g.source);
      if (answer.sealed_epoch() != next_.epoch()) {
        return WrongEpoch(g.source + " is sealed at epoch " +
                          std::to_string(answer.sealed_epoch()) + ", above " +
                          std::to_string(next_.epoch()) + ": another reconfiguration is running");
      }
      const uint64_t to = std::max(answer.local_tail(), g.copied_to);
      if (to > g.copied_to) {
        auto r = CopyRange(transport_, g.source, endpoint_, Address(g.copied_to), Address(to),
                           next_.epoch(), Progress(g, "delta"), CopyFor(g.stripe, rpc_timeout));
        if (!r.ok()) return r.status();
        if (options_.progress) options_.progress(g.stripe, "delta", g.source, *r, true);
        AddUp(total, *r);
      }
      TALLY_ASSIGN_OR_RETURN(auto beyond,
                             FirstHeldFrom(transport_, endpoint_, next_.epoch(), to, stripes_,
                                           static_cast<uint32_t>(g.stripe), rpc_timeout, threads_));
      if (beyond.has_value()) return BeyondTail(endpoint_, *beyond, g.source, to);
    }
    return Status::OK();
  }

  Result<AddNodeResult> Run() {
    AddNodeResult out;
    Status caught = CatchUpAll(&out.copied);
    if (!caught.ok() && IsDivergent(caught) && options_.wipe_divergent) {
      TALLY_ASSIGN_OR_RETURN(out.dropped_entries, Wipe());
      out.wiped = true;
      out.copied = {};
      for (auto& g : gains_) g.copied_to = start_;
      caught = CatchUpAll(&out.copied);
    }
    TALLY_RETURN_IF_ERROR(caught);

    ReconfigureOptions ro;
    ro.rpc_timeout = options_.reconfigure_rpc_timeout.count() > 0 ? options_.reconfigure_rpc_timeout
                                                                  : options_.rpc_timeout;
    ro.seal_deadline = options_.seal_deadline;
    ro.proposer = options_.proposer;
    ro.threads = threads_;
    ro.clock = options_.clock;
    TALLY_ASSIGN_OR_RETURN(auto sealed, SealUnits(transport_, next_, ro));

    Status delta = Delta(sealed, ro.rpc_timeout, &out.copied);
    if (!delta.ok()) {
      proto::Layout same = current_;
      same.set_epoch(next_.epoch());
      auto undo = CommitLayout(transport_, same, ro);
      const std::string what =
          undo.ok()
              ? "; epoch " + std::to_string(next_.epoch()) + " was committed without " + endpoint_
              : "; committing epoch " + std::to_string(next_.epoch()) +
                    " without it failed too: " + undo.status().ToString();
      return delta.WithContext("copying to " + endpoint_ + " after the seal" + what);
    }

    TALLY_ASSIGN_OR_RETURN(out.committed, CommitLayout(transport_, next_, ro));
    if (out.committed.SerializeAsString() != next_.SerializeAsString()) {
      return FailedPrecondition("another reconfiguration won epoch " +
                                std::to_string(out.committed.epoch()) + "; " + endpoint_ +
                                " was not added (retry from the newest layout)");
    }
    return out;
  }

 private:
  net::Transport& transport_;
  const proto::Layout& current_;
  const proto::Layout& next_;
  const std::string& endpoint_;
  const AddNodeOptions& options_;
  Threads* threads_;
  uint64_t start_ = 0;
  uint32_t stripes_ = 1;
  std::vector<Gain> gains_;
};

}  // namespace

Result<AddNodeResult> AddNode(net::Transport& transport, const proto::Layout& current,
                              const std::string& endpoint, const AddNodeOptions& options) {
  TALLY_ASSIGN_OR_RETURN(auto next, LayoutWith(current, endpoint));
  Adder adder(transport, current, next, endpoint, options);
  return adder.Run();
}

}  // namespace tally::client
