#!/usr/bin/env bash
# Builds Tally (release), starts a local 3-node cluster on loopback (state
# and logs under var/demo/) and runs a short demo: appends to streams, reads
# back, a scan, the tails, a stream read and the layout. The cluster keeps
# running afterwards; the last lines say how to use and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Cache hits across clones in other directories (CI builds a fresh clone).
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target tally-server tallyctl
ctl="$root/build/release/bin/tallyctl"
dir="$root/var/demo"

# A cluster left running by an earlier demo is stopped (by its recorded
# pids) and its state removed, so the demo starts from an empty log.
if [ -f "$dir/cluster.json" ]; then
  "$ctl" local down --dir "$dir" >/dev/null 2>&1 || true
fi
rm -rf "$dir"
mkdir -p "$dir"

echo "== starting a local 3-node cluster"
up_out="$("$ctl" local up --nodes 3 --dir "$dir")"
echo "$up_out"
export TALLY_ENDPOINTS="$(echo "$up_out" | sed -n 's/^export TALLY_ENDPOINTS=//p')"

run() {
  echo "\$ tallyctl $*"
  "$ctl" "$@" || echo "(exit code $?)"
}
echo
echo "== the shared log"
run append --stream switches 'switch s1: ports=48'
run append --stream switches 'switch s2: ports=24'
run append --stream routers 'router r1: asn=65001'
printf 'port s1/1 up\nport s1/2 down\n' >"$dir/ports.txt"
echo "\$ tallyctl append --stream ports - < ports.txt"
"$ctl" append --stream ports - <"$dir/ports.txt"
run read 1
run scan 0 10
run -o json scan 0 2
run tail
run tail --stream switches
run stream read switches
run read 1000
run layout
run local status --dir "$dir"
echo
echo "== one log unit: what it holds and how fast its disk commits"
run unit stats

cat <<MSG

The cluster is still running. Use it:
  export TALLY_ENDPOINTS=$TALLY_ENDPOINTS
  $ctl --help
Stop it:
  $ctl local down --dir $dir
MSG
