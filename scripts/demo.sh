#!/usr/bin/env bash
# Builds Tally (release), starts a log unit on loopback with its state under
# var/demo/, and runs a short demo: writes, reads back, a write-once refusal,
# a hole, a scan, the tail, a seal that fences an older epoch.
# The node keeps running afterwards; the last lines say how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Cache hits across clones in other directories (CI builds a fresh clone).
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target tally-server tallyctl
bin="$root/build/release/bin"

dir="$root/var/demo"
if [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
  echo "stopping the previous demo node (pid $(cat "$dir/server.pid"))"
  kill -TERM "$(cat "$dir/server.pid")"
  while kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; do sleep 0.1; done
fi
rm -rf "$dir"
mkdir -p "$dir"

# Detached from this terminal (its own session, no inherited stdio), so the
# node outlives the script and pipes from this script close when it ends.
setsid "$bin/tally-server" --node-id 1 --listen 127.0.0.1:0 --data-dir "$dir/node1" \
  --ready-file "$dir/endpoint" </dev/null >"$dir/node1.log" 2>&1 &
echo $! >"$dir/server.pid"
for _ in $(seq 1 100); do
  [ -s "$dir/endpoint" ] && break
  if ! kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
    echo "tally-server failed to start; its log:" >&2
    cat "$dir/node1.log" >&2
    exit 1
  fi
  sleep 0.1
done
export TALLY_ENDPOINTS="$(cat "$dir/endpoint")"
echo "log unit serving on $TALLY_ENDPOINTS (pid $(cat "$dir/server.pid"), log $dir/node1.log)"

run() {
  echo "\$ $*"
  "$@" || echo "(exit code $?)"
}
ctl="$bin/tallyctl"
run "$ctl" write 0 'switch s1: ports=48'
run "$ctl" write --stream switches 1 'switch s2: ports=24'
run "$ctl" write 2 'router r1: asn=65001'
run "$ctl" read 1
run "$ctl" write 1 'overwrite attempt'
run "$ctl" fill-hole 3
run "$ctl" read 3
run "$ctl" -o json scan 0 10
run "$ctl" tail
run "$ctl" seal 1
run "$ctl" --epoch 0 write 4 'from a stale writer'
run "$ctl" --epoch 1 write 4 'from the new epoch'
run "$ctl" --epoch 1 tail

cat <<MSG

The node is still running. Use it:   export TALLY_ENDPOINTS=$TALLY_ENDPOINTS; $ctl --help
Stop it:                             kill -TERM $(cat "$dir/server.pid")
MSG
