#!/usr/bin/env bash
# Several daemons on one PostgreSQL (`cargo bench --bench cluster`): throughput with limits
# lifted (1 daemon on SQLite, 1 and 3 on PostgreSQL, a bare HTTP loop), 3 daemons sharing
# 20 attempts/s, decisions retried under tight per-number limits, attempt commit latency,
# and enqueue of 1,000,000 rows beside `psql \copy` of the same file.
# Needs PostgreSQL at CALLROUTE_TEST_PG (default postgres://postgres@127.0.0.1:5432/test)
# and psql. Takes about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench cluster 2>/dev/null | grep -vE "^(running|test result|$)"
