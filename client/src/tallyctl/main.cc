// tallyctl: the command line for Tally, like etcdctl.
//
//   shared log:  append, read, scan, tail, stream read|follow, layout, trim
//   one unit:    unit write|read|scan|tail|seal|trim|fill-hole
//   layout:      cluster bootstrap
//   dev cluster: local up|status|down|kill|start
//
// Global flags: --endpoints (or TALLY_ENDPOINTS), --output text|json,
// --timeout-ms, --epoch (unit commands). See docs/cli.md.

#include <signal.h>

#include <CLI/CLI.hpp>

#include "cluster_admin.h"
#include "cluster_commands.h"
#include "ctl.h"
#include "local.h"
#include "unit_commands.h"

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  tally::ctl::Globals g;
  CLI::App app{"tallyctl: command line for the Tally shared log"};
  app.require_subcommand(1);
  // Global flags may also follow a subcommand (`tallyctl unit -o json tail`);
  // subcommands created below inherit this.
  app.fallthrough();
  app.add_option("--endpoints,--endpoint", g.endpoints,
                 "cluster node addresses HOST:PORT, comma-separated")
      ->envname("TALLY_ENDPOINTS");
  app.add_option("--output,-o", g.output, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--timeout-ms", g.timeout_ms, "per-request timeout")->capture_default_str();
  app.add_option("--epoch", g.epoch, "epoch sent by the unit commands")->capture_default_str();

  tally::ctl::ClusterCommands cluster(app, g);
  tally::ctl::ClusterAdminCommands admin(app, g);
  tally::ctl::UnitCommands unit(app, g);
  tally::ctl::LocalCommand local(app);

  CLI11_PARSE(app, argc, argv);
  if (local.selected()) return local.Run(g.json());
  if (auto rc = unit.Run()) return *rc;
  if (auto rc = cluster.Run()) return *rc;
  if (auto rc = admin.Run()) return *rc;
  return tally::ctl::kExitUsage;
}
