-- orderctl schema, version 32: placements partitioned by their order's creation month, like
-- order_events (sql/0018) and the finished orders (sql/0031), so `archive` drops a month of
-- them whole instead of deleting them row by row (issue 24 item 2).
--
-- Design, and why:
--
-- * Partition key: `order_created_at`, a copy of the order's `created_at` written with every
--   placement (the placement claim has the order's row in the same statement). All attempts of
--   one order, whatever the provider, sit in its month's partition (`placements_y2026m01`).
--   Every hot statement names the months of its batch: the claim and the write-back of
--   answers add `order_created_at = ANY(<the batch's creation times>)`, which orderctl sends
--   as a parameter of an unnamed statement, so the planner knows it and plans over the
--   batch's months alone (normally the current one), however long the history.
--
-- * Keys. A reference must name one order for ever (two orders behind one reference would
--   let one answer settle the other: money), across every month. The primary key of a
--   partitioned table must hold its partition key, so the old unique key (provider,
--   reference, attempt) becomes (provider, reference, attempt, order_created_at) and the
--   across-months rule moves to `placement_references` (provider, reference) -> order, one row
--   per reference, written by a statement trigger of every insert of placements and checked
--   there: a reference already recorded for another order is refused with the old key's name
--   (`placements_provider_referans_attempt`, unique_violation), as before. The claim's guard
--   (a new reference already used by another order is never sent) reads it instead of every
--   month of placements. Its rows stay when a month is archived (a reference used once is
--   never given to another order), small: one per placement, three narrow columns.
--   The foreign key placements -> order_keys goes, as events -> orders went in 0018: a month's
--   keys are removed before its partitions are dropped, and every placement is written by the
--   claim from its order's row.
--
-- * Pages keep room for the answers (sql/0028): every partition is made with fillfactor 50.
--
-- * Existing rows are copied in this migration's transaction, each with its order's creation
--   time; one whose order is gone (archived before 0031 kept keys) is kept, dated by its own
--   creation time.

ALTER TABLE placements RENAME TO placements_before_0032;
ALTER TABLE placements_before_0032 RENAME CONSTRAINT placements_pkey TO placements_before_0032_pkey;
ALTER TABLE placements_before_0032 RENAME CONSTRAINT placements_provider_referans_attempt
    TO placements_before_0032_provider_referans_attempt;
ALTER TABLE placements_before_0032 DROP CONSTRAINT placements_order_id_fkey;
ALTER TABLE placements_before_0032 DROP CONSTRAINT placements_provider_id_fkey;
ALTER INDEX placements_order RENAME TO placements_before_0032_order;
ALTER INDEX placements_created RENAME TO placements_before_0032_created;
ALTER SEQUENCE placements_id_seq OWNED BY NONE;

CREATE TABLE placements (LIKE placements_before_0032 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                         order_created_at timestamptz NOT NULL)
    PARTITION BY RANGE (order_created_at);
ALTER SEQUENCE placements_id_seq OWNED BY placements.id;

CREATE OR REPLACE FUNCTION orderctl_ensure_partitions(first date, last date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    m date;
    parent text;
    part text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['order_events', 'orders_done', 'placements'] LOOP
        m := date_trunc('month', first)::date;
        WHILE m <= last LOOP
            part := orderctl_partition_name(parent, m);
            IF NOT EXISTS (SELECT 1 FROM pg_inherits i
                            WHERE i.inhparent = parent::regclass AND i.inhrelid::regclass::text = part) THEN
                EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
                IF parent = 'placements' THEN
                    -- Room on each page for the answers' in-place updates (sql/0028).
                    EXECUTE format('ALTER TABLE %I SET (fillfactor = 50)', part);
                END IF;
                EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part,
                               m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                RETURN NEXT part;
            END IF;
            m := (m + interval '1 month')::date;
        END LOOP;
    END LOOP;
END $$;

-- From the oldest order (or last month: a late correction of a creation time finds its month)
-- to one month ahead, for all three tables.
SELECT count(*) FROM orderctl_ensure_partitions(
    (least((SELECT min(created_at) FROM order_keys), (SELECT min(created_at) FROM placements_before_0032),
          now() - interval '1 month') AT TIME ZONE 'UTC')::date,
    ((now() AT TIME ZONE 'UTC') + interval '1 month')::date);

INSERT INTO placements
SELECT p.*, coalesce(k.created_at, p.created_at) FROM placements_before_0032 p LEFT JOIN order_keys k ON k.id = p.order_id;

CREATE TABLE placement_references (
    provider_id bigint NOT NULL,
    referans    text NOT NULL,
    order_id    uuid NOT NULL,
    CONSTRAINT placement_references_pkey PRIMARY KEY (provider_id, referans)
);
INSERT INTO placement_references SELECT DISTINCT ON (provider_id, referans) provider_id, referans, order_id
  FROM placements_before_0032 ORDER BY provider_id, referans, id;

DO $$
BEGIN
    IF (SELECT count(*) FROM placements) <> (SELECT count(*) FROM placements_before_0032) THEN
        RAISE EXCEPTION 'partitioning placements lost rows; nothing was changed';
    END IF;
END $$;

DROP TABLE placements_before_0032;

ALTER TABLE placements ADD CONSTRAINT placements_pkey PRIMARY KEY (id, order_created_at);
ALTER TABLE placements ADD CONSTRAINT placements_provider_referans_attempt
    UNIQUE (provider_id, referans, attempt, order_created_at);
ALTER TABLE placements ADD CONSTRAINT placements_provider_id_fkey FOREIGN KEY (provider_id) REFERENCES providers(id);
CREATE INDEX placements_order ON placements (order_id, id);
CREATE INDEX placements_created ON placements (created_at);

-- One order per reference, across every month: recorded by each inserting statement, and a
-- reference another order holds is refused as the old unique key refused it.
CREATE FUNCTION placements_one_order_per_reference() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    clash record;
BEGIN
    INSERT INTO placement_references (provider_id, referans, order_id)
    SELECT DISTINCT provider_id, referans, order_id FROM new_rows
    ON CONFLICT (provider_id, referans) DO NOTHING;
    SELECT n.referans, n.provider_id INTO clash
      FROM new_rows n JOIN placement_references r ON r.provider_id = n.provider_id AND r.referans = n.referans
     WHERE r.order_id <> n.order_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'reference % of provider % is already another order''s', clash.referans, clash.provider_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'placements_provider_referans_attempt',
                  TABLE = 'placements';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER placements_one_order_per_reference AFTER INSERT ON placements REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION placements_one_order_per_reference();

-- orderctl never changes a placement's provider, reference or order; a hand edit that does is
-- held to the same rule (a row trigger: a column list cannot go with a transition table).
CREATE FUNCTION placements_reference_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO placement_references (provider_id, referans, order_id) VALUES (NEW.provider_id, NEW.referans, NEW.order_id)
    ON CONFLICT (provider_id, referans) DO NOTHING;
    IF EXISTS (SELECT 1 FROM placement_references r
                WHERE r.provider_id = NEW.provider_id AND r.referans = NEW.referans AND r.order_id <> NEW.order_id) THEN
        RAISE EXCEPTION 'reference % of provider % is already another order''s', NEW.referans, NEW.provider_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'placements_provider_referans_attempt',
                  TABLE = 'placements';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER placements_reference_changed AFTER UPDATE OF provider_id, referans, order_id ON placements
    FOR EACH ROW WHEN (OLD.provider_id IS DISTINCT FROM NEW.provider_id OR OLD.referans IS DISTINCT FROM NEW.referans
                       OR OLD.order_id IS DISTINCT FROM NEW.order_id)
    EXECUTE FUNCTION placements_reference_changed();

ANALYZE placements;
ANALYZE placement_references;

-- An x-stor style reference is the order's id the first time it goes to a provider; whether it
-- went there before is read in the order's month alone (its creation time is a parameter now).
DROP FUNCTION orderctl_new_reference(text, uuid, bigint);
CREATE FUNCTION orderctl_new_reference(style text, order_id uuid, provider_id bigint, order_created_at timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF style = 'numeric' THEN
        RETURN ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000)
                + nextval('placement_reference_seq') % 100000)::text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM placements p
                    WHERE p.order_id = $2 AND p.provider_id = $3 AND p.order_created_at = $4) THEN
        RETURN $2::text;
    END IF;
    RETURN gen_random_uuid()::text;
END $$;

-- The five-minute roll-up (sql/0026) reads a placement's month from its own row, and an
-- event's order by id and creation time (pruned to the order's month: by id alone the join
-- probes every month of orders). Counts unchanged.
CREATE OR REPLACE FUNCTION orderctl_roll_up_slices(w timestamptz, e timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_slices (slice, created_month, tenant_id, status, orders, durations)
    SELECT slice, created_month, tenant_id, status, sum(n), orderctl_histogram(bucket, n) FROM (
        SELECT orderctl_slice(o.completed_at) AS slice,
               (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date AS created_month,
               o.tenant_id, o.status, orderctl_duration_bucket(o.duration_ms) AS bucket, count(*) AS n
          FROM orders o
         WHERE o.status <> 'pending' AND NOT o.operator_forced AND o.completed_at >= w AND o.completed_at < e
         GROUP BY 1, 2, 3, 4, 5) b
     GROUP BY 1, 2, 3, 4;
    INSERT INTO provider_activity_slices (slice, created_month, provider_id, what, n)
    SELECT orderctl_slice(at), m, provider_id, what, count(*) FROM (
        SELECT pl.created_at AS at, (date_trunc('month', pl.order_created_at, 'UTC') AT TIME ZONE 'UTC')::date AS m,
               pl.provider_id, 'placement.' || pl.outcome AS what
          FROM placements pl
         WHERE pl.created_at >= w AND pl.created_at < e
        UNION ALL
        SELECT ev.at, (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date, o.provider_id, ev.kind
          FROM order_events ev JOIN orders o ON o.id = ev.order_id AND o.created_at = ev.order_created_at
         WHERE ev.at >= w AND ev.at < e AND o.provider_id IS NOT NULL
           AND ev.kind IN ('check.waiting', 'check.no_news', 'check.approved', 'check.cancelled', 'gave_up')
    ) a
     GROUP BY 1, 2, 3, 4;
END $$;
