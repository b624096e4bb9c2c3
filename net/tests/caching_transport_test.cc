#include "tally/net/caching_transport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tally/net/inproc_transport.h"
#include "test_util.h"

namespace tally::net {
namespace {

using testing::AddEcho;
using testing::CallSync;

// Counts the channels its inner transport opens.
class CountingTransport final : public Transport {
 public:
  explicit CountingTransport(Transport* inner) : inner_(inner) {}
  std::shared_ptr<Channel> Connect(const std::string& endpoint) override {
    connects++;
    return inner_->Connect(endpoint);
  }
  Result<std::unique_ptr<Server>> Listen(const std::string& endpoint,
                                         const ServiceRegistry* services) override {
    listens++;
    return inner_->Listen(endpoint, services);
  }
  std::atomic<int> connects{0};
  std::atomic<int> listens{0};

 private:
  Transport* inner_;
};

TEST(CachingTransportTest, OneChannelPerEndpointReusedByEveryCall) {
  InProcessNetwork network;
  ServiceRegistry registry;
  AddEcho(registry);
  auto server_side = network.MakeTransport("server");
  auto a = server_side->Listen("a:1", &registry);
  auto b = server_side->Listen("b:1", &registry);
  ASSERT_TRUE(a.ok() && b.ok());

  auto client_side = network.MakeTransport("client");
  CountingTransport counting(client_side.get());
  CachingTransport cached(&counting);
  auto first = cached.Connect((*a)->endpoint());
  for (int i = 0; i < 20; ++i) {
    auto ch = cached.Connect((*a)->endpoint());
    EXPECT_EQ(ch.get(), first.get());
    auto r = CallSync(*ch, "echo.echo", std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, "echo:" + std::to_string(i));
  }
  EXPECT_EQ(counting.connects.load(), 1);

  auto other = cached.Connect((*b)->endpoint());
  EXPECT_NE(other.get(), first.get());
  EXPECT_EQ(counting.connects.load(), 2);
  EXPECT_TRUE(CallSync(*other, "echo.echo", "b").ok());

  // An endpoint nobody serves: the cached channel reports it on each call.
  auto nobody = cached.Connect("nobody:1");
  EXPECT_EQ(CallSync(*nobody, "echo.echo", "x").status().code(), Code::kUnavailable);
  EXPECT_EQ(cached.Connect("nobody:1").get(), nobody.get());
}

TEST(CachingTransportTest, ConcurrentConnectsShareOneChannel) {
  InProcessNetwork network;
  auto client_side = network.MakeTransport("client");
  CountingTransport counting(client_side.get());
  CachingTransport cached(&counting);
  std::vector<std::thread> threads;
  std::vector<Channel*> got(8);
  for (size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] { got[t] = cached.Connect("peer:1").get(); });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(counting.connects.load(), 1);
  for (Channel* c : got) EXPECT_EQ(c, got[0]);
}

TEST(CachingTransportTest, ListenGoesToTheInnerTransport) {
  InProcessNetwork network;
  ServiceRegistry registry;
  AddEcho(registry);
  auto inner = network.MakeTransport("server");
  CountingTransport counting(inner.get());
  CachingTransport cached(&counting);
  auto server = cached.Listen("s:1", &registry);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ(counting.listens.load(), 1);
  auto client = network.MakeTransport("client");
  EXPECT_TRUE(CallSync(*client->Connect((*server)->endpoint()), "echo.echo", "x").ok());
}

}  // namespace
}  // namespace tally::net
