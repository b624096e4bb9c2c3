#include "node.h"

#include <spdlog/spdlog.h>

namespace tally::server {

Result<std::unique_ptr<Node>> Node::Start(NodeOptions options, net::Transport* transport) {
  std::unique_ptr<Node> node(new Node());
  node->options_ = options;
  log::LogUnitOptions lu;
  lu.store.dir = JoinPath(options.data_dir, "log");
  lu.store.segment_bytes = options.segment_bytes;
  log::RecoveryReport report;
  auto unit = log::LogUnit::Open(lu, &report);
  if (!unit.ok()) return unit.status().WithContext("opening log unit in " + lu.store.dir);
  node->log_unit_ = std::move(*unit);
  spdlog::info(
      "node {}: log unit recovered {} records in {} segments ({} scanned, {} torn bytes dropped, "
      "{} corrupt)",
      options.id.value(), report.records, report.segments, report.scanned_records,
      report.torn_bytes_dropped, report.corrupt_records);
  node->log_unit_->Register(node->registry_);
  auto server = transport->Listen(options.listen, &node->registry_);
  if (!server.ok()) return server.status().WithContext("listening on " + options.listen);
  node->server_ = std::move(*server);
  return node;
}

Node::~Node() {
  // Stop taking requests first, then let the pending group commits finish.
  server_.reset();
  if (log_unit_) log_unit_->Flush();
}

}  // namespace tally::server
