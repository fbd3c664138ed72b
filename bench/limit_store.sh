#!/usr/bin/env bash
# Which shared store should count cluster-wide rate limits: Redis (Debian's redis-server, the atomic Lua
# script Yunmo runs, crates/yunmo-auth/src/limits/admit.lua) or PostgreSQL (Debian's postgresql, the same
# token bucket as one UPDATE of a row)? Both run here side by side, each driven by its own stock client
# (redis-benchmark, pgbench) with the same clients and request count, all on one hot tenant (the worst case:
# every request touches the same bucket). Prints admissions/s of each and the ratio.
# Usage: bench/limit_store.sh [clients=16] [requests=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-16}" requests="${2:-100000}"
scripts/system-deps.sh
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; sleep 1; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rport=$(port)
redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no --dir "$work" >/dev/null &
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
sha=$(redis-cli -p "$rport" SCRIPT LOAD "$(cat crates/yunmo-auth/src/limits/admit.lua)")
# One subject: a tenant with 1e9 requests/s (never refused, so every call takes the full path) and a
# monthly quota (so the usage counter is read and incremented too), as the server sends it.
redis_ops=$(redis-benchmark -p "$rport" -c "$clients" -n "$requests" -q --csv \
  EVALSHA "$sha" 3 'yunmo:{limits}:t:acme:req' 'yunmo:{limits}:t:acme:tok' 'yunmo:{limits}:t:acme:m0' \
  3456000000 1000000000 1000000000 0 1000000000000 -1 -1 0 0 0 | tail -1 | cut -d, -f2 | tr -d '"')

pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pport=$(port)
as_pg=(); [ "$(id -u)" -eq 0 ] && { chown postgres: "$work"; as_pg=(setpriv --reuid postgres --regid postgres --init-groups --); }
"${as_pg[@]}" "$pg/initdb" -U yunmo --auth=trust --no-sync -D "$work/pg" >/dev/null
"${as_pg[@]}" "$pg/postgres" -D "$work/pg" -p "$pport" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$work" \
  -c fsync=off -c synchronous_commit=off >/dev/null 2>&1 &
until "$pg/pg_isready" -q -h 127.0.0.1 -p "$pport"; do sleep 0.1; done
psql() { "$pg/psql" -q -h 127.0.0.1 -p "$pport" -U yunmo -d postgres "$@"; }
psql -c "CREATE TABLE buckets (subject TEXT PRIMARY KEY, level DOUBLE PRECISION, at TIMESTAMPTZ, requests BIGINT);
         INSERT INTO buckets VALUES ('t:acme', 1e9, clock_timestamp(), 0);"
# The same check-and-take in one statement (fsync and synchronous_commit off: PostgreSQL at its fastest).
cat > "$work/admit.sql" <<'SQL'
UPDATE buckets SET level = LEAST(1e9, level + EXTRACT(EPOCH FROM clock_timestamp() - at) * 1e9) - 1,
  at = clock_timestamp(), requests = requests + 1
WHERE subject = 't:acme' AND LEAST(1e9, level + EXTRACT(EPOCH FROM clock_timestamp() - at) * 1e9) >= 1
RETURNING level;
SQL
per_client=$(( requests / clients ))
pg_ops=$("$pg/pgbench" -h 127.0.0.1 -p "$pport" -U yunmo -n -c "$clients" -j 2 -t "$per_client" -f "$work/admit.sql" postgres 2>/dev/null \
  | sed -n 's/^tps = \([0-9.]*\).*/\1/p')

printf 'limit store, %s clients, %s admissions on one hot tenant (%s)\n' "$clients" "$requests" "$(date -u +%FT%TZ)"
printf '  redis (admit.lua, EVALSHA)      %12.0f admissions/s\n' "$redis_ops"
printf '  postgresql (one UPDATE per call) %12.0f admissions/s\n' "$pg_ops"
python3 -c "print(f'  redis / postgresql: {float(\"$redis_ops\") / float(\"$pg_ops\"):.1f}x')"
