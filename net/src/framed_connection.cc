#include "framed_connection.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tally::net::internal {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
// A write buffer that grew past this is released after use so one huge
// burst does not pin memory for the life of the connection.
constexpr size_t kKeepBufferBytes = 4 * 1024 * 1024;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

}  // namespace

FramedConnection::FramedConnection(std::shared_ptr<IoCore> core, Strand strand,
                                   asio::ip::tcp::socket socket, std::string peer,
                                   size_t max_queued_bytes, bool pause_reads_when_full)
    : core_(std::move(core)),
      strand_(std::move(strand)),
      socket_(std::move(socket)),
      peer_(std::move(peer)),
      max_queued_bytes_(max_queued_bytes),
      pause_reads_when_full_(pause_reads_when_full),
      read_buf_(kReadChunkBytes),
      write_wake_(strand_),
      read_wake_(strand_) {}

void FramedConnection::Start() {
  auto self = shared_from_this();
  // Neither loop throws by design (as_tuple everywhere); if something does
  // (bad_alloc), the connection closes rather than silently losing a loop.
  auto on_exit = [self](std::exception_ptr e) {
    if (!e) return;
    spdlog::error("net: connection to {} failed with an exception; closing it", self->peer_);
    self->Close(Internal("connection to " + self->peer_ + " failed with an exception"));
  };
  asio::co_spawn(
      strand_, [self]() { return self->ReadLoop(); }, asio::bind_executor(strand_, on_exit));
  asio::co_spawn(
      strand_, [self]() { return self->WriteLoop(); }, asio::bind_executor(strand_, on_exit));
}

Status FramedConnection::Send(const proto::Frame& frame) {
  if (closed_) return Unavailable("connection to " + peer_ + " is closed");
  Status s = AppendFrame(frame, &out_);
  if (!s.ok()) return s;
  if (writer_waiting_) write_wake_.cancel();
  return Status::OK();
}

void FramedConnection::Close(const Status& why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  write_wake_.cancel();
  read_wake_.cancel();
  OnClosed(why);
}

asio::awaitable<void> FramedConnection::ReadLoop() {
  auto self = shared_from_this();  // keeps the connection alive while reading
  while (!closed_) {
    if (pause_reads_when_full_ && queued_bytes() > max_queued_bytes_) {
      reader_paused_ = true;
      read_wake_.expires_at(asio::steady_timer::time_point::max());
      co_await read_wake_.async_wait(kNoThrow);
      reader_paused_ = false;
      continue;
    }
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(read_buf_), kNoThrow);
    if (closed_) break;
    if (ec) {
      std::string why;
      if (ec == asio::error::eof) {
        why = decoder_.buffered_bytes() > 0
                  ? fmt::format(
                        "{} closed the connection in the middle of a frame ({} bytes "
                        "of it received)",
                        peer_, decoder_.buffered_bytes())
                  : fmt::format("{} closed the connection", peer_);
      } else {
        why = fmt::format("reading from {} failed: {}", peer_, ec.message());
      }
      spdlog::debug("net: {}", why);
      Close(Unavailable(why));
      break;
    }
    decoder_.Feed(std::string_view(read_buf_.data(), n));
    while (!closed_) {
      auto next = decoder_.Next();
      if (!next.ok()) {
        spdlog::error("net: bad frame from {}: {}", peer_, next.status().ToString());
        Close(next.status());
        break;
      }
      if (!next->has_value()) break;
      OnFrame(std::move(**next));
    }
  }
}

asio::awaitable<void> FramedConnection::WriteLoop() {
  auto self = shared_from_this();
  while (!closed_) {
    if (out_.empty()) {
      writer_waiting_ = true;
      write_wake_.expires_at(asio::steady_timer::time_point::max());
      co_await write_wake_.async_wait(kNoThrow);
      writer_waiting_ = false;
      continue;
    }
    // Everything queued so far goes out in one write; frames queued while it
    // is in flight gather in out_ for the next one.
    writing_.swap(out_);
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(writing_), kNoThrow);
    if (writing_.capacity() > kKeepBufferBytes) {
      std::string().swap(writing_);
    } else {
      writing_.clear();
    }
    if (closed_) break;
    if (ec) {
      std::string why = fmt::format("writing to {} failed: {}", peer_, ec.message());
      spdlog::debug("net: {}", why);
      Close(Unavailable(why));
      break;
    }
    if (reader_paused_ && queued_bytes() <= max_queued_bytes_) read_wake_.cancel();
  }
}

}  // namespace tally::net::internal
