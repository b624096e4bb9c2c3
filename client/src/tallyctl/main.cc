// tallyctl: the command line for Tally. This first version talks to one log
// unit directly (write, read, scan, tail, seal, trim, fill-hole); the shared
// log commands (append through the sequencer, streams, local clusters) grow
// on top of it.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "json.h"
#include "tally/client/log_unit_client.h"
#include "tally/net/tcp_transport.h"

namespace tally::ctl {
namespace {

struct Globals {
  std::string endpoint;
  uint64_t epoch = 0;
  std::string output = "text";
  uint32_t timeout_ms = 5000;
  bool json() const { return output == "json"; }
};

// Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 the
// address holds no data (hole, trimmed, unwritten).
constexpr int kExitFailed = 1;
constexpr int kExitNoData = 3;

int Fail(const Globals& g, const Status& st) {
  if (g.json()) {
    std::cout << JsonObject()
                     .Add("error", CodeName(st.code()))
                     .Add("message", st.message())
                     .Add("retryable", st.retryable())
                     .str()
              << "\n";
  } else {
    std::cerr << "tallyctl: " << st.ToString() << "\n";
  }
  return kExitFailed;
}

std::string StreamsJson(const proto::LogEntry& e) {
  std::string out = "[";
  for (int i = 0; i < e.streams_size(); ++i) {
    if (i) out += ",";
    out += JsonString(StreamId{e.streams(i).hi(), e.streams(i).lo()}.ToHex());
  }
  return out + "]";
}

std::string EntryJson(const proto::LogEntry& e) {
  return JsonObject()
      .Add("address", e.address())
      .Add("epoch", e.epoch())
      .Add("type", e.type() == proto::HOLE ? "hole" : "data")
      .AddRaw("streams", StreamsJson(e))
      .Add("data", e.payload())
      .str();
}

class Ctl {
 public:
  explicit Ctl(const Globals& g)
      : g_(g),
        client_(transport_.Connect(g.endpoint), Epoch(g.epoch),
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
      if (c == Code::kUnwritten || c == Code::kTrimmed) {
        if (g_.json()) {
          std::cout << JsonObject()
                           .Add("address", address)
                           .Add("type", c == Code::kTrimmed ? "trimmed" : "unwritten")
                           .str()
                    << "\n";
        } else {
          std::cerr << "address " << address << " is "
                    << (c == Code::kTrimmed ? "trimmed (below the trim mark; its data is gone)"
                                            : "unwritten")
                    << "\n";
        }
        return kExitNoData;
      }
      return Fail(g_, r.status());
    }
    if (g_.json()) {
      std::cout << EntryJson(*r) << "\n";
    } else if (r->type() == proto::HOLE) {
      std::cerr << "address " << address << " is a hole (no data will ever be there)\n";
    } else {
      std::cout << r->payload() << "\n";
    }
    return r->type() == proto::HOLE ? kExitNoData : 0;
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

 private:
  const Globals& g_;
  net::TcpTransport transport_;
  client::LogUnitClient client_;
};

}  // namespace
}  // namespace tally::ctl

int main(int argc, char** argv) {
  using tally::ctl::Ctl;
  tally::ctl::Globals g;
  CLI::App app{"tallyctl: command line for the Tally shared log"};
  app.require_subcommand(1);
  app.add_option("--endpoint,--endpoints", g.endpoint,
                 "log unit address HOST:PORT (first of a comma-separated list is used)")
      ->envname("TALLY_ENDPOINTS");
  app.add_option("--epoch", g.epoch, "epoch to send with requests")->capture_default_str();
  app.add_option("--output,-o", g.output, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--timeout-ms", g.timeout_ms, "per-request timeout")->capture_default_str();

  uint64_t address = 0, to = 0, epoch = 0;
  std::string data;
  std::vector<std::string> streams;
  auto* write = app.add_subcommand("write", "write DATA at ADDRESS (write-once)");
  write->add_option("ADDRESS", address)->required();
  write->add_option("DATA", data)->required();
  write->add_option("--stream", streams, "tag the entry with a stream (repeatable)");
  auto* read = app.add_subcommand("read", "print the entry at ADDRESS");
  read->add_option("ADDRESS", address)->required();
  auto* scan = app.add_subcommand("scan", "print the entries in [FROM, TO)");
  scan->add_option("FROM", address)->required();
  scan->add_option("TO", to)->required();
  auto* tail = app.add_subcommand("tail", "show the unit's local tail, trim mark and epoch");
  auto* seal = app.add_subcommand("seal", "seal the unit at EPOCH: older epochs are refused");
  seal->add_option("EPOCH", epoch)->required();
  auto* trim = app.add_subcommand("trim", "prefix-trim everything below ADDRESS");
  trim->add_option("ADDRESS", address)->required();
  auto* hole = app.add_subcommand("fill-hole", "fill ADDRESS with a hole");
  hole->add_option("ADDRESS", address)->required();

  CLI11_PARSE(app, argc, argv);
  if (auto comma = g.endpoint.find(','); comma != std::string::npos) g.endpoint.resize(comma);
  if (g.endpoint.empty()) {
    std::cerr << "tallyctl: no endpoint; pass --endpoint HOST:PORT or set TALLY_ENDPOINTS\n";
    return 2;
  }
  Ctl ctl(g);
  if (*write) return ctl.Write(address, data, streams);
  if (*read) return ctl.Read(address);
  if (*scan) return ctl.Scan(address, to);
  if (*tail) return ctl.Tail();
  if (*seal) return ctl.Seal(epoch);
  if (*trim) return ctl.Trim(address);
  if (*hole) return ctl.FillHole(address);
  return 2;
}
