#include "tally/client/stream_reader.h"

namespace tally::client {

StreamReader::StreamReader(Client* client, StreamId stream, Address from)
    : client_(client), stream_(stream), position_(from) {}

Result<std::optional<proto::LogEntry>> StreamReader::Next() {
  while (true) {
    if (pending_.empty()) {
      TALLY_ASSIGN_OR_RETURN(std::vector<Address> fresh,
                             client_->StreamAddresses(stream_, position_));
      if (fresh.empty()) return std::optional<proto::LogEntry>();
      pending_.assign(fresh.begin(), fresh.end());
    }
    const Address next = pending_.front();
    auto read = client_->Read(next);
    if (!read.ok() && read.status().code() == Code::kTrimmed) {
      // Not skipped: the stream had data here, and a consumer that rebuilds
      // state from the stream must not miss it silently.
      return Trimmed("stream " + stream_.ToHex() + ": " + read.status().message() +
                     "; this reader's position is below the trim mark: restore the stream's "
                     "state from a checkpoint and read on from its position with a new "
                     "StreamReader");
    }
    TALLY_ASSIGN_OR_RETURN(proto::LogEntry entry, std::move(read));
    pending_.pop_front();
    position_ = next.next();
    if (entry.type() == proto::HOLE) continue;
    return std::optional<proto::LogEntry>(std::move(entry));
  }
}

}  // namespace tally::client
