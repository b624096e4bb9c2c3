#pragma once

// Private: conversions between wire entries (proto::LogEntry) and storage
// records. A DATA record's payload is the serialized LogEntry, so reads
// return exactly the bytes the writer sent (with the unit's epoch stamped).

#include <string>

#include "tally/base/status.h"
#include "tally/log/record.h"
#include "tally/proto/log_entry.pb.h"

namespace tally::log {

// Refuses entries a client may not write with log.write: wrong type, or a
// payload-less type mismatch. Says what to do instead.
Status ValidateDataEntry(const proto::LogEntry& entry);

// The storage record for a DATA entry (entry.epoch already set).
Record RecordFromEntry(const proto::LogEntry& entry);

// Appends `record` as field `field_number` (a length-delimited LogEntry) of
// a message being built in `out`, without parsing the stored bytes: holes
// are synthesized, data payloads are copied verbatim.
void AppendRecordAsEntryField(const Record& record, int field_number, std::string* out);

}  // namespace tally::log
