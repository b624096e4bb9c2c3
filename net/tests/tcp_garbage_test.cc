// Bad bytes on one connection close that connection and nothing else.

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <random>
#include <string>

#include "tally/net/frame.h"
#include "tally/net/tcp_transport.h"
#include "test_util.h"

namespace tally::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string LengthPrefix(uint32_t n) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Connects a raw socket to `endpoint`, sends `bytes`, optionally half-closes,
// and reports whether the server then closed the connection (read returns
// EOF or a reset) within the receive timeout.
bool ServerClosesAfter(const std::string& endpoint, const std::string& bytes, bool half_close) {
  asio::io_context io;
  tcp::socket socket(io);
  const size_t colon = endpoint.rfind(':');
  tcp::endpoint ep(asio::ip::make_address(endpoint.substr(0, colon)),
                   static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  socket.connect(ep);
  // SO_RCVTIMEO bounds the blocking read below so a hung server fails the
  // test instead of hanging it.
  struct timeval tv {
    10, 0
  };
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  boost::system::error_code ec;
  asio::write(socket, asio::buffer(bytes), ec);
  if (half_close) socket.shutdown(tcp::socket::shutdown_send, ec);
  char buf[256];
  for (;;) {
    socket.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::eof || ec == asio::error::connection_reset) return true;
    if (ec) return false;  // timed out (EAGAIN) or another error
  }
}

class TcpGarbageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::AddEcho(registry_);
    auto server = transport_.Listen("127.0.0.1:0", &registry_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    channel_ = transport_.Connect(server_->endpoint());
    ASSERT_TRUE(testing::CallSync(*channel_, "echo.echo", "before").ok());
  }

  void ExpectStillServing() {
    auto r = testing::CallSync(*channel_, "echo.echo", "after");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, "echo:after");
    // A fresh connection works too.
    auto fresh = transport_.Connect(server_->endpoint());
    EXPECT_TRUE(testing::CallSync(*fresh, "echo.echo", "fresh").ok());
  }

  ServiceRegistry registry_;
  TcpTransport transport_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<Channel> channel_;
};

TEST_F(TcpGarbageTest, RandomGarbageClosesOnlyThatConnection) {
  std::mt19937 rng(2024);
  std::string junk(4096, '\0');
  for (auto& c : junk) c = static_cast<char>(rng());
  // A plausible length so the server reads the body and fails to parse it.
  junk.replace(0, 4, LengthPrefix(static_cast<uint32_t>(junk.size() - 4)));
  EXPECT_TRUE(ServerClosesAfter(server_->endpoint(), junk, /*half_close=*/false));
  ExpectStillServing();
}

TEST_F(TcpGarbageTest, UnparsableBodyClosesConnection) {
  std::string bytes = LengthPrefix(16) + std::string(16, '\xff');
  EXPECT_TRUE(ServerClosesAfter(server_->endpoint(), bytes, false));
  ExpectStillServing();
}

TEST_F(TcpGarbageTest, ZeroLengthFrameClosesConnection) {
  EXPECT_TRUE(ServerClosesAfter(server_->endpoint(), LengthPrefix(0), false));
  ExpectStillServing();
}

TEST_F(TcpGarbageTest, OversizedLengthPrefixClosesConnection) {
  EXPECT_TRUE(ServerClosesAfter(server_->endpoint(), LengthPrefix(70000000) + "abc", false));
  ExpectStillServing();
}

TEST_F(TcpGarbageTest, TruncatedFrameThenHalfCloseClosesConnection) {
  proto::Frame f;
  f.set_kind(proto::Frame::REQUEST);
  f.set_request_id(1);
  f.set_method("echo.echo");
  f.set_payload(std::string(100, 'p'));
  auto wire = EncodeFrame(f);
  ASSERT_TRUE(wire.ok());
  EXPECT_TRUE(ServerClosesAfter(server_->endpoint(), wire->substr(0, wire->size() / 2), true));
  ExpectStillServing();
}

TEST_F(TcpGarbageTest, ResponseFrameSentToServerClosesConnection) {
  proto::Frame f;
  f.set_kind(proto::Frame::RESPONSE);
  f.set_request_id(1);
  auto wire = EncodeFrame(f);
  ASSERT_TRUE(wire.ok());
  EXPECT_TRUE(ServerClosesAfter(server_->endpoint(), *wire, false));
  ExpectStillServing();
}

TEST_F(TcpGarbageTest, ValidRawRequestGetsAResponse) {
  proto::Frame f;
  f.set_kind(proto::Frame::REQUEST);
  f.set_request_id(42);
  f.set_method("echo.echo");
  f.set_payload("raw");
  auto wire = EncodeFrame(f);
  ASSERT_TRUE(wire.ok());
  asio::io_context io;
  tcp::socket socket(io);
  const std::string ep = server_->endpoint();
  const size_t colon = ep.rfind(':');
  socket.connect(tcp::endpoint(asio::ip::make_address(ep.substr(0, colon)),
                               static_cast<uint16_t>(std::stoi(ep.substr(colon + 1)))));
  asio::write(socket, asio::buffer(*wire));
  FrameDecoder decoder;
  char buf[4096];
  for (;;) {
    size_t n = socket.read_some(asio::buffer(buf));
    decoder.Feed(std::string_view(buf, n));
    auto r = decoder.Next();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (!r->has_value()) continue;
    EXPECT_EQ((*r)->kind(), proto::Frame::RESPONSE);
    EXPECT_EQ((*r)->request_id(), 42u);
    EXPECT_EQ((*r)->payload(), "echo:raw");
    break;
  }
}

}  // namespace
}  // namespace tally::net
