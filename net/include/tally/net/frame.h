#pragma once

// The wire codec, with no sockets: every message on a connection is one
// tally.proto.Frame sent as
//   [u32 little-endian length of the serialized Frame][serialized Frame]
// (docs/rpc.md). FrameDecoder is a pure state machine over bytes, so that
// the TCP transport, the in-process transport and the tests all parse
// frames the same way.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tally/base/result.h"
#include "tally/base/status.h"
#include "tally/net/transport.h"
#include "tally/proto/common.pb.h"
#include "tally/proto/rpc.pb.h"

namespace tally::net {

// Bytes of the length prefix in front of every frame.
inline constexpr size_t kFrameHeaderBytes = 4;

// Appends the encoded `frame` (prefix and body) to `*out`. Returns
// InvalidArgument if the frame's kind is unset, TooLarge if its serialized
// size exceeds `max_frame_bytes`; `*out` is unchanged on error.
Status AppendFrame(const proto::Frame& frame, std::string* out,
                   uint32_t max_frame_bytes = kMaxFrameBytes);

// Same as AppendFrame into a fresh string.
Result<std::string> EncodeFrame(const proto::Frame& frame,
                                uint32_t max_frame_bytes = kMaxFrameBytes);

// Splits a byte stream into frames. Feed bytes as they arrive (any split,
// even one byte at a time), then call Next until it returns no frame.
// Not thread-safe; one decoder per connection direction.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame_bytes = kMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Appends received bytes. Ignored after an error.
  void Feed(std::string_view bytes);

  // The next complete frame, std::nullopt when more bytes are needed, or an
  // error: TooLarge when a length prefix exceeds the limit, Malformed when
  // the length is 0, the body does not parse as a Frame, or its kind is
  // neither REQUEST nor RESPONSE. Errors are sticky: the stream cannot be
  // resynchronized, so the connection must be closed.
  Result<std::optional<proto::Frame>> Next();

  // Bytes received but not yet returned as frames.
  size_t buffered_bytes() const { return buf_.size() - head_; }

 private:
  uint32_t max_frame_bytes_;
  std::string buf_;
  size_t head_ = 0;  // first unconsumed byte of buf_
  Status error_;
};

// Status -> wire Error, keeping code, message and current epoch.
proto::Error ToProto(const Status& status);

// Wire Error -> Status. An OK code gives OK; a code this build does not know
// becomes Internal naming the number.
Status FromProto(const proto::Error& error);

}  // namespace tally::net
