#pragma once

// Helpers shared by the transport tests.

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "tally/net/transport.h"

namespace tally::net::testing {

// Generous bound on any single wait in a test; no test asserts speed.
inline constexpr auto kWait = std::chrono::seconds(30);

// Issues a call and blocks for its result (or an Internal error after kWait).
inline Result<std::string> CallSync(Channel& channel, const std::string& method,
                                    const std::string& payload,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto promise = std::make_shared<std::promise<Result<std::string>>>();
  auto future = promise->get_future();
  channel.Call(method, payload, CallOptions{timeout},
               [promise](Result<std::string> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(kWait) != std::future_status::ready) {
    return Internal("test: no callback within the test's wait bound");
  }
  return future.get();
}

// Registers "echo.echo" (returns "echo:" + payload) and "echo.fail"
// (returns NotFound naming the payload).
inline void AddEcho(ServiceRegistry& registry) {
  registry.Register("echo.echo", [](std::string payload, Responder respond) {
    respond(Status::OK(), "echo:" + payload);
  });
  registry.Register("echo.fail", [](std::string payload, Responder respond) {
    respond(NotFound("no such thing: " + payload), {});
  });
}

}  // namespace tally::net::testing
