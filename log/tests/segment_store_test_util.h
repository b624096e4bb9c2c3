#pragma once

// Shared fixture for SegmentStore tests: segment files on a
// FaultInjectionFileSystem over a MemFileSystem, metadata in RocksDB's
// in-memory Env (which keeps its files across DB reopen).

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <algorithm>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "tally/base/fault_env.h"
#include "tally/base/mem_env.h"
#include "tally/log/segment_store.h"

namespace tally::log::testing {

inline Record MakeRecord(uint64_t address, std::string payload, std::vector<StreamId> streams = {},
                         uint64_t epoch = 1) {
  Record r;
  r.address = Address(address);
  r.epoch = Epoch(epoch);
  r.type = RecordType::kData;
  r.streams = std::move(streams);
  r.payload = std::move(payload);
  return r;
}

// Appends and waits; returns the per-record statuses.
inline std::vector<Status> AppendAndWait(SegmentStore& store, std::vector<Record> records) {
  std::promise<std::vector<Status>> p;
  auto f = p.get_future();
  store.Append(std::move(records), [&p](std::vector<Status> s) { p.set_value(std::move(s)); });
  return f.get();
}

inline std::string PayloadFor(uint64_t address, size_t size = 40) {
  std::string s = "payload-" + std::to_string(address) + "-";
  while (s.size() < size) s += static_cast<char>('a' + s.size() % 26);
  s.resize(size);
  return s;
}

// Appends [from, to) in Append calls of 10 records (PayloadFor payloads of
// `payload` bytes, on streams_of(address)), each acknowledged.
template <typename StreamsOf>
void AppendInTens(SegmentStore& store, uint64_t from, uint64_t to, size_t payload,
                  StreamsOf streams_of) {
  for (uint64_t i = from; i < to; i += 10) {
    std::vector<Record> batch;
    for (uint64_t a = i; a < std::min(i + 10, to); ++a) {
      batch.push_back(MakeRecord(a, PayloadFor(a, payload), streams_of(a)));
    }
    for (const Status& s : AppendAndWait(store, std::move(batch))) {
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }
}

class StoreFixture : public ::testing::Test {
 protected:
  static constexpr const char* kDir = "/store";

  SegmentStoreOptions Options() {
    SegmentStoreOptions o;
    o.dir = kDir;
    o.env.clock = &clock_;
    o.env.random = &random_;
    o.env.fs = &fault_;
    o.metadata_env = rocks_env_.get();
    return o;
  }

  std::unique_ptr<SegmentStore> OpenStore(SegmentStoreOptions o, RecoveryReport* report = nullptr) {
    auto r = SegmentStore::Open(std::move(o), report);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::unique_ptr<SegmentStore> OpenStore(RecoveryReport* report = nullptr) {
    return OpenStore(Options(), report);
  }

  std::string SegmentPath(uint32_t id) {
    std::string digits = std::to_string(id);
    return std::string(kDir) + "/seg-" + std::string(20 - digits.size(), '0') + digits + ".log";
  }

  ManualClock clock_;
  SeededRandom random_{42};
  MemFileSystem mem_;
  FaultInjectionFileSystem fault_{&mem_};
  std::unique_ptr<rocksdb::Env> rocks_env_{rocksdb::NewMemEnv(rocksdb::Env::Default())};
};

}  // namespace tally::log::testing
