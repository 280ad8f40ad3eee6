#!/usr/bin/env bash
# Makes sure a Kafka-protocol broker answers on 127.0.0.1:9092 for the tests.
#   Something already answers there: left alone.
#   Otherwise: tansu (crates.io, Apache-2.0) is started in the background with
#   its sqlite storage, installed first with `cargo install` when missing
#   (about 13 minutes on 2 cores; the binary stays in cargo's bin directory,
#   which CI caches).
# Topics are not created here: the app and the tests create theirs.
#
# Environment:
#   SECKILL_KAFKA_PORT   port to use (default 9092)
#   SECKILL_KAFKA_DIR    state directory: sqlite data, log, pid
#                        (default ~/.cache/seckill-kafka)
#   SECKILL_SKIP_KAFKA=1 do nothing (brokers elsewhere, named by KAFKA_BROKERS)
#
# Stop the broker this script started: kill "$(cat "$SECKILL_KAFKA_DIR/tansu-PORT.pid")"
set -euo pipefail

[ "${SECKILL_SKIP_KAFKA:-0}" = 1 ] && exit 0

log() { printf '[kafka] %s\n' "$*" >&2; }

PORT="${SECKILL_KAFKA_PORT:-9092}"
DIR="${SECKILL_KAFKA_DIR:-$HOME/.cache/seckill-kafka}"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

port_open() {
  # A TCP connect over bash's /dev/tcp, in a subshell so the descriptor closes.
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

if port_open; then
  log "something answers on 127.0.0.1:$PORT: leaving it alone"
  exit 0
fi

TANSU="$(command -v tansu || true)"
if [ -z "$TANSU" ] && [ -x "$CARGO_BIN/tansu" ]; then
  TANSU="$CARGO_BIN/tansu"
fi
if [ -z "$TANSU" ]; then
  command -v cargo >/dev/null || { log "tansu is missing and so is cargo: install Rust first"; exit 1; }
  log "installing tansu into $CARGO_BIN (cargo install tansu --locked --features libsql; this takes a while)"
  cargo install tansu --locked --features libsql
  TANSU="$CARGO_BIN/tansu"
fi

mkdir -p "$DIR/data"
LOG="$DIR/tansu-$PORT.log"
PID_FILE="$DIR/tansu-$PORT.pid"
log "starting $TANSU on 127.0.0.1:$PORT (state in $DIR, log $LOG)"
# The sqlite path is relative to the working directory (an absolute one
# comes out doubled), hence the cd.
(
  cd "$DIR"
  nohup "$TANSU" broker \
    --storage-engine "sqlite://data/tansu-$PORT.db" \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
)

for _ in $(seq 1 120); do
  if port_open; then
    log "tansu answers on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
    exit 0
  fi
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    log "tansu exited; the end of its log:"
    tail -n 30 "$LOG" >&2 || true
    exit 1
  fi
  sleep 0.25
done
log "tansu did not answer on 127.0.0.1:$PORT within 30 s; the end of its log:"
tail -n 30 "$LOG" >&2 || true
exit 1
