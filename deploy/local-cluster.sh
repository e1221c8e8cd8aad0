#!/usr/bin/env bash
# A multi-node skiff cluster on this one machine, to try skiff without several hosts.
#
#   deploy/local-cluster.sh up [--managers 3] [--workers 2]   build, start, form the cluster
#   deploy/local-cluster.sh status                            node list and daemon state
#   deploy/local-cluster.sh cli N ARGS...                     run `skiff ARGS...` against node N
#   deploy/local-cluster.sh addr N                            node N's cluster address
#   deploy/local-cluster.sh down                              stop everything, remove its state
#
# Each node is a real skiffd with its own data directory, socket and address on the
# loopback network (127.77.0.N), running tasks with the `process` runtime.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${SKIFF_LOCAL_STATE:-/tmp/skiff-local-cluster}"
PORT=2377
BIN="$ROOT/target/release"

die() { echo "local-cluster: $*" >&2; exit 1; }
addr_of() { echo "127.77.0.$(( $1 + 1 )):$PORT"; }
sock_of() { echo "$STATE/node$1/skiffd.sock"; }
skiff_on() { local n=$1; shift; "$BIN/skiff" -H "unix://$(sock_of "$n")" "$@"; }
count() { ls -d "$STATE"/node* 2>/dev/null | wc -l; }

build() {
  command -v cargo >/dev/null || die "cargo is missing: install Rust from your distribution or rustup"
  echo "building skiff (release)..."
  (cd "$ROOT" && cargo build --release --bins --locked -q)
}

start_node() {
  local n=$1 dir="$STATE/node$1"
  mkdir -p "$dir"
  "$BIN/skiffd" --data-dir "$dir/data" --socket "$(sock_of "$n")" \
    --listen-addr "$(addr_of "$n")" --hostname "node$n" --runtime process \
    >>"$dir/skiffd.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 100); do [ -S "$(sock_of "$n")" ] && return 0; sleep 0.1; done
  die "node $n did not start; see $dir/skiffd.log"
}

up() {
  local managers=3 workers=2
  while [ $# -gt 0 ]; do
    case "$1" in
      --managers) managers=$2; shift 2 ;;
      --workers) workers=$2; shift 2 ;;
      --runtime) [ "$2" = process ] || die "only --runtime process is available in this version"; shift 2 ;;
      *) die "unknown option $1 (use --managers N --workers N)" ;;
    esac
  done
  [ "$managers" -ge 1 ] || die "a cluster needs at least one manager"
  [ "$(count)" -eq 0 ] || die "a local cluster is already up in $STATE; run '$0 down' first"
  build
  local total=$(( managers + workers ))
  for n in $(seq 1 "$total"); do start_node "$n"; done
  skiff_on 1 swarm init --advertise-addr "$(addr_of 1)" >/dev/null
  local mtok wtok
  mtok=$(skiff_on 1 swarm join-token -q manager)
  wtok=$(skiff_on 1 swarm join-token -q worker)
  for n in $(seq 2 "$total"); do
    local tok=$wtok
    [ "$n" -le "$managers" ] && tok=$mtok
    skiff_on "$n" swarm join --token "$tok" --advertise-addr "$(addr_of "$n")" "$(addr_of 1)"
  done
  sleep 1
  skiff_on 1 node ls
  echo
  echo "Starting a demo service (3 replicas that log the time and their node every 5 s)..."
  skiff_on 2 service create --name demo --replicas 3 busybox \
    sh -c 'while true; do echo "demo task (pid $$) alive at $(date +%T)"; sleep 5; done' || true
  skiff_on 1 service ps demo
  echo
  echo "The cluster is up: $managers managers, $workers workers."
  echo "  $0 cli 1 service logs -f demo      follow the demo's output from every node"
  echo "  $0 cli 1 service scale demo=6      scale it"
  for n in $(seq 1 "$total"); do echo "  node$n at $(addr_of "$n"):  $0 cli $n node ls"; done
  echo "Stop it with: $0 down"
}

status() {
  [ "$(count)" -gt 0 ] || { echo "no local cluster is up"; return 0; }
  for dir in "$STATE"/node*; do
    local n=${dir##*node} pid
    pid=$(cat "$dir/pid" 2>/dev/null || echo 0)
    if kill -0 "$pid" 2>/dev/null; then echo "node$n: running (pid $pid) at $(addr_of "$n")"; else echo "node$n: stopped"; fi
  done
  skiff_on 1 node ls || true
}

down() {
  # Leaving stops each node's tasks (they run under their own supervisors and would
  # otherwise outlive the daemons).
  for dir in "$STATE"/node*; do
    [ -S "$dir/skiffd.sock" ] || continue
    "$BIN/skiff" -H "unix://$dir/skiffd.sock" swarm leave --force >/dev/null 2>&1 || true
  done
  for dir in "$STATE"/node*; do
    [ -d "$dir" ] || continue
    local pid; pid=$(cat "$dir/pid" 2>/dev/null || echo 0)
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for dir in "$STATE"/node*; do
    [ -d "$dir" ] || continue
    local pid; pid=$(cat "$dir/pid" 2>/dev/null || echo 0)
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$STATE"
  echo "the local cluster is down"
}

cmd=${1:-}; [ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  status) status ;;
  down) down ;;
  cli) [ $# -ge 1 ] || die "usage: $0 cli N ARGS..."; n=$1; shift; skiff_on "$n" "$@" ;;
  addr) [ $# -eq 1 ] || die "usage: $0 addr N"; addr_of "$1" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
