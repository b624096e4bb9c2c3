#include "entry_codec.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

namespace tally::log {

using google::protobuf::internal::WireFormatLite;

Status ValidateDataEntry(const proto::LogEntry& entry) {
  if (entry.type() != proto::DATA && entry.type() != proto::CHECKPOINT) {
    return InvalidArgument("entry at address " + std::to_string(entry.address()) + " has type " +
                           proto::EntryType_Name(entry.type()) +
                           "; log.write takes DATA or CHECKPOINT, use log.fill_hole for holes");
  }
  return Status::OK();
}

Record RecordFromEntry(const proto::LogEntry& entry) {
  Record r;
  r.address = Address(entry.address());
  r.epoch = Epoch(entry.epoch());
  r.type = RecordType::kData;
  r.streams.reserve(entry.streams_size());
  for (const auto& s : entry.streams()) r.streams.push_back(StreamId{s.hi(), s.lo()});
  entry.SerializeToString(&r.payload);
  return r;
}

namespace {

void AppendTag(int field_number, std::string* out) {
  uint32_t tag = WireFormatLite::MakeTag(field_number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  uint8_t buf[10];
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(tag, buf);
  out->append(reinterpret_cast<char*>(buf), end - buf);
}

void AppendVarint(uint64_t v, std::string* out) {
  uint8_t buf[10];
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(v, buf);
  out->append(reinterpret_cast<char*>(buf), end - buf);
}

}  // namespace

void AppendRecordAsEntryField(const Record& record, int field_number, std::string* out) {
  AppendTag(field_number, out);
  if (record.type == RecordType::kHole) {
    proto::LogEntry hole;
    hole.set_address(record.address.value());
    hole.set_epoch(record.epoch.value());
    hole.set_type(proto::HOLE);
    std::string bytes = hole.SerializeAsString();
    AppendVarint(bytes.size(), out);
    out->append(bytes);
    return;
  }
  AppendVarint(record.payload.size(), out);
  out->append(record.payload);
}

}  // namespace tally::log
