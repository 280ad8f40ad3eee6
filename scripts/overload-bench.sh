#!/usr/bin/env bash
# The overload bench of the flash_sale example (issue 16): capacity C, then
# 3 x C offered with overload protection on and off, then MySQL slowed by
# 200 ms behind a proxy with the breakers on. Prints one table.
#
#   bash scripts/overload-bench.sh            # 5 s per load, a few minutes in all
#   bash scripts/overload-bench.sh --short    # 2 s per load
#   bash scripts/overload-bench.sh --help     # every flag of scripts/overload/bench.py
#
# Needs Redis and MariaDB (scripts/services.sh starts or installs them; the
# bench uses database `overload` and its own Redis namespace). Kafka is
# librdkafka's in-process mock cluster. Results: $CARGO_TARGET_DIR/overload/results.json.
#
# Environment:
#   CARGO_TARGET_DIR            where the build goes (default /work/target)
#   SECKILL_OVERLOAD_NO_BUILD=1 use the binary as it is
set -euo pipefail
cd "$(dirname "$0")/.."

case " $* " in
  *" --help "* | *" -h "*) exec python3 scripts/overload/bench.py "$@" ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
bash scripts/services.sh
if [ "${SECKILL_OVERLOAD_NO_BUILD:-0}" != 1 ]; then
  echo "[overload] building the release example (cargo build --release --example flash_sale)" >&2
  cargo build --release --example flash_sale
fi
exec python3 scripts/overload/bench.py --bin "$CARGO_TARGET_DIR/release/examples/flash_sale" "$@"
