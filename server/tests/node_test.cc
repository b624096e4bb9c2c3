// The node's pieces without processes: roles, layout files, merging the log
// units' views for a sequencer bootstrap, and nodes over the in-process
// transport (layout.get, a sequencer that bootstraps once its log units
// answer).

#include "node.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "bootstrap.h"
#include "layout_file.h"
#include "sequencer_role.h"
#include "tally/net/inproc_transport.h"
#include "tally/net/typed.h"
#include "tally/proto/sequencer.pb.h"

namespace tally::server {
namespace {

proto::Layout OneSegment(const std::vector<std::vector<std::string>>& chains) {
  proto::Layout l;
  auto* seg = l.add_segments();
  for (const auto& chain : chains) {
    auto* s = seg->add_stripes();
    for (const auto& ep : chain) s->add_log_units(ep);
  }
  return l;
}

proto::StreamMap Map(const StreamId& id, std::vector<Address> addrs) {
  proto::StreamMap m;
  m.mutable_stream()->set_hi(id.hi);
  m.mutable_stream()->set_lo(id.lo);
  m.set_roaring64(EncodeAddresses(addrs));
  return m;
}

TEST(RolesTest, ParsesCommaLists) {
  auto both = ParseRoles("log,sequencer");
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->log && both->sequencer);
  auto seq = ParseRoles("sequencer");
  ASSERT_TRUE(seq.ok());
  EXPECT_TRUE(!seq->log && seq->sequencer);
  EXPECT_EQ(RolesString(*both), "log,sequencer");
  auto bad = ParseRoles("log,paxos");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("paxos"), std::string::npos);
  EXPECT_FALSE(ParseRoles("").ok());
}

TEST(LayoutFileTest, ValidatesShape) {
  EXPECT_TRUE(ValidateLayout(OneSegment({{"a", "b"}, {"b", "a"}})).ok());
  EXPECT_FALSE(ValidateLayout(proto::Layout{}).ok());
  EXPECT_FALSE(ValidateLayout(OneSegment({{}})).ok());
  Status dup = ValidateLayout(OneSegment({{"a", "a"}}));
  EXPECT_NE(dup.message().find("twice"), std::string::npos) << dup.ToString();
  proto::Layout gap = OneSegment({{"a"}});
  gap.mutable_segments(0)->set_end(10);
  auto* second = gap.add_segments();
  second->set_start(11);
  second->add_stripes()->add_log_units("a");
  EXPECT_FALSE(ValidateLayout(gap).ok());
  EXPECT_EQ(LogUnitEndpoints(OneSegment({{"a", "b"}, {"b", "c"}})),
            (std::vector<std::string>{"a", "b", "c"}));
}

TEST(LayoutFileTest, LoadsJsonAndNamesTheFileOnError) {
  char tmpl[] = "/tmp/tally-layoutfile-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::ofstream(dir + "/ok.json")
      << R"({"epoch": "2", "sequencers": ["a"], "segments": [{"stripes": [{"log_units": ["a"]}]}]})";
  auto ok = LoadLayoutFile(dir + "/ok.json");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->epoch(), 2u);
  std::ofstream(dir + "/bad.json") << "{\"epoch\": ";
  auto bad = LoadLayoutFile(dir + "/bad.json");
  EXPECT_EQ(bad.status().code(), Code::kMalformed);
  EXPECT_NE(bad.status().message().find("bad.json"), std::string::npos);
  EXPECT_EQ(LoadLayoutFile(dir + "/missing.json").status().code(), Code::kIoError);
  std::filesystem::remove_all(dir);
}

TEST(MergeUnitViewsTest, NeedsOneReplicaOfEveryStripe) {
  proto::Layout l = OneSegment({{"a", "b"}, {"c"}});
  std::map<std::string, UnitView> views;
  views["a"] = UnitView{};
  auto missing = MergeUnitViews(l, views);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kUnavailable);
  EXPECT_NE(missing.status().message().find("stripe 1 [c]"), std::string::npos)
      << missing.status().ToString();
}

TEST(MergeUnitViewsTest, NeedsTheHeadOfEveryStripe) {
  // The tail of a chain misses what only its head holds: writes the last
  // epoch left half done, which are completed (and acknowledged) later.
  proto::Layout l = OneSegment({{"a", "b"}, {"c"}});
  std::map<std::string, UnitView> views;
  views["b"] = UnitView{};
  views["c"] = UnitView{};
  auto missing = MergeUnitViews(l, views);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kUnavailable);
  EXPECT_NE(missing.status().message().find("stripe 0 [a, b]"), std::string::npos)
      << missing.status().ToString();
}

TEST(MergeUnitViewsTest, TakesTheHighestTailAndTheUnionOfMaps) {
  proto::Layout l = OneSegment({{"a", "b"}, {"c"}});
  const StreamId s = StreamId::FromName("ports");
  const StreamId t = StreamId::FromName("rules");
  std::map<std::string, UnitView> views;
  views["a"] = UnitView{3, {Map(s, {Address(0), Address(2)})}};
  views["c"] = UnitView{8, {Map(s, {Address(7)}), Map(t, {Address(5)})}};
  auto merged = MergeUnitViews(l, views);
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  EXPECT_EQ(merged->global_tail, Address(8));
  EXPECT_EQ(merged->units, 2u);
  ASSERT_EQ(merged->streams.size(), 2u);
  for (const auto& snap : merged->streams) {
    auto addrs = DecodeAddresses(snap.roaring64);
    ASSERT_TRUE(addrs.ok());
    if (snap.stream == s) {
      EXPECT_EQ(*addrs, (std::vector<Address>{Address(0), Address(2), Address(7)}));
    } else {
      EXPECT_EQ(*addrs, (std::vector<Address>{Address(5)}));
    }
  }
  // A unit trimmed past its last entry: the tail never falls below a trim.
  views["c"].trim_mark = 12;
  EXPECT_EQ(MergeUnitViews(l, views)->global_tail, Address(12));
  views["a"].maps.front().set_roaring64("garbage");
  EXPECT_EQ(MergeUnitViews(l, views).status().code(), Code::kMalformed);
}

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tally-node-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }

  Result<std::unique_ptr<Node>> StartNode(const std::string& name, Roles roles,
                                          std::optional<proto::Layout> layout) {
    NodeOptions o;
    o.listen = name;
    o.data_dir = dir_ + "/" + name;
    o.roles = roles;
    o.layout = std::move(layout);
    transports_.push_back(network_.MakeTransport(name));
    return Node::Start(o, transports_.back().get());
  }

  // One segment on n1, n1 its only layout server, `sequencer` its
  // sequencer, at `epoch`.
  static proto::Layout LayoutOnN1(uint64_t epoch, const std::string& sequencer) {
    proto::Layout layout = OneSegment({{"n1"}});
    layout.set_epoch(epoch);
    layout.add_sequencers(sequencer);
    layout.add_layout_servers("n1");
    return layout;
  }

  // n1, a log unit and layout server, with `layout` (its epoch, its
  // sequencer); kept in nodes_. nullptr, with a test failure, if it fails.
  Node* StartLayoutNode(const proto::Layout& layout) {
    auto n1 = StartNode("n1", Roles{.log = true, .sequencer = false, .layout = true}, layout);
    if (!n1.ok()) {
      ADD_FAILURE() << n1.status().ToString();
      return nullptr;
    }
    nodes_.push_back(std::move(*n1));
    return nodes_.back().get();
  }

  template <typename Resp, typename Req>
  Result<Resp> Call(const std::string& endpoint, const std::string& method, const Req& req) {
    std::promise<Result<Resp>> p;
    auto f = p.get_future();
    net::CallTyped<Resp>(*client_->Connect(endpoint), method, req, net::CallOptions{},
                         [&p](Result<Resp> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  std::string dir_;
  net::InProcessNetwork network_;
  std::vector<std::unique_ptr<net::Transport>> transports_;
  std::unique_ptr<net::Transport> client_ = network_.MakeTransport("client");
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(NodeTest, LayoutGetWithoutLayoutSaysHowToFixIt) {
  auto node = StartNode("n1", Roles{}, std::nullopt);
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  nodes_.push_back(std::move(*node));
  auto r = Call<proto::GetLayoutResponse>("n1", "layout.get", proto::GetLayoutRequest{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("--layout"), std::string::npos);
}

TEST_F(NodeTest, SequencerRoleNeedsALayout) {
  auto node = StartNode("n1", Roles{.log = true, .sequencer = true}, std::nullopt);
  EXPECT_EQ(node.status().code(), Code::kInvalidArgument);
}

TEST_F(NodeTest, SequencerBootstrapsOnceEveryStripeAnswers) {
  // n1 hosts the sequencer; stripe 1 lives only on n2 (which holds an entry
  // of a stream), stripe 2 only on n3, which starts last.
  proto::Layout layout = OneSegment({{"n1"}, {"n2"}, {"n3"}});
  layout.set_epoch(4);
  layout.add_sequencers("n1");
  const StreamId s = StreamId::FromName("ports");
  auto n2 = StartNode("n2", Roles{}, layout);
  ASSERT_TRUE(n2.ok()) << n2.status().ToString();
  nodes_.push_back(std::move(*n2));
  proto::WriteRequest w;
  w.set_epoch(4);
  w.mutable_entry()->set_address(9);
  w.mutable_entry()->set_type(proto::DATA);
  w.mutable_entry()->set_payload("x");
  w.mutable_entry()->add_streams()->set_hi(s.hi);
  w.mutable_entry()->mutable_streams(0)->set_lo(s.lo);
  ASSERT_TRUE(Call<proto::WriteResponse>("n2", "log.write", w).ok());

  auto n1 = StartNode("n1", Roles{.log = true, .sequencer = true}, layout);
  ASSERT_TRUE(n1.ok()) << n1.status().ToString();
  nodes_.push_back(std::move(*n1));
  proto::seq::TailRequest tail;
  tail.set_epoch(4);
  *tail.add_streams() = w.entry().streams(0);
  auto early = Call<proto::seq::TailResponse>("n1", "seq.tail", tail);
  ASSERT_FALSE(early.ok());
  EXPECT_NE(early.status().message().find("not bootstrapped"), std::string::npos)
      << early.status().ToString();
  auto layout_get = Call<proto::GetLayoutResponse>("n1", "layout.get", proto::GetLayoutRequest{});
  ASSERT_TRUE(layout_get.ok()) << layout_get.status().ToString();
  EXPECT_EQ(layout_get->layout().epoch(), 4u);

  auto n3 = StartNode("n3", Roles{}, layout);
  ASSERT_TRUE(n3.ok()) << n3.status().ToString();
  nodes_.push_back(std::move(*n3));
  Result<proto::seq::TailResponse> r = early;
  for (int i = 0; i < 200 && !r.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    r = Call<proto::seq::TailResponse>("n1", "seq.tail", tail);
  }
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->global_tail(), 10u);
  ASSERT_EQ(r->streams_size(), 1);
  EXPECT_EQ(r->streams(0).tail(), 9u);
}

TEST_F(NodeTest, LayoutRoleServesTheNewestCommittedLayout) {
  // n1 is a layout server started with a static layout of epoch 2.
  const proto::Layout given = LayoutOnN1(2, "n1");
  Node* node = StartLayoutNode(given);
  ASSERT_NE(node, nullptr);

  proto::LayoutCommittedRequest latest;
  auto none = Call<proto::LayoutCommittedResponse>("n1", "layout.committed", latest);
  EXPECT_EQ(none.status().code(), Code::kNotFound) << none.status().ToString();
  auto r = Call<proto::GetLayoutResponse>("n1", "layout.get", proto::GetLayoutRequest{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->layout().epoch(), 2u);  // nothing committed yet: the static one

  // A committed epoch 3 supersedes the static layout.
  proto::Layout next = given;
  next.set_epoch(3);
  proto::LayoutCommitRequest commit;
  *commit.mutable_layout() = next;
  ASSERT_TRUE(node->layout_server()->Commit(commit).ok());
  r = Call<proto::GetLayoutResponse>("n1", "layout.get", proto::GetLayoutRequest{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->layout().epoch(), 3u);

  // The commit survives a restart of the node.
  nodes_.clear();
  auto again = StartNode("n1", Roles{.log = true, .sequencer = false, .layout = true}, given);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  nodes_.push_back(std::move(*again));
  r = Call<proto::GetLayoutResponse>("n1", "layout.get", proto::GetLayoutRequest{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->layout().epoch(), 3u);
}

// Counts the channels opened through it.
class CountingTransport final : public net::Transport {
 public:
  explicit CountingTransport(net::Transport* inner) : inner_(inner) {}
  std::shared_ptr<net::Channel> Connect(const std::string& endpoint) override {
    connects++;
    return inner_->Connect(endpoint);
  }
  Result<std::unique_ptr<net::Server>> Listen(const std::string& endpoint,
                                              const net::ServiceRegistry* services) override {
    return inner_->Listen(endpoint, services);
  }
  std::atomic<int> connects{0};

 private:
  net::Transport* const inner_;
};

TEST_F(NodeTest, SequencerRolePollsLayoutsOverOneChannelPerLayoutServer) {
  // n1 is the layout server and the log unit; the role under test is the
  // primary sequencer "s1" and polls n1's committed layouts every 2 ms.
  const proto::Layout layout = LayoutOnN1(1, "s1");
  Node* node = StartLayoutNode(layout);
  ASSERT_NE(node, nullptr);

  auto inner = network_.MakeTransport("s1");
  CountingTransport counting(inner.get());
  SequencerRoleOptions o;
  o.layout_poll = std::chrono::milliseconds(2);
  SequencerRole role(layout, &counting, o);
  role.StartBootstrap("s1");
  for (int i = 0; i < 200 && !role.bootstrapped(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(role.bootstrapped());
  const int after_bootstrap = counting.connects.load();

  // A newer committed layout is still followed (over the cached channel).
  proto::Layout next = layout;
  next.set_epoch(2);
  proto::LayoutCommitRequest commit;
  *commit.mutable_layout() = next;
  ASSERT_TRUE(node->layout_server()->Commit(commit).ok());
  for (int i = 0; i < 200 && role.epoch() != 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(role.epoch(), 2u);
  // ~100 polls in 200 ms; each used to open a channel of its own.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int polled = counting.connects.load() - after_bootstrap;
  // The re-bootstrap in epoch 2 opens its own channels to the log unit
  // (two: log.tail and log.stream_maps share one per unit).
  EXPECT_LE(polled, 2) << "channels opened after the first bootstrap";
}

TEST_F(NodeTest, LayoutRoleWithoutAnyLayoutSaysToBootstrap) {
  auto n1 = StartNode("n1", Roles{.log = false, .sequencer = false, .layout = true}, std::nullopt);
  ASSERT_TRUE(n1.ok()) << n1.status().ToString();
  nodes_.push_back(std::move(*n1));
  auto r = Call<proto::GetLayoutResponse>("n1", "layout.get", proto::GetLayoutRequest{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("tallyctl cluster bootstrap"), std::string::npos)
      << r.status().ToString();
}

TEST(RolesTest, ParsesTheLayoutRole) {
  auto r = ParseRoles("log,layout");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->log);
  EXPECT_TRUE(r->layout);
  EXPECT_FALSE(r->sequencer);
  EXPECT_EQ(RolesString(*r), "log,layout");
  EXPECT_NE(ParseRoles("paxos").status().message().find("layout"), std::string::npos);
}

}  // namespace
}  // namespace tally::server
