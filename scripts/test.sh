#!/usr/bin/env bash
# Runs every test of the workspace against real services.
# Usage: scripts/test.sh [extra args for cargo nextest run]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/kafka.sh
# A local Redis Cluster and Sentinel group (REDIS_CLUSTER_URL,
# REDIS_SENTINEL_URL); values already in the environment win, and when both
# are set nothing is started.
if [ -z "${REDIS_CLUSTER_URL:-}" ] || [ -z "${REDIS_SENTINEL_URL:-}" ]; then
  preset_cluster_url="${REDIS_CLUSTER_URL:-}"
  preset_sentinel_url="${REDIS_SENTINEL_URL:-}"
  # An assignment, not `eval "$(...)"`, so a failure stops the run (set -e).
  topologies="$(bash scripts/redis-topologies.sh)"
  eval "$topologies"
  if [ -n "$preset_cluster_url" ]; then export REDIS_CLUSTER_URL="$preset_cluster_url"; fi
  if [ -n "$preset_sentinel_url" ]; then export REDIS_SENTINEL_URL="$preset_sentinel_url"; fi
fi

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export DATABASE_URL="${DATABASE_URL:-mysql://root@127.0.0.1:3306/test}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast "$@"
else
  cargo test --workspace --all-features --no-fail-fast --lib --bins --tests --examples "$@"
fi
# nextest does not run doc tests.
cargo test --workspace --all-features --doc
# The TCP proxy of the chaos suite and the overload bench (cut, stall, delay).
python3 scripts/chaos/test_proxy.py
# The overload crate's axum example serves itself a few requests and exits.
cargo run -q -p seckill-overload --example axum
