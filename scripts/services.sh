#!/usr/bin/env bash
# Makes sure the services the tests talk to are answering:
#   Redis    on 127.0.0.1:6379
#   MariaDB  on 127.0.0.1:3306, user root with an empty password, database `test`
# A service that answers is left alone; one that is installed but stopped is
# started; one that is missing is installed with apt-get first (Debian).
# Set SECKILL_SKIP_SERVICES=1 to skip all of this (e.g. services elsewhere,
# pointed to by REDIS_URL / DATABASE_URL).
set -euo pipefail

[ "${SECKILL_SKIP_SERVICES:-0}" = 1 ] && exit 0

log() { printf '[services] %s\n' "$*" >&2; }

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
  local name=$1 secs=$2
  shift 2
  for _ in $(seq 1 $((secs * 4))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "$name did not answer within ${secs}s"
  return 1
}

redis_up() {
  # A RESP PING over bash's /dev/tcp: works without redis-cli.
  local reply
  exec 3<>/dev/tcp/127.0.0.1/6379 || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 2 reply <&3 || { exec 3>&-; return 1; }
  exec 3>&-
  [[ "$reply" == +PONG* ]]
}

ensure_redis() {
  if redis_up 2>/dev/null; then log "redis: answering"; return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "redis: starting"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis 30 redis_up
  log "redis: answering"
}

mysql_tcp() { mariadb --protocol=TCP -h 127.0.0.1 -P 3306 -u root "$@"; }
mysql_up() { mysql_tcp -e 'SELECT 1' test; }

ensure_mariadb() {
  if command -v mariadb >/dev/null && mysql_up >/dev/null 2>&1; then log "mariadb: answering"; return; fi
  if [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server mariadb-client
  fi
  command -v mariadb >/dev/null || apt_install mariadb-client
  if ! mariadb -u root -e 'SELECT 1' >/dev/null 2>&1 && ! mysql_up >/dev/null 2>&1; then
    log "mariadb: starting"
    $SUDO mkdir -p /run/mysqld
    $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
    $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for mariadb 60 mariadb -u root -e 'SELECT 1'
  fi
  if ! mysql_up >/dev/null 2>&1; then
    # A fresh Debian install lets root in only over the socket: open TCP
    # with an empty password (a development machine) and create `test`.
    log "mariadb: granting root over TCP and creating database test"
    $SUDO mariadb -u root <<'SQL'
CREATE DATABASE IF NOT EXISTS test;
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
  fi
  wait_for mariadb 30 mysql_up
  log "mariadb: answering"
}

ensure_redis
ensure_mariadb
