#include "unit_commands.h"

#include <fmt/format.h>

#include <iostream>

#include "json.h"
#include "tally/client/log_unit_client.h"
#include "tally/client/unit_stats.h"
#include "tally/net/tcp_transport.h"

namespace tally::ctl {
namespace {

class UnitClient {
 public:
  explicit UnitClient(const Globals& g)
      : g_(g),
        client_(transport_.Connect(g.EndpointList().at(0)), Epoch(g.epoch),
                std::chrono::milliseconds(g.timeout_ms)) {}

  int Write(uint64_t address, const std::string& data, const std::vector<std::string>& streams) {
    proto::LogEntry e;
    e.set_address(address);
    e.set_type(proto::DATA);
    e.set_payload(data);
    for (const auto& name : streams) {
      StreamId id = StreamId::FromName(name);
      auto* s = e.add_streams();
      s->set_hi(id.hi);
      s->set_lo(id.lo);
    }
    Status st = client_.Write(e);
    if (!st.ok()) return Fail(g_, st);
    if (g_.json()) {
      std::cout << JsonObject().Add("address", address).str() << "\n";
    } else {
      std::cout << address << "\n";
    }
    return 0;
  }

  int Read(uint64_t address) {
    auto r = client_.Read(Address(address));
    if (!r.ok()) {
      Code c = r.status().code();
      if (c == Code::kUnwritten) return NoData(g_, address, "unwritten");
      if (c == Code::kTrimmed) return NoData(g_, address, "trimmed");
      return Fail(g_, r.status());
    }
    if (r->type() == proto::HOLE) return NoData(g_, address, "hole");
    if (g_.json()) {
      std::cout << EntryJson(*r) << "\n";
    } else {
      std::cout << r->payload() << "\n";
    }
    return kExitOk;
  }

  int Scan(uint64_t from, uint64_t to) {
    std::string json = "[";
    bool first = true;
    uint64_t next = from;
    while (next < to) {
      auto r = client_.ReadRange(Address(next), Address(to));
      if (!r.ok()) return Fail(g_, r.status());
      for (const auto& e : r->entries()) {
        if (g_.json()) {
          if (!first) json += ",";
          json += EntryJson(e);
          first = false;
        } else if (e.type() == proto::HOLE) {
          std::cout << e.address() << "\t(hole)\n";
        } else {
          std::cout << e.address() << "\t" << e.payload() << "\n";
        }
      }
      if (r->next() <= next) break;
      next = r->next();
    }
    if (g_.json()) std::cout << json << "]\n";
    return 0;
  }

  int Tail() {
    auto r = client_.Tail();
    if (!r.ok()) return Fail(g_, r.status());
    if (g_.json()) {
      std::cout << JsonObject()
                       .Add("local_tail", r->local_tail())
                       .Add("trim_mark", r->trim_mark())
                       .Add("sealed_epoch", r->sealed_epoch())
                       .Add("entries", r->entries())
                       .str()
                << "\n";
    } else {
      std::cout << "local tail " << r->local_tail() << " (trim mark " << r->trim_mark()
                << ", sealed epoch " << r->sealed_epoch() << ", " << r->entries() << " entries)\n";
    }
    return 0;
  }

  int Stats() {
    auto r = client_.Stats();
    if (!r.ok()) return Fail(g_, r.status());
    auto h = client::CommitHistogram::From(*r);
    if (!h.ok()) return Fail(g_, h.status());
    const uint64_t p50 = h->QuantileLeUs(0.5);
    const uint64_t p99 = h->QuantileLeUs(0.99);
    if (g_.json()) {
      // The unbounded bucket's bound (and a quantile that falls in it) is null.
      auto bound = [](uint64_t us) { return us == UINT64_MAX ? "null" : std::to_string(us); };
      std::string buckets = "[";
      for (size_t i = 0; i < h->le_us.size(); ++i) {
        if (i > 0) buckets += ",";
        buckets +=
            JsonObject().AddRaw("le_us", bound(h->le_us[i])).Add("count", h->counts[i]).str();
      }
      buckets += "]";
      std::cout << JsonObject()
                       .Add("local_tail", r->local_tail())
                       .Add("trim_mark", r->trim_mark())
                       .Add("sealed_epoch", r->sealed_epoch())
                       .Add("entries", r->entries())
                       .Add("segments", r->segments())
                       .Add("segment_bytes", r->segment_bytes())
                       .Add("uptime_ms", r->uptime_ms())
                       .Add("commits", h->commits)
                       .Add("commit_records", h->records)
                       .Add("commit_bytes", h->bytes)
                       .AddRaw("commit_mean_us", fmt::format("{:.1f}", h->MeanUs()))
                       .AddRaw("commit_p50_le_us", h->commits == 0 ? "null" : bound(p50))
                       .AddRaw("commit_p99_le_us", h->commits == 0 ? "null" : bound(p99))
                       .Add("commit_max_us", r->commit_max_us())
                       .AddRaw("commit_buckets", buckets)
                       .str()
                << "\n";
      return 0;
    }
    auto ms = [](uint64_t us) { return fmt::format("{:g} ms", static_cast<double>(us) / 1000); };
    // The unbounded bucket reads "> the last bound" (From ensures there is one).
    auto at_most = [&](uint64_t us) {
      return us == UINT64_MAX ? "> " + ms(h->le_us[h->le_us.size() - 2]) : "<= " + ms(us);
    };
    std::cout << "local tail " << r->local_tail() << " (trim mark " << r->trim_mark()
              << ", sealed epoch " << r->sealed_epoch() << ", " << r->entries() << " entries in "
              << r->segments() << " segment file(s), " << r->segment_bytes() << " bytes)\n";
    std::cout << h->commits << " group commits in "
              << fmt::format("{:.1f}", r->uptime_ms() / 1000.0) << " s since the unit started ("
              << h->records << " records, " << h->bytes << " bytes)\n";
    if (h->commits == 0) return 0;
    std::cout << "write + fdatasync per commit: mean "
              << fmt::format("{:.3f} ms", h->MeanUs() / 1000) << ", p50 " << at_most(p50)
              << ", p99 " << at_most(p99) << ", max " << ms(r->commit_max_us()) << "\n";
    uint64_t seen = 0;
    for (size_t i = 0; i < h->le_us.size(); ++i) {
      if (h->counts[i] == 0) continue;
      seen += h->counts[i];
      std::cout << fmt::format("  {:>12}  {:>10}  {:6.2f}%\n", at_most(h->le_us[i]), h->counts[i],
                               100.0 * static_cast<double>(seen) / static_cast<double>(h->commits));
    }
    return 0;
  }

  int Seal(uint64_t epoch) {
    auto r = client_.Seal(Epoch(epoch));
    if (!r.ok()) return Fail(g_, r.status());
    if (g_.json()) {
      std::cout << JsonObject()
                       .Add("sealed_epoch", r->sealed_epoch())
                       .Add("local_tail", r->local_tail())
                       .str()
                << "\n";
    } else {
      std::cout << "sealed at epoch " << r->sealed_epoch() << " (local tail " << r->local_tail()
                << ")\n";
    }
    return 0;
  }

  int Trim(uint64_t address) {
    auto r = client_.Trim(Address(address));
    if (!r.ok()) return Fail(g_, r.status());
    if (g_.json()) {
      std::cout << JsonObject().Add("trim_mark", *r).str() << "\n";
    } else {
      std::cout << "trim mark " << *r << "\n";
    }
    return 0;
  }

  int FillHole(uint64_t address) {
    Status st = client_.FillHole(Address(address));
    if (!st.ok()) return Fail(g_, st);
    std::cout << (g_.json() ? JsonObject().Add("hole", address).str() : std::to_string(address))
              << "\n";
    return 0;
  }

  int Reset() {
    auto r = client_.Reset();
    if (!r.ok()) return Fail(g_, r.status());
    if (g_.json()) {
      std::cout << JsonObject()
                       .Add("sealed_epoch", r->sealed_epoch())
                       .Add("entries_dropped", r->entries_dropped())
                       .Add("bytes_dropped", r->bytes_dropped())
                       .str()
                << "\n";
    } else {
      std::cout << "wiped: " << r->entries_dropped() << " entries (" << r->bytes_dropped()
                << " bytes) dropped; sealed at epoch " << r->sealed_epoch() << "\n";
    }
    return 0;
  }

 private:
  const Globals& g_;
  net::TcpTransport transport_;
  client::LogUnitClient client_;
};

}  // namespace

UnitCommands::UnitCommands(CLI::App& app, const Globals& g) : g_(g) {
  unit_ = app.add_subcommand("unit", "talk to one log unit directly (first of --endpoints)");
  unit_->require_subcommand(1);
  write_ = unit_->add_subcommand("write", "write DATA at ADDRESS (write-once)");
  write_->add_option("ADDRESS", address_)->required();
  write_->add_option("DATA", data_)->required();
  write_->add_option("--stream", streams_, "tag the entry with a stream (repeatable)");
  read_ = unit_->add_subcommand("read", "print the entry at ADDRESS");
  read_->add_option("ADDRESS", address_)->required();
  scan_ = unit_->add_subcommand("scan", "print the entries this unit holds in [FROM, TO)");
  scan_->add_option("FROM", address_)->required();
  scan_->add_option("TO", to_)->required();
  tail_ = unit_->add_subcommand("tail", "show the unit's local tail, trim mark and epoch");
  stats_ = unit_->add_subcommand(
      "stats",
      "show what the unit holds and how long its group commits (write + fdatasync) took since "
      "it started: count, mean, p50/p99 bucket bounds, max, histogram");
  seal_ = unit_->add_subcommand("seal", "seal the unit at EPOCH: older epochs are refused");
  seal_->add_option("EPOCH", epoch_)->required();
  trim_ = unit_->add_subcommand("trim", "prefix-trim everything below ADDRESS on this unit");
  trim_->add_option("ADDRESS", address_)->required();
  hole_ = unit_->add_subcommand("fill-hole", "fill ADDRESS with a hole");
  hole_->add_option("ADDRESS", address_)->required();
  reset_ = unit_->add_subcommand(
      "reset",
      "wipe every entry this unit holds (log.reset) and seal it at --epoch. Only for a node in "
      "no chain of the layout, e.g. one holding divergent data before it rejoins (`tallyctl "
      "node add --wipe` does this itself)");
  reset_->add_flag("--yes", yes_, "confirm: the unit's entries are dropped for good");
}

std::optional<int> UnitCommands::Run() {
  if (!*unit_) return std::nullopt;
  if (g_.EndpointList().empty()) {
    std::cerr << "tallyctl: no endpoint; pass --endpoints HOST:PORT or set TALLY_ENDPOINTS\n";
    return kExitUsage;
  }
  UnitClient c(g_);
  if (*write_) return c.Write(address_, data_, streams_);
  if (*read_) return c.Read(address_);
  if (*scan_) return c.Scan(address_, to_);
  if (*tail_) return c.Tail();
  if (*stats_) return c.Stats();
  if (*seal_) return c.Seal(epoch_);
  if (*trim_) return c.Trim(address_);
  if (*hole_) return c.FillHole(address_);
  if (*reset_) {
    if (!yes_) {
      std::cerr << "tallyctl: unit reset drops every entry of " << g_.EndpointList()[0]
                << " for good; pass --yes if it is in no chain of the layout\n";
      return kExitUsage;
    }
    return c.Reset();
  }
  return kExitUsage;
}

}  // namespace tally::ctl
