// `tallyctl trim` end to end, against a `tallyctl local` cluster of 3 real
// tally-server processes on loopback with 1 MiB segments: after ~6 MiB of
// appends (every unit holds every chain), a trim makes every address below
// the mark answer "trimmed" to `tallyctl read`, keeps the data above it,
// and deletes the segment files wholly below it on every node. TearDown
// always stops every node.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "local_cluster_fixture.h"
#include "process_util.h"
#include "tally/client/client.h"
#include "tally/net/tcp_transport.h"

namespace tally::testing {
namespace {

using std::chrono::milliseconds;

constexpr int kEntries = 96;
constexpr size_t kPayloadBytes = 64 << 10;  // 96 x 64 KiB = 6 MiB per unit
constexpr uint64_t kMark = 88;

// "<n>:" and filler up to kPayloadBytes.
std::string Payload(int n) {
  std::string p = std::to_string(n) + ":";
  p.resize(kPayloadBytes, 'x');
  return p;
}

struct SegmentUsage {
  uint64_t bytes = 0;
  size_t files = 0;
};

// The segment files (seg-*.log) of one node's log unit.
SegmentUsage UsageOf(const std::string& node_dir) {
  SegmentUsage u;
  for (const auto& e : std::filesystem::directory_iterator(node_dir + "/log")) {
    const std::string name = e.path().filename();
    if (name.rfind("seg-", 0) != 0 || e.path().extension() != ".log") continue;
    u.bytes += e.file_size();
    u.files++;
  }
  return u;
}

class TrimTest : public LocalClusterTestBase {
 protected:
  CommandResult Ctl(const std::string& args) {
    std::string list;
    for (const auto& e : endpoints_) list += (list.empty() ? "" : ",") + e;
    return RunCommand(kCtl + " --endpoints " + list + " " + args + " 2>&1");
  }

  std::string NodeDir(int id) const { return dir_.path() + "/node-" + std::to_string(id); }
};

TEST_F(TrimTest, TrimReadsTrimmedBelowTheMarkAndFreesSegments) {
  ASSERT_NO_FATAL_FAILURE(Up(3, "--segment-mb 1"));
  auto help = RunCommand(kCtl + " local up --help");
  EXPECT_NE(help.out.find("--segment-mb"), std::string::npos) << help.out;

  {
    net::TcpTransport transport;
    client::ClientOptions o;
    o.transport = &transport;
    o.endpoints = endpoints_;
    auto created = client::Client::Create(std::move(o));
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    auto& client = **created;
    // One at a time, so that addresses reach the units in order and each
    // segment covers a short address range (a batch would spread one
    // stripe's addresses over the whole run into one segment).
    for (int i = 0; i < kEntries; ++i) {
      auto r = client.Append(Payload(i));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_EQ(*r, Address(i));
    }
  }

  std::vector<SegmentUsage> before;
  for (int id = 1; id <= 3; ++id) {
    before.push_back(UsageOf(NodeDir(id)));
    EXPECT_GE(before.back().files, 5u) << "node " << id << ": too few segments to test";
  }

  // Never above the tail.
  auto refused = Ctl("trim 1000");
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_NE(refused.out.find("cannot trim at or above the global tail 96"), std::string::npos)
      << refused.out;

  auto json = Ctl("--output json trim " + std::to_string(kMark));
  ASSERT_EQ(json.exit_code, 0) << json.out;
  EXPECT_NE(json.out.find("{\"trim_mark\":88,\"units\":[{\"endpoint\":"), std::string::npos)
      << json.out;
  for (const auto& e : endpoints_) {
    EXPECT_NE(json.out.find("{\"endpoint\":\"" + e + "\",\"trim_mark\":88}"), std::string::npos)
        << json.out;
  }
  // Repeating is safe, and the text form says what happened.
  auto text = Ctl("trim " + std::to_string(kMark));
  ASSERT_EQ(text.exit_code, 0) << text.out;
  EXPECT_NE(text.out.find("trimmed below 88 on 3 log unit(s):"), std::string::npos) << text.out;

  for (uint64_t a : {uint64_t{0}, uint64_t{40}, kMark - 1}) {
    auto r = Ctl("read " + std::to_string(a));
    EXPECT_EQ(r.exit_code, 3) << "address " << a << ": " << r.out;
    EXPECT_NE(r.out.find("trimmed"), std::string::npos) << r.out;
  }
  auto r_json = Ctl("-o json read 5");
  EXPECT_EQ(r_json.exit_code, 3);
  EXPECT_NE(r_json.out.find("{\"address\":5,\"type\":\"trimmed\"}"), std::string::npos)
      << r_json.out;
  for (uint64_t a = kMark; a < kEntries; ++a) {
    auto r = Ctl("read " + std::to_string(a));
    ASSERT_EQ(r.exit_code, 0) << "address " << a << ": " << r.out.substr(0, 200);
    EXPECT_EQ(r.out.rfind(std::to_string(a) + ":xxx", 0), 0u) << r.out.substr(0, 40);
  }
  auto scan = Ctl("scan 80 96");
  EXPECT_EQ(scan.exit_code, 1);
  EXPECT_NE(scan.out.find("TRIMMED"), std::string::npos) << scan.out;
  EXPECT_NE(scan.out.find("trim mark 88"), std::string::npos) << scan.out;

  // Whole segments below the mark are gone on every node: at least 4 of
  // the ~6 MiB (the segments holding 88..95, and one straddling the mark,
  // stay).
  for (int id = 1; id <= 3; ++id) {
    SegmentUsage after = UsageOf(NodeDir(id));
    EXPECT_LT(after.files, before[id - 1].files) << "node " << id;
    EXPECT_LE(after.bytes + (4u << 20), before[id - 1].bytes)
        << "node " << id << ": " << before[id - 1].bytes << " -> " << after.bytes << " bytes";
  }
}

}  // namespace
}  // namespace tally::testing
