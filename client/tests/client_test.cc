// The client runtime against an in-process cluster: log units on in-memory
// files, a sequencer, all behind net::InProcessNetwork. Covers chain writes,
// striping, batching, hole filling, the writer/reader race, chain
// completion, range and stream reads, an unreachable log unit, and trim.

#include "tally/client/client.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "batch_pace.h"
#include "rpc.h"
#include "tally/base/mem_env.h"
#include "tally/client/log_unit_client.h"
#include "tally/client/state_transfer.h"
#include "tally/client/stream_reader.h"
#include "tally/log/log_unit.h"
#include "tally/net/inproc_transport.h"
#include "tally/proto/sequencer.pb.h"
#include "tally/sequencer/sequencer_service.h"

namespace tally::client {
namespace {

using namespace std::chrono_literals;

const StreamId kA = StreamId::FromName("a");
const StreamId kB = StreamId::FromName("b");

// `units` log units "lu0".. and a sequencer "seq", bootstrapped at epoch 0.
class Cluster {
 public:
  explicit Cluster(int units) : mem_env_(rocksdb::NewMemEnv(rocksdb::Env::Default())) {
    Env base = DefaultEnv();
    for (int i = 0; i < units; ++i) {
      const std::string name = "lu" + std::to_string(i);
      log::LogUnitOptions o;
      o.store.dir = "/" + name;
      o.store.env = Env{base.clock, base.random, &fs_};
      o.store.metadata_env = mem_env_.get();
      auto unit = log::LogUnit::Open(o);
      EXPECT_TRUE(unit.ok()) << unit.status().ToString();
      units_.push_back(std::move(*unit));
      registries_.push_back(std::make_unique<net::ServiceRegistry>());
      units_.back()->Register(*registries_.back());
      Serve(name, registries_.back().get());
    }
    EXPECT_TRUE(sequencer_.Bootstrap(Epoch(0), Address(0), {}).ok());
    seq_service_.Register(seq_registry_);
    Serve("seq", &seq_registry_);
  }

  ~Cluster() {
    servers_.clear();
    for (auto& u : units_) u->Flush();
  }

  // A layout of `stripes` chains; stripe k is units [k*len, (k+1)*len).
  proto::Layout MakeLayout(int stripes, int chain_length) const {
    proto::Layout l;
    l.set_epoch(0);
    l.add_sequencers("seq");
    auto* seg = l.add_segments();
    for (int k = 0; k < stripes; ++k) {
      auto* stripe = seg->add_stripes();
      for (int j = 0; j < chain_length; ++j) {
        stripe->add_log_units("lu" + std::to_string(k * chain_length + j));
      }
    }
    return l;
  }

  ClientOptions Options(net::Transport* t, proto::Layout layout) const {
    ClientOptions o;
    o.transport = t;
    o.layout = std::move(layout);
    o.rpc_timeout = 2000ms;
    o.hole_fill_timeout = 100ms;
    o.retry_deadline = 5000ms;
    o.principal = "test";
    return o;
  }

  std::unique_ptr<net::Transport> Transport(const std::string& name) {
    return net_.MakeTransport(name);
  }

  // A blocking client of one log unit, bypassing the runtime.
  LogUnitClient Unit(int i) {
    if (!admin_) admin_ = net_.MakeTransport("admin");
    return LogUnitClient(admin_->Connect("lu" + std::to_string(i)), Epoch(0));
  }

  // Takes a token directly from the sequencer, as a writer that then stalls.
  Address TakeToken() {
    if (!admin_) admin_ = net_.MakeTransport("admin");
    proto::seq::NextRequest req;
    req.set_epoch(0);
    req.set_count(1);
    auto r = internal::CallSync<proto::seq::NextResponse>(*admin_->Connect("seq"), "seq.next", req,
                                                          2000ms);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return Address(r->first_address());
  }

  net::InProcessNetwork& net() { return net_; }

 private:
  void Serve(const std::string& name, net::ServiceRegistry* registry) {
    transports_.push_back(net_.MakeTransport(name));
    auto server = transports_.back()->Listen(name, registry);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    servers_.push_back(std::move(*server));
  }

  net::InProcessNetwork net_;
  MemFileSystem fs_;
  std::unique_ptr<rocksdb::Env> mem_env_;
  std::vector<std::unique_ptr<log::LogUnit>> units_;
  std::vector<std::unique_ptr<net::ServiceRegistry>> registries_;
  sequencer::Sequencer sequencer_;
  sequencer::SequencerService seq_service_{&sequencer_};
  net::ServiceRegistry seq_registry_;
  std::vector<std::unique_ptr<net::Transport>> transports_;
  std::vector<std::unique_ptr<net::Server>> servers_;
  std::unique_ptr<net::Transport> admin_;
};

std::unique_ptr<Client> MakeClient(ClientOptions o) {
  auto c = Client::Create(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::move(*c);
}

proto::LogEntry DataEntry(Address a, const std::string& payload) {
  proto::LogEntry e;
  e.set_address(a.value());
  e.set_type(proto::DATA);
  e.set_payload(payload);
  return e;
}

class ClientTest : public ::testing::Test {
 protected:
  ClientTest() : cluster_(3), transport_(cluster_.Transport("client")) {
    client_ = MakeClient(cluster_.Options(transport_.get(), cluster_.MakeLayout(1, 3)));
  }

  Cluster cluster_;
  std::unique_ptr<net::Transport> transport_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, AppendIsOnEveryReplicaAndReadsBack) {
  auto a = client_->Append("hello", {kA});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto e = client_->Read(*a);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->payload(), "hello");
  EXPECT_EQ(e->type(), proto::DATA);
  EXPECT_EQ(e->metadata().principal(), "test");
  ASSERT_EQ(e->streams_size(), 1);
  EXPECT_EQ(e->streams(0).lo(), kA.lo);
  for (int i = 0; i < 3; ++i) {
    auto r = cluster_.Unit(i).Read(*a);
    ASSERT_TRUE(r.ok()) << "lu" << i << ": " << r.status().ToString();
    EXPECT_EQ(r->payload(), "hello");
  }
  auto tail = client_->Tail();
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, a->next());
  auto stream_tail = client_->StreamTail(kA);
  ASSERT_TRUE(stream_tail.ok());
  EXPECT_EQ(*stream_tail, *a);
  auto none = client_->StreamTail(kB);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, kNoAddress);
}

TEST(ClientStripesTest, TwoStripesPlaceAddressesByModulo) {
  Cluster cluster(6);
  auto t = cluster.Transport("client");
  auto client = MakeClient(cluster.Options(t.get(), cluster.MakeLayout(2, 3)));
  std::vector<Address> addrs;
  for (int i = 0; i < 6; ++i) {
    auto a = client->Append("e" + std::to_string(i));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    addrs.push_back(*a);
  }
  for (Address a : addrs) {
    const int stripe = static_cast<int>(a.value() % 2);
    for (int u = 0; u < 6; ++u) {
      auto r = cluster.Unit(u).Read(a);
      if (u / 3 == stripe) {
        EXPECT_TRUE(r.ok()) << "address " << a.value() << " missing on lu" << u;
      } else {
        EXPECT_EQ(r.status().code(), Code::kUnwritten) << "address " << a.value() << " on lu" << u;
      }
    }
    auto e = client->Read(a);
    ASSERT_TRUE(e.ok());
  }
}

TEST_F(ClientTest, ConcurrentAppendsAreBatchedAndDistinct) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::map<uint64_t, std::string> written;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string payload = std::to_string(t) + "/" + std::to_string(i);
        auto a = client_->Append(payload, {kA});
        if (!a.ok()) {
          failures++;
          continue;
        }
        std::lock_guard lock(mu);
        EXPECT_TRUE(written.emplace(a->value(), payload).second) << "address reused";
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(written.size(), size_t{kThreads * kPerThread});
  for (const auto& [addr, payload] : written) {
    auto e = client_->Read(Address(addr));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->payload(), payload);
  }
  ClientStats s = client_->stats();
  EXPECT_EQ(s.appends, uint64_t{kThreads * kPerThread});
  EXPECT_LT(s.sequencer_calls, s.appends) << "no batching happened";
}

// True on the threads a CountingThreads started (the client's append
// threads).
thread_local bool on_started_thread = false;

// SystemThreads, counting the sleeps of the code behind it (the client
// sleeps only to space batch cuts and to back off retries).
class CountingThreads final : public Threads {
 public:
  std::unique_ptr<ThreadHandle> Start(std::string name, std::function<void()> fn) override {
    return SystemThreads()->Start(std::move(name), [fn = std::move(fn)] {
      on_started_thread = true;
      fn();
    });
  }
  void Wait(const std::function<void(Wake)>& start) override { SystemThreads()->Wait(start); }
  void SleepNanos(int64_t nanos) override {
    sleeps++;
    SystemThreads()->SleepNanos(nanos);
  }
  std::atomic<int> sleeps{0};
};

// A transport that counts the log.write_batch calls to `head`, and those
// of them issued on an append thread.
class HeadWriteCounter final : public net::Transport {
 public:
  HeadWriteCounter(std::unique_ptr<net::Transport> inner, std::string head)
      : inner_(std::move(inner)), head_(std::move(head)) {}
  std::shared_ptr<net::Channel> Connect(const std::string& endpoint) override {
    return std::make_shared<Counted>(inner_->Connect(endpoint), this);
  }
  Result<std::unique_ptr<net::Server>> Listen(const std::string& endpoint,
                                              const net::ServiceRegistry* services) override {
    return inner_->Listen(endpoint, services);
  }
  std::atomic<int> writes{0}, from_append_threads{0};

 private:
  class Counted final : public net::Channel {
   public:
    Counted(std::shared_ptr<net::Channel> inner, HeadWriteCounter* counter)
        : inner_(std::move(inner)), counter_(counter) {}
    void Call(std::string method, std::string payload, net::CallOptions options,
              net::CallCallback done) override {
      if (method == "log.write_batch" && inner_->endpoint() == counter_->head_) {
        counter_->writes++;
        if (on_started_thread) counter_->from_append_threads++;
      }
      inner_->Call(std::move(method), std::move(payload), options, std::move(done));
    }
    const std::string& endpoint() const override { return inner_->endpoint(); }

   private:
    std::shared_ptr<net::Channel> inner_;
    HeadWriteCounter* counter_;
  };
  std::unique_ptr<net::Transport> inner_;
  const std::string head_;
};

// `callers` threads of `per_caller` synchronous appends each, caller c to
// stream kA (c even) or kB (c odd); every append must land once, in its
// stream, with its payload.
void AppendFromThreads(Client& client, int callers, int per_caller) {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::map<uint64_t, std::pair<std::string, StreamId>> written;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&, t] {
      const StreamId stream = t % 2 == 0 ? kA : kB;
      for (int i = 0; i < per_caller; ++i) {
        std::string payload = std::to_string(t) + "/" + std::to_string(i);
        auto a = client.Append(payload, {stream});
        ASSERT_TRUE(a.ok()) << a.status().ToString();
        std::lock_guard lock(mu);
        EXPECT_TRUE(written.emplace(a->value(), std::make_pair(payload, stream)).second);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(written.size(), static_cast<size_t>(callers * per_caller));
  for (const auto& [addr, want] : written) {
    auto e = client.Read(Address(addr));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->payload(), want.first);
    ASSERT_EQ(e->streams_size(), 1);
    EXPECT_EQ(e->streams(0).lo(), want.second.lo);
  }
}

// A client with 4 append threads and the given batch spacing, whose sleeps
// `threads_` counts.
class ClientSpacingTest : public ::testing::Test {
 protected:
  std::unique_ptr<Client> Spaced(double spacing) {
    ClientOptions o = cluster_.Options(transport_.get(), cluster_.MakeLayout(1, 3));
    o.threads = &threads_;
    o.append_threads = 4;
    o.batch_spacing = spacing;
    return MakeClient(o);
  }

  Cluster cluster_{3};
  std::unique_ptr<net::Transport> transport_ = cluster_.Transport("client");
  CountingThreads threads_;
};

TEST_F(ClientSpacingTest, SpacesConcurrentCutsButNeverALoneCaller) {
  auto client = Spaced(1);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(client->Append("lone", {kA}).ok());
  EXPECT_EQ(threads_.sleeps.load(), 0) << "a lone caller waited for a batch cut";
  AppendFromThreads(*client, 8, 40);
  EXPECT_GT(threads_.sleeps.load(), 0) << "no batch cut was spaced under concurrent appends";
  EXPECT_EQ(client->stats().appends, 50u + 8 * 40);
}

TEST(BatchPaceTest, IsTheRecentMedianSoAStallDoesNotStretchIt) {
  internal::BatchPace pace;
  EXPECT_EQ(pace.BatchNanos(), 0);  // nothing to pace by yet
  pace.Add(7);
  EXPECT_EQ(pace.BatchNanos(), 7);
  for (int i = 0; i < 20; ++i) pace.Add(1'000'000 + i);
  EXPECT_EQ(pace.BatchNanos(), 1'000'012);  // the median of the last 16 (4..19)
  // Batches that waited out a stall, fewer than half of the window: ignored.
  for (int i = 0; i < 7; ++i) pace.Add(200'000'000);
  EXPECT_EQ(pace.BatchNanos(), 1'000'019);
  // Half of the window: a lasting slowdown, followed.
  pace.Add(200'000'000);
  EXPECT_EQ(pace.BatchNanos(), 200'000'000);
}

TEST_F(ClientSpacingTest, ZeroSpacingCutsAsSoonAsAThreadIsFree) {
  auto client = Spaced(0);
  AppendFromThreads(*client, 8, 40);
  EXPECT_EQ(threads_.sleeps.load(), 0);
}

TEST_F(ClientSpacingTest, TheGrantSendsTheHeadsWriteFromTheNetworkThread) {
  // The head's write of a batch on one chain goes out from the network
  // thread that received the token grant: the append thread sleeps once
  // per batch, not once for the grant and again for the chain.
  proto::Layout layout = cluster_.MakeLayout(1, 3);
  const std::string head = layout.segments(0).stripes(0).log_units(0);
  HeadWriteCounter counter(cluster_.Transport("counted"), head);
  ClientOptions o = cluster_.Options(&counter, layout);
  o.threads = &threads_;
  o.append_threads = 4;
  auto client = MakeClient(o);
  constexpr int kAppends = 30;
  for (int i = 0; i < kAppends; ++i) {
    auto a = client->Append("one-" + std::to_string(i), {kA});
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auto e = cluster_.Unit(2).Read(*a);  // the tail: written down the whole chain
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->payload(), "one-" + std::to_string(i));
  }
  AppendFromThreads(*client, 8, 20);  // batches of many appends too
  EXPECT_GE(counter.writes.load(), kAppends);
  EXPECT_EQ(counter.from_append_threads.load(), 0);
  EXPECT_EQ(client->stats().appends, kAppends + 8u * 20);
}

TEST_F(ClientTest, ReaderFillsAHoleAndTheStalledWriterLoses) {
  Address t = cluster_.TakeToken();
  auto e = client_->Read(t);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->type(), proto::HOLE);
  EXPECT_EQ(client_->stats().holes_filled, 1u);
  for (int i = 0; i < 3; ++i) {
    auto r = cluster_.Unit(i).Read(t);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->type(), proto::HOLE) << "lu" << i;
  }
  // The writer that held the token now fails at the head.
  Status st = cluster_.Unit(0).Write(DataEntry(t, "late"));
  EXPECT_EQ(st.code(), Code::kAlreadyWritten) << st.ToString();
}

TEST_F(ClientTest, AppendThatLosesItsTokenRetriesAtANewOne) {
  // The writer's requests to the chain head arrive late, so a reader fills
  // its token with a hole first.
  cluster_.net().SetLinkPolicy([](std::string_view from, std::string_view to) {
    return from == "writer" && to == "lu0" ? net::LinkAction::Delay(400'000'000)
                                           : net::LinkAction::Deliver();
  });
  auto wt = cluster_.Transport("writer");
  auto writer = MakeClient(cluster_.Options(wt.get(), cluster_.MakeLayout(1, 3)));
  auto start_tail = client_->Tail();
  ASSERT_TRUE(start_tail.ok());
  auto pending = std::async(std::launch::async, [&] { return writer->Append("w"); });
  // Wait until the writer holds its token.
  while (true) {
    auto tail = client_->Tail();
    ASSERT_TRUE(tail.ok());
    if (*tail > *start_tail) break;
    std::this_thread::sleep_for(1ms);
  }
  auto hole = client_->Read(*start_tail);
  ASSERT_TRUE(hole.ok()) << hole.status().ToString();
  EXPECT_EQ(hole->type(), proto::HOLE);

  auto a = pending.get();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_GT(*a, *start_tail);
  EXPECT_EQ(writer->stats().lost_races, 1u);
  cluster_.net().SetLinkPolicy(nullptr);
  auto e = client_->Read(*a);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->payload(), "w");
}

TEST_F(ClientTest, ReadCompletesAHalfWrittenChain) {
  Address t = cluster_.TakeToken();
  ASSERT_TRUE(cluster_.Unit(0).Write(DataEntry(t, "half")).ok());
  EXPECT_EQ(cluster_.Unit(2).Read(t).status().code(), Code::kUnwritten);
  auto e = client_->Read(t);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->payload(), "half");
  EXPECT_EQ(client_->stats().chains_completed, 1u);
  EXPECT_EQ(client_->stats().holes_filled, 0u);
  for (int i = 1; i < 3; ++i) {
    auto r = cluster_.Unit(i).Read(t);
    ASSERT_TRUE(r.ok()) << "lu" << i << ": " << r.status().ToString();
    EXPECT_EQ(r->payload(), "half");
  }
}

TEST_F(ClientTest, AddressAboveTheTailIsUnwrittenWithoutAHole) {
  ASSERT_TRUE(client_->Append("x").ok());
  auto tail = client_->Tail();
  ASSERT_TRUE(tail.ok());
  auto e = client_->Read(Address(tail->value() + 5));
  EXPECT_EQ(e.status().code(), Code::kUnwritten) << e.status().ToString();
  e = client_->Read(*tail);
  EXPECT_EQ(e.status().code(), Code::kUnwritten) << e.status().ToString();
  EXPECT_EQ(client_->stats().holes_filled, 0u);
  EXPECT_EQ(cluster_.Unit(0).Read(*tail).status().code(), Code::kUnwritten);
}

TEST_F(ClientTest, ReadRangeReturnsEntriesAndHolesInOrder) {
  auto first = client_->Append("r0");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(client_->Append("r1").ok());
  Address hole = cluster_.TakeToken();  // never written: a hole
  Address half = cluster_.TakeToken();  // only on the head
  ASSERT_TRUE(cluster_.Unit(0).Write(DataEntry(half, "r3")).ok());
  ASSERT_TRUE(client_->Append("r4").ok());
  auto range = client_->ReadRange(*first, Address(first->value() + 100));
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  ASSERT_EQ(range->size(), 5u);
  for (size_t i = 0; i < range->size(); ++i) {
    EXPECT_EQ((*range)[i].address(), first->value() + i);
  }
  EXPECT_EQ((*range)[0].payload(), "r0");
  EXPECT_EQ((*range)[1].payload(), "r1");
  EXPECT_EQ((*range)[2].type(), proto::HOLE);
  EXPECT_EQ((*range)[2].address(), hole.value());
  EXPECT_EQ((*range)[3].payload(), "r3");
  EXPECT_EQ((*range)[4].payload(), "r4");
  EXPECT_EQ(client_->ReadRange(Address(5), Address(2)).status().code(), Code::kInvalidArgument);
}

TEST_F(ClientTest, StreamReaderFollowsOneStream) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(client_->Append("a" + std::to_string(i), {kA}).ok());
    ASSERT_TRUE(client_->Append("b" + std::to_string(i), {kB}).ok());
  }
  ASSERT_TRUE(client_->Append("ab", {kA, kB}).ok());
  StreamReader reader(client_.get(), kA);
  std::vector<std::string> seen;
  while (true) {
    auto e = reader.Next();
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    if (!e->has_value()) break;
    seen.push_back((*e)->payload());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"a0", "a1", "a2", "a3", "ab"}));
  // Following: new appends show up on the next call.
  ASSERT_TRUE(client_->Append("b-late", {kB}).ok());
  ASSERT_TRUE(client_->Append("a-late", {kA}).ok());
  auto e = reader.Next();
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(e->has_value());
  EXPECT_EQ((*e)->payload(), "a-late");
  e = reader.Next();
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
}

TEST_F(ClientTest, UnreachableLogUnitFailsAppendWithARetryableError) {
  cluster_.net().SetLinkPolicy([](std::string_view, std::string_view to) {
    return to == "lu2" ? net::LinkAction::Drop() : net::LinkAction::Deliver();
  });
  auto t = cluster_.Transport("client2");
  ClientOptions o = cluster_.Options(t.get(), cluster_.MakeLayout(1, 3));
  o.rpc_timeout = 100ms;
  o.retry_deadline = 400ms;
  auto client = MakeClient(o);
  auto a = client->Append("lost");
  ASSERT_FALSE(a.ok());
  EXPECT_TRUE(a.status().retryable()) << a.status().ToString();
  EXPECT_NE(a.status().message().find("lu2"), std::string::npos) << a.status().ToString();
  EXPECT_NE(a.status().message().find("gave up"), std::string::npos) << a.status().ToString();
  cluster_.net().SetLinkPolicy(nullptr);
}

// Appends "e<first>".."e<first+n-1>" to stream a; returns their addresses.
std::vector<Address> AppendN(Client& client, int n, int first = 0) {
  std::vector<Address> out;
  for (int i = first; i < first + n; ++i) {
    auto a = client.Append("e" + std::to_string(i), {kA});
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    if (a.ok()) out.push_back(*a);
  }
  return out;
}

TEST_F(ClientTest, TrimMakesReadsBelowTheMarkTrimmed) {
  ASSERT_EQ(AppendN(*client_, 5).size(), 5u);     // addresses 0..4: e0..e4
  Address stalled = cluster_.TakeToken();         // 5: issued, never written
  ASSERT_EQ(AppendN(*client_, 5, 5).size(), 5u);  // 6..10: e5..e9
  ASSERT_EQ(stalled.value(), 5u);
  const Address mark(8);

  auto r = client_->Trim(mark);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mark, mark);
  ASSERT_EQ(r->units.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r->units[i].endpoint, "lu" + std::to_string(i));
    EXPECT_EQ(r->units[i].trim_mark, mark);
    auto t = cluster_.Unit(i).Tail();
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->trim_mark(), mark.value()) << "lu" << i;
  }
  for (uint64_t a = 0; a < mark.value(); ++a) {
    auto e = client_->Read(Address(a));
    EXPECT_EQ(e.status().code(), Code::kTrimmed) << "address " << a;
    EXPECT_NE(e.status().message().find("trim mark 8"), std::string::npos) << e.status().ToString();
  }
  // The stalled token below the mark is neither hole-filled nor completed.
  EXPECT_EQ(client_->stats().holes_filled, 0u);
  EXPECT_EQ(client_->stats().chains_completed, 0u);
  for (uint64_t a = mark.value(); a < 11; ++a) {
    auto e = client_->Read(Address(a));
    ASSERT_TRUE(e.ok()) << "address " << a << ": " << e.status().ToString();
    EXPECT_EQ(e->payload(), "e" + std::to_string(a - 1));
  }

  // A range reaching below the mark fails as a whole, naming the mark.
  auto below = client_->ReadRange(Address(3), Address(11));
  EXPECT_EQ(below.status().code(), Code::kTrimmed);
  EXPECT_NE(below.status().message().find("trim mark 8"), std::string::npos)
      << below.status().ToString();
  auto above = client_->ReadRange(mark, Address(100));
  ASSERT_TRUE(above.ok()) << above.status().ToString();
  ASSERT_EQ(above->size(), 3u);
  EXPECT_EQ(above->front().address(), mark.value());

  // A stream read from before the mark fails clearly; from the mark it reads.
  StreamReader old_reader(client_.get(), kA);
  auto stuck = old_reader.Next();
  EXPECT_EQ(stuck.status().code(), Code::kTrimmed);
  EXPECT_NE(stuck.status().message().find(kA.ToHex()), std::string::npos)
      << stuck.status().ToString();
  EXPECT_NE(stuck.status().message().find("trim mark 8"), std::string::npos);
  EXPECT_EQ(old_reader.position(), Address(0));
  StreamReader reader(client_.get(), kA, mark);
  std::vector<std::string> seen;
  while (true) {
    auto e = reader.Next();
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    if (!e->has_value()) break;
    seen.push_back((*e)->payload());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"e7", "e8", "e9"}));

  // Trimming lower again is a no-op: each unit keeps its higher mark.
  auto lower = client_->Trim(Address(2));
  ASSERT_TRUE(lower.ok()) << lower.status().ToString();
  for (const auto& u : lower->units) EXPECT_EQ(u.trim_mark, mark) << u.endpoint;
  // Appends still work above the mark.
  auto a = client_->Append("after");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(client_->Read(*a)->payload(), "after");
}

TEST_F(ClientTest, TrimAtOrAboveTheTailIsRefused) {
  AppendN(*client_, 3);
  for (uint64_t m : {3, 4, 1000}) {
    auto r = client_->Trim(Address(m));
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << m;
    EXPECT_NE(r.status().message().find("cannot trim at or above the global tail 3"),
              std::string::npos)
        << r.status().ToString();
  }
  auto t = cluster_.Unit(0).Tail();
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->trim_mark(), 0u) << "a refused trim must not reach any unit";
  EXPECT_TRUE(client_->Read(Address(0)).ok());
}

TEST_F(ClientTest, TrimWithAnUnreachableUnitNamesItAndCanBeRepeated) {
  AppendN(*client_, 6);
  cluster_.net().SetLinkPolicy([](std::string_view, std::string_view to) {
    return to == "lu1" ? net::LinkAction::Drop() : net::LinkAction::Deliver();
  });
  auto t = cluster_.Transport("trimmer");
  ClientOptions o = cluster_.Options(t.get(), cluster_.MakeLayout(1, 3));
  // Long enough for the units that answer to answer in time under TSan
  // (at 100 ms lu0 timed out there once too).
  o.rpc_timeout = 500ms;
  o.retry_deadline = 1s;
  auto trimmer = MakeClient(o);
  auto r = trimmer->Trim(Address(4));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().retryable()) << r.status().ToString();
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("1 of 3 log units failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lu1:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("trimmed on lu0 lu2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("safe"), std::string::npos) << msg;
  // The units that answered are trimmed (the tail, lu2, serves reads).
  EXPECT_EQ(cluster_.Unit(0).Tail()->trim_mark(), 4u);
  EXPECT_EQ(cluster_.Unit(2).Tail()->trim_mark(), 4u);
  EXPECT_EQ(trimmer->Read(Address(1)).status().code(), Code::kTrimmed);

  cluster_.net().SetLinkPolicy(nullptr);
  auto again = trimmer->Trim(Address(4));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_EQ(again->units.size(), 3u);
  EXPECT_EQ(cluster_.Unit(1).Tail()->trim_mark(), 4u);
}

TEST(ClientStripesTest, TrimReachesEveryUnitOfEveryStripe) {
  Cluster cluster(6);
  auto t = cluster.Transport("client");
  auto client = MakeClient(cluster.Options(t.get(), cluster.MakeLayout(2, 3)));
  AppendN(*client, 10);
  auto r = client->Trim(Address(5));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->units.size(), 6u);
  for (int u = 0; u < 6; ++u) EXPECT_EQ(cluster.Unit(u).Tail()->trim_mark(), 5u) << "lu" << u;
  // Address 4 is on stripe 0, address 5 on stripe 1: a range from 4 is
  // trimmed, a range from 5 is whole.
  EXPECT_EQ(client->ReadRange(Address(4), Address(10)).status().code(), Code::kTrimmed);
  auto whole = client->ReadRange(Address(5), Address(10));
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->size(), 5u);
}

// State transfer (healing): lu3 joins a chain lu0 -> lu1 -> lu2 and is fed
// from its tail, lu2.
class StateTransferTest : public ::testing::Test {
 protected:
  StateTransferTest() : cluster_(4), transport_(cluster_.Transport("client")) {
    client_ = MakeClient(cluster_.Options(transport_.get(), cluster_.MakeLayout(1, 3)));
    healer_ = cluster_.Transport("healer");
  }

  Result<TransferStats> Copy(uint64_t from, uint64_t to, int* chunks = nullptr) {
    CopyOptions o;
    o.chunk_entries = 3;
    return CopyRange(
        *healer_, "lu2", "lu3", Address(from), Address(to), 0,
        [chunks](const TransferStats&) {
          if (chunks != nullptr) ++*chunks;
        },
        o);
  }

  Cluster cluster_;
  std::unique_ptr<net::Transport> transport_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<net::Transport> healer_;
};

TEST_F(StateTransferTest, CopiesDataAndHolesAndSkipsWhatIsThere) {
  ASSERT_EQ(AppendN(*client_, 5).size(), 5u);  // 0..4
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_.Unit(i).FillHole(Address(5)).ok());
  ASSERT_EQ(AppendN(*client_, 2, 5).size(), 2u);  // 6, 7
  // lu3 already holds address 1, as the chain does.
  auto one = cluster_.Unit(2).Read(Address(1));
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(cluster_.Unit(3).Write(*one).ok());

  int chunks = 0;
  auto r = Copy(0, 8, &chunks);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->entries, 7u);
  EXPECT_EQ(r->holes, 1u);
  EXPECT_EQ(r->skipped, 1u);
  EXPECT_EQ(r->bytes, 6u * 2);  // "e0".."e6" but e1 was there
  EXPECT_EQ(r->next, 8u);
  EXPECT_EQ(r->first_absent, UINT64_MAX);  // the hole at 5 is held
  EXPECT_EQ(r->trim_mark, 0u);
  EXPECT_GE(chunks, 3);
  for (uint64_t a = 0; a < 8; ++a) {
    auto want = cluster_.Unit(2).Read(Address(a));
    auto got = cluster_.Unit(3).Read(Address(a));
    ASSERT_TRUE(want.ok() && got.ok()) << "address " << a << ": " << got.status().ToString();
    EXPECT_EQ(got->type(), want->type()) << a;
    EXPECT_EQ(got->payload(), want->payload()) << a;
    ASSERT_EQ(got->streams_size(), want->streams_size()) << a;
    if (got->type() == proto::DATA) {
      EXPECT_EQ(got->streams(0).lo(), kA.lo) << a;
    }
  }
  EXPECT_EQ(cluster_.Unit(3).Read(Address(5))->type(), proto::HOLE);

  // Again: nothing left to copy. Then only the delta.
  auto again = Copy(0, 8);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->entries, 0u);
  EXPECT_EQ(again->skipped, 8u);
  ASSERT_EQ(AppendN(*client_, 2, 7).size(), 2u);  // 8, 9
  auto delta = Copy(8, 10);
  ASSERT_TRUE(delta.ok()) << delta.status().ToString();
  EXPECT_EQ(delta->entries, 2u);
  EXPECT_EQ(cluster_.Unit(3).Read(Address(9))->payload(), "e8");
}

// Writes finish out of address order: an address below the source's tail
// may still be in flight when the copy reads past it. The copy reports the
// first such address, from which a copy that must be complete resumes
// (AddNode's delta after the seal).
TEST_F(StateTransferTest, ReportsTheFirstAddressTheSourceLacked) {
  for (uint64_t a : {0, 1, 2, 3, 4, 6, 7}) {
    ASSERT_TRUE(cluster_.Unit(2).Write(DataEntry(Address(a), "e" + std::to_string(a))).ok());
  }
  auto r = Copy(0, 8);  // chunks of 3: the gap is in the second one
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->next, 8u);
  EXPECT_EQ(r->first_absent, 5u);
  EXPECT_EQ(r->entries, 7u);

  // The write lands; resuming from there copies it and skips the rest.
  ASSERT_TRUE(cluster_.Unit(2).Write(DataEntry(Address(5), "e5")).ok());
  auto resumed = Copy(r->first_absent, 8);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->entries, 1u);
  EXPECT_EQ(resumed->skipped, 2u);
  EXPECT_EQ(resumed->first_absent, UINT64_MAX);
  EXPECT_EQ(cluster_.Unit(3).Read(Address(5))->payload(), "e5");
}

TEST_F(StateTransferTest, RefusesDivergentDataAndNeverOverwrites) {
  ASSERT_EQ(AppendN(*client_, 3).size(), 3u);
  ASSERT_TRUE(cluster_.Unit(3).Write(DataEntry(Address(1), "other")).ok());
  auto r = Copy(0, 3);
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("lu3 holds divergent data at address 1"), std::string::npos)
      << r.status().ToString();
  EXPECT_NE(r.status().message().find("wiped"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(cluster_.Unit(3).Read(Address(1))->payload(), "other");
  // A hole where the chain has data diverges too.
  ASSERT_TRUE(cluster_.Unit(3).FillHole(Address(0)).ok());
  auto hole = CopyRange(*healer_, "lu2", "lu3", Address(0), Address(1), 0);
  EXPECT_EQ(hole.status().code(), Code::kFailedPrecondition) << hole.status().ToString();
}

// The target holds something (data or a hole) at an address of the copied
// stripe where the source holds nothing: the chain never had it.
TEST_F(StateTransferTest, RefusesAnEntryTheSourceDoesNotHold) {
  ASSERT_EQ(AppendN(*client_, 3).size(), 3u);  // 0..2
  ASSERT_TRUE(cluster_.Unit(3).Write(DataEntry(Address(4), "stray")).ok());
  auto r = Copy(0, 6);
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("lu3 holds divergent data at address 4"), std::string::npos)
      << r.status().ToString();
  EXPECT_NE(r.status().message().find("wiped"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(cluster_.Unit(3).Read(Address(4))->payload(), "stray");

  // A hole counts too, also in a range where the source holds nothing.
  Cluster other(4);
  auto transport = other.Transport("client");
  auto client = MakeClient(other.Options(transport.get(), other.MakeLayout(1, 3)));
  auto healer = other.Transport("healer");
  ASSERT_EQ(AppendN(*client, 2).size(), 2u);  // 0, 1
  ASSERT_TRUE(other.Unit(3).FillHole(Address(7)).ok());
  auto hole = CopyRange(*healer, "lu2", "lu3", Address(5), Address(9), 0);
  ASSERT_EQ(hole.status().code(), Code::kFailedPrecondition) << hole.status().ToString();
  EXPECT_NE(hole.status().message().find("at address 7"), std::string::npos)
      << hole.status().ToString();
}

TEST_F(StateTransferTest, IgnoresWhatTheTargetHoldsOutsideTheCopy) {
  ASSERT_EQ(AppendN(*client_, 6).size(), 6u);  // 0..5
  ASSERT_TRUE(client_->Trim(Address(2)).ok());
  // Below the source's trim mark, in another stripe, and beyond `to`.
  ASSERT_TRUE(cluster_.Unit(3).Write(DataEntry(Address(1), "old")).ok());
  ASSERT_TRUE(cluster_.Unit(3).Write(DataEntry(Address(8), "other stripe")).ok());
  ASSERT_TRUE(cluster_.Unit(3).Write(DataEntry(Address(13), "beyond")).ok());
  CopyOptions o;
  o.chunk_entries = 3;
  o.stripes = 2;
  o.stripe = 1;
  auto r = CopyRange(*healer_, "lu2", "lu3", Address(0), Address(12), 0, nullptr, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->entries, 2u);  // 3 and 5
  EXPECT_EQ(r->skipped, 0u);
  EXPECT_EQ(cluster_.Unit(3).Read(Address(5))->payload(), "e5");
  EXPECT_EQ(cluster_.Unit(3).Read(Address(8))->payload(), "other stripe");
}

// Above the target's tail at the start the copy does not read the target
// back; an entry that appears there anyway is caught by write-once and
// compared.
TEST_F(StateTransferTest, ComparesWhatAppearsOnTheTargetDuringTheCopy) {
  for (const std::string payload : {"e7", "other"}) {
    Cluster fresh(4);
    auto transport = fresh.Transport("client");
    auto client = MakeClient(fresh.Options(transport.get(), fresh.MakeLayout(1, 3)));
    ASSERT_EQ(AppendN(*client, 12).size(), 12u);
    auto healer = fresh.Transport("healer");
    CopyOptions o;
    o.chunk_entries = 3;
    o.writes_in_flight = 1;
    int chunks = 0;
    uint64_t last_next = 0;
    auto r = CopyRange(
        *healer, "lu2", "lu3", Address(0), Address(12), 0,
        [&](const TransferStats& s) {
          EXPECT_GT(s.next, last_next);
          last_next = s.next;
          // After the first chunk, before the third [6, 9) is written.
          if (++chunks == 1) {
            auto e = DataEntry(Address(7), payload);
            e.add_streams()->set_lo(kA.lo);
            e.mutable_streams(0)->set_hi(kA.hi);
            ASSERT_TRUE(fresh.Unit(3).Write(e).ok());
          }
        },
        o);
    if (payload == "e7") {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->entries, 11u);
      EXPECT_EQ(r->skipped, 1u);
      EXPECT_EQ(r->next, 12u);
      EXPECT_EQ(chunks, 4);
    } else {
      ASSERT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
      EXPECT_NE(r.status().message().find("at address 7"), std::string::npos)
          << r.status().ToString();
      EXPECT_EQ(fresh.Unit(3).Read(Address(7))->payload(), "other");
    }
  }
}

TEST_F(StateTransferTest, SkipsWhatTheSourceTrimmedAndTrimsTheTarget) {
  ASSERT_EQ(AppendN(*client_, 6).size(), 6u);
  ASSERT_TRUE(client_->Trim(Address(3)).ok());
  auto r = Copy(0, 6);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->entries, 3u);
  EXPECT_EQ(r->trim_mark, 3u);
  EXPECT_EQ(cluster_.Unit(3).Read(Address(1)).status().code(), Code::kTrimmed);
  EXPECT_EQ(cluster_.Unit(3).Read(Address(4))->payload(), "e4");
}

TEST_F(StateTransferTest, CopiesOnlyTheAddressesOfItsStripe) {
  ASSERT_EQ(AppendN(*client_, 4).size(), 4u);  // lu2 holds 0..3
  CopyOptions o;
  o.stripes = 2;
  o.stripe = 1;
  auto r = CopyRange(*healer_, "lu2", "lu3", Address(0), Address(4), 0, nullptr, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->entries, 2u);
  EXPECT_EQ(cluster_.Unit(3).Read(Address(0)).status().code(), Code::kUnwritten);
  EXPECT_EQ(cluster_.Unit(3).Read(Address(3))->payload(), "e3");
  o.stripe = 2;
  EXPECT_EQ(
      CopyRange(*healer_, "lu2", "lu3", Address(0), Address(4), 0, nullptr, o).status().code(),
      Code::kInvalidArgument);
}

TEST_F(StateTransferTest, AtAnOldEpochFailsOnASealedUnit) {
  ASSERT_EQ(AppendN(*client_, 2).size(), 2u);
  ASSERT_TRUE(cluster_.Unit(2).Seal(Epoch(1)).ok());
  auto r = Copy(0, 2);
  EXPECT_TRUE(internal::IsEpochError(r.status())) << r.status().ToString();
  auto ok = CopyRange(*healer_, "lu2", "lu3", Address(0), Address(2), 1);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->entries, 2u);
}

TEST(ClientCreateTest, RefusesMissingTransportAndLayout) {
  ClientOptions o;
  EXPECT_EQ(Client::Create(o).status().code(), Code::kInvalidArgument);
  net::InProcessNetwork net;
  auto t = net.MakeTransport("c");
  o.transport = t.get();
  EXPECT_EQ(Client::Create(o).status().code(), Code::kInvalidArgument);
  o.endpoints = {"nobody"};
  o.rpc_timeout = 100ms;
  EXPECT_EQ(Client::Create(o).status().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace tally::client
