#include "tally/net/frame.h"

#include <fmt/format.h>

#include <cstring>

namespace tally::net {
namespace {

void PutU32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v & 0xff);
  p[1] = static_cast<char>((v >> 8) & 0xff);
  p[2] = static_cast<char>((v >> 16) & 0xff);
  p[3] = static_cast<char>((v >> 24) & 0xff);
}

uint32_t GetU32(const char* p) {
  auto b = [p](int i) { return static_cast<uint32_t>(static_cast<unsigned char>(p[i])); };
  return b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
}

constexpr Code kLastKnownCode = Code::kFailedPrecondition;

}  // namespace

Status AppendFrame(const proto::Frame& frame, std::string* out, uint32_t max_frame_bytes) {
  if (frame.kind() != proto::Frame::REQUEST && frame.kind() != proto::Frame::RESPONSE) {
    return InvalidArgument(fmt::format("cannot encode a frame of kind {}; set REQUEST or RESPONSE",
                                       static_cast<int>(frame.kind())));
  }
  const size_t size = frame.ByteSizeLong();
  if (size > max_frame_bytes) {
    return TooLarge(
        fmt::format("frame of {} bytes (method '{}') exceeds the {}-byte limit; split the request",
                    size, frame.method(), max_frame_bytes));
  }
  const size_t start = out->size();
  out->resize(start + kFrameHeaderBytes + size);
  char* p = out->data() + start;
  PutU32(p, static_cast<uint32_t>(size));
  frame.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(p + kFrameHeaderBytes));
  return Status::OK();
}

Result<std::string> EncodeFrame(const proto::Frame& frame, uint32_t max_frame_bytes) {
  std::string out;
  Status s = AppendFrame(frame, &out, max_frame_bytes);
  if (!s.ok()) return s;
  return out;
}

void FrameDecoder::Feed(std::string_view bytes) {
  if (!error_.ok() || bytes.empty()) return;
  // Compact once the consumed prefix dominates, so the buffer stays bounded
  // by one frame plus one read.
  if (head_ > 0 && head_ >= buf_.size() / 2) {
    buf_.erase(0, head_);
    head_ = 0;
  }
  buf_.append(bytes.data(), bytes.size());
}

Result<std::optional<proto::Frame>> FrameDecoder::Next() {
  if (!error_.ok()) return error_;
  const size_t avail = buf_.size() - head_;
  if (avail < kFrameHeaderBytes) return std::optional<proto::Frame>();
  const uint32_t len = GetU32(buf_.data() + head_);
  if (len == 0) {
    error_ = Malformed("frame with length 0 (a Frame always has a kind); closing connection");
    return error_;
  }
  if (len > max_frame_bytes_) {
    error_ = TooLarge(fmt::format("frame of {} bytes exceeds the {}-byte limit; closing connection",
                                  len, max_frame_bytes_));
    return error_;
  }
  if (avail - kFrameHeaderBytes < len) return std::optional<proto::Frame>();
  proto::Frame frame;
  if (!frame.ParseFromArray(buf_.data() + head_ + kFrameHeaderBytes, static_cast<int>(len))) {
    error_ = Malformed(fmt::format(
        "frame of {} bytes does not parse as tally.proto.Frame; closing connection", len));
    return error_;
  }
  if (frame.kind() != proto::Frame::REQUEST && frame.kind() != proto::Frame::RESPONSE) {
    error_ = Malformed(fmt::format(
        "frame of {} bytes has kind {}, neither REQUEST nor RESPONSE; closing connection", len,
        static_cast<int>(frame.kind())));
    return error_;
  }
  head_ += kFrameHeaderBytes + len;
  if (head_ == buf_.size()) {
    buf_.clear();
    head_ = 0;
  }
  return std::optional<proto::Frame>(std::move(frame));
}

proto::Error ToProto(const Status& status) {
  proto::Error e;
  e.set_code(static_cast<proto::ErrorCode>(status.code()));
  e.set_message(status.message());
  if (status.current_epoch().has_value()) e.set_current_epoch(*status.current_epoch());
  return e;
}

Status FromProto(const proto::Error& error) {
  const auto raw = static_cast<uint32_t>(error.code());
  if (raw == 0) return Status::OK();
  if (raw > static_cast<uint32_t>(kLastKnownCode)) {
    return Internal(fmt::format("peer sent unknown error code {}: {}", raw, error.message()));
  }
  const auto code = static_cast<Code>(raw);
  Status s(code, error.message());
  if (code == Code::kWrongEpoch || code == Code::kSealed || error.current_epoch() != 0) {
    s = s.WithCurrentEpoch(error.current_epoch());
  }
  return s;
}

}  // namespace tally::net
