#!/usr/bin/env bash
# Starts two real local Redis topologies for the tests (loopback only):
#   Redis Cluster   127.0.0.1:17001..17006, 3 masters + 3 replicas,
#                   cluster-node-timeout 2000 ms (quick failover)
#   Sentinel group  master 127.0.0.1:17101, replica 127.0.0.1:17102,
#                   sentinels 127.0.0.1:17111..17113 watching master `seckill`
#                   (quorum 2, down-after 1000 ms, failover-timeout 5000 ms)
# State (configs, nodes files, logs, pid files) lives in /tmp/seckill-redis/
# {cluster,sentinel}-PORT; nothing is persisted (no RDB, no AOF).
# Tests find them through two variables, printed on stdout by `start`:
#   export REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:17001,...,127.0.0.1:17006
#   export REDIS_SENTINEL_URL=redis+sentinel://127.0.0.1:17111,...,127.0.0.1:17113/seckill
# so `eval "$(scripts/redis-topologies.sh)"` sets them. Everything else goes
# to stderr.
#
# Usage: scripts/redis-topologies.sh [start|stop|status]
#   start (default)  a healthy running topology is left alone (also after a
#                    failover moved its masters); an unhealthy or partial one
#                    is shut down, wiped and recreated. redis-server is
#                    installed with apt-get when missing.
#   stop             shuts both down and wipes /tmp/seckill-redis.
#   status           prints what runs on each port; exits 1 unless both
#                    topologies are healthy.
# Set SECKILL_SKIP_SERVICES=1 to skip all of this (prints nothing).
# Only the ports above are ever touched (never 6379).
set -euo pipefail

[ "${SECKILL_SKIP_SERVICES:-0}" = 1 ] && exit 0
t0=$(date +%s.%N)

log() { printf '[redis-topologies] %s\n' "$*" >&2; }

BASE=/tmp/seckill-redis
CLUSTER_PORTS=(17001 17002 17003 17004 17005 17006)
DATA_PORTS=(17101 17102) # sentinel group: master, replica (at creation)
SENTINEL_PORTS=(17111 17112 17113)
MASTER_NAME=seckill
NODE_TIMEOUT=2000
# A settling topology (every process answers, e.g. right after a failover)
# gets this long to turn healthy before it is rebuilt.
# (Sentinel turns a demoted master into a replica only 8-18 s after a failover.)
SETTLE_SECS="${SECKILL_REDIS_SETTLE_SECS:-30}"

CLUSTER_URL="redis+cluster://$(printf '127.0.0.1:%s,' "${CLUSTER_PORTS[@]}")"
CLUSTER_URL="${CLUSTER_URL%,}"
SENTINEL_URL="redis+sentinel://$(printf '127.0.0.1:%s,' "${SENTINEL_PORTS[@]}")"
SENTINEL_URL="${SENTINEL_URL%,}/$MASTER_NAME"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# wait_for NAME SECONDS COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local name=$1 secs=$2 end
  shift 2
  end=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$name not ready within ${secs}s${why:+: $why}"
  return 1
}

# rcli PORT ARGS...: one redis-cli call with a deadline, CRs stripped.
rcli() {
  local port=$1
  shift
  timeout "${SECKILL_RCLI_TIMEOUT:-3}" redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null | tr -d '\r'
}

# field TEXT KEY: the value of KEY in `key:value` lines (INFO, CLUSTER INFO).
field() { sed -n "s/^$2:\(.*\)$/\1/p" <<<"$1" | head -n1; }

# kv TEXT KEY: the line after the line KEY (SENTINEL MASTER replies).
kv() { awk -v k="$2" 'prev == k { print; exit } { prev = $0 }' <<<"$1"; }

pong() { [ "$(rcli "$1" ping)" = PONG ]; }

# Health checks. On failure they leave the reason in $why, and set $final=1
# when waiting cannot help (wrong settings, a cluster never joined, ...).
why="" final=0

cluster_healthy() {
  local p info nodes replicas
  local -A infos=()
  why="" final=0
  # First: does every node answer at all? (A dead one means a rebuild, even
  # though the others may look fine or be failing over.)
  for p in "${CLUSTER_PORTS[@]}"; do
    infos[$p]="$(rcli "$p" cluster info)" || true
    if [ -z "${infos[$p]}" ]; then why="127.0.0.1:$p does not answer" final=1; return 1; fi
  done
  for p in "${CLUSTER_PORTS[@]}"; do
    info="${infos[$p]}"
    if [ "$(field "$info" cluster_known_nodes)" = 1 ] || [ "$(field "$info" cluster_slots_assigned)" != 16384 ]; then
      why="127.0.0.1:$p: not joined to a full cluster" final=1
      return 1
    fi
    if [ "$(field "$info" cluster_state)" != ok ] || [ "$(field "$info" cluster_slots_ok)" != 16384 ] ||
      [ "$(field "$info" cluster_known_nodes)" != 6 ] || [ "$(field "$info" cluster_size)" != 3 ]; then
      why="127.0.0.1:$p: $(tr '\n' ' ' <<<"$info" | cut -c1-160)"
      return 1
    fi
    # Every node's view: the 6 ports, connected, none failing, 3 masters
    # holding slots with exactly one replica each.
    nodes="$(rcli "$p" cluster nodes)" || true
    if ! awk -v want="${CLUSTER_PORTS[*]}" '
      BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) ok[w[i]] = 1 }
      {
        split($2, a, "[:@]"); if (a[1] != "127.0.0.1" || !(a[2] in ok) || seen[a[2]]++) bad = 1
        if ($3 ~ /fail|handshake|noaddr/ || $8 != "connected") bad = 1
        if ($3 ~ /master/) { if (NF < 9) bad = 1; masters[$1] = 1; nm++ }
        else if ($3 ~ /slave/) { of[$4]++; slaves++ }
        else bad = 1
        total++
      }
      END {
        if (bad || total != 6 || slaves != 3 || nm != 3) exit 1
        for (m in masters) if (of[m] != 1) exit 1
        exit 0
      }' <<<"$nodes"; then
      why="127.0.0.1:$p sees: $(awk '{ print $2, $3, $8 }' <<<"$nodes" | tr '\n' ';')"
      return 1
    fi
  done
  replicas="$(awk '$3 ~ /slave/ { split($2, a, "[:@]"); print a[2] }' <<<"$nodes")"
  for p in $replicas; do
    info="$(rcli "$p" info replication)" || true
    if [ "$(field "$info" master_link_status)" != up ]; then
      why="replica 127.0.0.1:$p: master link not up"
      return 1
    fi
  done
  for p in "${CLUSTER_PORTS[@]}"; do
    if [ "$(rcli "$p" config get cluster-node-timeout | sed -n 2p)" != "$NODE_TIMEOUT" ]; then
      why="127.0.0.1:$p: cluster-node-timeout is not $NODE_TIMEOUT" final=1
      return 1
    fi
  done
}

sentinel_healthy() {
  local p s addr first="" master other info reply
  why="" final=0
  for p in "${DATA_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do
    pong "$p" || { why="127.0.0.1:$p does not answer" final=1; return 1; }
  done
  for s in "${SENTINEL_PORTS[@]}"; do
    addr="$(rcli "$s" sentinel get-master-addr-by-name "$MASTER_NAME" | tr '\n' ':')" || true
    addr="${addr%:}"
    if [ -z "$first" ]; then first="$addr"; fi
    if [ "$addr" != "$first" ]; then why="sentinels disagree on the master: $first vs $addr"; return 1; fi
  done
  case "$first" in
    127.0.0.1:17101) master=17101 other=17102 ;;
    127.0.0.1:17102) master=17102 other=17101 ;;
    *) why="sentinels report master '$first'" final=1; return 1 ;;
  esac
  info="$(rcli "$master" info replication)" || true
  if [ "$(field "$info" role)" != master ] || [ "$(field "$info" connected_slaves)" != 1 ]; then
    why="master 127.0.0.1:$master: role $(field "$info" role), $(field "$info" connected_slaves) connected replicas"
    return 1
  fi
  info="$(rcli "$other" info replication)" || true
  if [ "$(field "$info" role)" != slave ] || [ "$(field "$info" master_port)" != "$master" ] ||
    [ "$(field "$info" master_link_status)" != up ]; then
    why="replica 127.0.0.1:$other: role $(field "$info" role), master port $(field "$info" master_port), link $(field "$info" master_link_status)"
    return 1
  fi
  for s in "${SENTINEL_PORTS[@]}"; do
    reply="$(rcli "$s" sentinel master "$MASTER_NAME")" || true
    if [ "$(kv "$reply" quorum)" != 2 ] || [ "$(kv "$reply" down-after-milliseconds)" != 1000 ] ||
      [ "$(kv "$reply" failover-timeout)" != 5000 ]; then
      why="sentinel 127.0.0.1:$s: quorum, down-after-milliseconds or failover-timeout differ" final=1
      return 1
    fi
    if [ "$(kv "$reply" flags)" != master ] || [ "$(kv "$reply" num-slaves)" != 1 ] ||
      [ "$(kv "$reply" num-other-sentinels)" != 2 ]; then
      why="sentinel 127.0.0.1:$s: flags $(kv "$reply" flags), $(kv "$reply" num-slaves) replicas, $(kv "$reply" num-other-sentinels) other sentinels"
      return 1
    fi
  done
}

# pid_on PORT: pid of the process listening on 127.0.0.1:PORT, if any.
pid_on() {
  { ss -Htlnp "sport = :$1" 2>/dev/null || true; } | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}

# is_redis_pid PID: a live redis process (zombies, which a lazy init may keep
# around for a while, do not count).
is_redis_pid() {
  local state=""
  [ -n "$1" ] && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == redis-* ]] || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != Z ]
}

# shutdown_ports DIR_PREFIX PORT...: stops whatever redis runs on PORTs, then
# wipes their state directories.
shutdown_ports() {
  local prefix=$1 p pid pids=()
  shift
  for p in "$@"; do
    pid="$(cat "$BASE/$prefix-$p/redis.pid" 2>/dev/null || true)"
    is_redis_pid "$pid" || pid=""
    [ -n "$pid" ] || pid="$(pid_on "$p")"
    # NOW: no waiting for lagging replicas (Redis 7); older ones reject it.
    # In the background: all ports at once, and a hung one costs 2 s at most.
    { [[ "$(SECKILL_RCLI_TIMEOUT=2 rcli "$p" shutdown nosave now)" != ERR* ]] ||
      SECKILL_RCLI_TIMEOUT=2 rcli "$p" shutdown nosave; } >/dev/null 2>&1 &
    if [ -n "$pid" ]; then pids+=("$pid:$p"); fi
  done
  wait
  for entry in ${pids[@]+"${pids[@]}"}; do
    pid="${entry%%:*}" p="${entry##*:}"
    is_redis_pid "$pid" || continue
    for _ in $(seq 1 10); do is_redis_pid "$pid" || break; sleep 0.1; done
    if is_redis_pid "$pid"; then
      log "127.0.0.1:$p (pid $pid): SIGTERM"
      kill -TERM "$pid" 2>/dev/null || true
      kill -CONT "$pid" 2>/dev/null || true # in case it was stopped
    fi
    for _ in $(seq 1 10); do is_redis_pid "$pid" || break; sleep 0.1; done
    if is_redis_pid "$pid"; then log "127.0.0.1:$p (pid $pid): SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for p in "$@"; do
    # A stopped-but-listening leftover without pid file.
    pid="$(pid_on "$p")"
    if is_redis_pid "$pid"; then log "127.0.0.1:$p (pid $pid): SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "${BASE:?}/$prefix-$p"
  done
  for p in "$@"; do
    if ! wait_for "port $p to free" 5 port_free "$p"; then
      pid="$(pid_on "$p")"
      log "port $p is still held${pid:+ by pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null))}: giving up"
      exit 1
    fi
  done
}

port_free() { [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }

# start_server DIR PORT EXTRA_ARGS...
start_server() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --save "" --appendonly no \
    --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
    "$@" 9>&-
}

create_cluster() {
  local p addrs=()
  for p in "${CLUSTER_PORTS[@]}"; do
    start_server "$BASE/cluster-$p" "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout "$NODE_TIMEOUT"
    addrs+=("127.0.0.1:$p")
  done
  for p in "${CLUSTER_PORTS[@]}"; do wait_for "127.0.0.1:$p" 10 pong "$p"; done
  if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$BASE/cluster-create.log" 2>&1; then
    cat "$BASE/cluster-create.log" >&2
    return 1
  fi
}

create_sentinel_group() {
  local master=${DATA_PORTS[0]} replica=${DATA_PORTS[1]} s dir
  start_server "$BASE/sentinel-$master" "$master"
  start_server "$BASE/sentinel-$replica" "$replica" --replicaof 127.0.0.1 "$master"
  wait_for "127.0.0.1:$master" 10 pong "$master"
  # Sentinels learn replicas from the master's INFO (every 10 s, and once on
  # connect): start them once the replica is attached, so they see it at once.
  wait_for "replica 127.0.0.1:$replica" 10 replica_up "$replica"
  for s in "${SENTINEL_PORTS[@]}"; do
    dir="$BASE/sentinel-$s"
    mkdir -p "$dir"
    # Sentinel rewrites this file (its id, known replicas and sentinels,
    # epochs), hence one writable file per sentinel.
    cat >"$dir/sentinel.conf" <<EOF
port $s
bind 127.0.0.1
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
sentinel monitor $MASTER_NAME 127.0.0.1 $master 2
sentinel down-after-milliseconds $MASTER_NAME 1000
sentinel failover-timeout $MASTER_NAME 5000
sentinel parallel-syncs $MASTER_NAME 1
EOF
    redis-server "$dir/sentinel.conf" --sentinel 9>&-
  done
}

replica_up() { [ "$(field "$(rcli "$1" info replication)" master_link_status)" = up ]; }

# ensure NAME CHECK CREATE PREFIX PORT...: leaves a healthy topology alone,
# gives a live one time to settle, rebuilds anything else.
ensure() {
  local name=$1 check=$2 create=$3 prefix=$4
  shift 4
  if $check; then log "$name: healthy, leaving it alone"; return; fi
  if [ "$final" = 0 ]; then
    log "$name: all processes answer but not healthy yet ($why): waiting up to ${SETTLE_SECS}s"
    if wait_for "$name" "$SETTLE_SECS" $check; then log "$name: healthy, leaving it alone"; return; fi
  else
    log "$name: $why"
  fi
  log "$name: shutting down and recreating"
  shutdown_ports "$prefix" "$@"
  $create
  wait_for "$name" 30 $check || { status_lines "$@" >&2; exit 1; }
  log "$name: created and healthy"
}

status_lines() {
  local p info role
  for p in "$@"; do
    if ! pong "$p"; then printf '127.0.0.1:%s  down\n' "$p"; continue; fi
    info="$(rcli "$p" info server)"
    if [ "$(field "$info" redis_mode)" = sentinel ]; then
      printf '127.0.0.1:%s  sentinel  master %s\n' "$p" \
        "$(rcli "$p" sentinel get-master-addr-by-name "$MASTER_NAME" | tr '\n' ':' | sed 's/:$//')"
      continue
    fi
    info="$(rcli "$p" info replication)"
    role="$(field "$info" role)"
    if [ "$role" = slave ]; then
      printf '127.0.0.1:%s  replica of %s:%s (link %s)  pid %s\n' "$p" "$(field "$info" master_host)" \
        "$(field "$info" master_port)" "$(field "$info" master_link_status)" "$(pid_on "$p")"
    else
      printf '127.0.0.1:%s  master, %s connected replicas  pid %s\n' "$p" \
        "$(field "$info" connected_slaves)" "$(pid_on "$p")"
    fi
  done
}

cmd="${1:-start}"
case "$cmd" in start | stop | status) ;; *)
  echo "usage: $0 [start|stop|status]" >&2
  exit 2
  ;;
esac

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  if [ "$cmd" = stop ]; then log "redis-server is not installed: nothing to stop"; exit 0; fi
  if [ "$cmd" = status ]; then log "redis-server is not installed: nothing runs"; exit 1; fi
  apt_install redis-server
fi

# One invocation at a time (e.g. two test runs starting together).
exec 9>"$BASE.lock"
flock -w 120 9 || { log "another run holds $BASE.lock for over 120s"; exit 1; }

case "$cmd" in
  start)
    # Both at once: creating the cluster and letting the sentinels find each
    # other take about 2-3 s each.
    ensure "redis cluster" cluster_healthy create_cluster cluster "${CLUSTER_PORTS[@]}" &
    cluster_job=$!
    ensure "sentinel group" sentinel_healthy create_sentinel_group sentinel "${DATA_PORTS[@]}" "${SENTINEL_PORTS[@]}" &
    sentinel_job=$!
    failed=0
    wait "$cluster_job" || failed=1
    wait "$sentinel_job" || failed=1
    [ "$failed" = 0 ] || { log "failed; logs in $BASE/*/redis.log"; exit 1; }
    log "ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
    printf 'export REDIS_CLUSTER_URL=%s\n' "$CLUSTER_URL"
    printf 'export REDIS_SENTINEL_URL=%s\n' "$SENTINEL_URL"
    ;;
  stop)
    shutdown_ports cluster "${CLUSTER_PORTS[@]}"
    shutdown_ports sentinel "${DATA_PORTS[@]}" "${SENTINEL_PORTS[@]}"
    rm -rf "${BASE:?}"
    log "stopped"
    ;;
  status)
    rc=0
    echo "redis cluster ($CLUSTER_URL):"
    if cluster_healthy; then echo "  healthy"; else echo "  NOT healthy: $why"; rc=1; fi
    status_lines "${CLUSTER_PORTS[@]}" | sed 's/^/  /'
    echo "sentinel group ($SENTINEL_URL):"
    if sentinel_healthy; then echo "  healthy"; else echo "  NOT healthy: $why"; rc=1; fi
    status_lines "${DATA_PORTS[@]}" "${SENTINEL_PORTS[@]}" | sed 's/^/  /'
    exit "$rc"
    ;;
esac
