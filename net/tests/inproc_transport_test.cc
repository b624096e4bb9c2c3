#include "tally/net/inproc_transport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "tally/net/awaitable.h"
#include "test_util.h"

namespace tally::net {
namespace {

using testing::AddEcho;
using testing::CallSync;
using testing::kWait;

TEST(InprocTransportTest, RoundTripErrorsAndUnknownMethod) {
  InProcessNetwork network;
  ServiceRegistry registry;
  AddEcho(registry);
  auto server_side = network.MakeTransport("server");
  auto client_side = network.MakeTransport("client");
  auto server = server_side->Listen("node-a:0", &registry);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_NE((*server)->endpoint(), "node-a:0");
  auto channel = client_side->Connect((*server)->endpoint());

  auto r = CallSync(*channel, "echo.echo", "hi");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "echo:hi");
  EXPECT_EQ(CallSync(*channel, "echo.fail", "k").status().code(), Code::kNotFound);
  auto unknown = CallSync(*channel, "x.y", "");
  EXPECT_EQ(unknown.status().code(), Code::kUnknownMethod);
  EXPECT_NE(unknown.status().message().find("x.y"), std::string::npos);
  // Same frame limits as TCP.
  EXPECT_EQ(CallSync(*channel, "echo.echo", std::string(kMaxFrameBytes + 1, 'x')).status().code(),
            Code::kTooLarge);
  // A second server on the same endpoint is refused.
  EXPECT_FALSE(server_side->Listen((*server)->endpoint(), &registry).ok());
}

TEST(InprocTransportTest, UnknownEndpointIsUnavailable) {
  InProcessNetwork network;
  auto client = network.MakeTransport("client");
  auto channel = client->Connect("nobody:1");
  auto r = CallSync(*channel, "echo.echo", "x");
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("nobody:1"), std::string::npos);
}

TEST(InprocTransportTest, DroppedLinkTimesOutThenHealedLinkDelivers) {
  InProcessNetwork network;
  ServiceRegistry registry;
  AddEcho(registry);
  auto server_side = network.MakeTransport("server");
  auto client_side = network.MakeTransport("client");
  auto server = server_side->Listen("srv:1", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = client_side->Connect("srv:1");

  std::atomic<int> seen{0};
  network.SetLinkPolicy([&](std::string_view from, std::string_view to) {
    seen.fetch_add(1);
    return from == "client" && to == "srv:1" ? LinkAction::Drop() : LinkAction::Deliver();
  });
  auto r = CallSync(*channel, "echo.echo", "lost", std::chrono::milliseconds(100));
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_GE(seen.load(), 1);

  // Responses dropped: the handler runs but the caller still times out.
  network.SetLinkPolicy([](std::string_view from, std::string_view) {
    return from == "srv:1" ? LinkAction::Drop() : LinkAction::Deliver();
  });
  EXPECT_EQ(CallSync(*channel, "echo.echo", "x", std::chrono::milliseconds(100)).status().code(),
            Code::kTimeout);

  network.SetLinkPolicy([](std::string_view, std::string_view) {
    return LinkAction::Delay(1'000'000);  // 1 ms each way
  });
  auto ok = CallSync(*channel, "echo.echo", "slow");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, "echo:slow");
  network.SetLinkPolicy(nullptr);
  EXPECT_TRUE(CallSync(*channel, "echo.echo", "x").ok());
}

TEST(InprocTransportTest, StoppedServerFailsInFlightCallsAndNetworkShutdownCancels) {
  ServiceRegistry registry;
  std::promise<void> arrived;
  Responder kept;
  registry.Register("slow.never", [&](std::string, Responder respond) {
    kept = std::move(respond);
    arrived.set_value();
  });
  std::shared_ptr<Channel> channel;
  std::promise<Result<std::string>> in_flight;
  std::promise<Result<std::string>> at_shutdown;
  {
    InProcessNetwork network;
    auto server_side = network.MakeTransport("server");
    auto client_side = network.MakeTransport("client");
    auto server = server_side->Listen("srv:1", &registry);
    ASSERT_TRUE(server.ok());
    channel = client_side->Connect("srv:1");
    channel->Call("slow.never", "", CallOptions{std::chrono::seconds(20)},
                  [&](Result<std::string> r) { in_flight.set_value(std::move(r)); });
    ASSERT_EQ(arrived.get_future().wait_for(kWait), std::future_status::ready);
    server->reset();
    kept(Status::OK(), "late");  // no-op: already answered Unavailable
    auto f = in_flight.get_future();
    ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
    EXPECT_EQ(f.get().status().code(), Code::kUnavailable);

    // A call to a dead link is pending when the network goes away.
    network.SetLinkPolicy([](std::string_view, std::string_view) { return LinkAction::Drop(); });
    channel->Call("slow.never", "", CallOptions{std::chrono::seconds(20)},
                  [&](Result<std::string> r) { at_shutdown.set_value(std::move(r)); });
  }
  auto f = at_shutdown.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), Code::kCancelled);
  EXPECT_EQ(CallSync(*channel, "slow.never", "").status().code(), Code::kCancelled);
}

TEST(InprocTransportTest, CallAwaitableWorksOverInproc) {
  boost::asio::io_context io;  // outlives the network's scheduler thread
  InProcessNetwork network;
  ServiceRegistry registry;
  AddEcho(registry);
  auto t = network.MakeTransport("n");
  auto server = t->Listen("srv:1", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = t->Connect("srv:1");
  auto fut = boost::asio::co_spawn(
      io,
      // co_spawn's completion needs a default-constructible value, which
      // Result is not; unwrap inside the coroutine.
      [&]() -> boost::asio::awaitable<std::string> {
        auto r = co_await CallAwaitable(*channel, "echo.echo", "co");
        co_return r.ok() ? *r : r.status().ToString();
      },
      boost::asio::use_future);
  io.run();
  ASSERT_EQ(fut.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(fut.get(), "echo:co");
}

}  // namespace
}  // namespace tally::net
