#include "tally/net/tcp_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "tally/net/awaitable.h"
#include "test_util.h"

namespace tally::net {
namespace {

using testing::AddEcho;
using testing::CallSync;
using testing::kWait;

TEST(TcpTransportTest, RoundTripAndServerErrors) {
  ServiceRegistry registry;
  AddEcho(registry);
  TcpTransport transport;
  auto server = transport.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const std::string ep = (*server)->endpoint();
  EXPECT_NE(ep, "127.0.0.1:0");
  auto channel = transport.Connect(ep);
  EXPECT_EQ(channel->endpoint(), ep);

  auto r = CallSync(*channel, "echo.echo", "hello");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "echo:hello");

  auto failed = CallSync(*channel, "echo.fail", "row 9");
  EXPECT_EQ(failed.status().code(), Code::kNotFound);
  EXPECT_EQ(failed.status().message(), "no such thing: row 9");

  auto unknown = CallSync(*channel, "nope.missing", "");
  EXPECT_EQ(unknown.status().code(), Code::kUnknownMethod);
  EXPECT_NE(unknown.status().message().find("nope.missing"), std::string::npos);

  // Large payloads span many reads and writes.
  std::string big(5 << 20, 'b');
  auto large = CallSync(*channel, "echo.echo", big);
  ASSERT_TRUE(large.ok()) << large.status().ToString();
  EXPECT_EQ(large->size(), big.size() + 5);
}

TEST(TcpTransportTest, OversizedRequestFailsTooLarge) {
  ServiceRegistry registry;
  AddEcho(registry);
  TcpTransport transport;
  auto server = transport.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = transport.Connect((*server)->endpoint());
  ASSERT_TRUE(CallSync(*channel, "echo.echo", "warm up").ok());
  auto r = CallSync(*channel, "echo.echo", std::string(kMaxFrameBytes + 1, 'x'));
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_TRUE(CallSync(*channel, "echo.echo", "still fine").ok());
}

// 2000 calls in flight at once; the handler parks them and another thread
// answers in shuffled order. Every callback must get its own answer, once.
TEST(TcpTransportTest, ManyConcurrentCallsAnsweredOutOfOrder) {
  constexpr int kCalls = 2000;
  std::mutex mu;
  std::vector<std::pair<std::string, Responder>> parked;
  std::promise<void> all_parked;
  ServiceRegistry registry;
  registry.Register("park.echo", [&](std::string payload, Responder respond) {
    std::lock_guard<std::mutex> lock(mu);
    parked.emplace_back(std::move(payload), std::move(respond));
    if (parked.size() == kCalls) all_parked.set_value();
  });
  TcpTransport transport(TcpOptions{.io_threads = 2});
  auto server = transport.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = transport.Connect((*server)->endpoint());

  std::vector<std::atomic<int>> calls_back(kCalls);
  std::atomic<int> done{0}, wrong{0};
  std::promise<void> all_done;
  for (int i = 0; i < kCalls; ++i) {
    channel->Call(
        "park.echo", std::to_string(i), CallOptions{std::chrono::seconds(60)},
        [&, i](Result<std::string> r) {
          if (calls_back[i].fetch_add(1) != 0 || !r.ok() || *r != "answer-" + std::to_string(i)) {
            wrong.fetch_add(1);
          }
          if (done.fetch_add(1) + 1 == kCalls) all_done.set_value();
        });
  }
  ASSERT_EQ(all_parked.get_future().wait_for(kWait), std::future_status::ready);
  std::thread responder([&] {
    std::vector<std::pair<std::string, Responder>> batch;
    {
      std::lock_guard<std::mutex> lock(mu);
      batch.swap(parked);
    }
    std::shuffle(batch.begin(), batch.end(), std::mt19937(7));
    for (auto& [payload, respond] : batch) respond(Status::OK(), "answer-" + payload);
  });
  responder.join();
  ASSERT_EQ(all_done.get_future().wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(wrong.load(), 0);
  for (auto& c : calls_back) EXPECT_EQ(c.load(), 1);
}

TEST(TcpTransportTest, BoundedQueuesAnswerOverloaded) {
  std::mutex mu;
  std::vector<Responder> parked;
  ServiceRegistry registry;
  registry.Register("park.it", [&](std::string, Responder respond) {
    std::lock_guard<std::mutex> lock(mu);
    parked.push_back(std::move(respond));
  });
  AddEcho(registry);
  TcpTransport transport(TcpOptions{.max_inflight_per_connection = 4, .max_waiting_calls = 2});
  auto server = transport.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = transport.Connect((*server)->endpoint());
  ASSERT_TRUE(CallSync(*channel, "echo.echo", "connect first").ok());

  // Server side: 4 run, the other 6 are refused at once.
  std::atomic<int> overloaded{0}, finished{0};
  std::promise<void> six_refused;
  for (int i = 0; i < 10; ++i) {
    channel->Call("park.it", "", CallOptions{std::chrono::seconds(20)}, [&](Result<std::string> r) {
      if (r.status().code() == Code::kOverloaded && overloaded.fetch_add(1) + 1 == 6) {
        six_refused.set_value();
      }
      finished.fetch_add(1);
    });
  }
  ASSERT_EQ(six_refused.get_future().wait_for(kWait), std::future_status::ready);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(parked.size(), 4u);
    for (auto& respond : parked) respond(Status::OK(), "");
    parked.clear();
  }

  // Client side: with no connection, only 2 calls may wait. A listener that
  // never accepts, its backlog filled by one connection, makes our connect
  // hang (a refused one would fail the waiting calls at once instead).
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int filler = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(filler, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string ep = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto dead = transport.Connect(ep);
  std::promise<Result<std::string>> third;
  dead->Call("x.y", "", CallOptions{std::chrono::seconds(2)}, [](Result<std::string>) {});
  dead->Call("x.y", "", CallOptions{std::chrono::seconds(2)}, [](Result<std::string>) {});
  dead->Call("x.y", "", CallOptions{std::chrono::seconds(2)},
             [&](Result<std::string> r) { third.set_value(std::move(r)); });
  auto f = third.get_future();
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), Code::kOverloaded);
  dead.reset();
  ::close(filler);
  ::close(listener);
}

TEST(TcpTransportTest, CallTimesOutAndLateAnswerIsDropped) {
  std::mutex mu;
  std::vector<Responder> parked;
  ServiceRegistry registry;
  registry.Register("slow.never", [&](std::string, Responder respond) {
    std::lock_guard<std::mutex> lock(mu);
    parked.push_back(std::move(respond));
  });
  AddEcho(registry);
  TcpTransport transport;
  auto server = transport.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = transport.Connect((*server)->endpoint());

  std::atomic<int> callbacks{0};
  std::promise<Result<std::string>> got;
  channel->Call("slow.never", "x", CallOptions{std::chrono::milliseconds(100)},
                [&](Result<std::string> r) {
                  if (callbacks.fetch_add(1) == 0) got.set_value(std::move(r));
                });
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(kWait), std::future_status::ready);
  Result<std::string> r = fut.get();
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_NE(r.status().message().find("slow.never"), std::string::npos);
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(parked.size(), 1u);
    parked[0](Status::OK(), "too late");
    parked[0](Status::OK(), "twice");  // ignored
  }
  // A round trip after the late answer proves it was processed and dropped.
  ASSERT_TRUE(CallSync(*channel, "echo.echo", "after").ok());
  EXPECT_EQ(callbacks.load(), 1);
}

TEST(TcpTransportTest, ServerRestartOnSamePortReconnectsSameChannel) {
  ServiceRegistry registry;
  AddEcho(registry);
  TcpTransport server_side;
  TcpTransport client_side;
  auto server = server_side.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  const std::string ep = (*server)->endpoint();
  auto channel = client_side.Connect(ep);
  ASSERT_TRUE(CallSync(*channel, "echo.echo", "one").ok());

  server->reset();  // stop: closes the connection
  auto down = CallSync(*channel, "echo.echo", "two", std::chrono::milliseconds(300));
  EXPECT_TRUE(down.status().code() == Code::kUnavailable || down.status().code() == Code::kTimeout)
      << down.status().ToString();

  auto again = server_side.Listen(ep, &registry);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)->endpoint(), ep);
  Result<std::string> r = Internal("not tried");
  for (int attempt = 0; attempt < 20 && !r.ok(); ++attempt) {
    r = CallSync(*channel, "echo.echo", "three", std::chrono::seconds(2));
  }
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "echo:three");
}

TEST(TcpTransportTest, InFlightCallFailsUnavailableWhenServerStops) {
  std::promise<void> arrived;
  ServiceRegistry registry;
  Responder kept;
  registry.Register("slow.never", [&](std::string, Responder respond) {
    kept = std::move(respond);
    arrived.set_value();
  });
  TcpTransport server_side;
  TcpTransport client_side;
  auto server = server_side.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = client_side.Connect((*server)->endpoint());
  std::promise<Result<std::string>> got;
  channel->Call("slow.never", "", CallOptions{std::chrono::seconds(20)},
                [&](Result<std::string> r) { got.set_value(std::move(r)); });
  ASSERT_EQ(arrived.get_future().wait_for(kWait), std::future_status::ready);
  server->reset();
  kept(Status::OK(), "after stop");  // the connection is gone: a no-op
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(kWait), std::future_status::ready);
  Result<std::string> r = fut.get();
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("may or may not have run"), std::string::npos);
}

TEST(TcpTransportTest, RefusedEndpointFailsFastAndBadEndpointIsInvalid) {
  TcpTransport transport;
  // Reserve a port, then free it, so nothing listens there.
  std::string ep;
  {
    ServiceRegistry registry;
    auto server = transport.Listen("127.0.0.1:0", &registry);
    ASSERT_TRUE(server.ok());
    ep = (*server)->endpoint();
  }
  auto channel = transport.Connect(ep);
  // Nobody listens: the call fails at the refusal (UNAVAILABLE), not at its
  // 20 s deadline (which would be TIMEOUT).
  auto r = CallSync(*channel, "echo.echo", "x", std::chrono::seconds(20));
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("refused"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("it did not run"), std::string::npos) << r.status().message();

  auto bad = transport.Connect("no-port-here");
  EXPECT_EQ(CallSync(*bad, "echo.echo", "x").status().code(), Code::kInvalidArgument);
}

TEST(TcpTransportTest, ShutdownCancelsPendingCallsAndRefusesNewOnes) {
  ServiceRegistry registry;
  std::promise<void> arrived;
  Responder kept;
  registry.Register("slow.never", [&](std::string, Responder respond) {
    kept = std::move(respond);
    arrived.set_value();
  });
  TcpTransport server_side;
  auto server = server_side.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  std::shared_ptr<Channel> channel;
  std::promise<Result<std::string>> got;
  {
    TcpTransport client_side;
    channel = client_side.Connect((*server)->endpoint());
    channel->Call("slow.never", "", CallOptions{std::chrono::seconds(20)},
                  [&](Result<std::string> r) { got.set_value(std::move(r)); });
    ASSERT_EQ(arrived.get_future().wait_for(kWait), std::future_status::ready);
  }  // client transport destroyed with the call in flight
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(fut.get().status().code(), Code::kCancelled);
  // The channel outlived its transport: calls fail at once.
  EXPECT_EQ(CallSync(*channel, "slow.never", "").status().code(), Code::kCancelled);
}

TEST(TcpTransportTest, CallAwaitableFromACoroutine) {
  // Declared first so it outlives the transport, whose threads post the
  // coroutine's completions to it.
  boost::asio::io_context io;
  ServiceRegistry registry;
  AddEcho(registry);
  TcpTransport transport;
  auto server = transport.Listen("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok());
  auto channel = transport.Connect((*server)->endpoint());

  auto fut = boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<std::string> {
        auto a = co_await CallAwaitable(*channel, "echo.echo", "a");
        auto b = co_await CallAwaitable(*channel, "echo.fail", "b");
        co_return (a.ok() ? *a : a.status().ToString()) + "|" +
            std::string(CodeName(b.status().code()));
      },
      boost::asio::use_future);
  io.run();
  ASSERT_EQ(fut.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(fut.get(), "echo:a|NOT_FOUND");
}

}  // namespace
}  // namespace tally::net
