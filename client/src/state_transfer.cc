#include "tally/client/state_transfer.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "rpc.h"
#include "tally/net/frame.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client {
namespace {

namespace pbio = google::protobuf::io;
using google::protobuf::internal::WireFormatLite;

constexpr size_t kMaxBatchBytes = 8u << 20;  // per log.write_batch

// Wire types and the field numbers this file reads or writes without a
// message object (tally/proto/logunit.proto, log_entry.proto).
constexpr auto kVarint = WireFormatLite::WIRETYPE_VARINT;
constexpr auto kLengthDelimited = WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
constexpr uint32_t kRangeEntriesField = 1;   // ReadRangeResponse.entries
constexpr uint32_t kRangeTrimMarkField = 2;  // ReadRangeResponse.trim_mark
constexpr uint32_t kRangeNextField = 3;      // ReadRangeResponse.next
constexpr uint32_t kBatchEpochField = 1;     // WriteBatchRequest.epoch
constexpr uint32_t kBatchEntriesField = 2;   // WriteBatchRequest.entries
constexpr uint32_t kEntryAddressField = 1;   // LogEntry.address
constexpr uint32_t kEntryTypeField = 3;      // LogEntry.type
constexpr uint32_t kEntryPayloadField = 5;   // LogEntry.payload

// ---- Entries in wire form ------------------------------------------------
//
// The source's entries go to the target as the bytes the source sent: the
// copy reads only each entry's address, type and payload size, so a payload
// is copied once (into the write request) instead of being parsed into a
// message and serialized again.

struct WireEntry {
  uint64_t address = 0;
  bool hole = false;
  uint64_t payload_bytes = 0;
  std::string_view bytes;  // one serialized LogEntry, inside its answer
};

// A log.read_range answer. `entries` point into `*answer`.
struct WireRange {
  std::shared_ptr<const std::string> answer;
  std::vector<WireEntry> entries;  // ascending addresses
  uint64_t trim_mark = 0;
  uint64_t next = 0;
};

// Reads a length-delimited field's bytes as a view into `data`.
bool ReadView(pbio::CodedInputStream& in, std::string_view data, std::string_view* out) {
  uint32_t n = 0;
  if (!in.ReadVarint32(&n) || n > INT32_MAX) return false;
  const int pos = in.CurrentPosition();
  if (!in.Skip(static_cast<int>(n))) return false;
  *out = data.substr(static_cast<size_t>(pos), n);
  return true;
}

pbio::CodedInputStream StreamOver(std::string_view data) {
  return pbio::CodedInputStream(reinterpret_cast<const uint8_t*>(data.data()),
                                static_cast<int>(data.size()));
}

std::optional<WireEntry> ScanEntry(std::string_view bytes) {
  WireEntry e;
  e.bytes = bytes;
  auto in = StreamOver(bytes);
  while (uint32_t tag = in.ReadTag()) {
    const uint32_t field = WireFormatLite::GetTagFieldNumber(tag);
    const auto type = WireFormatLite::GetTagWireType(tag);
    if (field == kEntryAddressField && type == kVarint) {
      if (!in.ReadVarint64(&e.address)) return std::nullopt;
    } else if (field == kEntryTypeField && type == kVarint) {
      uint32_t entry_type = 0;
      if (!in.ReadVarint32(&entry_type)) return std::nullopt;
      e.hole = entry_type == proto::HOLE;
    } else if (field == kEntryPayloadField && type == kLengthDelimited) {
      std::string_view payload;
      if (!ReadView(in, bytes, &payload)) return std::nullopt;
      e.payload_bytes = payload.size();
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return std::nullopt;
    }
  }
  if (static_cast<size_t>(in.CurrentPosition()) != bytes.size()) return std::nullopt;
  return e;
}

// Splits a serialized ReadRangeResponse without copying its entries.
Result<WireRange> ScanRange(std::string answer) {
  WireRange r;
  r.answer = std::make_shared<const std::string>(std::move(answer));
  const std::string_view data(*r.answer);
  auto in = StreamOver(data);
  while (uint32_t tag = in.ReadTag()) {
    const uint32_t field = WireFormatLite::GetTagFieldNumber(tag);
    const auto type = WireFormatLite::GetTagWireType(tag);
    if (field == kRangeEntriesField && type == kLengthDelimited) {
      std::string_view bytes;
      std::optional<WireEntry> e;
      if (ReadView(in, data, &bytes)) e = ScanEntry(bytes);
      if (!e.has_value()) break;
      r.entries.push_back(*e);
    } else if (field == kRangeTrimMarkField && type == kVarint) {
      if (!in.ReadVarint64(&r.trim_mark)) break;
    } else if (field == kRangeNextField && type == kVarint) {
      if (!in.ReadVarint64(&r.next)) break;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      break;
    }
  }
  if (static_cast<size_t>(in.CurrentPosition()) != data.size()) {
    return Malformed("log.read_range answer does not parse");
  }
  if (!std::is_sorted(
          r.entries.begin(), r.entries.end(),
          [](const WireEntry& a, const WireEntry& b) { return a.address < b.address; })) {
    return Malformed("log.read_range answered entries out of address order");
  }
  return r;
}

void AppendVarint(uint64_t v, std::string* out) {
  uint8_t buf[10];
  uint8_t* end = pbio::CodedOutputStream::WriteVarint64ToArray(v, buf);
  out->append(reinterpret_cast<const char*>(buf), end - buf);
}

// A serialized WriteBatchRequest of `entries`, built from their wire bytes.
std::string BatchRequest(uint64_t epoch, const std::vector<WireEntry>& entries) {
  size_t size = 11;
  for (const auto& e : entries) size += e.bytes.size() + 6;
  std::string out;
  out.reserve(size);
  AppendVarint(WireFormatLite::MakeTag(kBatchEpochField, kVarint), &out);
  AppendVarint(epoch, &out);
  const uint32_t entry_tag = WireFormatLite::MakeTag(kBatchEntriesField, kLengthDelimited);
  for (const auto& e : entries) {
    AppendVarint(entry_tag, &out);
    AppendVarint(e.bytes.size(), &out);
    out.append(e.bytes);
  }
  return out;
}

// ---- Comparing entries ---------------------------------------------------

// Equal for healing: type, payload and streams. The epoch differs between
// replicas (a unit stores the epoch of the request that wrote it); metadata
// is the writer's and not compared either.
bool SameEntry(const proto::LogEntry& a, const proto::LogEntry& b) {
  if (a.type() != b.type()) return false;
  if (a.type() == proto::HOLE) return true;
  if (a.payload() != b.payload() || a.streams_size() != b.streams_size()) return false;
  for (int i = 0; i < a.streams_size(); ++i) {
    if (a.streams(i).hi() != b.streams(i).hi() || a.streams(i).lo() != b.streams(i).lo()) {
      return false;
    }
  }
  return true;
}

Status Divergent(const std::string& to_unit, const std::string& from_unit, uint64_t address,
                 bool source_lacks = false) {
  const std::string why = source_lacks ? from_unit + " holds nothing there: the chain never had it"
                                       : "its entry differs from " + from_unit + "'s";
  return FailedPrecondition(to_unit + " holds divergent data at address " +
                            std::to_string(address) + " (" + why +
                            "); the node must be wiped (stopped, its data dir removed) before "
                            "it rejoins: state transfer never overwrites");
}

// ---- Calls ---------------------------------------------------------------

// An RPC whose answer is collected later, so that the copy reads the next
// chunk while writes are in flight. Get blocks through `threads` and never
// holds the mutex while it waits.
class PendingCall {
 public:
  PendingCall(net::Channel& channel, std::string method, std::string payload,
              std::chrono::milliseconds timeout)
      : state_(std::make_shared<State>()) {
    net::CallOptions o;
    o.timeout = timeout;
    channel.Call(std::move(method), std::move(payload), o, [s = state_](Result<std::string> r) {
      Threads::Wake wake;
      {
        std::lock_guard lock(s->mu);
        s->value.emplace(std::move(r));
        wake = std::move(s->wake);
      }
      if (wake) wake();
    });
  }

  Result<std::string> Get(Threads& threads) {
    threads.Wait([this](Threads::Wake wake) {
      std::unique_lock lock(state_->mu);
      if (state_->value.has_value()) {
        lock.unlock();
        wake();
        return;
      }
      state_->wake = std::move(wake);
    });
    std::lock_guard lock(state_->mu);
    return std::move(*state_->value);
  }

 private:
  struct State {
    std::mutex mu;
    std::optional<Result<std::string>> value;  // GUARDED_BY(mu)
    Threads::Wake wake;                        // GUARDED_BY(mu)
  };
  std::shared_ptr<State> state_;
};

// One log.write_batch in flight, and the end of the chunk it finishes.
struct InFlight {
  std::unique_ptr<PendingCall> call;          // nullptr: the chunk needed no write
  std::shared_ptr<const std::string> answer;  // keeps `entries` valid
  std::vector<WireEntry> entries;             // what `call` writes, in order
  std::optional<uint64_t> chunk_end;          // set on a chunk's last batch
};

class Copier {
 public:
  Copier(net::Transport& transport, const std::string& from_unit, const std::string& to_unit,
         uint64_t epoch, ProgressFn progress, const CopyOptions& options)
      : from_unit_(from_unit),
        to_unit_(to_unit),
        epoch_(epoch),
        progress_(std::move(progress)),
        options_(options),
        threads_(options.threads != nullptr ? options.threads : SystemThreads()),
        src_(transport.Connect(from_unit)),
        dst_(transport.Connect(to_unit)),
        stripes_(std::max<uint32_t>(options.stripes, 1)),
        chunk_(std::max<uint32_t>(options.chunk_entries, 1)),
        max_writes_(std::max<uint32_t>(options.writes_in_flight, 1)) {}

  Result<TransferStats> Run(uint64_t from, uint64_t to) {
    stats_.next = from;
    to_ = to;
    Status st = Copy(from);
    if (!st.ok()) {
      // Writes still in flight could land after the caller moved on (and,
      // say, wiped the target): wait for them.
      for (auto& f : inflight_) {
        if (f.call != nullptr) (void)f.call->Get(*threads_);
      }
      return st;
    }
    return stats_;
  }

 private:
  Status Copy(uint64_t from) {
    if (from >= to_) return Status::OK();
    // The target's tail now. It is in no chain while it is copied to, so at
    // and above this address it holds only what copies write (this one, or
    // one of another stripe): no need to read it back there.
    proto::TailRequest treq;
    treq.set_epoch(epoch_);
    auto tail = Call<proto::TailResponse>(*dst_, "log.tail", treq);
    if (!tail.ok()) return tail.status().WithContext("log.tail on " + to_unit_);
    target_tail_ = tail->local_tail();

    std::unique_ptr<PendingCall> ahead;
    uint64_t cur = from;
    while (cur < to_) {
      TALLY_ASSIGN_OR_RETURN(WireRange range, ReadChunk(cur, std::move(ahead)));
      const uint64_t end = std::min(std::max(range.next, cur + 1), to_);
      if (end < to_) ahead = StartRead(end);
      TALLY_RETURN_IF_ERROR(CopyChunk(cur, end, std::move(range)));
      while (inflight_.size() > max_writes_) TALLY_RETURN_IF_ERROR(FinishOldest());
      cur = end;
    }
    while (!inflight_.empty()) TALLY_RETURN_IF_ERROR(FinishOldest());
    return Status::OK();
  }

  // Runs `call` until it succeeds, fails for good, or `retries` transient
  // failures have passed.
  template <typename F>
  auto Retry(F call) -> decltype(call()) {
    for (int attempt = 0;; ++attempt) {
      auto r = call();
      if (r.ok() || !internal::IsTransient(r.status()) || attempt >= options_.retries) return r;
      Pause(attempt);
    }
  }
  void Pause(int attempt) { threads_->SleepNanos(int64_t{50'000'000} * (attempt + 1)); }

  template <typename Resp, typename Req>
  Result<Resp> Call(net::Channel& channel, const char* method, const Req& req) {
    return Retry([&] {
      return internal::CallSync<Resp>(channel, method, req, options_.rpc_timeout, *threads_);
    });
  }

  Result<std::string> CallRaw(net::Channel& channel, const char* method, std::string payload) {
    net::CallOptions o;
    o.timeout = options_.rpc_timeout;
    return WaitForValue<Result<std::string>>(
        *threads_, [&](std::function<void(Result<std::string>)> done) {
          channel.Call(method, std::move(payload), o, std::move(done));
        });
  }

  proto::ReadRangeRequest RangeRequest(uint64_t from, uint64_t to, uint32_t max_entries) const {
    proto::ReadRangeRequest req;
    req.set_epoch(epoch_);
    req.set_from(from);
    req.set_to(to);
    req.set_max_entries(max_entries);
    return req;
  }

  // The source keeps only the stripe's addresses (an older unit ignores the
  // filter: CopyChunk filters again).
  proto::ReadRangeRequest SourceRequest(uint64_t from) const {
    auto req = RangeRequest(from, to_, chunk_);
    req.set_stripes(stripes_);
    req.set_stripe(options_.stripe);
    return req;
  }

  std::unique_ptr<PendingCall> StartRead(uint64_t from) {
    return std::make_unique<PendingCall>(
        *src_, "log.read_range", SourceRequest(from).SerializeAsString(), options_.rpc_timeout);
  }

  // The source's chunk at `cur`: the answer to `ahead` (a read issued
  // earlier) or a new read; retried on transient errors, halved on TOO_LARGE.
  Result<WireRange> ReadChunk(uint64_t cur, std::unique_ptr<PendingCall> ahead) {
    for (int transient = 0;;) {
      Result<std::string> r = ahead != nullptr ? ahead->Get(*threads_)
                                               : CallRaw(*src_, "log.read_range",
                                                         SourceRequest(cur).SerializeAsString());
      ahead.reset();
      if (r.ok()) {
        auto range = ScanRange(std::move(*r));
        if (!range.ok()) return range.status().WithContext("from " + from_unit_);
        return range;
      }
      if (r.status().code() == Code::kTooLarge && chunk_ > 1) {
        chunk_ /= 2;
        continue;
      }
      if (internal::IsTransient(r.status()) && transient < options_.retries) {
        Pause(transient++);
        continue;
      }
      return r.status().WithContext("log.read_range [" + std::to_string(cur) + ", " +
                                    std::to_string(to_) + ") on " + from_unit_);
    }
  }

  // Copies the stripe's entries of the source's chunk [cur, end): checks
  // what the target already holds, fills holes, and queues the writes.
  Status CopyChunk(uint64_t cur, uint64_t end, WireRange range) {
    stats_.trim_mark = std::max(stats_.trim_mark, range.trim_mark);
    if (!target_trimmed_ && range.trim_mark > cur) {
      // The source answers TRIMMED below its mark: so must the target, or a
      // reader at the new tail would see UNWRITTEN and try to fill holes.
      proto::TrimRequest req;
      req.set_epoch(epoch_);
      req.set_address(range.trim_mark);
      auto t = Call<proto::TrimResponse>(*dst_, "log.trim", req);
      if (!t.ok()) return t.status().WithContext("trimming " + to_unit_);
      target_trimmed_ = true;
    }
    std::vector<WireEntry> mine;
    for (const auto& e : range.entries) {
      if (e.address % stripes_ == options_.stripe) mine.push_back(e);
    }
    NoteFirstAbsent(std::max(cur, range.trim_mark), end, mine);
    if (cur < target_tail_) {
      TALLY_RETURN_IF_ERROR(CheckTarget(cur, std::min(end, target_tail_), range.trim_mark, &mine));
    }
    std::vector<WireEntry> batch;
    size_t batch_bytes = 0;
    for (const auto& e : mine) {
      if (e.hole) {
        TALLY_RETURN_IF_ERROR(FillHole(e));
        continue;
      }
      if (!batch.empty() && batch_bytes + e.bytes.size() > kMaxBatchBytes) {
        StartWrite(range.answer, std::move(batch), std::nullopt);
        batch.clear();
        batch_bytes = 0;
      }
      batch_bytes += e.bytes.size();
      batch.push_back(e);
    }
    StartWrite(range.answer, std::move(batch), end);
    return Status::OK();
  }

  // Sets stats_.first_absent, if not set yet, to the first address of the
  // stripe in [lo, hi) that `mine` (the source's entries there, ascending)
  // lacks.
  void NoteFirstAbsent(uint64_t lo, uint64_t hi, const std::vector<WireEntry>& mine) {
    if (stats_.first_absent != UINT64_MAX || lo >= hi) return;
    uint64_t a = lo + (options_.stripe + stripes_ - lo % stripes_) % stripes_;
    size_t k = 0;
    for (; a < hi; a += stripes_) {
      while (k < mine.size() && mine[k].address < a) ++k;
      if (k == mine.size() || mine[k].address != a) {
        stats_.first_absent = a;
        return;
      }
    }
  }

  // Below the target's tail: what the target holds of the stripe in
  // [lo, hi) must be what the source holds there. Identical entries are
  // dropped from `mine` (nothing to write); anything else is divergence,
  // including an entry the source lacks (above its trim mark `src_trim`).
  Status CheckTarget(uint64_t lo, uint64_t hi, uint64_t src_trim, std::vector<WireEntry>* mine) {
    std::map<uint64_t, proto::LogEntry> held;
    for (uint64_t p = lo; p < hi;) {
      auto r = Call<proto::ReadRangeResponse>(*dst_, "log.read_range", RangeRequest(p, hi, chunk_));
      if (!r.ok()) return r.status().WithContext("log.read_range on " + to_unit_);
      for (auto& e : *r->mutable_entries()) {
        if (e.address() % stripes_ != options_.stripe || e.address() < src_trim) continue;
        const uint64_t a = e.address();
        held.emplace(a, std::move(e));
      }
      if (r->next() <= p) break;
      p = r->next();
    }
    if (held.empty()) return Status::OK();
    std::vector<WireEntry> rest;
    for (const auto& e : *mine) {
      auto it = held.find(e.address);
      if (it == held.end()) {
        rest.push_back(e);
        continue;
      }
      proto::LogEntry want;
      if (!want.ParseFromArray(e.bytes.data(), static_cast<int>(e.bytes.size()))) {
        return Malformed("an entry from " + from_unit_ + " does not parse");
      }
      if (!SameEntry(it->second, want)) return Divergent(to_unit_, from_unit_, e.address);
      ++stats_.skipped;
      held.erase(it);
    }
    *mine = std::move(rest);
    for (const auto& [address, entry] : held) {
      TALLY_RETURN_IF_ERROR(CheckSourceLacks(address, entry));
    }
    return Status::OK();
  }

  // The target holds `entry` at `address`, which the source's chunk did not
  // list. Asks the source once more (it may have been written or trimmed
  // since): the same entry is fine, trimmed is fine, nothing is divergence.
  Status CheckSourceLacks(uint64_t address, const proto::LogEntry& entry) {
    proto::ReadRequest req;
    req.set_epoch(epoch_);
    req.set_address(address);
    auto r = Call<proto::ReadResponse>(*src_, "log.read", req);
    if (r.ok()) {
      if (!SameEntry(r->entry(), entry)) return Divergent(to_unit_, from_unit_, address);
      ++stats_.skipped;
      return Status::OK();
    }
    if (r.status().code() == Code::kTrimmed) return Status::OK();
    if (r.status().code() == Code::kUnwritten) {
      return Divergent(to_unit_, from_unit_, address, /*source_lacks=*/true);
    }
    return r.status().WithContext("reading address " + std::to_string(address) + " from " +
                                  from_unit_);
  }

  void StartWrite(std::shared_ptr<const std::string> answer, std::vector<WireEntry> batch,
                  std::optional<uint64_t> chunk_end) {
    InFlight f;
    if (!batch.empty()) {
      f.call = std::make_unique<PendingCall>(*dst_, "log.write_batch", BatchRequest(epoch_, batch),
                                             options_.rpc_timeout);
      f.answer = std::move(answer);
      f.entries = std::move(batch);
    }
    f.chunk_end = chunk_end;
    inflight_.push_back(std::move(f));
  }

  // Collects the oldest write's answer, and reports progress when it ends
  // a chunk (so in address order, from this thread only).
  Status FinishOldest() {
    InFlight f = std::move(inflight_.front());
    inflight_.pop_front();
    if (f.call != nullptr) {
      Result<std::string> r = f.call->Get(*threads_);
      for (int attempt = 0;
           !r.ok() && internal::IsTransient(r.status()) && attempt < options_.retries; ++attempt) {
        Pause(attempt);
        r = CallRaw(*dst_, "log.write_batch", BatchRequest(epoch_, f.entries));
      }
      if (!r.ok()) return r.status().WithContext("log.write_batch to " + to_unit_);
      proto::WriteBatchResponse resp;
      if (!resp.ParseFromString(*r)) {
        return Malformed("the log.write_batch answer of " + to_unit_ + " does not parse");
      }
      TALLY_ASSIGN_OR_RETURN(std::vector<Status> results,
                             internal::WriteBatchResults(to_unit_, resp, f.entries.size()));
      for (size_t i = 0; i < f.entries.size(); ++i) {
        const WireEntry& e = f.entries[i];
        Status& st = results[i];
        if (st.ok()) {
          ++stats_.entries;
          stats_.bytes += e.payload_bytes;
        } else if (st.code() == Code::kAlreadyWritten) {
          TALLY_RETURN_IF_ERROR(CheckHeld(e));
        } else {
          return st.WithContext("writing address " + std::to_string(e.address) + " to " + to_unit_);
        }
      }
    }
    if (f.chunk_end.has_value()) {
      stats_.next = *f.chunk_end;
      if (progress_) progress_(stats_);
    }
    return Status::OK();
  }

  Status FillHole(const WireEntry& hole) {
    proto::FillHoleRequest req;
    req.set_epoch(epoch_);
    req.set_address(hole.address);
    auto r = Call<proto::FillHoleResponse>(*dst_, "log.fill_hole", req);
    if (r.ok()) {
      ++stats_.entries;
      ++stats_.holes;
      return Status::OK();
    }
    if (r.status().code() == Code::kAlreadyWritten) return CheckHeld(hole);
    return r.status().WithContext("filling the hole at " + std::to_string(hole.address) + " on " +
                                  to_unit_);
  }

  // `want` was refused ALREADY_WRITTEN by the target: it must hold `want`.
  Status CheckHeld(const WireEntry& want) {
    proto::LogEntry entry;
    if (!entry.ParseFromArray(want.bytes.data(), static_cast<int>(want.bytes.size()))) {
      return Malformed("an entry from " + from_unit_ + " does not parse");
    }
    proto::ReadRequest req;
    req.set_epoch(epoch_);
    req.set_address(want.address);
    for (int attempt = 0;; ++attempt) {
      auto held = Call<proto::ReadResponse>(*dst_, "log.read", req);
      // "write in progress": the first write is not durable yet.
      if (held.status().code() == Code::kUnwritten && attempt < options_.retries) {
        threads_->SleepNanos(20'000'000);
        continue;
      }
      if (!held.ok()) {
        return held.status().WithContext("reading address " + std::to_string(want.address) +
                                         " back from " + to_unit_);
      }
      if (!SameEntry(held->entry(), entry)) return Divergent(to_unit_, from_unit_, want.address);
      ++stats_.skipped;
      return Status::OK();
    }
  }

  const std::string& from_unit_;
  const std::string& to_unit_;
  const uint64_t epoch_;
  const ProgressFn progress_;
  const CopyOptions& options_;
  Threads* const threads_;
  const std::shared_ptr<net::Channel> src_;
  const std::shared_ptr<net::Channel> dst_;
  const uint32_t stripes_;
  uint32_t chunk_;  // entries per source read; halved on TOO_LARGE
  const uint32_t max_writes_;
  uint64_t to_ = 0;
  uint64_t target_tail_ = 0;
  bool target_trimmed_ = false;
  std::deque<InFlight> inflight_;  // oldest first
  TransferStats stats_;
};

}  // namespace

Result<TransferStats> CopyRange(net::Transport& transport, const std::string& from_unit,
                                const std::string& to_unit, Address from, Address to,
                                uint64_t epoch, ProgressFn progress, const CopyOptions& options) {
  if (from_unit == to_unit) {
    return InvalidArgument("state transfer from " + from_unit + " to itself");
  }
  const uint32_t stripes = std::max<uint32_t>(options.stripes, 1);
  if (options.stripe >= stripes) {
    return InvalidArgument("stripe " + std::to_string(options.stripe) + " of " +
                           std::to_string(stripes));
  }
  Copier c(transport, from_unit, to_unit, epoch, std::move(progress), options);
  return c.Run(from.value(), to.value());
}

}  // namespace tally::client
