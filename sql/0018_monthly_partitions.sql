-- orderctl schema, version 18: orders, their events and placements partitioned by month, so
-- that a month of finished history can be archived to a file and dropped (`orderctl archive`)
-- without a DELETE that rewrites the hot tables, and so that history never grows the tables
-- the hot path reads.
--
-- Design, and why:
--
-- * Partition key. `orders` is partitioned by RANGE (created_at), one partition per calendar
--   month in UTC (`orders_y2026m01` holds [2026-01-01 00:00 UTC, 2026-02-01 00:00 UTC)).
--   `order_events` and `placements` are partitioned by the creation time of their ORDER
--   (`order_created_at`, a copy of orders.created_at written with every row), not by their own
--   time: an order created at 23:59 on the 31st keeps all of its history in the same month as
--   itself, so archiving a month is three partitions with the same name suffix, never a DELETE
--   of stragglers from a later month. Every writer of these rows already reads the order in the
--   same statement, so the copy costs nothing.
--
-- * Keys. A primary or unique key of a partitioned table must include the partition key, so
--   `orders` is keyed (id, created_at). Nothing can reference orders(id) alone any more, so the
--   foreign keys pointing at it go: placements and events (written only by statements that join
--   the order, see db/transitions.rs), the ledger (whose rows must outlive an archived order:
--   balances never change when history is archived), webhook deliveries (they carry their own
--   rendered body) and the forwarding links (checked both ways at commit by the constraint
--   triggers, which stay). Order ids are random UUIDs made by orderctl; `number` comes from one
--   sequence; (number, created_at) stays unique and indexed, for lookups by number.
--   Two keys must stay GLOBAL because money and placements depend on them, and a partitioned
--   table cannot hold a global unique key:
--     - a placement reference (provider, reference, attempt) is never recorded twice, for any
--       order, in any month: `placement_references` (narrow, not partitioned, never archived:
--       a reference once sent is never reused, whatever was archived) is filled by a trigger on
--       every placement insert; its primary key is the old constraint's name.
--     - a request id is unique per tenant (`create --request-id`: a retried create charges
--       nothing, even across a month boundary): `order_request_ids`, filled by a trigger on
--       inserts that carry one; its primary key is named `orders_request_id`, the name the
--       create path already recognises. Archive removes the keys of the orders it archives.
--
-- * Cost, measured (pgbench, one session, unnamed statements as orderctl sends them, on the
--   shared 2-core machine under load): a lookup or update of one order by id, which cannot
--   prune, took 0.17 ms unpartitioned, 1.6 ms with 6 partitions of orders, 5.5 ms with 14 and
--   9.8 ms with 26: the planner opens and locks every partition and each of its ~12 indexes
--   (more than the 16 fast-path locks a backend has). Months are therefore kept few: one month
--   ahead only, and old months archived. Carrying created_at in claims and write-backs (so
--   every statement prunes to its month) is what would remove this cost; it is not done here.
--
-- * Lookups stay index-based. The due-work indexes (orders_due, orders_due_placements) and the other
--   partial indexes are defined on the parent and so exist in every partition; a partition of
--   finished orders has them empty, so a claim's Merge Append over the partitions reads a few
--   empty index pages per old month and stays index-based. A lookup by order id cannot prune
--   (the id does not say its month) but is an index probe per partition on (id, created_at);
--   with a year or two of months kept (older ones archived) that is a few dozen probes, and
--   every partition of a month that was archived is gone. Lookups of events and placements by
--   order id use (order_id, id) in each partition the same way.
--
-- * Partitions ahead. `orderctl_ensure_partitions(first, last)` creates missing months (the
--   migration creates every month that holds data up to 1 month ahead; the daemon and
--   `orderctl partitions --ahead N` keep months ahead). It creates each partition as a plain
--   empty table and ATTACHes it, which takes only SHARE UPDATE EXCLUSIVE on the parent: no claim
--   or write waits for it. There is no DEFAULT partition on purpose: one would have to be
--   scanned on every attach and would forbid detaching concurrently; `doctor` warns when fewer
--   than one month ahead exists.
--
-- * Existing data. The unpartitioned tables are renamed, every row is copied into the new
--   partitioned tables (events and placements take their order's created_at), and the old
--   tables are dropped in the same transaction: a populated database keeps every row, or the
--   migration fails and nothing changes. Triggers and indexes are created after the copy, so
--   the copy is not re-scheduled by the insert trigger.

ALTER TABLE placements DROP CONSTRAINT placements_order_id_fkey;
ALTER TABLE order_events DROP CONSTRAINT order_events_order_id_fkey;
ALTER TABLE ledger DROP CONSTRAINT ledger_order_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_order_id_fkey;
ALTER TABLE orders DROP CONSTRAINT orders_forwarded_to_fkey, DROP CONSTRAINT orders_forwarded_from_fkey;

ALTER TABLE orders RENAME TO orders_before_0018;
ALTER TABLE order_events RENAME TO order_events_before_0018;
ALTER TABLE placements RENAME TO placements_before_0018;
-- The id sequences outlive the old tables.
ALTER SEQUENCE order_events_id_seq OWNED BY NONE;
ALTER SEQUENCE placements_id_seq OWNED BY NONE;

CREATE TABLE orders (LIKE orders_before_0018 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (created_at);
CREATE TABLE order_events (LIKE order_events_before_0018 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                           order_created_at timestamptz NOT NULL)
    PARTITION BY RANGE (order_created_at);
CREATE TABLE placements (LIKE placements_before_0018 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                         order_created_at timestamptz NOT NULL)
    PARTITION BY RANGE (order_created_at);
ALTER SEQUENCE order_events_id_seq OWNED BY order_events.id;
ALTER SEQUENCE placements_id_seq OWNED BY placements.id;

-- A month's partition name: orders_y2026m01.
CREATE FUNCTION orderctl_partition_name(parent text, month date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT parent || '_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM') $$;

-- Creates the missing monthly partitions of orders, order_events and placements for every month
-- from `first` to `last` (UTC months); returns the names created. Each is made empty and then
-- attached (SHARE UPDATE EXCLUSIVE on the parent: writers and claims never wait for it).
CREATE FUNCTION orderctl_ensure_partitions(first date, last date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    m date := date_trunc('month', first)::date;
    parent text;
    part text;
BEGIN
    WHILE m <= last LOOP
        FOREACH parent IN ARRAY ARRAY['orders', 'order_events', 'placements'] LOOP
            part := orderctl_partition_name(parent, m);
            CONTINUE WHEN EXISTS (SELECT 1 FROM pg_inherits i
                                   WHERE i.inhparent = parent::regclass AND i.inhrelid::regclass::text = part);
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part,
                           m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            RETURN NEXT part;
        END LOOP;
        m := (m + interval '1 month')::date;
    END LOOP;
END $$;

SELECT count(*) FROM orderctl_ensure_partitions(
    coalesce((SELECT min(created_at) AT TIME ZONE 'UTC' FROM orders_before_0018), now() AT TIME ZONE 'UTC')::date,
    ((now() AT TIME ZONE 'UTC') + interval '1 month')::date);

INSERT INTO orders SELECT * FROM orders_before_0018;
INSERT INTO order_events SELECT e.*, o.created_at FROM order_events_before_0018 e JOIN orders_before_0018 o ON o.id = e.order_id;
INSERT INTO placements SELECT p.*, o.created_at FROM placements_before_0018 p JOIN orders_before_0018 o ON o.id = p.order_id;

-- Every row made it (the old foreign keys guaranteed each event and placement had its order).
DO $$
BEGIN
    IF (SELECT count(*) FROM orders) <> (SELECT count(*) FROM orders_before_0018)
       OR (SELECT count(*) FROM order_events) <> (SELECT count(*) FROM order_events_before_0018)
       OR (SELECT count(*) FROM placements) <> (SELECT count(*) FROM placements_before_0018) THEN
        RAISE EXCEPTION 'partitioning lost rows; nothing was changed';
    END IF;
END $$;

DROP TABLE orders_before_0018, order_events_before_0018, placements_before_0018;

-- Keys and indexes, as before, with the partition key where a key must carry it.
ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id, created_at);
ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE (number, created_at);
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id);
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_package_id_fkey FOREIGN KEY (tenant_id, package_id) REFERENCES packages(tenant_id, id);
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_provider_id_fkey FOREIGN KEY (tenant_id, provider_id) REFERENCES providers(tenant_id, id);
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_user_id_fkey FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id);
CREATE INDEX orders_open_sent ON orders (sent_at) WHERE status = 'pending' AND external_status IN ('sent', 'processing');
CREATE INDEX orders_not_sent ON orders (created_at) WHERE external_status = 'not_sent' AND status = 'pending';
CREATE INDEX orders_due ON orders (lane, next_check_at) WHERE next_check_at IS NOT NULL AND external_status <> 'not_sent';
CREATE INDEX orders_due_placements ON orders (lane, next_check_at) WHERE next_check_at IS NOT NULL AND external_status = 'not_sent';
CREATE INDEX orders_attention ON orders (created_at) WHERE attention IS NOT NULL;
CREATE INDEX orders_request_id_lookup ON orders (tenant_id, request_id) WHERE request_id IS NOT NULL;
CREATE UNIQUE INDEX orders_forwarded_to ON orders (forwarded_to, created_at) WHERE forwarded_to IS NOT NULL;
CREATE UNIQUE INDEX orders_forwarded_from ON orders (forwarded_from, created_at) WHERE forwarded_from IS NOT NULL;

ALTER TABLE order_events ADD CONSTRAINT order_events_pkey PRIMARY KEY (id, order_created_at);
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE INDEX order_events_kind_at ON order_events (at, kind);

ALTER TABLE placements ADD CONSTRAINT placements_pkey PRIMARY KEY (id, order_created_at);
ALTER TABLE placements ADD CONSTRAINT placements_provider_id_fkey FOREIGN KEY (provider_id) REFERENCES providers(id);
ALTER TABLE placements ADD CONSTRAINT placements_provider_referans_attempt_month
    UNIQUE (provider_id, referans, attempt, order_created_at);
CREATE INDEX placements_order ON placements (order_id, id);

-- The global keys (see above).
CREATE TABLE placement_references (
    provider_id bigint NOT NULL,
    referans    text NOT NULL,
    attempt     integer NOT NULL,
    order_id    uuid NOT NULL,
    CONSTRAINT placements_provider_referans_attempt PRIMARY KEY (provider_id, referans, attempt)
);
INSERT INTO placement_references SELECT provider_id, referans, attempt, order_id FROM placements;
-- The same key for the same order again is a row moving between partitions (an UPDATE of
-- order_created_at), not a second placement.
CREATE FUNCTION placements_reference_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO placement_references (provider_id, referans, attempt, order_id)
    VALUES (NEW.provider_id, NEW.referans, NEW.attempt, NEW.order_id) ON CONFLICT DO NOTHING;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM placement_references r
                                  WHERE (r.provider_id, r.referans, r.attempt) = (NEW.provider_id, NEW.referans, NEW.attempt)
                                    AND r.order_id = NEW.order_id) THEN
        RAISE EXCEPTION 'placement reference % (attempt %) of provider % is recorded for another order',
                        NEW.referans, NEW.attempt, NEW.provider_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'placements_provider_referans_attempt';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER placements_reference_once AFTER INSERT ON placements
    FOR EACH ROW EXECUTE FUNCTION placements_reference_once();

CREATE TABLE order_request_ids (
    tenant_id  bigint NOT NULL,
    request_id text NOT NULL,
    order_id   uuid NOT NULL,
    CONSTRAINT orders_request_id PRIMARY KEY (tenant_id, request_id)
);
INSERT INTO order_request_ids SELECT tenant_id, request_id, id FROM orders WHERE request_id IS NOT NULL;
CREATE FUNCTION orders_request_id_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_request_ids (tenant_id, request_id, order_id) VALUES (NEW.tenant_id, NEW.request_id, NEW.id)
        ON CONFLICT DO NOTHING;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM order_request_ids r
                                  WHERE (r.tenant_id, r.request_id) = (NEW.tenant_id, NEW.request_id) AND r.order_id = NEW.id) THEN
        RAISE EXCEPTION 'request id % is already used by another order of this tenant', NEW.request_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'orders_request_id';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER orders_request_id_once AFTER INSERT ON orders
    FOR EACH ROW WHEN (NEW.request_id IS NOT NULL) EXECUTE FUNCTION orders_request_id_once();

-- The triggers of orders, as they were (the functions are unchanged).
CREATE TRIGGER orders_schedule_new BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_schedule_new();
CREATE TRIGGER orders_notify_new AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_notify_new();
CREATE TRIGGER orders_forward_link_fixed BEFORE UPDATE OF forwarded_to, forwarded_from ON orders
    FOR EACH ROW
    WHEN (OLD.forwarded_to IS DISTINCT FROM NEW.forwarded_to OR OLD.forwarded_from IS DISTINCT FROM NEW.forwarded_from)
    EXECUTE FUNCTION orders_forward_link_fixed();
CREATE CONSTRAINT TRIGGER orders_forward_link_both_ways_insert
    AFTER INSERT ON orders
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.forwarded_to IS NOT NULL OR NEW.forwarded_from IS NOT NULL)
    EXECUTE FUNCTION orders_forward_link_both_ways();
CREATE CONSTRAINT TRIGGER orders_forward_link_both_ways_update
    AFTER UPDATE OF forwarded_to, forwarded_from ON orders
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.forwarded_to IS DISTINCT FROM NEW.forwarded_to OR OLD.forwarded_from IS DISTINCT FROM NEW.forwarded_from)
    EXECUTE FUNCTION orders_forward_link_both_ways();

ANALYZE orders;
ANALYZE order_events;
ANALYZE placements;
