// The single-threaded modes: SegmentStoreOptions::inline_writes and
// LogUnitOptions::io_threads == 0. Over a MemFileSystem with RocksDB
// metadata in memory, every append completes, and every log unit handler
// answers, before the call returns, on the calling thread; semantics
// (write-once, trim, seal, recovery, the bytes on disk) match the threaded
// path.

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tally/base/fault_env.h"
#include "tally/base/mem_env.h"
#include "tally/log/log_unit.h"
#include "tally/log/segment_store.h"
#include "tally/net/transport.h"
#include "tally/proto/logunit.pb.h"

namespace tally::log {
namespace {

Record MakeRecord(uint64_t address, std::string payload, uint64_t epoch = 1) {
  Record r;
  r.address = Address(address);
  r.epoch = Epoch(epoch);
  r.type = RecordType::kData;
  r.payload = std::move(payload);
  return r;
}

class InlineStoreTest : public ::testing::Test {
 protected:
  SegmentStoreOptions Options(const std::string& dir, bool inline_writes) {
    SegmentStoreOptions o;
    o.dir = dir;
    o.env.clock = &clock_;
    o.env.random = &random_;
    o.env.fs = &fault_;
    o.metadata_env = rocks_env_.get();
    o.inline_writes = inline_writes;
    return o;
  }

  std::unique_ptr<SegmentStore> Open(SegmentStoreOptions o, RecoveryReport* report = nullptr) {
    auto r = SegmentStore::Open(std::move(o), report);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Appends inline and returns the statuses, checking that `done` ran
  // exactly once, on this thread, before Append returned.
  std::vector<Status> AppendNow(SegmentStore& store, std::vector<Record> records) {
    std::optional<std::vector<Status>> out;
    int calls = 0;
    std::thread::id where;
    store.Append(std::move(records), [&](std::vector<Status> s) {
      ++calls;
      where = std::this_thread::get_id();
      out = std::move(s);
    });
    EXPECT_EQ(calls, 1) << "done must run before Append returns";
    EXPECT_EQ(where, std::this_thread::get_id());
    return out.value_or(std::vector<Status>{});
  }

  std::string FileBytes(const std::string& path) {
    auto f = mem_.Open(path, OpenOptions{.read_only = true});
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    if (!f.ok()) return {};
    auto size = (*f)->Size();
    EXPECT_TRUE(size.ok());
    std::string buf(size.ok() ? static_cast<size_t>(*size) : 0, '\0');
    EXPECT_TRUE((*f)->Read(0, std::span<char>(buf)).ok());
    return buf;
  }

  ManualClock clock_;
  SeededRandom random_{42};
  MemFileSystem mem_;
  FaultInjectionFileSystem fault_{&mem_};
  std::unique_ptr<rocksdb::Env> rocks_env_{rocksdb::NewMemEnv(rocksdb::Env::Default())};
};

TEST_F(InlineStoreTest, AppendCompletesInlineAndKeepsWriteOnceTrimAndRecovery) {
  RecoveryReport report;
  auto store = Open(Options("/s", true));
  ASSERT_NE(store, nullptr);
  std::vector<Record> batch;
  for (uint64_t a = 0; a < 10; ++a) batch.push_back(MakeRecord(a, "p" + std::to_string(a)));
  for (const Status& s : AppendNow(*store, std::move(batch))) EXPECT_TRUE(s.ok()) << s.ToString();
  // Durable and readable at once; Flush has nothing to wait for.
  store->Flush();
  EXPECT_EQ(store->Read(Address(3))->payload, "p3");
  EXPECT_EQ(store->Stats().local_tail, 10u);

  // Write-once, including within one Append.
  std::vector<Record> again;
  again.push_back(MakeRecord(3, "other"));
  again.push_back(MakeRecord(20, "new"));
  again.push_back(MakeRecord(20, "dup"));
  auto st = AppendNow(*store, std::move(again));
  ASSERT_EQ(st.size(), 3u);
  EXPECT_EQ(st[0].code(), Code::kAlreadyWritten);
  EXPECT_TRUE(st[1].ok());
  EXPECT_EQ(st[2].code(), Code::kAlreadyWritten);
  EXPECT_EQ(store->Read(Address(3))->payload, "p3");
  EXPECT_EQ(store->Read(Address(20))->payload, "new");

  ASSERT_TRUE(store->Trim(Address(5)).ok());
  EXPECT_EQ(store->Read(Address(4)).status().code(), Code::kTrimmed);
  EXPECT_EQ(AppendNow(*store, {MakeRecord(2, "late")})[0].code(), Code::kTrimmed);
  ASSERT_TRUE(store->SetSealedEpoch(Epoch(4)).ok());

  store.reset();
  store = Open(Options("/s", true), &report);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->sealed_epoch(), Epoch(4));
  EXPECT_EQ(store->Stats().trim_mark, 5u);
  EXPECT_EQ(store->Read(Address(9))->payload, "p9");
  EXPECT_EQ(store->Read(Address(20))->payload, "new");
  EXPECT_EQ(store->Read(Address(4)).status().code(), Code::kTrimmed);
  EXPECT_EQ(AppendNow(*store, {MakeRecord(9, "x")})[0].code(), Code::kAlreadyWritten);
  EXPECT_TRUE(AppendNow(*store, {MakeRecord(21, "y")})[0].ok());
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
}

TEST_F(InlineStoreTest, RollsSegmentsAndReopensAcrossModes) {
  SegmentStoreOptions o = Options("/roll", true);
  o.segment_bytes = 512;     // 6 records a segment
  o.index_part_entries = 2;  // indexes stored in parts, inline too
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  for (uint64_t a = 0; a < 100; ++a) {
    ASSERT_TRUE(AppendNow(*store, {MakeRecord(a, std::string(40, 'a' + a % 26))})[0].ok());
  }
  EXPECT_GT(store->Stats().segments, 5u);
  ASSERT_TRUE(store->Trim(Address(50)).ok());
  store.reset();
  // The threaded store reads what the inline one wrote.
  o.inline_writes = false;
  RecoveryReport report;
  store = Open(o, &report);
  ASSERT_NE(store, nullptr);
  EXPECT_LT(report.scanned_records, 6u);  // closed segments come from their indexes
  EXPECT_EQ(store->Stats().trim_mark, 50u);
  for (uint64_t a = 50; a < 100; ++a) {
    auto r = store->Read(Address(a));
    ASSERT_TRUE(r.ok()) << a << ": " << r.status().ToString();
    EXPECT_EQ(r->payload, std::string(40, 'a' + a % 26));
  }
}

TEST_F(InlineStoreTest, SameBytesOnDiskAsTheThreadedPath) {
  for (bool inline_writes : {true, false}) {
    auto store = Open(Options(inline_writes ? "/inline" : "/threaded", inline_writes));
    ASSERT_NE(store, nullptr);
    for (uint64_t a = 0; a < 20; ++a) {
      std::promise<Status> p;
      auto f = p.get_future();
      store->Append({MakeRecord(a, std::string(a * 300, 'z'))},
                    [&p](std::vector<Status> s) { p.set_value(s[0]); });
      ASSERT_TRUE(f.get().ok());
    }
  }
  const std::string seg = "seg-00000000000000000001.log";
  std::string inline_bytes = FileBytes("/inline/" + seg);
  EXPECT_GT(inline_bytes.size(), 20u * 100);
  EXPECT_EQ(inline_bytes, FileBytes("/threaded/" + seg));
}

TEST_F(InlineStoreTest, FailedSyncRefusesFurtherWrites) {
  auto store = Open(Options("/fail", true));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(AppendNow(*store, {MakeRecord(1, "ok")})[0].ok());
  fault_.FailNext(FaultOp::kWrite, 1);
  EXPECT_EQ(AppendNow(*store, {MakeRecord(2, "lost")})[0].code(), Code::kIoError);
  EXPECT_EQ(AppendNow(*store, {MakeRecord(3, "refused")})[0].code(), Code::kIoError);
  EXPECT_EQ(store->Read(Address(2)).status().code(), Code::kUnwritten);
  store.reset();
  store = Open(Options("/fail", true));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Read(Address(1))->payload, "ok");
  EXPECT_EQ(store->Read(Address(2)).status().code(), Code::kUnwritten);
  EXPECT_TRUE(AppendNow(*store, {MakeRecord(2, "again")})[0].ok());
}

// A log unit in the single-threaded modes answers every handler before the
// handler returns.
class InlineLogUnitTest : public InlineStoreTest {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    unit_.reset();
    registry_ = net::ServiceRegistry();
    LogUnitOptions o;
    o.store = Options("/unit", true);
    o.io_threads = 0;
    auto u = LogUnit::Open(o);
    ASSERT_TRUE(u.ok()) << u.status().ToString();
    unit_ = std::move(*u);
    unit_->Register(registry_);
  }

  // Calls the handler and requires that it has answered when it returns.
  template <typename Resp, typename Req>
  Result<Resp> Call(const std::string& method, const Req& req) {
    const net::Handler* h = registry_.Find(method);
    EXPECT_NE(h, nullptr) << method;
    if (h == nullptr) return Internal("no handler");
    std::optional<std::pair<Status, std::string>> answer;
    (*h)(req.SerializeAsString(),
         [&answer](Status st, std::string out) { answer.emplace(std::move(st), std::move(out)); });
    EXPECT_TRUE(answer.has_value()) << method << " did not answer inline";
    if (!answer) return Internal("no answer");
    if (!answer->first.ok()) return answer->first;
    Resp resp;
    EXPECT_TRUE(resp.ParseFromString(answer->second));
    return resp;
  }

  Status Write(uint64_t epoch, uint64_t address, const std::string& data) {
    proto::WriteRequest req;
    req.set_epoch(epoch);
    req.mutable_entry()->set_address(address);
    req.mutable_entry()->set_type(proto::DATA);
    req.mutable_entry()->set_payload(data);
    return Call<proto::WriteResponse>("log.write", req).status();
  }

  Result<proto::LogEntry> Read(uint64_t epoch, uint64_t address) {
    proto::ReadRequest req;
    req.set_epoch(epoch);
    req.set_address(address);
    auto r = Call<proto::ReadResponse>("log.read", req);
    if (!r.ok()) return r.status();
    return r->entry();
  }

  net::ServiceRegistry registry_;
  std::unique_ptr<LogUnit> unit_;
};

TEST_F(InlineLogUnitTest, HandlersAnswerSynchronously) {
  ASSERT_TRUE(Write(0, 1, "one").ok());
  ASSERT_TRUE(Write(0, 2, "two").ok());
  EXPECT_EQ(Write(0, 1, "again").code(), Code::kAlreadyWritten);
  EXPECT_EQ(Read(0, 1)->payload(), "one");
  EXPECT_EQ(Read(0, 9).status().code(), Code::kUnwritten);

  proto::ReadRangeRequest range;
  range.set_from(0);
  range.set_to(10);
  auto rr = Call<proto::ReadRangeResponse>("log.read_range", range);
  ASSERT_TRUE(rr.ok()) << rr.status().ToString();
  EXPECT_EQ(rr->entries_size(), 2);

  proto::SealRequest seal;
  seal.set_epoch(3);
  auto sealed = Call<proto::SealResponse>("log.seal", seal);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->sealed_epoch(), 3u);
  EXPECT_EQ(sealed->local_tail(), 3u);
  EXPECT_EQ(Write(2, 5, "stale").code(), Code::kWrongEpoch);
  ASSERT_TRUE(Write(3, 5, "five").ok());

  proto::TrimRequest trim;
  trim.set_epoch(3);
  trim.set_address(2);
  auto trimmed = Call<proto::TrimResponse>("log.trim", trim);
  ASSERT_TRUE(trimmed.ok()) << trimmed.status().ToString();
  EXPECT_EQ(trimmed->trim_mark(), 2u);
  EXPECT_EQ(Read(3, 1).status().code(), Code::kTrimmed);

  proto::TailRequest tail;
  tail.set_epoch(3);
  auto t = Call<proto::TailResponse>("log.tail", tail);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->local_tail(), 6u);
  EXPECT_EQ(t->sealed_epoch(), 3u);

  // Reopening recovers data, seal and trim.
  Reopen();
  EXPECT_EQ(Read(3, 2)->payload(), "two");
  EXPECT_EQ(Read(3, 5)->payload(), "five");
  EXPECT_EQ(Read(3, 1).status().code(), Code::kTrimmed);
  EXPECT_EQ(Write(2, 6, "stale").code(), Code::kWrongEpoch);
  EXPECT_EQ(Write(3, 5, "again").code(), Code::kAlreadyWritten);
  ASSERT_TRUE(Write(3, 6, "six").ok());
  EXPECT_EQ(Read(3, 6)->payload(), "six");
}

}  // namespace
}  // namespace tally::log
