#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace tally {

// One list of error codes for the whole system. The numbers are stable: they
// travel on the wire (proto ErrorCode mirrors them) and are stored in logs.
// Never renumber; only append.
enum class Code : uint32_t {
  kOk = 0,
  kInvalidArgument = 1,      // the request is wrong; fix it, do not retry
  kNotFound = 2,             // the named thing does not exist
  kAlreadyWritten = 3,       // write-once: the address holds data or a hole; get a new token
  kWrongEpoch = 4,           // sender's epoch differs from the server's; refresh layout, retry
  kTrimmed = 5,              // the address is below the trim mark; its data is gone
  kUnwritten = 6,            // nothing written at the address yet; retry later or fill a hole
  kCorruption = 7,           // stored bytes failed their checksum; never served
  kIoError = 8,              // the disk or file system refused
  kTimeout = 9,              // no answer in time; safe to retry idempotent calls
  kUnavailable = 10,         // cannot reach the peer, or it is shutting down
  kTooLarge = 11,            // an entry or frame exceeds the configured maximum
  kMalformed = 12,           // bytes that do not parse (frames, records, protobufs)
  kOverloaded = 13,          // a bounded queue is full; back off and retry
  kUnknownMethod = 14,       // the server does not serve this RPC method
  kCancelled = 15,           // the operation was abandoned (shutdown, caller gave up)
  kInternal = 16,            // a bug: an invariant failed
  kSealed = 17,              // the unit is sealed at this epoch; refresh layout, retry
  kFailedPrecondition = 18,  // the state does not allow this now (e.g. not bootstrapped)
};

// Stable machine name of a code ("ALREADY_WRITTEN"), used in logs and JSON.
std::string_view CodeName(Code code);

// True when retrying the same request (possibly after refreshing the layout
// or backing off) can succeed.
bool IsRetryable(Code code);

// Status is an error value: a code and a message that names the thing and
// the fix. Cheap to move; an OK status holds no allocation.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool retryable() const { return IsRetryable(code_); }

  // "ALREADY_WRITTEN: address 4812 already written (epoch 3); retry with a new token"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(std::string_view context) const;

  // Fencing errors (WRONG_EPOCH, SEALED) carry the server's current epoch so
  // that the caller can refresh its layout; it travels on the wire.
  Status WithCurrentEpoch(uint64_t epoch) const {
    Status s = *this;
    s.current_epoch_ = epoch;
    return s;
  }
  std::optional<uint64_t> current_epoch() const { return current_epoch_; }

  bool operator==(const Status& other) const = default;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::optional<uint64_t> current_epoch_;
};

// Convenience constructors, one per code.
inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status AlreadyWritten(std::string m) { return {Code::kAlreadyWritten, std::move(m)}; }
inline Status WrongEpoch(std::string m) { return {Code::kWrongEpoch, std::move(m)}; }
inline Status Trimmed(std::string m) { return {Code::kTrimmed, std::move(m)}; }
inline Status Unwritten(std::string m) { return {Code::kUnwritten, std::move(m)}; }
inline Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
inline Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
inline Status Timeout(std::string m) { return {Code::kTimeout, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status TooLarge(std::string m) { return {Code::kTooLarge, std::move(m)}; }
inline Status Malformed(std::string m) { return {Code::kMalformed, std::move(m)}; }
inline Status Overloaded(std::string m) { return {Code::kOverloaded, std::move(m)}; }
inline Status UnknownMethod(std::string m) { return {Code::kUnknownMethod, std::move(m)}; }
inline Status Cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status Sealed(std::string m) { return {Code::kSealed, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {Code::kFailedPrecondition, std::move(m)};
}

// errno -> IoError with `what` (e.g. "fdatasync /data/seg-1") and strerror.
Status ErrnoStatus(std::string_view what, int err);

}  // namespace tally

#define TALLY_CONCAT_INNER(a, b) a##b
#define TALLY_CONCAT(a, b) TALLY_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define TALLY_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::tally::Status _tally_st = (expr);    \
    if (!_tally_st.ok()) return _tally_st; \
  } while (0)
