#include "tally/net/awaitable.h"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <utility>

namespace tally::net {

namespace asio = boost::asio;

boost::asio::awaitable<Result<std::string>> CallAwaitable(Channel& channel, std::string method,
                                                          std::string payload,
                                                          CallOptions options) {
  auto initiate = [&channel, options](auto handler, std::string m, std::string p) {
    using HandlerType = decltype(handler);
    auto ex = asio::get_associated_executor(handler);
    // CallCallback is a std::function (copyable); the awaitable handler is
    // move-only, so it is shared.
    auto shared = std::make_shared<HandlerType>(std::move(handler));
    channel.Call(std::move(m), std::move(p), options, [shared, ex](Result<std::string> result) {
      // Resume on the coroutine's executor, not the transport thread.
      asio::post(ex,
                 [shared, result = std::move(result)]() mutable { (*shared)(std::move(result)); });
    });
  };
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(Result<std::string>)>(
      std::move(initiate), asio::use_awaitable, std::move(method), std::move(payload));
}

}  // namespace tally::net
