#!/usr/bin/env bash
# Hot statements by order id on the three layouts of issue 24 item 2, timed with pgbench (one
# session, extended protocol with unnamed statements, as orderctl sends them):
#   main  - the schema before 0018 (nothing partitioned): the baseline
#   control - a second database like main: how far two identical layouts differ (the noise)
#   p24f  - this branch's 0018: only order_events partitioned by month
#   p24c  - the first 0018 (orders, events and placements partitioned), when its binary is given
# Each database holds ORDERS orders over 6 past months with 3 events each, inserted before 0018
# runs (so 0018 migrates them, as on a real database). Prints the median of RUNS runs of SECS
# seconds per statement and layout, and its ratio to main.
#
#   examples/bench/retention-pgbench.sh target/debug/orderctl [/work/wt/p24c/target/debug/orderctl]
set -euo pipefail
BIN=${1:?usage: $0 ORDERCTL [P24C_ORDERCTL]}
P24C_BIN=${2:-}
ORDERS=${ORDERS:-60000}
RUNS=${RUNS:-3}
SECS=${SECS:-8}
# update_rb: the update in a transaction rolled back: the statement's cost without the commit's
# WAL flush, which dominates (and scatters) the update on a shared disk.
STATEMENTS=${STATEMENTS:-select update update_rb event}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mkdir "$WORK/before"
for f in "$HERE"/sql/*.sql; do
    n=$(basename "$f")
    [[ "$n" < "0018" ]] && cp "$f" "$WORK/before/"
done

populate() { # db
    local url="$PGURL/$1"
    "$BIN" --database-url "$url" migrate --dir "$WORK/before" >/dev/null
    "$BIN" --database-url "$url" apply --file "$HERE/examples/setup.json" >/dev/null 2>&1
    # Ids derived from the number, so pgbench can name one: md5(n)::uuid.
    psql -q "$url" <<SQL
INSERT INTO orders (id, tenant_id, user_id, package_id, user_identifier, price, created_at)
SELECT md5(g::text)::uuid, u.tenant_id, u.id, p.id, 'player-' || g, p.price,
       now() - make_interval(days => (g % 180)::int)
  FROM users u JOIN packages p ON p.tenant_id = u.tenant_id AND p.name = 'jawaker', generate_series(1, $ORDERS) g;
INSERT INTO order_events (order_id, kind, message) SELECT id, k, 'bench' FROM orders, unnest(ARRAY['created', 'placed', 'approved']) k;
SQL
}

for layout in main control p24f p24c; do
    [[ $layout == p24c && -z "$P24C_BIN" ]] && continue
    db="bench_retention_$layout"
    psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null -c "CREATE DATABASE $db"
    populate "$db"
    case $layout in
        p24f) "$BIN" --database-url "$PGURL/$db" migrate >/dev/null ;;
        p24c) "$P24C_BIN" --database-url "$PGURL/$db" migrate >/dev/null ;;
    esac
    psql -q "$PGURL/$db" -c "VACUUM ANALYZE"
done

cat >"$WORK/select.sql" <<'SQL'
\set n random(1, :orders)
SELECT * FROM orders WHERE id = md5(:n::text)::uuid;
SQL
cat >"$WORK/update.sql" <<'SQL'
\set n random(1, :orders)
UPDATE orders SET last_sync_at = now() WHERE id = md5(:n::text)::uuid;
SQL
cat >"$WORK/update_rb.sql" <<'SQL'
\set n random(1, :orders)
BEGIN;
UPDATE orders SET last_sync_at = now() WHERE id = md5(:n::text)::uuid;
ROLLBACK;
SQL
# The event a write-back inserts (main has no order_created_at).
cat >"$WORK/event_main.sql" <<'SQL'
\set n random(1, :orders)
INSERT INTO order_events (order_id, kind, status, external_status, message)
SELECT id, 'note', status, external_status, 'bench' FROM orders WHERE id = md5(:n::text)::uuid;
SQL
cat >"$WORK/event_partitioned.sql" <<'SQL'
\set n random(1, :orders)
INSERT INTO order_events (order_id, kind, status, external_status, message, order_created_at)
SELECT id, 'note', status, external_status, 'bench', created_at FROM orders WHERE id = md5(:n::text)::uuid;
SQL

script_of() { # statement layout
    if [[ $1 == event ]]; then
        [[ $2 == main || $2 == control ]] && echo "$WORK/event_main.sql" || echo "$WORK/event_partitioned.sql"
    else
        echo "$WORK/$1.sql"
    fi
}
LAYOUTS=(main control p24f)
[[ -n "$P24C_BIN" ]] && LAYOUTS+=(p24c)
# Runs interleaved across layouts, each run in another order, so load on the shared machine hits
# them alike.
for run in $(seq "$RUNS"); do
    for stmt in $STATEMENTS; do
        n=${#LAYOUTS[@]}
        for i in $(seq 0 $((n - 1))); do
            layout=${LAYOUTS[$(((i + run) % n))]}
            pgbench -n -M extended -c 1 -T "$SECS" -D orders="$ORDERS" -f "$(script_of $stmt $layout)" \
                "$PGURL/bench_retention_$layout" 2>/dev/null | awk '/^latency average/ {print $4}' >>"$WORK/$stmt.$layout"
        done
    done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-16s %-6s %10s %8s\n' statement layout "median ms" "vs main"
for stmt in $STATEMENTS; do
    base=$(median "$WORK/$stmt.main")
    for layout in "${LAYOUTS[@]}"; do
        ms=$(median "$WORK/$stmt.$layout")
        printf '%-16s %-6s %10s %7.2fx\n' "$stmt" "$layout" "$ms" "$(echo "$ms / $base" | bc -l)"
    done
done
for layout in main control p24f p24c; do
    psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS bench_retention_$layout" 2>/dev/null || true
done
