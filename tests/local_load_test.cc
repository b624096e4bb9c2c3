// Appends under load while nodes crash and come back, against a `tallyctl
// local` cluster of 3 real tally-server processes on loopback.
//
// AcknowledgedAppendsSurviveALogUnitCrashAndRestart: two threads append
// continuously through one Client. ~300 ms in, node 3 is SIGKILLed (`local
// kill 3`); the nodes' failure detectors take it out of every chain, so
// appends go on with 2-unit chains. ~1 s later node 3 restarts on its data
// (`local start 3`) and the detectors bring it back (state transfer, then
// the layout with node 3 at the tail of its chains) without an operator.
//
// RollingRestartUnderLoadKeepsTheLogWritable: every node in turn is
// SIGKILLed, started again and waited for until it is back in every chain,
// under the same load; the longest pause between two acknowledgements is
// reported.
//
// Both check that failures are clean errors, never wrong acks: every
// acknowledged append reads back with its payload, no two share an address,
// and every replica of its chain in the final layout (the healed node too)
// holds the same payload. TearDown always stops every node.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "local_cluster_fixture.h"
#include "process_util.h"
#include "tally/client/client.h"
#include "tally/client/log_unit_client.h"
#include "tally/client/node_add.h"
#include "tally/client/reconfigure.h"
#include "tally/net/tcp_transport.h"

namespace tally::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Phases of the run, as seen by an appender when it issues or sees an ack.
enum Phase : int { kBeforeKill = 0, kNodeDown = 1, kRestarted = 2 };

struct Ack {
  Address address;
  std::string payload;
  int issued_in = kBeforeKill;
  int acked_in = kBeforeKill;
  Clock::time_point at;
};

class LocalLoadTest : public LocalClusterTestBase {
 protected:
  void TearDown() override {
    StopLoad();
    client_.reset();
    LocalClusterTestBase::TearDown();
  }

  // A client with short timeouts, and two threads appending through it.
  void StartLoad() {
    client::ClientOptions opts;
    opts.transport = &transport_;
    opts.endpoints = endpoints_;
    opts.rpc_timeout = milliseconds(200);
    opts.retry_deadline = milliseconds(500);
    auto created = client::Client::Create(std::move(opts));
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    client_ = std::move(*created);
    for (int t = 0; t < 2; ++t) appenders_.emplace_back([this, t] { AppendLoop(t); });
  }

  void StopLoad() {
    stop_ = true;
    for (auto& t : appenders_) {
      if (t.joinable()) t.join();
    }
  }

  // Appends "t<thread>-<n>" until stop_, recording acks and error codes.
  void AppendLoop(int thread) {
    for (uint64_t n = 0; !stop_.load(); ++n) {
      std::string payload = "t" + std::to_string(thread) + "-" + std::to_string(n);
      const int issued_in = phase_.load();
      auto r = client_->Append(payload);
      const int acked_in = phase_.load();
      std::lock_guard lock(mu_);
      if (r.ok()) {
        acks_.push_back({*r, std::move(payload), issued_in, acked_in, Clock::now()});
      } else {
        errors_[r.status().code()]++;
        if (r.status().message().empty()) empty_error_messages_++;
      }
    }
  }

  void SleepFor(milliseconds d) { std::this_thread::sleep_for(d); }

  size_t AckCount() {
    std::lock_guard lock(mu_);
    return acks_.size();
  }

  // The newest committed layout.
  Result<proto::Layout> Newest() {
    return client::FetchNewestLayout(transport_, endpoints_, milliseconds(1000));
  }

  // Waits (up to `limit`) until the newest layout has `endpoint` in every
  // chain and every chain is 3 long: the cluster healed. Returns that layout.
  std::optional<proto::Layout> WaitHealed(const std::string& endpoint, milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    do {
      auto l = Newest();
      if (l.ok()) {
        bool healed = true;
        for (const auto& stripe : l->segments(l->segments_size() - 1).stripes()) {
          const auto& u = stripe.log_units();
          healed &= u.size() == 3 && std::find(u.begin(), u.end(), endpoint) != u.end();
        }
        if (healed) return *l;
      }
      SleepFor(milliseconds(50));
    } while (Clock::now() < deadline);
    return std::nullopt;
  }

  // Waits (up to `limit`) until `endpoint` is in no chain of the newest layout.
  bool WaitRemoved(const std::string& endpoint, milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    do {
      auto l = Newest();
      if (l.ok() && !client::InAnyChain(*l, endpoint)) return true;
      SleepFor(milliseconds(20));
    } while (Clock::now() < deadline);
    return false;
  }

  // What the run did, for the log and failure messages.
  std::string Summary() {
    std::lock_guard lock(mu_);
    int before_kill = 0, during_outage = 0, after_restart = 0;
    for (const Ack& a : acks_) {
      if (a.acked_in == kBeforeKill) before_kill++;
      if (a.issued_in == kNodeDown) during_outage++;
      if (a.issued_in == kRestarted) after_restart++;
    }
    std::string error_summary;
    for (const auto& [code, n] : errors_) {
      error_summary += " code " + std::to_string(static_cast<int>(code)) + " x" + std::to_string(n);
    }
    return "acked " + std::to_string(acks_.size()) + " (before kill " +
           std::to_string(before_kill) + ", issued while down " + std::to_string(during_outage) +
           ", issued after restart " + std::to_string(after_restart) + "); errors:" + error_summary;
  }

  // The longest time between two consecutive acknowledgements.
  milliseconds LongestPause() {
    std::lock_guard lock(mu_);
    std::vector<Clock::time_point> at;
    for (const Ack& a : acks_) at.push_back(a.at);
    std::sort(at.begin(), at.end());
    Clock::duration longest{};
    for (size_t i = 1; i < at.size(); ++i) longest = std::max(longest, at[i] - at[i - 1]);
    return std::chrono::duration_cast<milliseconds>(longest);
  }

  // Failures are clean, retryable errors that say what happened; never a
  // replica disagreement or a corrupt entry. No two acknowledged appends
  // share an address. Every acknowledged append reads back with exactly its
  // payload, through the client (chain tail) and from every replica of its
  // chain in `final_layout`. Call with the appenders stopped.
  void CheckAcks(const proto::Layout& final_layout) {
    EXPECT_EQ(empty_error_messages_, 0);
    EXPECT_EQ(errors_.count(Code::kInternal), 0u);
    EXPECT_EQ(errors_.count(Code::kCorruption), 0u);
    EXPECT_EQ(errors_.count(Code::kInvalidArgument), 0u);

    std::set<uint64_t> addresses;
    for (const Ack& a : acks_) {
      EXPECT_TRUE(addresses.insert(a.address.value()).second)
          << "address " << a.address.value() << " acknowledged twice";
    }

    auto layout = client::Layout::FromProto(final_layout);
    ASSERT_TRUE(layout.ok()) << layout.status().ToString();
    std::map<std::string, std::unique_ptr<client::LogUnitClient>> units;
    for (const std::string& ep : endpoints_) {
      units[ep] = std::make_unique<client::LogUnitClient>(transport_.Connect(ep), layout->epoch(),
                                                          milliseconds(2000));
    }
    int mismatches = 0;
    for (const Ack& a : acks_) {
      if (mismatches > 10) break;  // enough to diagnose
      auto r = client_->Read(a.address);
      if (!r.ok() || r->type() != proto::DATA || r->payload() != a.payload) {
        ADD_FAILURE() << "address " << a.address.value() << " acked with '" << a.payload
                      << "' reads back as "
                      << (r.ok() ? "'" + r->payload() + "' type " + std::to_string(r->type())
                                 : r.status().ToString());
        mismatches++;
        continue;
      }
      for (const std::string& unit : layout->ChainFor(a.address)) {
        ASSERT_EQ(units.count(unit), 1u) << unit;
        auto e = units[unit]->Read(a.address);
        if (!e.ok() || e->type() != proto::DATA || e->payload() != a.payload) {
          ADD_FAILURE() << "replica " << unit << " at address " << a.address.value() << ": "
                        << (e.ok() ? "'" + e->payload() + "'" : e.status().ToString())
                        << ", acked with '" << a.payload << "'";
          mismatches++;
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
  }

  // Short reconnect backoff: the restarted node is reached soon after it serves.
  net::TcpTransport transport_{{.io_threads = 1,
                                .reconnect_backoff_min = milliseconds(5),
                                .reconnect_backoff_max = milliseconds(50),
                                .connect_timeout = milliseconds(200)}};
  std::unique_ptr<client::Client> client_;
  std::vector<std::thread> appenders_;
  std::atomic<bool> stop_{false};
  std::atomic<int> phase_{kBeforeKill};
  std::mutex mu_;
  std::vector<Ack> acks_;         // guarded by mu_
  std::map<Code, int> errors_;    // guarded by mu_
  int empty_error_messages_ = 0;  // guarded by mu_
};

TEST_F(LocalLoadTest, AcknowledgedAppendsSurviveALogUnitCrashAndRestart) {
  ASSERT_NO_FATAL_FAILURE(Up());
  ASSERT_NO_FATAL_FAILURE(StartLoad());

  SleepFor(milliseconds(300));
  auto killed = RunCommand(Local("kill", "3") + " 2>&1");
  phase_ = kNodeDown;
  ASSERT_EQ(killed.exit_code, 0) << killed.out;

  SleepFor(milliseconds(1000));
  auto started = RunCommand(Local("start", "3") + " 2>&1");
  ASSERT_EQ(started.exit_code, 0) << started.out;
  phase_ = kRestarted;

  // The detectors bring node 3 back by themselves; appends go on meanwhile.
  auto healed = WaitHealed(endpoints_[2], milliseconds(20000));
  ASSERT_TRUE(healed.has_value()) << "node 3 was not brought back within 20 s; " << Summary();
  const size_t at_heal = AckCount();
  // A little more load on the healed chains; at most 4 s while nothing was
  // acknowledged since (the client may still be refreshing its layout).
  const auto healed_at = Clock::now();
  SleepFor(milliseconds(300));
  while (AckCount() == at_heal && Clock::now() - healed_at < milliseconds(4000)) {
    SleepFor(milliseconds(50));
  }
  StopLoad();
  auto final_layout = Newest();
  ASSERT_TRUE(final_layout.ok()) << final_layout.status().ToString();

  const std::string summary = Summary() + "; healed at epoch " + std::to_string(healed->epoch()) +
                              ", final epoch " + std::to_string(final_layout->epoch());
  std::printf("%s\n", summary.c_str());
  SCOPED_TRACE(summary);
  int before_kill = 0, after_restart = 0;
  for (const Ack& a : acks_) {
    before_kill += a.acked_in == kBeforeKill;
    after_restart += a.issued_in == kRestarted;
  }
  EXPECT_GT(before_kill, 0);
  EXPECT_GT(after_restart, 0);
  EXPECT_GT(acks_.size(), at_heal) << "no append was acknowledged after healing";
  CheckAcks(*final_layout);
}

TEST_F(LocalLoadTest, RollingRestartUnderLoadKeepsTheLogWritable) {
  ASSERT_NO_FATAL_FAILURE(Up());
  ASSERT_NO_FATAL_FAILURE(StartLoad());
  SleepFor(milliseconds(300));

  std::string report;
  for (int node = 1; node <= 3; ++node) {
    const std::string endpoint = endpoints_[node - 1];
    const size_t before = AckCount();
    const auto t0 = Clock::now();
    auto killed = RunCommand(Local("kill", std::to_string(node)) + " 2>&1");
    ASSERT_EQ(killed.exit_code, 0) << killed.out;
    phase_ = kNodeDown;
    ASSERT_TRUE(WaitRemoved(endpoint, milliseconds(10000)))
        << "node " << node << " was not taken out of the layout; " << Summary();
    const auto removed_in = Clock::now() - t0;
    auto started = RunCommand(Local("start", std::to_string(node)) + " 2>&1");
    ASSERT_EQ(started.exit_code, 0) << started.out;
    phase_ = kRestarted;
    auto healed = WaitHealed(endpoint, milliseconds(20000));
    ASSERT_TRUE(healed.has_value())
        << "node " << node << " was not brought back within 20 s; " << Summary();
    const auto back_in = Clock::now() - t0;
    // The log stays writable: appends are acknowledged with the node down and
    // after it is back (wait for the next ack; the client refreshes).
    const size_t at_heal = AckCount();
    const auto healed_at = Clock::now();
    while (AckCount() == at_heal && Clock::now() - healed_at < milliseconds(4000)) {
      SleepFor(milliseconds(20));
    }
    EXPECT_GT(AckCount(), at_heal) << "nothing acknowledged after node " << node << " came back";
    EXPECT_GT(at_heal, before) << "nothing acknowledged while node " << node << " restarted";
    report += " node " + std::to_string(node) + ": out after " +
              std::to_string(std::chrono::duration_cast<milliseconds>(removed_in).count()) +
              " ms, back (epoch " + std::to_string(healed->epoch()) + ") after " +
              std::to_string(std::chrono::duration_cast<milliseconds>(back_in).count()) + " ms;";
  }
  StopLoad();
  auto final_layout = Newest();
  ASSERT_TRUE(final_layout.ok()) << final_layout.status().ToString();
  // Full redundancy: every node in every chain again, every node a sequencer.
  for (const auto& stripe : final_layout->segments(final_layout->segments_size() - 1).stripes()) {
    EXPECT_EQ(stripe.log_units_size(), 3) << final_layout->DebugString();
  }
  EXPECT_EQ(final_layout->sequencers_size(), 3) << final_layout->DebugString();

  const std::string summary = Summary() + ";" + report + " longest pause between acks " +
                              std::to_string(LongestPause().count()) + " ms";
  std::printf("%s\n", summary.c_str());
  SCOPED_TRACE(summary);
  CheckAcks(*final_layout);
}

}  // namespace
}  // namespace tally::testing
