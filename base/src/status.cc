#include "tally/base/status.h"

#include <cstring>

namespace tally {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "OK";
    case Code::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case Code::kNotFound:
      return "NOT_FOUND";
    case Code::kAlreadyWritten:
      return "ALREADY_WRITTEN";
    case Code::kWrongEpoch:
      return "WRONG_EPOCH";
    case Code::kTrimmed:
      return "TRIMMED";
    case Code::kUnwritten:
      return "UNWRITTEN";
    case Code::kCorruption:
      return "CORRUPTION";
    case Code::kIoError:
      return "IO_ERROR";
    case Code::kTimeout:
      return "TIMEOUT";
    case Code::kUnavailable:
      return "UNAVAILABLE";
    case Code::kTooLarge:
      return "TOO_LARGE";
    case Code::kMalformed:
      return "MALFORMED";
    case Code::kOverloaded:
      return "OVERLOADED";
    case Code::kUnknownMethod:
      return "UNKNOWN_METHOD";
    case Code::kCancelled:
      return "CANCELLED";
    case Code::kInternal:
      return "INTERNAL";
    case Code::kSealed:
      return "SEALED";
    case Code::kFailedPrecondition:
      return "FAILED_PRECONDITION";
  }
  return "UNKNOWN_CODE";
}

bool IsRetryable(Code code) {
  switch (code) {
    case Code::kWrongEpoch:
    case Code::kUnwritten:
    case Code::kTimeout:
    case Code::kUnavailable:
    case Code::kOverloaded:
    case Code::kSealed:
      return true;
    default:
      return false;
  }
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(CodeName(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

Status ErrnoStatus(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  return IoError(std::move(m));
}

}  // namespace tally
