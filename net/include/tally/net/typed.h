#pragma once

// Typed wrappers over Channel/ServiceRegistry for protobuf messages.

#include <google/protobuf/arena.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "tally/net/transport.h"

namespace tally::net {

// Calls `method` with a protobuf request; `done` gets the parsed response or
// an error (Malformed if the response does not parse).
template <typename Resp, typename Req, typename Done>
void CallTyped(Channel& channel, std::string method, const Req& request, CallOptions options,
               Done done) {
  std::string payload;
  request.SerializeToString(&payload);
  // Copied before the call: argument evaluation order is unspecified, so
  // capturing `method` beside std::move(method) could capture an empty name.
  std::string m = method;
  channel.Call(std::move(method), std::move(payload), options,
               [done = std::move(done), m = std::move(m)](Result<std::string> r) mutable {
                 if (!r.ok()) {
                   done(Result<Resp>(r.status()));
                   return;
                 }
                 Resp resp;
                 if (!resp.ParseFromString(*r)) {
                   done(Result<Resp>(Malformed("response to " + m + " does not parse")));
                   return;
                 }
                 done(Result<Resp>(std::move(resp)));
               });
}

// A typed responder: reply with a message or a status.
template <typename Resp>
class TypedResponder {
 public:
  explicit TypedResponder(Responder r) : r_(std::move(r)) {}
  void Ok(const Resp& resp) {
    std::string out;
    resp.SerializeToString(&out);
    r_(Status::OK(), std::move(out));
  }
  void Fail(Status status) { r_(std::move(status), std::string()); }
  // Replies with bytes already in Resp's wire format (built without a Resp).
  void OkSerialized(std::string bytes) { r_(Status::OK(), std::move(bytes)); }

 private:
  Responder r_;
};

// Registers a handler taking a parsed Req. A payload that does not parse is
// answered with Malformed and never reaches `fn`.
template <typename Req, typename Resp, typename Fn>
void RegisterTyped(ServiceRegistry& registry, const std::string& method, Fn fn) {
  registry.Register(method, [fn = std::move(fn), method](std::string payload, Responder respond) {
    Req req;
    if (!req.ParseFromString(payload)) {
      respond(Malformed("request for " + method + " does not parse"), std::string());
      return;
    }
    fn(std::move(req), TypedResponder<Resp>(std::move(respond)));
  });
}

// Like RegisterTyped, for requests of many small parts (a batch of
// entries): Req's messages are parsed onto a protobuf arena, a few block
// allocations instead of a few per entry (string bytes past the inline size
// are still allocated one by one), and `fn` gets it by reference, valid only
// until `fn` returns (it must copy what outlives it).
template <typename Req, typename Resp, typename Fn>
void RegisterTypedOnArena(ServiceRegistry& registry, const std::string& method, Fn fn) {
  registry.Register(method, [fn = std::move(fn), method](std::string payload, Responder respond) {
    // The first block is sized from the payload (the message objects take a
    // few times their wire size), but at most 1 MiB: a large request (state
    // transfer sends up to 8 MiB) grows the arena block by block instead of
    // mapping one huge block per request.
    constexpr size_t kMaxBlock = size_t{1} << 20;
    google::protobuf::ArenaOptions options;
    options.start_block_size = std::clamp<size_t>(payload.size() * 4, 4096, kMaxBlock);
    options.max_block_size = kMaxBlock;
    google::protobuf::Arena arena(options);
    Req* req = google::protobuf::Arena::CreateMessage<Req>(&arena);
    if (!req->ParseFromString(payload)) {
      respond(Malformed("request for " + method + " does not parse"), std::string());
      return;
    }
    fn(*req, TypedResponder<Resp>(std::move(respond)));
  });
}

}  // namespace tally::net
