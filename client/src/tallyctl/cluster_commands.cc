#include "cluster_commands.h"

#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "json.h"
#include "tally/client/client.h"
#include "tally/client/stream_reader.h"
#include "tally/net/tcp_transport.h"

namespace tally::ctl {

namespace {

// A client connected to the cluster named by the global endpoints.
struct Session {
  net::TcpTransport transport;
  std::unique_ptr<client::Client> client;
};

Result<std::unique_ptr<Session>> Connect(const Globals& g) {
  auto endpoints = g.EndpointList();
  if (endpoints.empty()) {
    return InvalidArgument(
        "no endpoints; pass --endpoints HOST:PORT,... or set TALLY_ENDPOINTS "
        "(tallyctl local up prints the line to export)");
  }
  auto s = std::make_unique<Session>();
  client::ClientOptions o;
  o.transport = &s->transport;
  o.endpoints = std::move(endpoints);
  o.rpc_timeout = std::chrono::milliseconds(g.timeout_ms);
  o.retry_deadline = std::chrono::milliseconds(std::max<uint32_t>(g.timeout_ms, 1000) * 2);
  o.principal = "tallyctl";
  auto c = client::Client::Create(std::move(o));
  if (!c.ok()) return c.status();
  s->client = std::move(*c);
  return s;
}

std::vector<StreamId> StreamIds(const std::vector<std::string>& names) {
  std::vector<StreamId> ids;
  for (const auto& n : names) ids.push_back(StreamId::FromName(n));
  return ids;
}

void PrintEntry(const Globals& g, const proto::LogEntry& e) {
  if (g.json()) {
    std::cout << EntryJson(e) << "\n";
  } else if (e.type() == proto::HOLE) {
    std::cout << e.address() << "\t(hole)\n";
  } else {
    std::cout << e.address() << "\t" << e.payload() << "\n";
  }
}

}  // namespace

ClusterCommands::ClusterCommands(CLI::App& app, const Globals& g) : g_(g) {
  append_ = app.add_subcommand("append",
                               "append DATA to the log (and to each --stream); prints its address");
  append_->add_option("DATA", data_, "the payload; '-' appends one payload per stdin line")
      ->required();
  append_->add_option("--stream", streams_, "also append to this stream (repeatable)");

  read_ = app.add_subcommand("read", "print the entry at ADDRESS (read from its chain's tail)");
  read_->add_option("ADDRESS", address_)->required();

  scan_ = app.add_subcommand("scan", "print the entries in [FROM, TO), holes included");
  scan_->add_option("FROM", from_)->required();
  scan_->add_option("TO", to_)->required();

  tail_ = app.add_subcommand("tail", "print the global tail (or a stream's last address)");
  tail_->add_option("--stream", stream_, "a stream name");

  auto* stream = app.add_subcommand("stream", "read a stream's entries in order");
  stream->require_subcommand(1);
  stream_read_ = stream->add_subcommand("read", "print stream NAME's entries, then exit");
  stream_read_->add_option("NAME", stream_)->required();
  stream_read_->add_option("--from", from_, "first address to consider");
  stream_follow_ =
      stream->add_subcommand("follow", "print stream NAME's entries as they are appended");
  stream_follow_->add_option("NAME", stream_)->required();
  stream_follow_->add_option("--from", from_, "first address to consider");
  stream_follow_->add_option("--limit", follow_limit_, "stop after this many entries (0: never)");

  layout_ = app.add_subcommand("layout", "print the cluster layout (epoch, sequencer, chains)");

  trim_ = app.add_subcommand(
      "trim",
      "prefix-trim the log on every log unit: addresses below ADDRESS answer TRIMMED "
      "from now on and segment files wholly below it are deleted (irreversible; "
      "keep ADDRESS at or below every consumer's position)");
  trim_->add_option("ADDRESS", address_, "the trim mark: the first address kept")->required();
}

std::optional<int> ClusterCommands::Run() {
  if (*append_) return Append();
  if (*read_) return Read();
  if (*scan_) return Scan();
  if (*tail_) return Tail();
  if (*stream_read_) return StreamRead(/*follow=*/false);
  if (*stream_follow_) return StreamRead(/*follow=*/true);
  if (*layout_) return Layout();
  if (*trim_) return Trim();
  return std::nullopt;
}

int ClusterCommands::Append() {
  auto s = Connect(g_);
  if (!s.ok()) return Fail(g_, s.status());
  auto ids = StreamIds(streams_);
  auto one = [&](std::string payload) -> int {
    auto r = (*s)->client->Append(std::move(payload), ids);
    if (!r.ok()) return Fail(g_, r.status());
    if (g_.json()) {
      std::cout << JsonObject().Add("address", r->value()).str() << "\n";
    } else {
      std::cout << r->value() << "\n";
    }
    return kExitOk;
  };
  if (data_ != "-") return one(data_);
  // One payload per line, in order: each append is acknowledged before the
  // next is issued, so addresses follow line order.
  std::string line;
  while (std::getline(std::cin, line)) {
    int rc = one(line);
    if (rc != kExitOk) return rc;
    std::cout.flush();
  }
  return kExitOk;
}

int ClusterCommands::Read() {
  auto s = Connect(g_);
  if (!s.ok()) return Fail(g_, s.status());
  auto r = (*s)->client->Read(Address(address_));
  if (!r.ok()) {
    if (r.status().code() == Code::kUnwritten) return NoData(g_, address_, "unwritten");
    if (r.status().code() == Code::kTrimmed) return NoData(g_, address_, "trimmed");
    return Fail(g_, r.status());
  }
  if (r->type() == proto::HOLE) return NoData(g_, address_, "hole");
  if (g_.json()) {
    std::cout << EntryJson(*r) << "\n";
  } else {
    std::cout << r->payload() << "\n";
  }
  return kExitOk;
}

int ClusterCommands::Scan() {
  if (to_ < from_) return Fail(g_, InvalidArgument("scan FROM TO: TO must not be below FROM"));
  auto s = Connect(g_);
  if (!s.ok()) return Fail(g_, s.status());
  auto r = (*s)->client->ReadRange(Address(from_), Address(to_));
  if (!r.ok()) return Fail(g_, r.status());
  if (g_.json()) {
    std::string out = "[";
    for (size_t i = 0; i < r->size(); ++i) {
      if (i) out += ",";
      out += EntryJson((*r)[i]);
    }
    std::cout << out << "]\n";
    return kExitOk;
  }
  for (const auto& e : *r) PrintEntry(g_, e);
  return kExitOk;
}

int ClusterCommands::Tail() {
  auto s = Connect(g_);
  if (!s.ok()) return Fail(g_, s.status());
  if (stream_.empty()) {
    auto t = (*s)->client->Tail();
    if (!t.ok()) return Fail(g_, t.status());
    if (g_.json()) {
      std::cout << JsonObject().Add("tail", t->value()).str() << "\n";
    } else {
      std::cout << t->value() << "\n";
    }
    return kExitOk;
  }
  auto t = (*s)->client->StreamTail(StreamId::FromName(stream_));
  if (!t.ok()) return Fail(g_, t.status());
  bool none = *t == kNoAddress;
  if (g_.json()) {
    JsonObject o;
    o.Add("stream", stream_);
    if (none) {
      o.AddRaw("last_address", "null");
    } else {
      o.Add("last_address", t->value());
    }
    std::cout << o.str() << "\n";
  } else if (none) {
    std::cout << "stream " << stream_ << " has no entries\n";
  } else {
    std::cout << t->value() << "\n";
  }
  return kExitOk;
}

int ClusterCommands::StreamRead(bool follow) {
  auto s = Connect(g_);
  if (!s.ok()) return Fail(g_, s.status());
  client::StreamReader reader((*s)->client.get(), StreamId::FromName(stream_), Address(from_));
  uint64_t printed = 0;
  while (true) {
    auto r = reader.Next();
    if (!r.ok()) return Fail(g_, r.status());
    if (r->has_value()) {
      PrintEntry(g_, **r);
      std::cout.flush();
      if (follow && follow_limit_ != 0 && ++printed >= follow_limit_) return kExitOk;
      continue;
    }
    if (!follow) return kExitOk;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int ClusterCommands::Layout() {
  auto s = Connect(g_);
  if (!s.ok()) return Fail(g_, s.status());
  auto layout = (*s)->client->layout();
  const proto::Layout& p = layout->proto();
  if (g_.json()) {
    std::string json;
    google::protobuf::util::JsonPrintOptions opts;
    opts.always_print_primitive_fields = true;
    auto st = google::protobuf::util::MessageToJsonString(p, &json, opts);
    if (!st.ok()) return Fail(g_, Internal("layout to JSON: " + st.ToString()));
    std::cout << json << "\n";
    return kExitOk;
  }
  std::cout << "epoch " << p.epoch()
            << (p.cluster_id().empty() ? "" : "  cluster " + p.cluster_id()) << "\n";
  std::cout << "sequencers:";
  for (const auto& e : p.sequencers()) std::cout << " " << e;
  std::cout << "  (primary first)\n";
  for (const auto& seg : layout->segments()) {
    std::cout << "segment [" << seg.start.value() << ", "
              << (seg.end == kNoAddress ? std::string("open") : std::to_string(seg.end.value()))
              << "): " << seg.stripes.size() << " stripe(s)\n";
    for (size_t i = 0; i < seg.stripes.size(); ++i) {
      std::cout << "  stripe " << i << ":";
      for (const auto& ep : seg.stripes[i]) std::cout << " " << ep;
      std::cout << "  (head -> tail)\n";
    }
  }
  return kExitOk;
}

int ClusterCommands::Trim() {
  auto s = Connect(g_);
  if (!s.ok()) return Fail(g_, s.status());
  auto r = (*s)->client->Trim(Address(address_));
  if (!r.ok()) return Fail(g_, r.status());
  if (g_.json()) {
    std::string units = "[";
    for (size_t i = 0; i < r->units.size(); ++i) {
      if (i) units += ",";
      units += JsonObject()
                   .Add("endpoint", r->units[i].endpoint)
                   .Add("trim_mark", r->units[i].trim_mark.value())
                   .str();
    }
    std::cout << JsonObject().Add("trim_mark", address_).AddRaw("units", units + "]").str() << "\n";
    return kExitOk;
  }
  std::cout << "trimmed below " << address_ << " on " << r->units.size() << " log unit(s):";
  for (const auto& u : r->units) {
    std::cout << " " << u.endpoint;
    // A unit trimmed further before keeps its higher mark.
    if (u.trim_mark.value() != address_) std::cout << " (trim mark " << u.trim_mark.value() << ")";
  }
  std::cout << "\n";
  return kExitOk;
}

}  // namespace tally::ctl
