#!/usr/bin/env bash
# Installs the Debian packages Tally builds with, if any is missing.
# Uses sudo only when not root. Safe to run repeatedly.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev libboost-system1.81-dev
  libprotobuf-dev protobuf-compiler
  librocksdb-dev liburing-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libroaring-dev libspdlog-dev libfmt-dev libcli11-dev libssl-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
