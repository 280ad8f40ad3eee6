#!/usr/bin/env bash
# The chaos suite of the flash_sale example: real processes, one fault per scenario.
#
#   bash scripts/chaos.sh                      # every scenario, a 600-unit sale each
#   bash scripts/chaos.sh --short              # the CI size: 200 units, a few minutes in all
#   bash scripts/chaos.sh --scenarios kafka-cut,serve-kill --repeat 3
#   bash scripts/chaos.sh --help               # every flag of scripts/chaos/run.py
#
# Makes sure of what the suite needs, then hands over to scripts/chaos/run.py:
#   MariaDB on 127.0.0.1:3306 (scripts/services.sh; the suite uses its own
#   database `chaos`), redis-server and tansu installed (scripts/kafka.sh
#   installs tansu and starts the shared broker on 9092, which the suite does
#   not use: every scenario runs its own redis-server and tansu on its own
#   ports), and the release build of the example.
#
# Environment:
#   CARGO_TARGET_DIR         where the build goes (default /work/target)
#   SECKILL_CHAOS_NO_BUILD=1 use the binary as it is
# Logs: /tmp/seckill-chaos/<timestamp>/<scenario>/ (printed for a failed scenario).
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf '[chaos] %s\n' "$*" >&2; }

case " $* " in
  *" --help "* | *" -h "*) exec python3 scripts/chaos/run.py "$@" ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"

bash scripts/services.sh
bash scripts/kafka.sh
command -v redis-server >/dev/null || { log "redis-server is missing (bash scripts/services.sh installs it)"; exit 1; }

if [ "${SECKILL_CHAOS_NO_BUILD:-0}" != 1 ]; then
  log "building the release example (cargo build --release --example flash_sale)"
  cargo build --release --example flash_sale
fi

TANSU="$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")"
exec python3 scripts/chaos/run.py --tansu "$TANSU" --bin "$CARGO_TARGET_DIR/release/examples/flash_sale" "$@"
