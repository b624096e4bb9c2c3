// Appends under load while a log unit crashes and restarts, against a
// `tallyctl local` cluster of 3 real tally-server processes on loopback.
//
// Two threads append continuously through one Client. ~300 ms in, node 3 is
// SIGKILLed (`local kill 3`); every chain holds node 3 (chains of 3 over 3
// nodes) and chains are static until reconfiguration exists, so appends now
// fail after the client's retry_deadline. ~1 s later node 3 restarts on its
// data (`local start 3`) and appends succeed again. Failures must be clean
// errors, never wrong acks: every acknowledged append reads back with its
// payload, no two share an address, and every replica of its chain holds
// the same payload. TearDown always stops every node.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "local_cluster_fixture.h"
#include "process_util.h"
#include "tally/client/client.h"
#include "tally/client/log_unit_client.h"
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
};

class LocalLoadTest : public LocalClusterTestBase {
 protected:
  void TearDown() override {
    stop_ = true;
    for (auto& t : appenders_) {
      if (t.joinable()) t.join();
    }
    client_.reset();
    LocalClusterTestBase::TearDown();
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
        acks_.push_back({*r, std::move(payload), issued_in, acked_in});
      } else {
        errors_[r.status().code()]++;
        if (r.status().message().empty()) empty_error_messages_++;
      }
    }
  }

  void SleepFor(milliseconds d) { std::this_thread::sleep_for(d); }

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

  client::ClientOptions opts;
  opts.transport = &transport_;
  opts.endpoints = endpoints_;
  opts.rpc_timeout = milliseconds(200);
  opts.retry_deadline = milliseconds(500);
  auto created = client::Client::Create(std::move(opts));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  client_ = std::move(*created);

  for (int t = 0; t < 2; ++t) appenders_.emplace_back([this, t] { AppendLoop(t); });

  SleepFor(milliseconds(300));
  auto killed = RunCommand(Local("kill", "3") + " 2>&1");
  phase_ = kNodeDown;
  ASSERT_EQ(killed.exit_code, 0) << killed.out;

  SleepFor(milliseconds(1000));
  auto started = RunCommand(Local("start", "3") + " 2>&1");
  ASSERT_EQ(started.exit_code, 0) << started.out;
  phase_ = kRestarted;

  // ~500 ms more; longer (up to 4 s) while nothing issued after the restart
  // has been acknowledged yet, as the client may still be reconnecting.
  const auto restarted_at = Clock::now();
  auto acked_after_restart = [this] {
    std::lock_guard lock(mu_);
    for (const Ack& a : acks_) {
      if (a.issued_in == kRestarted) return true;
    }
    return false;
  };
  SleepFor(milliseconds(500));
  while (!acked_after_restart() && Clock::now() - restarted_at < milliseconds(4000)) {
    SleepFor(milliseconds(50));
  }
  stop_ = true;
  for (auto& t : appenders_) t.join();

  // From here on the appenders are stopped; acks_ is ours alone.
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
  const std::string summary = "acked " + std::to_string(acks_.size()) + " (before kill " +
                              std::to_string(before_kill) + ", issued while down " +
                              std::to_string(during_outage) + ", issued after restart " +
                              std::to_string(after_restart) + "); errors:" + error_summary;
  std::printf("%s\n", summary.c_str());
  SCOPED_TRACE(summary);
  EXPECT_GT(before_kill, 0);
  EXPECT_GT(after_restart, 0);
  // Failures are clean, retryable errors that say what happened; never a
  // replica disagreement or a corrupt entry.
  EXPECT_EQ(empty_error_messages_, 0);
  EXPECT_EQ(errors_.count(Code::kInternal), 0u);
  EXPECT_EQ(errors_.count(Code::kCorruption), 0u);
  EXPECT_EQ(errors_.count(Code::kInvalidArgument), 0u);

  // No two acknowledged appends share an address.
  std::set<uint64_t> addresses;
  for (const Ack& a : acks_) {
    EXPECT_TRUE(addresses.insert(a.address.value()).second)
        << "address " << a.address.value() << " acknowledged twice";
  }

  // Every acknowledged append reads back with exactly its payload, through
  // the client (chain tail) and from every replica of its chain.
  auto layout = client_->layout();
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

}  // namespace
}  // namespace tally::testing
