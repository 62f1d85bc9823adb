#!/usr/bin/env bash
# Issue 24 item 2, the layout not built yet: `orders` partitioned by month on its id, with ids
# that carry their creation time (UUIDv7: the first 48 bits are the milliseconds since the
# epoch). A month's partition holds the ids FROM the month's first possible id TO the next
# month's, so `WHERE id = $1` and `WHERE id = ANY($1)` prune at planning time without naming a
# month, which is what made the partitioned layout of BENCHMARKS.md "Retention" (`p24c`, keyed
# on created_at) 6.6-9.9x slower per lookup by id.
#
# Builds one database with ORDERS rows over 12 past months twice: `flat` (unpartitioned) and
# `parted` (14 monthly partitions by id range), the same rows and indexes, and times one row by
# id (a select, and an update rolled back) and a claim of 100 open orders (which names no id or
# month, so it reads every partition's index) with pgbench: one session, extended protocol,
# median of RUNS runs of SECS seconds, tables interleaved. Each by-id script first looks the id
# up by a random number (`base` times that alone, to subtract).
#
#   examples/bench/retention-v7.sh
set -euo pipefail
ORDERS=${ORDERS:-120000}
DB=bench_retention_v7
. "$(dirname "$0")/pgbench-lib.sh"

fresh_db
psql -q "$PGURL/$DB" <<SQL
-- A UUIDv7-like id: the time's milliseconds in the first 48 bits, the rest from a random uuid.
CREATE FUNCTION v7(ts timestamptz, r uuid) RETURNS uuid LANGUAGE sql IMMUTABLE AS \$\$
  SELECT encode(overlay(uuid_send(r) PLACING substring(int8send((extract(epoch FROM ts) * 1000)::bigint) FROM 3)
                        FROM 1 FOR 6), 'hex')::uuid \$\$;
CREATE TABLE flat (id uuid PRIMARY KEY, n bigint NOT NULL, created_at timestamptz NOT NULL,
                   status text NOT NULL, pad text);
CREATE TABLE parted (id uuid PRIMARY KEY, n bigint NOT NULL, created_at timestamptz NOT NULL,
                     status text NOT NULL, pad text) PARTITION BY RANGE (id);
DO \$\$
DECLARE m timestamptz;
BEGIN
  FOR i IN 0..13 LOOP
    m := date_trunc('month', now() - interval '12 months') + make_interval(months => i);
    EXECUTE format('CREATE TABLE parted_%s PARTITION OF parted FOR VALUES FROM (%L) TO (%L)', to_char(m, 'YYYYMM'),
                   v7(m, '00000000-0000-0000-0000-000000000000'),
                   v7(m + interval '1 month', '00000000-0000-0000-0000-000000000000'));
  END LOOP;
END \$\$;
CREATE TABLE ids AS
SELECT g AS n, v7(now() - make_interval(days => (g % 360)::int), gen_random_uuid()) AS id,
       now() - make_interval(days => (g % 360)::int) AS created_at
  FROM generate_series(1, $ORDERS) g;
CREATE UNIQUE INDEX ON ids (n);
INSERT INTO flat SELECT id, n, created_at, 'approved', repeat('x', 200) FROM ids;
INSERT INTO parted SELECT id, n, created_at, 'approved', repeat('x', 200) FROM ids;
CREATE INDEX ON flat (n);
CREATE INDEX ON parted (n);
CREATE INDEX ON flat (created_at) WHERE status = 'pending';
CREATE INDEX ON parted (created_at) WHERE status = 'pending';
CREATE INDEX ON flat (status, created_at);
CREATE INDEX ON parted (status, created_at);
-- Open orders of the last 30 days, for the claim: about 670.
UPDATE flat SET status = 'pending' WHERE n % 360 < 30 AND n % 20 = 0;
UPDATE parted SET status = 'pending' WHERE n % 360 < 30 AND n % 20 = 0;
VACUUM ANALYZE;
SQL

lookup="\\set n random(1, $ORDERS)
SELECT id FROM ids WHERE n = :n \\gset"
printf '%s\n' "$lookup" >"$WORK/base.sql"
for t in flat parted; do
    printf '%s\nSELECT * FROM %s WHERE id = :id;\n' "$lookup" "$t" >"$WORK/select_$t.sql"
    printf '%s\nBEGIN;\nUPDATE %s SET status = status, pad = pad WHERE id = :id;\nROLLBACK;\n' "$lookup" "$t" >"$WORK/update_$t.sql"
    # A claim cannot name a month: it reads the open-orders index of every partition.
    printf 'BEGIN;\nSELECT id FROM %s WHERE status = '"'pending'"' ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED;\nROLLBACK;\n' \
        "$t" >"$WORK/claim_$t.sql"
done

time_scripts base select_flat select_parted update_flat update_parted claim_flat claim_parted
base=$(median base)
echo "| statement (one row by id; the id's lookup, ${base} ms, subtracted) | flat | partitioned by id range (14 months) |"
echo "| --- | --- | --- |"
for st in select update; do
    row "$st" "${st}_flat" "${st}_parted" "$base"
done
row "claim 100 open orders (no id; nothing subtracted)" claim_flat claim_parted 0
drop_db
