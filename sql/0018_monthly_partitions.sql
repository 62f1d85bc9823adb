-- orderctl schema, version 18: order_events partitioned by month, so that a month of finished
-- history can be archived to a file and its events dropped (`orderctl archive`) without a
-- DELETE of the biggest table; orders and placements stay plain tables.
--
-- Design, and why:
--
-- * Only order_events is partitioned. It is the biggest table (three or more rows per order),
--   append-only, and the hot path only INSERTs into it (routing an insert to its partition is
--   cheap) and never reads it by anything but a pruned key. `orders` and `placements` are NOT
--   partitioned: every hot statement on them (claims, lookups and write-backs by order id,
--   the placement claim and its outcome) cannot name the month, so it cannot prune, and the
--   planner opens and locks every partition and each of its indexes for every statement.
--   Measured on this machine with pgbench (one session, unnamed statements as orderctl sends
--   them), a select of one order by id: 0.17 ms unpartitioned, 1.6 ms with 6 monthly
--   partitions, 5.5 ms with 14, 9.8 ms with 26. With only order_events partitioned (this
--   migration), the same select took 0.204 ms against 0.210 ms before 0018 (a second, identical
--   pre-0018 database: 0.163 ms), an update by id 0.509 ms against 0.580 ms (0.506 ms): the
--   same, within the machine's noise (BENCHMARKS.md, "Retention"). A finished month
--   of orders and placements is removed by `archive` in small batches instead (500 orders per
--   transaction, short lock timeout): rows that are finished are never claimed, so deleting
--   them takes no lock a claim waits for.
--
-- * Partition key. order_events is partitioned by RANGE (order_created_at), the creation time
--   of its ORDER (a copy of orders.created_at written with every event), one partition per
--   calendar month in UTC (`order_events_y2026m01` holds events of orders created in
--   [2026-01-01 00:00 UTC, 2026-02-01 00:00 UTC)). An order created at 23:59 on the 31st keeps
--   all of its history in its own month, so archiving a month drops whole partitions. Every
--   writer of events already joins the order in the same statement, so the copy costs nothing.
--   A reader of one order's events adds `order_created_at = <the order's created_at>` so it is
--   planned over one partition (db/orders.rs, db/forwarding.rs).
--
-- * Keys. The primary key of a partitioned table must include the partition key:
--   (id, order_created_at); ids still come from one sequence. The foreign key from events to
--   orders goes: `archive` removes a month's orders in batches while their events partition is
--   still attached (it is detached and dropped at the end), and every writer of an event
--   inserts it from a SELECT of its order, so no event is written for an order that does not
--   exist. The ledger's foreign key to orders goes too: ledger rows outlive an archived order,
--   so every balance stays as it is. The forwarding links between orders (forwarded_to/from)
--   lose their foreign keys for the same reason: an archived order may be linked to one of a
--   later month; the link then names an order that is in the archive file. The both-ways
--   constraint triggers stay. Placements and webhook deliveries keep their foreign keys: the
--   archive removes them with their orders (they are in the file).
--
-- * Partitions ahead. `orderctl_ensure_partitions(first, last)` creates missing months of
--   order_events (the migration creates every month that holds orders, up to 1 month ahead;
--   the daemon and `orderctl partitions --ahead N` keep months ahead). Each partition is
--   created as a plain empty table and ATTACHed, which takes only SHARE UPDATE EXCLUSIVE on
--   the parent: no writer waits for it. There is no DEFAULT partition on purpose: it would be
--   scanned on every attach; `doctor` warns when fewer than one month ahead exists.
--
-- * Existing data. The unpartitioned order_events is renamed, every row is copied into the
--   partitioned table (with its order's created_at), and the old table is dropped in the same
--   transaction: a populated database keeps every row, or the migration fails and nothing
--   changes.

ALTER TABLE order_events DROP CONSTRAINT order_events_order_id_fkey;
ALTER TABLE ledger DROP CONSTRAINT ledger_order_id_fkey;
ALTER TABLE orders DROP CONSTRAINT orders_forwarded_to_fkey, DROP CONSTRAINT orders_forwarded_from_fkey;

ALTER TABLE order_events RENAME TO order_events_before_0018;
ALTER INDEX order_events_pkey RENAME TO order_events_before_0018_pkey;
ALTER INDEX order_events_order RENAME TO order_events_before_0018_order;
ALTER INDEX order_events_kind_at RENAME TO order_events_before_0018_kind_at;
-- The id sequence outlives the old table.
ALTER SEQUENCE order_events_id_seq OWNED BY NONE;

CREATE TABLE order_events (LIKE order_events_before_0018 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                           order_created_at timestamptz NOT NULL)
    PARTITION BY RANGE (order_created_at);
ALTER SEQUENCE order_events_id_seq OWNED BY order_events.id;

-- A month's partition name: order_events_y2026m01.
CREATE FUNCTION orderctl_partition_name(parent text, month date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT parent || '_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM') $$;

-- Creates the missing monthly partitions of order_events for every month from `first` to
-- `last` (UTC months); returns the names created. Each is made empty and then attached (SHARE
-- UPDATE EXCLUSIVE on the parent: writers never wait for it).
CREATE FUNCTION orderctl_ensure_partitions(first date, last date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    m date := date_trunc('month', first)::date;
    part text;
BEGIN
    WHILE m <= last LOOP
        part := orderctl_partition_name('order_events', m);
        IF NOT EXISTS (SELECT 1 FROM pg_inherits i
                        WHERE i.inhparent = 'order_events'::regclass AND i.inhrelid::regclass::text = part) THEN
            EXECUTE format('CREATE TABLE %I (LIKE order_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            EXECUTE format('ALTER TABLE order_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part,
                           m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            RETURN NEXT part;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
END $$;

SELECT count(*) FROM orderctl_ensure_partitions(
    coalesce((SELECT min(created_at) AT TIME ZONE 'UTC' FROM orders), now() AT TIME ZONE 'UTC')::date,
    ((now() AT TIME ZONE 'UTC') + interval '1 month')::date);

INSERT INTO order_events SELECT e.*, o.created_at FROM order_events_before_0018 e JOIN orders o ON o.id = e.order_id;

-- Every row made it (the old foreign key guaranteed each event had its order).
DO $$
BEGIN
    IF (SELECT count(*) FROM order_events) <> (SELECT count(*) FROM order_events_before_0018) THEN
        RAISE EXCEPTION 'partitioning order_events lost rows; nothing was changed';
    END IF;
END $$;

DROP TABLE order_events_before_0018;

ALTER TABLE order_events ADD CONSTRAINT order_events_pkey PRIMARY KEY (id, order_created_at);
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE INDEX order_events_kind_at ON order_events (at, kind);

ANALYZE order_events;
