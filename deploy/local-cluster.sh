#!/usr/bin/env bash
# A multi-host skiff cluster on this one machine, to try skiff without several hosts.
#
#   deploy/local-cluster.sh up [--managers 3] [--workers 2] [--runtime containerd|process]
#                                        build, create the hosts, start a registry, form the cluster
#   deploy/local-cluster.sh status       hosts, daemons and node list
#   deploy/local-cluster.sh cli N ARGS...   run `skiff ARGS...` against host N
#   deploy/local-cluster.sh addr N       host N's address (reachable from this machine's shell)
#   deploy/local-cluster.sh push FILE.tar NAME:TAG   push an OCI or `docker save` tarball to the
#                                        cluster's registry and print the reference to use
#   deploy/local-cluster.sh down         stop everything and remove all it made
#
# Each host is a network namespace with its own address (10.78.0.N by default, set
# SKIFF_LOCAL_NET=10.x.y to change) on a bridge of this machine, running a real skiffd with
# its own data directory and socket. The machine itself is 10.78.0.1 on that bridge, where
# the registry listens. With the containerd runtime (the default), tasks are containers on
# skiff's own containerd (deploy/containerd-test.sh), each host in a containerd namespace of
# its own, and the demo runs a busybox image built here and pushed to the registry. Needs
# root (namespaces) and Debian's packages, installed if missing.
set -euo pipefail

# Several clusters can be up at once (the tests run one beside yours) when each has its own
# SKIFF_LOCAL_STATE, SKIFF_LOCAL_NET, SKIFF_LOCAL_NAME (namespace prefix) and
# SKIFF_LOCAL_BRIDGE; SKIFF_BIN names a directory with skiffd and skiff already built
# (no release build then).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${SKIFF_LOCAL_STATE:-/tmp/skiff-local-cluster}"
NET="${SKIFF_LOCAL_NET:-10.78.0}"
NAME="${SKIFF_LOCAL_NAME:-skiff-local}"
BRIDGE="${SKIFF_LOCAL_BRIDGE:-skiffbr0}"
PORT=2377
REGISTRY="$NET.1:5000"
BIN="${SKIFF_BIN:-$ROOT/target/release}"

die() { echo "local-cluster: $*" >&2; exit 1; }
ip_of() { echo "$NET.$(( $1 + 1 ))"; }
addr_of() { echo "$(ip_of "$1"):$PORT"; }
ns_of() { echo "$NAME-$1"; }
veth_of() { echo "$BRIDGE-$1" | cut -c1-15; }
sock_of() { echo "$STATE/host$1/skiffd.sock"; }
# Each daemon its own Docker API socket (the default path is one per machine).
docker_sock_of() { echo "$STATE/host$1/docker.sock"; }
skiff_on() { local n=$1; shift; "$BIN/skiff" -H "unix://$(sock_of "$n")" "$@"; }
count() { ls -d "$STATE"/host* 2>/dev/null | wc -l; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root: the hosts are network namespaces"; }

# Installs the Debian packages that provide the given commands, if any is missing.
install_missing() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair#*:}" >/dev/null 2>&1 || need+=("${pair%%:*}")
  done
  [ "${#need[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "please install ${need[*]} (no apt-get here)"
  echo "installing ${need[*]}..."
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

build() {
  [ -n "${SKIFF_BIN:-}" ] && return 0
  command -v cargo >/dev/null || die "cargo is missing: install Rust from your distribution or rustup"
  echo "building skiff (release)..."
  (cd "$ROOT" && cargo build --release --bins --locked -q)
}

make_bridge() {
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

make_host() {
  local n=$1 ns; ns=$(ns_of "$1")
  ip netns add "$ns"
  ip link add "$(veth_of "$n")" type veth peer name eth0 netns "$ns"
  ip link set "$(veth_of "$n")" master "$BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(ip_of "$n")/24" dev eth0
  ip -n "$ns" link set eth0 up
}

runtime_args() {
  local n=$1
  if [ "$(cat "$STATE/runtime")" = containerd ]; then
    echo "--runtime containerd --containerd-socket $(cat "$STATE/containerd.sock") --containerd-namespace $NAME-host$n --insecure-registry $REGISTRY"
  else
    echo "--runtime process"
  fi
}

start_daemon() {
  local n=$1 dir="$STATE/host$1"
  mkdir -p "$dir"
  # shellcheck disable=SC2046
  ip netns exec "$(ns_of "$n")" "$BIN/skiffd" --data-dir "$dir/data" --socket "$(sock_of "$n")" \
    --docker-host "unix://$(docker_sock_of "$n")" --listen-addr "$(addr_of "$n")" --hostname "host$n" $(runtime_args "$n") \
    >>"$dir/skiffd.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 100); do [ -S "$(sock_of "$n")" ] && return 0; sleep 0.1; done
  die "host $n did not start; see $dir/skiffd.log"
}

start_registry() {
  mkdir -p "$STATE/registry"
  cat >"$STATE/registry/config.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
http:
  addr: $REGISTRY
EOF
  docker-registry serve "$STATE/registry/config.yml" >>"$STATE/registry/registry.log" 2>&1 &
  echo $! >"$STATE/registry/pid"
}

up() {
  local managers=3 workers=2 runtime=containerd
  while [ $# -gt 0 ]; do
    case "$1" in
      --managers) managers=$2; shift 2 ;;
      --workers) workers=$2; shift 2 ;;
      --runtime)
        case "$2" in containerd|process) runtime=$2 ;; *) die "unknown runtime $2: use containerd or process" ;; esac
        shift 2 ;;
      *) die "unknown option $1 (use --managers N --workers N --runtime containerd|process)" ;;
    esac
  done
  [ "$managers" -ge 1 ] || die "a cluster needs at least one manager"
  need_root
  [ "$(count)" -eq 0 ] && ! ip link show "$BRIDGE" >/dev/null 2>&1 \
    || die "a local cluster is already up; run '$0 down' first"
  install_missing iproute2:ip nftables:nft busybox-static:busybox docker-registry:docker-registry
  [ "$runtime" = containerd ] && install_missing containerd:containerd runc:runc skopeo:skopeo
  build
  mkdir -p "$STATE"
  echo "$runtime" >"$STATE/runtime"
  if [ "$runtime" = containerd ]; then
    "$ROOT/deploy/containerd-test.sh" >"$STATE/containerd.sock"
  fi
  local total=$(( managers + workers ))
  make_bridge
  for n in $(seq 1 "$total"); do make_host "$n"; done
  start_registry
  local image=busybox
  if [ "$runtime" = containerd ]; then
    "$ROOT/deploy/busybox-image.sh" "$STATE/busybox.tar" >/dev/null
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/${REGISTRY%:*}/${REGISTRY#*:}") 2>/dev/null && break; sleep 0.1; done
    image=$(push "$STATE/busybox.tar" busybox:latest)
  fi
  for n in $(seq 1 "$total"); do start_daemon "$n"; done
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
  # The demo publishes port 8080 through the routing mesh: every host answers, and each
  # connection goes to the next of the two tasks, wherever they run.
  echo "Starting a demo web service (2 busybox httpd tasks published on port 8080 of every host)..."
  if [ "$runtime" = containerd ]; then
    skiff_on 1 service create --name demo --replicas 2 -p 8080:80 "$image" \
      sh -c 'echo "hello from skiff task $(hostname)" >/www/index.html; exec httpd -f -p 80 -h /www' || true
  else
    skiff_on 1 service create --name demo --replicas 2 -p 8080:80 busybox \
      sh -c 'd=$(mktemp -d); echo "hello from skiff task $$" >$d/index.html; exec busybox httpd -f -p 80 -h $d' || true
  fi
  skiff_on 1 service ps demo
  echo
  echo "The cluster is up: $managers managers, $workers workers ($runtime runtime), a registry at $REGISTRY."
  echo "  curl http://\$($0 addr 2):8080/           the demo answers on every host, round-robin"
  echo "  $0 cli 1 service ls                      any command, on any host"
  echo "  $0 push image.tar web:v1                 put an image in the cluster's registry"
  echo "  docker -H unix://$(docker_sock_of 1) service ls   the docker client, through skiffd's Docker API"
  for n in $(seq 1 "$total"); do echo "  host$n at $(ip_of "$n"):  $0 cli $n node ls"; done
  echo "Stop it with: $0 down"
}

status() {
  [ "$(count)" -gt 0 ] || { echo "no local cluster is up"; return 0; }
  for dir in "$STATE"/host*; do
    local n=${dir##*host} pid
    pid=$(cat "$dir/pid" 2>/dev/null || echo 0)
    if kill -0 "$pid" 2>/dev/null; then echo "host$n: skiffd running (pid $pid) at $(addr_of "$n")"; else echo "host$n: skiffd stopped"; fi
  done
  skiff_on 1 node ls || true
}

push() {
  [ $# -eq 2 ] || die "usage: $0 push FILE.tar NAME:TAG"
  local file=$1 ref=$2 transport
  [ -f "$file" ] || die "no such file: $file"
  [ -f "$STATE/registry/pid" ] || die "no local cluster is up; run '$0 up' first"
  install_missing skopeo:skopeo
  # `docker save` tarballs carry manifest.json; OCI layouts carry index.json.
  if tar -tf "$file" | grep -qx 'manifest.json'; then transport=docker-archive; else transport=oci-archive; fi
  skopeo copy -q --dest-tls-verify=false "$transport:$file" "docker://$REGISTRY/$ref"
  echo "$REGISTRY/$ref"
}

down() {
  # Leaving stops each host's tasks (each within its stop grace period): all hosts at once,
  # then every process left in a host's namespace goes.
  local pids=() dir
  for dir in "$STATE"/host*; do
    [ -S "$dir/skiffd.sock" ] || continue
    echo "host${dir##*host}: leaving the swarm (stopping its tasks)..."
    "$BIN/skiff" -H "unix://$dir/skiffd.sock" swarm leave --force >"$dir/leave.log" 2>&1 &
    pids+=("$!")
  done
  [ "${#pids[@]}" -eq 0 ] || { wait "${pids[@]}" || true; echo "every host has left"; }
  # Containers outlive their daemons by design: remove this cluster's.
  if [ "$(cat "$STATE/runtime" 2>/dev/null)" = containerd ] && [ -f "$STATE/containerd.sock" ]; then
    echo "removing the cluster's containers left in containerd..."
    local sock cns id
    sock=$(cat "$STATE/containerd.sock")
    for cns in $(ctr -a "$sock" namespaces ls -q 2>/dev/null | grep "^$NAME-host" || true); do
      for id in $(ctr -a "$sock" -n "$cns" containers ls -q 2>/dev/null); do
        ctr -a "$sock" -n "$cns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
        for _ in $(seq 1 30); do ctr -a "$sock" -n "$cns" tasks rm -f "$id" >/dev/null 2>&1 && break; sleep 0.1; done
        ctr -a "$sock" -n "$cns" containers rm "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  echo "stopping the daemons and removing the hosts' namespaces, the registry and the bridge..."
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NAME-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  [ -f "$STATE/registry/pid" ] && kill "$(cat "$STATE/registry/pid")" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$STATE"
  echo "the local cluster is down"
}

cmd=${1:-}; [ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  status) status ;;
  down) need_root; down ;;
  push) push "$@" ;;
  cli) [ $# -ge 1 ] || die "usage: $0 cli N ARGS..."; n=$1; shift; skiff_on "$n" "$@" ;;
  addr) [ $# -eq 1 ] || die "usage: $0 addr N"; ip_of "$1" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
