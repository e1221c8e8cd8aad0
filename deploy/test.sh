#!/usr/bin/env bash
# Runs every test of skiff on a fresh Debian machine: installs (as root, with apt-get) the
# packages the tests need and does not find, starts skiff's own containerd for the tests
# (deploy/containerd-test.sh), then builds and runs the workspace's tests. The README's
# test command, and what CI (.ci/run) runs. Extra arguments go to `cargo test`. docker.io
# is there for its `docker` client, which the Docker API tests drive; no dockerd is used.
# tini gives the nodes a statically linked init for `service create --init`; chromium
# renders the cluster page in its tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg_cmd in "iproute2:ip" "nftables:nft" "busybox-static:busybox" "containerd:containerd" \
  "runc:runc" "docker-registry:docker-registry" "skopeo:skopeo" "docker.io:docker" \
  "tini:tini-static" "chromium:chromium"; do
  command -v "${pkg_cmd#*:}" >/dev/null 2>&1 || need+=("${pkg_cmd%%:*}")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "the tests need ${need[*]} and run as root (namespaces, nftables, containerd): run this as root" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The tests' containerd: its own root, state and socket; the tests would start it too,
# this only makes its start visible in the log.
echo "== containerd: $(deploy/containerd-test.sh)"

echo "== toolchain: $(cargo --version), $(rustc --version)"
echo "== building"
cargo build --workspace --bins --tests --locked

echo "== testing"
exec cargo test --workspace --no-fail-fast "$@"
