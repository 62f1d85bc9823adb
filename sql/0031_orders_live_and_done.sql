-- orderctl schema, version 31: `orders` split into the orders that still have work and the
-- finished ones, the finished ones by month, so years of history never touch the hot path and a
-- month of finished orders is archived by dropping its partition (issue 24, items 1 and 2).
--
-- Design, and why:
--
-- * Partition key: `(status = 'pending' OR next_check_at IS NOT NULL)`, "live": an order that is
--   open, or still watched after an operator's forced decision (a final status with a schedule,
--   `orders_final_unscheduled`). `orders_live` holds the live ones (a few thousand at most: the
--   work in flight), `orders_done` the rest, itself partitioned by RANGE (created_at) in UTC
--   months like `order_events` (`orders_done_y2026m01`). Every statement of the hot path (claims,
--   probes, lane lookups, a lane's write-back) names the key as `(<key>) IS TRUE`, built by
--   `domain::lifecycle::states::live_sql`, and is planned and locked over `orders_live` alone,
--   whatever the history (PostgreSQL prunes a boolean expression key only when the clause is
--   that expression `IS TRUE`; a test asserts every hot plan touches `orders_live` alone).
--   Partitioning by `status` alone would leave a watched order (final, still checked) outside
--   the live partition, so the claims would have to read every month to find it.
--   An order that finishes moves its row (PostgreSQL does it as part of the write-back's
--   UPDATE: a delete from `orders_live` and an insert into its month). Measured with the same
--   layout keyed by status (BENCHMARKS.md, "Orders with a live partition"): single open-order
--   statements 1.12-1.23x, a write-back's batch of 100 updated 0.97x, of 100 finished 0.81x,
--   against one unpartitioned table; with the history out of every hot statement.
--   A row moved under a concurrent lock makes the other transaction fail with SQLSTATE 40001
--   ("already moved to another partition"): the writer and the operator's commands retry it.
--
-- * Keys that must stay unique across months: `order_keys (id, number, tenant_id, request_id,
--   created_at)`, unpartitioned, one row per order, written by a statement trigger of every
--   insert. A shop retrying an insert by id or by request id must be refused whatever partition
--   the first one sits in (money). Its unique index keeps the name `orders_request_id`, which
--   `create`'s idempotency path looks for, and `orders_number_key` likewise. The foreign keys of
--   placements and webhook deliveries point at it. A partitioned table keyed by an expression
--   cannot have a primary key, so `orders` has none; each partition has its own on `id` (with
--   `created_at` in `orders_done`, whose key it is). Forwarding links stay unique through the
--   both-ways constraint triggers (two orders naming one origin cannot both be named back).
--   Reporting SQL that groups by `o.id` alone must now name the columns it reads (README).
--
-- * Indexes. The due and open-order indexes (`orders_due`, `orders_due_placements`,
--   `orders_open`, `orders_open_sent`, `orders_not_sent`) exist on `orders_live` only: a done
--   row is never due and never open. History indexes (`orders_completed`, `orders_attention`,
--   ...) are partitioned indexes over both.
--
-- * Partitions ahead. `orderctl_ensure_partitions` now makes the months of `orders_done` with
--   those of `order_events` (the migration: every month that holds orders, up to one ahead).
--   A finishing order whose month has no partition would fail its write-back (it would be
--   flagged, not lost), so `partitions` and the daemon keep months ahead for both; no DEFAULT
--   partition, as for events.
--
-- * Existing data is copied in this migration's transaction (minutes at 10 million orders:
--   plan the upgrade in a quiet hour); every row is checked to have made it.

ALTER SEQUENCE order_number_seq OWNED BY NONE;
ALTER TABLE placements DROP CONSTRAINT placements_order_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_order_id_fkey;

ALTER TABLE orders RENAME TO orders_before_0031;
ALTER TABLE orders_before_0031 RENAME CONSTRAINT orders_pkey TO orders_before_0031_pkey;
ALTER TABLE orders_before_0031 RENAME CONSTRAINT orders_number_key TO orders_before_0031_number_key;
ALTER INDEX orders_request_id RENAME TO orders_before_0031_request_id;
DROP TRIGGER orders_schedule_new ON orders_before_0031;
DROP TRIGGER orders_notify_new ON orders_before_0031;
DROP TRIGGER orders_forward_link_fixed ON orders_before_0031;
DROP TRIGGER orders_forward_link_both_ways_insert ON orders_before_0031;
DROP TRIGGER orders_forward_link_both_ways_update ON orders_before_0031;

CREATE TABLE orders (LIKE orders_before_0031 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY LIST ((status = 'pending' OR next_check_at IS NOT NULL));
CREATE TABLE orders_live PARTITION OF orders FOR VALUES IN (true);
CREATE TABLE orders_done PARTITION OF orders FOR VALUES IN (false) PARTITION BY RANGE (created_at);
ALTER TABLE orders_live ADD CONSTRAINT orders_live_pkey PRIMARY KEY (id);
ALTER TABLE orders_done ADD CONSTRAINT orders_done_pkey PRIMARY KEY (id, created_at);

CREATE OR REPLACE FUNCTION orderctl_ensure_partitions(first date, last date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    m date;
    parent text;
    part text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['order_events', 'orders_done'] LOOP
        m := date_trunc('month', first)::date;
        WHILE m <= last LOOP
            part := orderctl_partition_name(parent, m);
            IF NOT EXISTS (SELECT 1 FROM pg_inherits i
                            WHERE i.inhparent = parent::regclass AND i.inhrelid::regclass::text = part) THEN
                EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
                EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part,
                               m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                RETURN NEXT part;
            END IF;
            m := (m + interval '1 month')::date;
        END LOOP;
    END LOOP;
END $$;

SELECT count(*) FROM orderctl_ensure_partitions(
    coalesce((SELECT min(created_at) AT TIME ZONE 'UTC' FROM orders_before_0031), now() AT TIME ZONE 'UTC')::date,
    ((now() AT TIME ZONE 'UTC') + interval '1 month')::date);

INSERT INTO orders SELECT * FROM orders_before_0031;

CREATE TABLE order_keys (
    id         uuid NOT NULL CONSTRAINT order_keys_pkey PRIMARY KEY,
    number     bigint NOT NULL CONSTRAINT orders_number_key UNIQUE,
    tenant_id  bigint NOT NULL,
    request_id text,
    created_at timestamptz NOT NULL
);
INSERT INTO order_keys SELECT id, number, tenant_id, request_id, created_at FROM orders_before_0031;
CREATE UNIQUE INDEX orders_request_id ON order_keys (tenant_id, request_id) WHERE request_id IS NOT NULL;
-- `archive` removes a month's keys and then checks that none is left before it drops the month.
CREATE INDEX order_keys_created ON order_keys (created_at);

DO $$
BEGIN
    IF (SELECT count(*) FROM orders) <> (SELECT count(*) FROM orders_before_0031)
       OR (SELECT count(*) FROM order_keys) <> (SELECT count(*) FROM orders_before_0031) THEN
        RAISE EXCEPTION 'splitting orders lost rows; nothing was changed';
    END IF;
END $$;

DROP TABLE orders_before_0031;

ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_package_id_fkey FOREIGN KEY (tenant_id, package_id) REFERENCES packages(tenant_id, id);
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_provider_id_fkey FOREIGN KEY (tenant_id, provider_id) REFERENCES providers(tenant_id, id);
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_user_id_fkey FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id);

-- History: over both partitions.
CREATE INDEX orders_number ON orders (number);
CREATE INDEX orders_by_request_id ON orders (tenant_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX orders_attention ON orders (created_at) WHERE attention IS NOT NULL;
CREATE INDEX orders_completed ON orders (completed_at) WHERE status <> 'pending';
CREATE INDEX orders_forced ON orders (completed_at) WHERE operator_forced;
CREATE INDEX orders_forwarded_from ON orders (forwarded_from) WHERE forwarded_from IS NOT NULL;
CREATE INDEX orders_forwarded_to ON orders (forwarded_to) WHERE forwarded_to IS NOT NULL;
CREATE INDEX orders_last_cost ON orders (package_id, provider_id, sent_at DESC NULLS LAST) WHERE provider_cost IS NOT NULL;
-- The work: on the live partition only.
CREATE INDEX orders_due ON orders_live (lane, next_check_at)
    WHERE next_check_at IS NOT NULL AND external_status NOT IN ('not_sent', 'waiting_for_provider');
CREATE INDEX orders_due_placements ON orders_live (lane, next_check_at)
    WHERE next_check_at IS NOT NULL AND external_status IN ('not_sent', 'waiting_for_provider');
CREATE INDEX orders_open ON orders_live (created_at) WHERE status = 'pending';
CREATE INDEX orders_open_sent ON orders_live (sent_at) WHERE status = 'pending' AND external_status IN ('sent', 'processing');
CREATE INDEX orders_not_sent ON orders_live (created_at) WHERE external_status = 'not_sent' AND status = 'pending';

ALTER TABLE placements ADD CONSTRAINT placements_order_id_fkey FOREIGN KEY (order_id) REFERENCES order_keys(id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_order_id_fkey FOREIGN KEY (order_id) REFERENCES order_keys(id);
ALTER SEQUENCE order_number_seq OWNED BY order_keys.number;

-- The keys of new orders, once per inserting statement (a row moved between partitions by an
-- UPDATE fires no statement-level insert trigger).
CREATE FUNCTION orders_keep_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_keys SELECT id, number, tenant_id, request_id, created_at FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER orders_keep_keys AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_keep_keys();
-- Keys changed on the order (an operator's repair, a test ageing an order) follow to its keys;
-- a BEFORE trigger, because it fires also when the change moves the row to another partition.
CREATE FUNCTION orders_keys_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE order_keys SET id = NEW.id, number = NEW.number, tenant_id = NEW.tenant_id, request_id = NEW.request_id,
                          created_at = NEW.created_at
     WHERE id = OLD.id;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_keys_follow BEFORE UPDATE OF id, number, tenant_id, request_id, created_at ON orders
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.number IS DISTINCT FROM NEW.number
                       OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.request_id IS DISTINCT FROM NEW.request_id
                       OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION orders_keys_follow();

CREATE TRIGGER orders_schedule_new BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_schedule_new();
CREATE TRIGGER orders_notify_new AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_notify_new();
CREATE TRIGGER orders_forward_link_fixed BEFORE UPDATE OF forwarded_to, forwarded_from ON orders
    FOR EACH ROW WHEN (OLD.forwarded_to IS DISTINCT FROM NEW.forwarded_to OR OLD.forwarded_from IS DISTINCT FROM NEW.forwarded_from)
    EXECUTE FUNCTION orders_forward_link_fixed();
CREATE CONSTRAINT TRIGGER orders_forward_link_both_ways_insert AFTER INSERT ON orders DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.forwarded_to IS NOT NULL OR NEW.forwarded_from IS NOT NULL)
    EXECUTE FUNCTION orders_forward_link_both_ways();
CREATE CONSTRAINT TRIGGER orders_forward_link_both_ways_update AFTER UPDATE OF forwarded_to, forwarded_from ON orders DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.forwarded_to IS DISTINCT FROM NEW.forwarded_to OR OLD.forwarded_from IS DISTINCT FROM NEW.forwarded_from)
    EXECUTE FUNCTION orders_forward_link_both_ways();

ANALYZE orders;
ANALYZE order_keys;
