#include "node.h"

#include <spdlog/spdlog.h>

#include "failure_detector.h"
#include "layout_file.h"
#include "sequencer_role.h"

namespace tally::server {

Result<Roles> ParseRoles(std::string_view list) {
  Roles roles{.log = false, .sequencer = false, .layout = false};
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view role = list.substr(start, comma - start);
    if (role == "log") {
      roles.log = true;
    } else if (role == "sequencer") {
      roles.sequencer = true;
    } else if (role == "layout") {
      roles.layout = true;
    } else if (!role.empty()) {
      return InvalidArgument("unknown role '" + std::string(role) +
                             "'; --roles takes a comma list of: log, sequencer, layout");
    }
    start = comma + 1;
  }
  if (!roles.log && !roles.sequencer && !roles.layout) {
    return InvalidArgument("--roles is empty; give a comma list of: log, sequencer, layout");
  }
  return roles;
}

std::string RolesString(const Roles& roles) {
  std::string out;
  if (roles.log) out = "log";
  if (roles.sequencer) out += out.empty() ? "sequencer" : ",sequencer";
  if (roles.layout) out += out.empty() ? "layout" : ",layout";
  return out;
}

Node::Node() = default;

Result<std::unique_ptr<Node>> Node::Start(NodeOptions options, net::Transport* transport) {
  if (options.roles.sequencer && !options.layout) {
    return InvalidArgument(
        "the sequencer role needs the layout to bootstrap from; pass --layout FILE");
  }
  std::unique_ptr<Node> node(new Node());
  node->options_ = std::move(options);
  const NodeOptions& o = node->options_;
  if (o.roles.log) {
    log::LogUnitOptions lu;
    lu.store.dir = JoinPath(o.data_dir, "log");
    lu.store.segment_bytes = o.segment_bytes;
    lu.store.zero_ahead_bytes = o.zero_ahead_bytes;
    lu.store.env = o.env;
    lu.store.metadata_env = o.metadata_env;
    if (o.inline_io) {
      lu.store.inline_writes = true;
      lu.io_threads = 0;
    }
    log::RecoveryReport report;
    auto unit = log::LogUnit::Open(lu, &report);
    if (!unit.ok()) return unit.status().WithContext("opening log unit in " + lu.store.dir);
    node->log_unit_ = std::move(*unit);
    spdlog::info(
        "node {}: log unit recovered {} records in {} segments ({} scanned, {} torn bytes "
        "dropped, {} corrupt)",
        o.id.value(), report.records, report.segments, report.scanned_records,
        report.torn_bytes_dropped, report.corrupt_records);
    node->log_unit_->Register(node->registry_);
  }
  if (o.roles.sequencer) {
    SequencerRoleOptions so;
    so.threads = o.threads;
    node->sequencer_ = std::make_unique<SequencerRole>(*o.layout, transport, so);
    node->sequencer_->Register(node->registry_);
  }
  if (o.roles.layout) {
    log::LayoutServerOptions ls;
    ls.dir = JoinPath(o.data_dir, "layout");
    ls.env = o.metadata_env;
    ls.io_threads = o.inline_io ? 0 : 1;
    auto server = log::LayoutServer::Open(ls);
    if (!server.ok()) return server.status().WithContext("opening layout server in " + ls.dir);
    node->layout_server_ = std::move(*server);
    node->layout_server_->Register(node->registry_);
    if (auto e = node->layout_server_->latest_committed_epoch()) {
      spdlog::info("node {}: layout server recovered; latest committed epoch {}", o.id.value(), *e);
    }
  }
  RegisterLayoutService(node->registry_, LayoutSources{.static_layout = &o.layout,
                                                       .local = node->layout_server_.get()});
  auto server = transport->Listen(o.listen, &node->registry_);
  if (!server.ok()) return server.status().WithContext("listening on " + o.listen);
  node->server_ = std::move(*server);
  if (node->sequencer_) {
    const auto& seqs = o.layout->sequencers();
    if (std::find(seqs.begin(), seqs.end(), node->endpoint()) == seqs.end()) {
      spdlog::warn(
          "node {}: hosts a sequencer but the layout does not list {} among its sequencers; "
          "clients will not find it",
          o.id.value(), node->endpoint());
    }
    node->sequencer_->StartBootstrap(node->endpoint());
  }
  if (node->layout_server_ && o.failure_detector && o.layout &&
      o.layout->layout_servers_size() > 0) {
    FailureDetectorOptions fo;
    fo.threads = o.threads;
    fo.clock = o.env.clock;
    fo.heal = o.heal;
    node->detector_ =
        std::make_unique<FailureDetector>(node->endpoint(), o.id, *o.layout, transport, fo);
    node->detector_->Start();
  }
  return node;
}

Node::~Node() {
  // Stop taking requests first, then the bootstrap, then let the pending
  // group commits finish.
  detector_.reset();
  server_.reset();
  sequencer_.reset();
  layout_server_.reset();
  if (log_unit_) log_unit_->Flush();
}

}  // namespace tally::server
