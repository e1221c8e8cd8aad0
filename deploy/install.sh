#!/usr/bin/env bash
# Installs skiff on a real host: builds the binaries (or takes them from --bin-dir), installs
# them to /usr/local/bin, installs and starts the systemd unit.
#
#   deploy/install.sh [--bin-dir DIR]
#
# Then, on the first host: skiff swarm init --advertise-addr <this host's IP>
# and on the others:       skiff swarm join --token <token> <first host's IP>
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    *) echo "install: unknown option $1 (use --bin-dir DIR)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "install: run as root (skiffd manages processes and networking)" >&2; exit 1; }
if [ -z "$BIN_DIR" ]; then
  command -v cargo >/dev/null || { echo "install: cargo is missing; install Rust or pass --bin-dir with prebuilt binaries" >&2; exit 1; }
  (cd "$ROOT" && cargo build --release --locked --bins)
  BIN_DIR="$ROOT/target/release"
fi
install -m 0755 "$BIN_DIR/skiffd" "$BIN_DIR/skiff" /usr/local/bin/
install -m 0644 "$ROOT/deploy/skiffd.service" /etc/systemd/system/skiffd.service
systemctl daemon-reload
systemctl enable --now skiffd
echo "skiffd is running. Next: skiff swarm init --advertise-addr <IP> (first host) or skiff swarm join ..."
