-- orderctl schema, version 19: history never touches the hot path.
--
-- A reseller accumulates millions of finished orders a year, with their placements, events and
-- ledger rows. Every operator read and every gauge must cost what it costs at ten thousand
-- orders. Two tools, each where it fits:
--
-- 1. Partial indexes over open work only. An order is open while `status = 'pending'`; a year of
--    traffic leaves a few hundred of those and millions of finished ones. `orders_open` holds
--    only the open ones, so `list --stuck`, `doctor`, `stats` (its open part) and tenant
--    listings read a small index whose size is the open work, never the history. The due
--    indexes of 0002 (`orders_due`, `orders_due_placements`) and `orders_attention` already are
--    of this kind; the queries were changed to use them (a bare `next_check_at < X` matches
--    neither due index and scanned the table).
--
-- 2. Rollups for what is about history by nature: `stats` counts every order by status and by
--    provider, and counts, times and provider activity over a window (24 h by default, 30 days
--    on request). Counting a year of rows on every `stats` cannot stay flat, so finished history
--    is counted once, a closed UTC day at a time, into small tables:
--      order_totals            finished orders by (created month, tenant, provider, status,
--                              external status): the all-time counts;
--      order_days              finished orders by (completion day, created month, tenant,
--                              status, duration bucket): counts and time-to-final percentiles
--                              of windows;
--      provider_activity_days  placements by outcome and status checks by answer, by
--                              (day, created month of the order, provider).
--    `rollup_watermark` says up to where they are filled (a UTC midnight). Everything after it,
--    and the part of a window before the first whole day, is read live from the rows, by
--    index range (`orders_completed`, `placements_created`, `order_events_kind_at`); open orders
--    are always read live (`orders_open`). So a read sums at most a few thousand rollup rows
--    plus about one or two days of live rows, whatever the history.
--
--    Why rolled up by a periodic job (`orderctl_roll_up()`, called by every safety sweep of a
--    daemon or of `orderctl sweep`) rather than by triggers on every transition: a trigger would
--    add a write of a shared counter row to every finishing transaction (lock waits between
--    lanes and daemons, deadlocks between batches that finish orders in different orders), on
--    the hot path this migration is about. A closed day no longer changes: an order's final
--    status never changes, its completion time is written once with it, placements and events
--    are written at their own time. The job waits an hour past midnight (`lag`) before it rolls
--    a day up, so no transaction that began before midnight can still commit into it. Only
--    orders decided by an operator with `--force` keep changing after they are final (their
--    provider is still watched): they are never rolled up and always counted live
--    (`orders_forced`, a small index). If no job has run for a while, reads are still exact,
--    only slower: the live part starts at the watermark.
--
--    Percentiles of time to final over rolled-up days come from a histogram with buckets 5 %
--    wide (`orderctl_duration_bucket`): within 2.5 % of the exact value. A window that holds no
--    rolled-up day (the default 24 h, once the job has caught up) is computed exactly, as before.
--
--    The created month in each key is for archiving by month (orders and their rows partitioned
--    by created month): archiving a month removes its rows from the rollups with it
--    (`DELETE ... WHERE created_month = M`), so counts stay equal to the rows kept.
--
-- Nothing here depends on the physical layout of `orders`, `placements` or `order_events`:
-- the indexes are defined on the tables as such (on a partitioned parent they exist in every
-- partition), and the rollups read them with ordinary range scans.

CREATE INDEX orders_open ON orders (created_at) WHERE status = 'pending';
CREATE INDEX orders_completed ON orders (completed_at) WHERE status <> 'pending';
CREATE INDEX orders_forced ON orders (completed_at) WHERE operator_forced;
CREATE INDEX placements_created ON placements (created_at);

CREATE TABLE order_totals (
    created_month   date NOT NULL,
    tenant_id       bigint NOT NULL,
    -- 0: never sent to a provider (codes, manual, forwarded).
    provider_id     bigint NOT NULL,
    status          text NOT NULL,
    external_status text NOT NULL,
    orders          bigint NOT NULL CHECK (orders >= 0),
    PRIMARY KEY (created_month, tenant_id, provider_id, status, external_status)
);

CREATE TABLE order_days (
    day             date NOT NULL,
    created_month   date NOT NULL,
    tenant_id       bigint NOT NULL,
    status          text NOT NULL,
    -- orderctl_duration_bucket(duration_ms); -1: no duration recorded.
    duration_bucket integer NOT NULL,
    orders          bigint NOT NULL CHECK (orders >= 0),
    PRIMARY KEY (day, tenant_id, status, duration_bucket, created_month)
);

CREATE TABLE provider_activity_days (
    day           date NOT NULL,
    created_month date NOT NULL,
    provider_id   bigint NOT NULL,
    -- 'placement.' || outcome, or an order event kind (check.waiting, check.no_news,
    -- check.approved, check.cancelled, gave_up).
    what          text NOT NULL,
    n             bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (day, provider_id, what, created_month)
);

CREATE TABLE rollup_watermark (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    -- Everything that happened before this UTC midnight is in the rollups.
    rolled_up_until timestamptz NOT NULL
);

-- A time to final in milliseconds, as a bucket 5 % wide: bucket b holds [1.05^b, 1.05^(b+1)).
CREATE FUNCTION orderctl_duration_bucket(ms bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms IS NULL THEN -1 ELSE floor(ln(greatest(ms, 1)) / ln(1.05))::integer END
$$;

-- Start at the first day anything happened (or today, on an empty database).
INSERT INTO rollup_watermark (rolled_up_until)
SELECT coalesce(date_trunc('day', least(
           (SELECT min(completed_at) FROM orders WHERE status <> 'pending'),
           (SELECT min(created_at) FROM placements),
           (SELECT min(at) FROM order_events)), 'UTC'),
       date_trunc('day', now(), 'UTC'));

-- Roll up the closed UTC days since the watermark (a day is closed `lag` after its end), at most
-- `max_days` of them (a first catch-up over years of history is spread over several sweeps
-- instead of holding one for minutes). Returns the number of days rolled up. Two callers at
-- once: the second skips (SKIP LOCKED).
CREATE FUNCTION orderctl_roll_up(max_days integer DEFAULT 31, lag interval DEFAULT interval '1 hour') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    w timestamptz;
    e timestamptz;
    d date;
    days integer := 0;
BEGIN
    SELECT rolled_up_until INTO w FROM rollup_watermark FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WHILE w + interval '24 hours' + lag <= now() AND days < max_days LOOP
        e := w + interval '24 hours';
        d := (w AT TIME ZONE 'UTC')::date;
        INSERT INTO order_totals AS t (created_month, tenant_id, provider_id, status, external_status, orders)
        SELECT (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date, o.tenant_id,
               coalesce(o.provider_id, 0), o.status, o.external_status, count(*)
          FROM orders o
         WHERE o.status <> 'pending' AND NOT o.operator_forced AND o.completed_at >= w AND o.completed_at < e
         GROUP BY 1, 2, 3, 4, 5
         ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (created_month, tenant_id, provider_id, status, external_status)
           DO UPDATE SET orders = t.orders + EXCLUDED.orders;
        INSERT INTO order_days (day, created_month, tenant_id, status, duration_bucket, orders)
        SELECT d, (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date, o.tenant_id, o.status,
               orderctl_duration_bucket(o.duration_ms), count(*)
          FROM orders o
         WHERE o.status <> 'pending' AND NOT o.operator_forced AND o.completed_at >= w AND o.completed_at < e
         GROUP BY 2, 3, 4, 5;
        INSERT INTO provider_activity_days (day, created_month, provider_id, what, n)
        SELECT d, m, provider_id, what, count(*) FROM (
            SELECT (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date AS m, pl.provider_id,
                   'placement.' || pl.outcome AS what
              FROM placements pl JOIN orders o ON o.id = pl.order_id
             WHERE pl.created_at >= w AND pl.created_at < e
            UNION ALL
            SELECT (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date, o.provider_id, ev.kind
              FROM order_events ev JOIN orders o ON o.id = ev.order_id
             WHERE ev.at >= w AND ev.at < e AND o.provider_id IS NOT NULL
               AND ev.kind IN ('check.waiting', 'check.no_news', 'check.approved', 'check.cancelled', 'gave_up')
        ) a
         GROUP BY 2, 3, 4;
        w := e;
        days := days + 1;
    END LOOP;
    UPDATE rollup_watermark SET rolled_up_until = w;
    RETURN days;
END $$;
