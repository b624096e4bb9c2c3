#pragma once

// Coroutine access to any Channel (TCP or in-process).

#include <boost/asio/awaitable.hpp>
#include <string>

#include "tally/base/result.h"
#include "tally/net/transport.h"

namespace tally::net {

// Issues `method(payload)` on `channel` and resumes the awaiting coroutine,
// on the coroutine's own executor, with the response payload or the call's
// error (see Channel::Call). `channel` must stay alive until the call
// completes, and the coroutine's execution context must outlive the
// channel's transport (its threads post the completion there). Never throws
// for call errors; they come back as the Result. If the coroutine's
// executor stops before the reply, the coroutine is destroyed unresumed.
boost::asio::awaitable<Result<std::string>> CallAwaitable(Channel& channel, std::string method,
                                                          std::string payload,
                                                          CallOptions options = {});

}  // namespace tally::net
