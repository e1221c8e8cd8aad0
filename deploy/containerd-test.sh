#!/usr/bin/env bash
# Starts, once per machine, a containerd of skiff's own for the tests and the local cluster:
# its own root, state and socket (under /var/lib/skiff-containerd and /run/skiff-containerd),
# so it never touches a containerd the machine runs for something else. Prints the socket.
#
#   deploy/containerd-test.sh          start it if it is not running; print its socket
#   deploy/containerd-test.sh stop     stop it (containers it runs are killed)
set -euo pipefail
run_dir=${SKIFF_CONTAINERD_RUN:-/run/skiff-containerd}
root_dir=${SKIFF_CONTAINERD_ROOT:-/var/lib/skiff-containerd}
sock=$run_dir/containerd.sock

answers() { ctr -a "$sock" version >/dev/null 2>&1; }

if [ "${1:-}" = stop ]; then
  if [ -f "$run_dir/containerd.pid" ]; then
    kill "$(cat "$run_dir/containerd.pid")" 2>/dev/null || true
    rm -f "$run_dir/containerd.pid"
  fi
  exit 0
fi

command -v containerd >/dev/null && command -v runc >/dev/null || {
  echo "containerd and runc are not installed: apt-get install containerd runc" >&2
  exit 1
}
if answers; then echo "$sock"; exit 0; fi
mkdir -p "$run_dir" "$root_dir"
exec 9>"$run_dir/.lock"
flock 9
if answers; then echo "$sock"; exit 0; fi
cat >"$run_dir/config.toml" <<CONF
version = 2
root = "$root_dir"
state = "$run_dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
CONF
# Its own session, and not holding our lock: it outlives this script and the tests.
setsid containerd --config "$run_dir/config.toml" >"$run_dir/containerd.log" 2>&1 </dev/null 9>&- &
echo $! >"$run_dir/containerd.pid"
for _ in $(seq 1 150); do
  if answers; then echo "$sock"; exit 0; fi
  sleep 0.1
done
echo "containerd did not start; see $run_dir/containerd.log" >&2
exit 1
