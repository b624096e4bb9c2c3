#!/usr/bin/env bash
# Builds Tally and runs the whole test suite (unit, crash-recovery,
# multi-process). Usage: scripts/test.sh [PRESET]   (default: debug;
# also release, asan, tsan). Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-debug}"

scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"

cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" -j "$(nproc)"
