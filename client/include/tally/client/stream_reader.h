#pragma once

// Reads one stream's entries in address order, following the sequencer's
// map of the addresses issued to the stream (seq.stream_addresses).

#include <cstddef>
#include <deque>
#include <optional>

#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/client/client.h"
#include "tally/proto/log_entry.pb.h"

namespace tally::client {

// Not thread-safe: one reader per thread (many readers may share a Client).
class StreamReader {
 public:
  // Reads `stream` from address `from` on. `client` is not owned and must
  // outlive the reader.
  StreamReader(Client* client, StreamId stream, Address from = Address(0));

  // The stream's next entry, in address order. Holes (tokens of the stream
  // that were never written and got filled) are skipped. When the reader has
  // consumed every address it knows, it asks the sequencer for the stream's
  // newer addresses; std::nullopt when there are none yet (call again to
  // follow the stream). An address issued but not yet written is waited for
  // up to hole_fill_timeout (Client::Read).
  // Errors: as Client::Read and Client::StreamAddresses; the reader stays
  // at the failed address, so calling again retries it. An address of the
  // stream below the trim mark is not skipped: Trimmed, naming the stream
  // and the mark (the entry had data the caller would miss); start a new
  // reader at or above the mark, e.g. from a checkpoint's position.
  Result<std::optional<proto::LogEntry>> Next();

  // The first address not yet returned or skipped.
  Address position() const { return position_; }

 private:
  Client* client_;
  StreamId stream_;
  Address position_;
  std::deque<Address> pending_;  // known addresses at or above position_
};

}  // namespace tally::client
