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
    TALLY_ASSIGN_OR_RETURN(proto::LogEntry entry, client_->Read(next));
    pending_.pop_front();
    position_ = next.next();
    if (entry.type() == proto::HOLE) continue;
    return std::optional<proto::LogEntry>(std::move(entry));
  }
}

}  // namespace tally::client
