#!/usr/bin/env bash
# Issue 24 item 2, a second layout not built yet: `orders` partitioned with a LIVE partition.
# `PARTITION BY LIST (status)`: open orders (`pending`) live in `orders_live`; final ones in
# `orders_done`, itself partitioned by month of creation (`PARTITION BY RANGE (created_at)`).
# The write-back that finishes an order changes its status as it does today, and Postgres
# moves the row to its month's partition; no column is added and no writer has to know. Every
# statement of the hot path is about open orders, so it names `status = 'pending'` and is
# planned over the live partition alone, with no queue table and whatever the ids look like
# (random ids of an upgraded database included), unlike the id-range layout of
# retention-v7.sh. A month of finished orders is then whole partitions (archive: detach and
# drop), as order_events already is.
#
# Builds one database with ORDERS finished rows over 12 past months plus LIVE open ones, twice:
# `flat` (unpartitioned) and `parted` (live + done in 13 monthly partitions), the same rows and
# the same indexes (primary key, number, creation time, the open and due partial indexes,
# completion time), and times with pgbench (one session, extended protocol as orderctl sends
# statements, median of RUNS runs of SECS seconds, tables interleaved):
#   live_select / live_update  one live order by id (update rolled back)
#   claim                      100 due orders, FOR UPDATE SKIP LOCKED (rolled back)
#   finish                     one live order to final (rolled back): in `parted` the row
#                              moves to its month's partition
#   update100 / finish100      the same for 100 live orders in one statement, as a write-back
#                              batches them (rolled back)
#   old_select                 one finished order by id, not naming its month (inspect)
#   newest                     the 50 newest orders (list --limit 50)
# Each single-order script first looks the id up by a random number (`base` times that alone,
# to subtract).
#
#   examples/bench/retention-live.sh      (KEEP=1 keeps the database for EXPLAIN)
set -euo pipefail
ORDERS=${ORDERS:-120000}
LIVE=${LIVE:-2000}
DB=bench_retention_live
. "$(dirname "$0")/pgbench-lib.sh"

fresh_db
psql -q "$PGURL/$DB" <<SQL
CREATE TABLE flat (id uuid NOT NULL, n bigint NOT NULL, created_at timestamptz NOT NULL, status text NOT NULL,
                   next_check_at timestamptz, lane bigint NOT NULL, completed_at timestamptz, pad text);
CREATE TABLE parted (LIKE flat) PARTITION BY LIST (status);
CREATE TABLE parted_live PARTITION OF parted FOR VALUES IN ('pending');
CREATE TABLE parted_done PARTITION OF parted FOR VALUES IN ('approved', 'rejected') PARTITION BY RANGE (created_at);
DO \$\$
DECLARE m timestamptz;
BEGIN
  FOR i IN 0..12 LOOP
    m := date_trunc('month', now() - interval '12 months') + make_interval(months => i);
    EXECUTE format('CREATE TABLE parted_done_%s PARTITION OF parted_done FOR VALUES FROM (%L) TO (%L)', to_char(m, 'YYYYMM'),
                   m, m + interval '1 month');
  END LOOP;
END \$\$;
CREATE TABLE ids AS
SELECT g AS n, gen_random_uuid() AS id, now() - make_interval(days => (g % 360)::int) AS created_at, g <= $LIVE AS live
  FROM generate_series(1, $ORDERS + $LIVE) g;
UPDATE ids SET created_at = now() - make_interval(mins => (n % 600)::int) WHERE live;
CREATE UNIQUE INDEX ON ids (n);
INSERT INTO flat
SELECT id, n, created_at, CASE WHEN live THEN 'pending' ELSE 'approved' END,
       CASE WHEN live THEN now() - interval '1 minute' END, 7,
       CASE WHEN live THEN NULL ELSE created_at + interval '5 s' END, repeat('x', 300)
  FROM ids;
INSERT INTO parted SELECT * FROM flat;
ALTER TABLE flat ADD PRIMARY KEY (id);
ALTER TABLE parted ADD PRIMARY KEY (id, status, created_at);
CREATE UNIQUE INDEX ON flat (n);
CREATE INDEX ON parted (n);
CREATE INDEX ON flat (created_at);
CREATE INDEX ON parted (created_at);
CREATE INDEX ON flat (created_at) WHERE status = 'pending';
CREATE INDEX ON parted (created_at) WHERE status = 'pending';
CREATE INDEX ON flat (lane, next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX ON parted (lane, next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX ON flat (completed_at) WHERE status <> 'pending';
CREATE INDEX ON parted (completed_at) WHERE status <> 'pending';
VACUUM ANALYZE;
SQL

live="\\set n random(1, $LIVE)
SELECT id FROM ids WHERE n = :n \\gset"
old="\\set n random($LIVE + 1, $LIVE + $ORDERS)
SELECT id FROM ids WHERE n = :n \\gset"
printf '%s\n' "$live" >"$WORK/base.sql"
for t in flat parted; do
    # Open orders are named as such: the partitioned table is planned over its live partition.
    if [ "$t" = parted ]; then key=" AND status = 'pending'"; else key=""; fi
    printf '%s\nSELECT * FROM %s WHERE id = :id%s;\n' "$live" "$t" "$key" >"$WORK/live_select_$t.sql"
    printf '%s\nBEGIN;\nUPDATE %s SET next_check_at = now() + interval %s, pad = pad WHERE id = :id%s;\nROLLBACK;\n' \
        "$live" "$t" "'30 s'" "$key" >"$WORK/live_update_$t.sql"
    printf 'BEGIN;\nSELECT id FROM %s WHERE lane = 7 AND next_check_at IS NOT NULL AND next_check_at <= now()%s ORDER BY lane, next_check_at LIMIT 100 FOR UPDATE SKIP LOCKED;\nROLLBACK;\n' \
        "$t" "$key" >"$WORK/claim_$t.sql"
    printf '%s\nBEGIN;\nUPDATE %s SET status = %s, next_check_at = NULL, completed_at = now() WHERE id = :id%s;\nROLLBACK;\n' \
        "$live" "$t" "'approved'" "$key" >"$WORK/finish_$t.sql"
    printf '%s\nSELECT * FROM %s WHERE id = :id;\n' "$old" "$t" >"$WORK/old_select_$t.sql"
    printf 'SELECT id FROM %s ORDER BY created_at DESC LIMIT 50;\n' "$t" >"$WORK/newest_$t.sql"
    # A write-back's batch: 100 live orders in one statement, checked again or finished.
    batch="\\set s random(1, $LIVE - 100)"
    printf '%s\nBEGIN;\nUPDATE %s SET next_check_at = now() + interval %s, pad = pad WHERE id IN (SELECT id FROM ids WHERE n BETWEEN :s AND :s + 99)%s;\nROLLBACK;\n' \
        "$batch" "$t" "'30 s'" "$key" >"$WORK/update100_$t.sql"
    printf '%s\nBEGIN;\nUPDATE %s SET status = %s, next_check_at = NULL, completed_at = now() WHERE id IN (SELECT id FROM ids WHERE n BETWEEN :s AND :s + 99)%s;\nROLLBACK;\n' \
        "$batch" "$t" "'approved'" "$key" >"$WORK/finish100_$t.sql"
done
printf '%s\n' "$old" >"$WORK/base_old.sql"

STATEMENTS="live_select live_update claim finish update100 finish100 old_select newest"
time_scripts base base_old $(for st in $STATEMENTS; do echo "${st}_flat ${st}_parted"; done)
base=$(median base)
base_old=$(median base_old)
echo "| statement (by-id ones: the id's lookup, ${base}/${base_old} ms, subtracted) | flat | live + 13 monthly partitions |"
echo "| --- | --- | --- |"
for st in $STATEMENTS; do
    case $st in claim|newest|update100|finish100) b=0 ;; old_select) b=$base_old ;; *) b=$base ;; esac
    row "$st" "${st}_flat" "${st}_parted" "$b"
done
drop_db
