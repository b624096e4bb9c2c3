#pragma once

// A gtest fixture holding one LogUnit on the real file system in a fresh
// /tmp directory, with its handlers registered in a ServiceRegistry that
// tests call directly (no sockets).

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <utility>

#include "tally/log/log_unit.h"
#include "tally/net/transport.h"

namespace tally::log {

class LogUnitTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tally-logunit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    unit_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Closes the unit (if open) and opens it again on the same directory.
  void Reopen() {
    unit_.reset();
    registry_ = net::ServiceRegistry();
    LogUnitOptions o;
    o.store.dir = dir_ + "/log";
    auto u = LogUnit::Open(o);
    ASSERT_TRUE(u.ok()) << u.status().ToString();
    unit_ = std::move(*u);
    unit_->Register(registry_);
  }

  // Calls `method` with raw bytes and waits for the answer. `on_respond`
  // runs inside the responder, i.e. at the moment the unit answers.
  std::pair<Status, std::string> CallRaw(const std::string& method, std::string payload,
                                         std::function<void(const Status&)> on_respond = {}) {
    const net::Handler* h = registry_.Find(method);
    EXPECT_NE(h, nullptr) << method;
    if (h == nullptr) return {Internal("no handler for " + method), ""};
    std::promise<std::pair<Status, std::string>> p;
    auto f = p.get_future();
    (*h)(std::move(payload), [&p, &on_respond](Status st, std::string out) {
      if (on_respond) on_respond(st);
      p.set_value({std::move(st), std::move(out)});
    });
    return f.get();
  }

  template <typename Resp, typename Req>
  Result<Resp> Call(const std::string& method, const Req& req) {
    auto [st, bytes] = CallRaw(method, req.SerializeAsString());
    if (!st.ok()) return st;
    Resp resp;
    if (!resp.ParseFromString(bytes)) return Malformed("response to " + method + " does not parse");
    return resp;
  }

  std::string dir_;
  net::ServiceRegistry registry_;
  std::unique_ptr<LogUnit> unit_;
};

}  // namespace tally::log
