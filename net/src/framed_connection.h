#pragma once

// One TCP connection carrying Frames in both directions: a reader coroutine
// that decodes frames and hands them to OnFrame, and a writer coroutine that
// drains everything queued since its last write in one async_write (frames
// are encoded back to back into one buffer, so N queued frames cost one
// system call). All state lives on the socket's strand; every method below
// must be called on it.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <memory>
#include <string>
#include <vector>

#include "io_core.h"
#include "tally/base/status.h"
#include "tally/net/frame.h"

namespace tally::net::internal {

namespace asio = boost::asio;
using Strand = asio::strand<asio::io_context::executor_type>;

class FramedConnection : public std::enable_shared_from_this<FramedConnection> {
 public:
  // `socket` must be connected and use `strand` as its executor; `core`
  // is the io_context's owner, kept alive so that the socket, timers and
  // strand are destroyed before it, whichever thread drops the last
  // reference. Reads pause
  // while more than `max_queued_bytes` wait to be written if
  // `pause_reads_when_full` (server side: backpressure on a peer that does
  // not read its responses).
  FramedConnection(std::shared_ptr<IoCore> core, Strand strand, asio::ip::tcp::socket socket,
                   std::string peer, size_t max_queued_bytes, bool pause_reads_when_full);
  virtual ~FramedConnection() = default;

  // Spawns the reader and writer. Call once, after construction.
  void Start();

  // Queues `frame` for writing. Returns TooLarge (frame over the limit;
  // nothing queued) or Unavailable (connection closed).
  Status Send(const proto::Frame& frame);

  // Closes the socket and calls OnClosed(why) once. Idempotent.
  void Close(const Status& why);

  bool closed() const { return closed_; }
  size_t queued_bytes() const { return out_.size() + writing_.size(); }
  size_t max_queued_bytes() const { return max_queued_bytes_; }
  const std::string& peer() const { return peer_; }
  Strand strand() const { return strand_; }
  IoCore* core() const { return core_.get(); }

 protected:
  // A decoded frame. May call Close.
  virtual void OnFrame(proto::Frame frame) = 0;
  // The connection closed (error, peer, or Close). Called once.
  virtual void OnClosed(const Status& why) = 0;

 private:
  asio::awaitable<void> ReadLoop();
  asio::awaitable<void> WriteLoop();

  std::shared_ptr<IoCore> core_;  // first member: destroyed last
  Strand strand_;
  asio::ip::tcp::socket socket_;
  std::string peer_;
  size_t max_queued_bytes_;
  bool pause_reads_when_full_;
  FrameDecoder decoder_;
  std::vector<char> read_buf_;
  std::string out_;      // frames queued since the current write started
  std::string writing_;  // the bytes of the write in flight
  asio::steady_timer write_wake_;
  asio::steady_timer read_wake_;
  bool writer_waiting_ = false;
  bool reader_paused_ = false;
  bool closed_ = false;
};

}  // namespace tally::net::internal
