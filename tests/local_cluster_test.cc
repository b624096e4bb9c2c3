// `tallyctl local` end to end: a 3-node cluster of real tally-server
// processes on loopback (log units on every node, the sequencer on node 1
// bootstrapping itself), crash and restart of a log unit and of the
// sequencer, and a clean `local down`. Every node is stopped in TearDown,
// even when an assertion fails.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <regex>
#include <sstream>
#include <thread>

#include "local_cluster_fixture.h"
#include "process_util.h"
#include "tally/net/tcp_transport.h"
#include "tally/net/typed.h"
#include "tally/proto/layout.pb.h"
#include "tally/proto/sequencer.pb.h"

namespace tally::testing {
namespace {

// Whether node `id` is "up" in `local status --output json` output.
std::optional<bool> NodeUp(const std::string& json, int id) {
  std::smatch m;
  std::regex re("\\{\"id\":" + std::to_string(id) + ",[^}]*\"up\":(true|false)");
  if (!std::regex_search(json, m, re)) return std::nullopt;
  return m[1] == "true";
}

class LocalClusterTest : public LocalClusterTestBase {
 protected:
  template <typename Resp, typename Req>
  Result<Resp> Call(const std::string& endpoint, const std::string& method, const Req& req) {
    std::promise<Result<Resp>> p;
    auto f = p.get_future();
    net::CallTyped<Resp>(*transport_.Connect(endpoint), method, req, net::CallOptions{},
                         [&p](Result<Resp> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  CommandResult Ctl(int node, const std::string& args) {
    return RunCommand(kCtl + " --endpoint " + endpoints_[node - 1] + " " + args + " 2>&1");
  }

  net::TcpTransport transport_;
};

TEST_F(LocalClusterTest, UpServesCrashRestartAndDown) {
  ASSERT_NO_FATAL_FAILURE(Up());

  auto status = RunCommand(kCtl + " --output json local status --dir " + dir_.path());
  ASSERT_EQ(status.exit_code, 0) << status.out;
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(NodeUp(status.out, id), true) << status.out;
  EXPECT_NE(status.out.find("\"roles\":[\"log\",\"layout\",\"sequencer\"]"), std::string::npos)
      << status.out;
  EXPECT_NE(status.out.find("\"id\":2,\"endpoint\":\"" + endpoints_[1]), std::string::npos);

  // A second `up` on a running cluster is refused and points at `down`.
  auto again = RunCommand(Local("up") + " 2>&1");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.out.find("local down"), std::string::npos) << again.out;

  // Every node answers layout.get with the layout agreed by the layout
  // servers at `up` (epoch 0): every node a layout server and a sequencer,
  // node 1 the primary.
  auto layout =
      Call<proto::GetLayoutResponse>(endpoints_[1], "layout.get", proto::GetLayoutRequest{});
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  const proto::Layout& l = layout->layout();
  EXPECT_EQ(l.epoch(), 0u);
  ASSERT_EQ(l.sequencers_size(), 3);
  EXPECT_EQ(l.sequencers(0), endpoints_[0]);
  EXPECT_EQ(l.layout_servers_size(), 3);
  ASSERT_EQ(l.segments_size(), 1);
  ASSERT_EQ(l.segments(0).stripes_size(), 3);
  std::set<std::string> heads;
  for (const auto& stripe : l.segments(0).stripes()) {
    EXPECT_EQ(stripe.log_units_size(), 3);
    heads.insert(stripe.log_units(0));
  }
  EXPECT_EQ(heads.size(), 3u) << "chains should rotate so that heads differ";

  // The sequencer bootstrapped itself: it issues tokens.
  proto::seq::NextRequest next;
  next.set_epoch(0);
  next.set_count(1);
  auto token = Call<proto::seq::NextResponse>(endpoints_[0], "seq.next", next);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(token->first_address(), 0u);

  // Address 0's chain is every node (chain 3 of 3 nodes).
  for (int id = 1; id <= 3; ++id) {
    auto w = Ctl(id, "unit write 0 data");
    ASSERT_EQ(w.exit_code, 0) << "node " << id << ": " << w.out;
  }

  // Crash node 3, see it down, restart it on its data.
  auto killed = RunCommand(Local("kill", "3") + " 2>&1");
  ASSERT_EQ(killed.exit_code, 0) << killed.out;
  status = RunCommand(kCtl + " --output json local status --dir " + dir_.path());
  EXPECT_EQ(NodeUp(status.out, 3), false) << status.out;
  EXPECT_EQ(NodeUp(status.out, 1), true) << status.out;
  auto started = RunCommand(Local("start", "3") + " 2>&1");
  ASSERT_EQ(started.exit_code, 0) << started.out;
  status = RunCommand(kCtl + " --output json local status --dir " + dir_.path());
  EXPECT_EQ(NodeUp(status.out, 3), true) << status.out;
  auto r = Ctl(3, "unit read 0");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "data\n");

  // Crash the sequencer: either it restarts in place and bootstraps again
  // from the log units, or (if the restart outlasts failure detection) the
  // failure detector has already moved the sequencer to node 2 in a new
  // epoch. Either way the tail covers the entry at 0 and appends go on.
  ASSERT_EQ(RunCommand(Local("kill", "1")).exit_code, 0);
  started = RunCommand(Local("start", "1") + " 2>&1");
  ASSERT_EQ(started.exit_code, 0) << started.out;
  const std::string env =
      "TALLY_ENDPOINTS=" + endpoints_[0] + "," + endpoints_[1] + "," + endpoints_[2] + " ";
  auto appended = RunCommand(env + kCtl + " append after-restart 2>&1");
  ASSERT_EQ(appended.exit_code, 0) << appended.out;
  EXPECT_GE(std::stoull(appended.out), 1u) << appended.out;

  // `down` stops every recorded process and keeps the data.
  std::vector<int64_t> pids = RecordedPids();
  ASSERT_EQ(pids.size(), 3u);
  auto down = RunCommand(Local("down") + " 2>&1");
  ASSERT_EQ(down.exit_code, 0) << down.out;
  for (int64_t pid : pids) EXPECT_FALSE(ProcessRunning(pid)) << "pid " << pid;
  status = RunCommand(kCtl + " --output json local status --dir " + dir_.path());
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(NodeUp(status.out, id), false) << status.out;
}

// Failover by reconfiguration: SIGKILL the primary sequencer (node 1, also
// a log unit), `tallyctl node remove 1` seals epoch 1 on the other units
// and agrees on a layout without it; node 2's standby sequencer rebuilds
// itself from the sealed units and appends go on, every acknowledged
// append (with its stream) still readable. Bootstrapping again is refused.
TEST_F(LocalClusterTest, NodeRemoveFailsOverTheSequencer) {
  ASSERT_NO_FATAL_FAILURE(Up());
  const std::string env =
      "TALLY_ENDPOINTS=" + endpoints_[0] + "," + endpoints_[1] + "," + endpoints_[2] + " ";
  for (const char* data : {"a", "b", "c"}) {
    auto a = RunCommand(env + kCtl + " append --stream sw " + data + " 2>&1");
    ASSERT_EQ(a.exit_code, 0) << a.out;
  }
  auto again =
      RunCommand(env + kCtl + " cluster bootstrap --layout " + dir_.path() + "/layout.json 2>&1");
  EXPECT_EQ(again.exit_code, 0) << "the same layout again is fine: " << again.out;

  ASSERT_EQ(RunCommand(Local("kill", "1")).exit_code, 0);
  // (The nodes' failure detector may take node 1 out first: then remove
  // says it is already out, in the same epoch.)
  auto removed = RunCommand(env + kCtl + " -o json node remove 1 2>&1");
  ASSERT_EQ(removed.exit_code, 0) << removed.out;
  EXPECT_NE(removed.out.find("\"epoch\":1"), std::string::npos) << removed.out;

  auto d = RunCommand(env + kCtl + " append --stream sw d 2>&1");
  ASSERT_EQ(d.exit_code, 0) << d.out;
  EXPECT_EQ(d.out, "3\n");
  auto stream = RunCommand(env + kCtl + " stream read sw 2>&1");
  ASSERT_EQ(stream.exit_code, 0) << stream.out;
  EXPECT_EQ(stream.out, "0\ta\n1\tb\n2\tc\n3\td\n");
  auto layout = RunCommand(env + kCtl + " -o json layout 2>&1");
  EXPECT_NE(layout.out.find("\"epoch\":\"1\""), std::string::npos) << layout.out;
  // Node 1 left the sequencers and every chain (it stays a layout server).
  EXPECT_NE(layout.out.find("\"sequencers\":[\"" + endpoints_[1] + "\",\"" + endpoints_[2] + "\"]"),
            std::string::npos)
      << layout.out;
  const auto segments = layout.out.substr(layout.out.find("\"segments\""));
  EXPECT_EQ(segments.substr(0, segments.find("layoutServers")).find(endpoints_[0]),
            std::string::npos)
      << layout.out;

  // Removing it again changes nothing; an unknown node is refused; the old
  // layout cannot come back.
  auto twice = RunCommand(env + kCtl + " node remove 1 2>&1");
  EXPECT_EQ(twice.exit_code, 0) << twice.out;
  EXPECT_NE(twice.out.find("already out of the layout (epoch 1)"), std::string::npos) << twice.out;
  auto unknown = RunCommand(env + kCtl + " node remove 9 2>&1");
  EXPECT_EQ(unknown.exit_code, 1) << unknown.out;
  EXPECT_NE(unknown.out.find("NOT_FOUND"), std::string::npos) << unknown.out;
  auto stale =
      RunCommand(env + kCtl + " cluster bootstrap --layout " + dir_.path() + "/layout.json 2>&1");
  EXPECT_EQ(stale.exit_code, 1) << stale.out;
  EXPECT_NE(stale.out.find("already bootstrapped"), std::string::npos) << stale.out;
}

// Healing: node 3 is killed and taken out of the layout, appends go on
// without it, then it is started again and `tallyctl node add 3` copies what
// it missed from each chain's tail, seals the next epoch, copies the rest
// and commits the layout with node 3 back at the tail of every chain; every
// entry, old and new, then reads back from node 3 alone.
TEST_F(LocalClusterTest, NodeAddBringsARemovedNodeBack) {
  ASSERT_NO_FATAL_FAILURE(Up(3, "--no-heal"));
  const std::string env =
      "TALLY_ENDPOINTS=" + endpoints_[0] + "," + endpoints_[1] + "," + endpoints_[2] + " ";
  std::vector<std::pair<std::string, std::string>> appended;  // address, data
  auto append = [&](const std::string& data) {
    auto a = RunCommand(env + kCtl + " append --stream heal " + data + " 2>&1");
    ASSERT_EQ(a.exit_code, 0) << a.out;
    appended.emplace_back(a.out.substr(0, a.out.find('\n')), data);
  };
  for (const char* data : {"a", "b", "c"}) ASSERT_NO_FATAL_FAILURE(append(data));

  ASSERT_EQ(RunCommand(Local("kill", "3")).exit_code, 0);
  auto removed = RunCommand(env + kCtl + " -o json node remove 3 2>&1");
  ASSERT_EQ(removed.exit_code, 0) << removed.out;
  for (const char* data : {"d", "e", "f"}) ASSERT_NO_FATAL_FAILURE(append(data));

  ASSERT_EQ(RunCommand(Local("start", "3") + " 2>&1").exit_code, 0);
  auto added = RunCommand(env + kCtl + " -o json node add 3 2>/dev/null");
  ASSERT_EQ(added.exit_code, 0) << added.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(added.out, m, std::regex("\"epoch\":(\\d+)"))) << added.out;
  const std::string epoch = m[1].str();
  EXPECT_NE(added.out.find("\"added\":\"" + endpoints_[2] + "\""), std::string::npos) << added.out;
  // It missed d, e and f (whatever it held from before is skipped).
  ASSERT_TRUE(std::regex_search(added.out, m, std::regex("\"entries\":(\\d+)"))) << added.out;
  EXPECT_GE(std::stoi(m[1].str()), 3) << added.out;

  auto layout = RunCommand(env + kCtl + " -o json layout 2>&1");
  ASSERT_EQ(layout.exit_code, 0) << layout.out;
  EXPECT_NE(layout.out.find("\"epoch\":\"" + epoch + "\""), std::string::npos) << layout.out;
  EXPECT_NE(layout.out.find("\"sequencers\":[\"" + endpoints_[0] + "\",\"" + endpoints_[1] +
                            "\",\"" + endpoints_[2] + "\"]"),
            std::string::npos)
      << layout.out;
  // Three stripes (one per node), each chain ending with node 3.
  const std::string tail3 = ",\"" + endpoints_[2] + "\"]}";
  const auto segments = layout.out.substr(0, layout.out.find("layoutServers"));
  int tails = 0;
  for (size_t at = segments.find(tail3); at != std::string::npos;
       at = segments.find(tail3, at + 1)) {
    ++tails;
  }
  EXPECT_EQ(tails, 3) << layout.out;

  // Adding it again changes nothing.
  auto twice = RunCommand(env + kCtl + " node add 3 2>&1");
  EXPECT_EQ(twice.exit_code, 0) << twice.out;
  EXPECT_NE(twice.out.find("already in the layout (epoch " + epoch + ")"), std::string::npos)
      << twice.out;

  for (const char* data : {"g", "h"}) ASSERT_NO_FATAL_FAILURE(append(data));
  for (const auto& [address, data] : appended) {
    auto r = RunCommand(kCtl + " --endpoints " + endpoints_[2] + " --epoch " + epoch +
                        " unit read " + address + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << "address " << address << ": " << r.out;
    EXPECT_EQ(r.out, data + "\n") << "address " << address;
  }
  auto stream = RunCommand(env + kCtl + " stream read heal 2>&1");
  ASSERT_EQ(stream.exit_code, 0) << stream.out;
  EXPECT_EQ(stream.out, "0\ta\n1\tb\n2\tc\n3\td\n4\te\n5\tf\n6\tg\n7\th\n");
}

// A node that returns holding an entry the chains never acknowledged (here
// written straight to its log unit while it was out) is refused by `node
// add`, which says to wipe it; `node add --wipe` wipes it (log.reset) and
// copies the chains afresh, and the entry is gone.
TEST_F(LocalClusterTest, NodeAddWipesADivergentNodeOnlyWhenAsked) {
  ASSERT_NO_FATAL_FAILURE(Up(3, "--no-heal"));
  const std::string env =
      "TALLY_ENDPOINTS=" + endpoints_[0] + "," + endpoints_[1] + "," + endpoints_[2] + " ";
  for (const char* data : {"a", "b", "c"}) {
    ASSERT_EQ(RunCommand(env + kCtl + " append --stream w " + data + " 2>&1").exit_code, 0);
  }
  ASSERT_EQ(RunCommand(Local("kill", "3")).exit_code, 0);
  ASSERT_EQ(RunCommand(env + kCtl + " node remove 3 2>&1").exit_code, 0);
  ASSERT_EQ(RunCommand(env + kCtl + " append --stream w d 2>&1").exit_code, 0);
  ASSERT_EQ(RunCommand(Local("start", "3") + " 2>&1").exit_code, 0);
  const std::string unit3 = kCtl + " --endpoints " + endpoints_[2] + " --epoch 1 unit ";
  auto bogus = RunCommand(unit3 + "write 40 bogus 2>&1");
  ASSERT_EQ(bogus.exit_code, 0) << bogus.out;

  auto refused = RunCommand(env + kCtl + " node add 3 2>&1");
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_NE(refused.out.find("divergent data at address 40"), std::string::npos) << refused.out;
  EXPECT_NE(refused.out.find("--wipe"), std::string::npos) << refused.out;
  EXPECT_EQ(RunCommand(unit3 + "read 40 2>&1").out, "bogus\n") << "a refused add wipes nothing";

  auto added = RunCommand(env + kCtl + " -o json node add 3 --wipe 2>/dev/null");
  ASSERT_EQ(added.exit_code, 0) << added.out;
  EXPECT_NE(added.out.find("\"wiped\":true"), std::string::npos) << added.out;
  auto gone = RunCommand(unit3 + "read 40 2>&1");
  EXPECT_NE(gone.exit_code, 0) << gone.out;
  auto stream = RunCommand(env + kCtl + " stream read w 2>&1");
  ASSERT_EQ(stream.exit_code, 0) << stream.out;
  EXPECT_EQ(stream.out, "0\ta\n1\tb\n2\tc\n3\td\n");
  auto layout = RunCommand(env + kCtl + " -o json layout 2>&1");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(layout.out, m, std::regex("\"epoch\":\"(\\d+)\""))) << layout.out;
  for (const char* address : {"0", "1", "2", "3"}) {
    auto r = RunCommand(kCtl + " --endpoints " + endpoints_[2] + " --epoch " + m[1].str() +
                        " unit read " + address + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << "address " << address << ": " << r.out;
  }
  auto refuse_reset = RunCommand(unit3 + "reset 2>&1");
  EXPECT_EQ(refuse_reset.exit_code, 2) << refuse_reset.out;
  EXPECT_NE(refuse_reset.out.find("--yes"), std::string::npos) << refuse_reset.out;
}

// Another process on a stopped node's data dir (here a tally-server started
// by hand): `local start` waits a bounded time for the data dir's lock, then
// fails naming that process, rather than start a server doomed to fail; and
// tally-server itself says plainly why it cannot open the data dir.
TEST_F(LocalClusterTest, ExitWithStopsEveryNodeWhenTheOwnerDies) {
  Child owner({"/bin/sleep", "60"}, dir_.path() + "-owner.log");
  auto up =
      RunCommand(Local("up", "--nodes 2 --exit-with " + std::to_string(owner.pid())) + " 2>&1");
  ASSERT_EQ(up.exit_code, 0) << up.out;
  auto status = RunCommand(kCtl + " --output json local status --dir " + dir_.path());
  ASSERT_EQ(NodeUp(status.out, 1), std::optional<bool>(true)) << status.out;
  ASSERT_EQ(NodeUp(status.out, 2), std::optional<bool>(true)) << status.out;
  owner.SignalAndWait(SIGKILL);  // the owner dies without `local down`
  for (int i = 0; i < 100; ++i) {
    status = RunCommand(kCtl + " --output json local status --dir " + dir_.path());
    if (NodeUp(status.out, 1) == false && NodeUp(status.out, 2) == false) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(NodeUp(status.out, 1), std::optional<bool>(false)) << status.out;
  EXPECT_EQ(NodeUp(status.out, 2), std::optional<bool>(false)) << status.out;
  // `local start` passes --exit-with again: with the owner gone, the node
  // refuses to start and says why.
  auto start = RunCommand(Local("start", "1") + " 2>&1");
  EXPECT_NE(start.exit_code, 0) << start.out;
}

TEST_F(LocalClusterTest, StartOnADataDirInUseFailsNamingTheHolder) {
  ASSERT_NO_FATAL_FAILURE(Up(1));
  ASSERT_EQ(RunCommand(Local("kill", "1")).exit_code, 0);
  const std::string data_dir = dir_.path() + "/node-1";
  const std::string ready = dir_.path() + "/squatter.ready";
  Child squatter({TALLY_SERVER_BIN, "--node-id", "1", "--listen", "127.0.0.1:0", "--data-dir",
                  data_dir, "--ready-file", ready},
                 dir_.path() + "/squatter.log");
  ASSERT_NE(WaitForFile(ready, 10000), "") << "the second tally-server did not start";
  const std::string pid = std::to_string(squatter.pid());

  auto started = RunCommand(Local("start", "1") + " 2>&1");
  EXPECT_EQ(started.exit_code, 1) << started.out;
  EXPECT_NE(started.out.find("in use by another process: pid " + pid), std::string::npos)
      << started.out;

  auto server = RunCommand(std::string(TALLY_SERVER_BIN) +
                           " --node-id 1 --listen 127.0.0.1:0 --data-dir " + data_dir + " 2>&1");
  EXPECT_EQ(server.exit_code, 1) << server.out;
  EXPECT_NE(server.out.find("in use by another tally-server process (pid " + pid),
            std::string::npos)
      << server.out;
}

// `local up --write-engine --zero-ahead-mb` reach every tally-server, are
// kept in cluster.json, and come back with a node that `local start`
// restarts; a write engine tally-server does not know is refused before
// anything starts.
TEST_F(LocalClusterTest, ServerFlagsReachEveryNodeAndSurviveARestart) {
  auto bad = RunCommand(Local("up", "--nodes 2 --write-engine aio") + " 2>&1");
  EXPECT_NE(bad.exit_code, 0) << bad.out;
  EXPECT_NE(bad.out.find("unknown write engine 'aio'; choose sync"), std::string::npos) << bad.out;
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/cluster.json"));

  ASSERT_NO_FATAL_FAILURE(Up(2, "--write-engine io_uring --zero-ahead-mb 0"));
  auto has_flags = [](int64_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return cmd.find(std::string("--write-engine") + '\0' + "io_uring" + '\0') !=
               std::string::npos &&
           cmd.find(std::string("--zero-ahead-mb") + '\0' + "0" + '\0') != std::string::npos;
  };
  std::vector<int64_t> pids = RecordedPids();
  ASSERT_EQ(pids.size(), 2u);
  for (int64_t pid : pids) EXPECT_TRUE(has_flags(pid)) << "node pid " << pid;
  for (int i = 0; i < 10; ++i) {
    auto a = Ctl(1, "append ring-" + std::to_string(i));
    ASSERT_EQ(a.exit_code, 0) << a.out;
  }
  // The engine took effect, not only the flag: io_uring's workers ran the syncs.
  EXPECT_GT(IoUringWorkers(pids[0]), 0) << "--write-engine io_uring did not reach node 1";

  ASSERT_EQ(RunCommand(Local("kill", "2")).exit_code, 0);
  auto started = RunCommand(Local("start", "2") + " 2>&1");
  ASSERT_EQ(started.exit_code, 0) << started.out;
  pids = RecordedPids();
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_TRUE(has_flags(pids[1])) << "local start dropped the flags";
  auto read = Ctl(2, "read 9");
  EXPECT_EQ(read.exit_code, 0) << read.out;
  EXPECT_EQ(read.out, "ring-9\n");
}

TEST_F(LocalClusterTest, CommandsOnAMissingClusterSayHowToCreateOne) {
  auto status = RunCommand(Local("status") + " 2>&1");
  EXPECT_EQ(status.exit_code, 1);
  EXPECT_NE(status.out.find("local up"), std::string::npos) << status.out;
  auto help = RunCommand(kCtl + " local up --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--nodes"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace tally::testing
