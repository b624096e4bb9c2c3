#pragma once

// The RPC face of a Sequencer: methods "seq.next", "seq.tail",
// "seq.bootstrap" and "seq.stream_addresses" (proto/tally/proto/
// sequencer.proto, docs/sequencer.md).

#include "tally/net/transport.h"
#include "tally/sequencer/sequencer.h"

namespace tally::sequencer {

// Answers on the calling transport thread: the core never blocks on I/O.
// Errors travel as the response's Error: the core's errors unchanged,
// Malformed for request bytes that do not parse, TooLarge for a
// stream_addresses answer that would not fit in one frame.
class SequencerService {
 public:
  // `core` is not owned and must outlive every registry this registers on.
  explicit SequencerService(Sequencer* core) : core_(core) {}

  // Registers the seq.* handlers. Call before the registry is served.
  void Register(net::ServiceRegistry& registry);

 private:
  Sequencer* core_;
};

}  // namespace tally::sequencer
