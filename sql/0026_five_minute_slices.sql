-- orderctl schema, version 26: the rollups close five-minute slices a minute after their end,
-- so what a `stats` window reads row by row is minutes of traffic, not hours.
--
-- Why: after 0025 every rolled-up row is flat in the traffic, and what still grew was the live
-- part of a window: its first partial hour plus the one to two hours since the watermark (an
-- hour closed only an hour after its end, 0020's `lag`). Measured at ten million finished orders
-- a year (BENCHMARKS.md): ~15,000 order, placement and event rows, `stats` 1.43x its figure at
-- ten thousand (issue 24 asks for 1.2x). Two changes bound it:
--
-- 1. A third, finer level below the hours: `order_slices` and `provider_activity_slices`, one
--    row per five UTC minutes (counted from the epoch, so twelve to an hour and 288 to a day),
--    keyed and shaped as the hourly rows (0025: one row per status with a histogram of times).
--    The job rolls slices up from the rows, then each hour whose twelfth slice is now in from
--    its slices, then each day whose last hour is now in from its hours, in one transaction: an
--    hour is always the sum of its slices and a day of its hours. A window reads whole days,
--    the hours around them, the slices around those, and live only its first partial slice
--    and what came after the watermark. Slices are kept as long as their created month (a
--    window starting 30 days ago needs the slices of the hour it starts in); that is twelve
--    times the hourly rows, a few hundred thousand small rows a year.
--
-- 2. A slice closes when no transaction that began before its end is still open, instead of a
--    fixed hour after it. Every time the rollups are keyed on (`orders.completed_at`,
--    `placements.created_at`, `order_events.at`) is the writing transaction's `now()`, its
--    start; so once every transaction open in this database began at or after a slice's end
--    (`pg_stat_activity.xact_start`), nothing can still commit into the slice, and it is final.
--    `orderctl_rollup_horizon` is that rule: the latest slice end at least `settle` (a minute)
--    ago and at or before the oldest open transaction's start. A session whose transaction this
--    role may not see (another role's, without pg_read_all_stats: its `state` reads NULL) counts
--    as open since forever. Whatever is open, a slice closes at the latest `lag` (an hour, 0020's
--    rule) after its end, so a report or an idle session holding a transaction for hours slows
--    `stats` only back to what it was, never stops the rollups.
--
-- The slices of the history already rolled up are filled from the rows here (one read of the
-- finished orders, placements and counted events before the watermark: about two minutes at
-- ten million orders); the watermark, the hours and the days stay as they are.
--
-- The job is split into one function per level, so a later change restates only its level.

-- The five-minute slice holding `t` (its start, UTC, counted from the epoch).
CREATE FUNCTION orderctl_slice(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(floor(extract(epoch FROM t) / 300) * 300)
$$;

CREATE TABLE order_slices (
    slice         timestamptz NOT NULL,
    created_month date NOT NULL,
    tenant_id     bigint NOT NULL,
    status        text NOT NULL,
    orders        bigint NOT NULL CHECK (orders >= 0),
    durations     bigint[] NOT NULL,
    PRIMARY KEY (slice, tenant_id, status, created_month)
);

CREATE TABLE provider_activity_slices (
    slice         timestamptz NOT NULL,
    created_month date NOT NULL,
    provider_id   bigint NOT NULL,
    what          text NOT NULL,
    n             bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (slice, provider_id, what, created_month)
);

-- Archiving deletes by created month.
CREATE INDEX order_slices_created_month ON order_slices (created_month);
CREATE INDEX provider_activity_slices_created_month ON provider_activity_slices (created_month);

-- Where the rollups may end at `at`: a slice end at least `settle` before it and at or before
-- the start of every transaction open in this database but the caller's; never earlier than
-- `lag` before it. Idle sessions have no transaction (`xact_start` NULL, `state` 'idle'). A
-- session the caller may not see shows its user and database only (`backend_type` and `state`
-- NULL); background processes have no user.
CREATE FUNCTION orderctl_rollup_horizon(at timestamptz, settle interval, lag interval) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT greatest(orderctl_slice(at - lag), least(orderctl_slice(at - settle), (
        SELECT CASE WHEN bool_or(a.state IS NULL) THEN '-infinity'::timestamptz
                    ELSE orderctl_slice(min(a.xact_start)) END
          FROM pg_stat_activity a
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.usesysid IS NOT NULL
           AND coalesce(a.backend_type, 'client backend') = 'client backend')))
$$;

-- Slices [w, e), from the rows.
CREATE FUNCTION orderctl_roll_up_slices(w timestamptz, e timestamptz) RETURNS void
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
        SELECT pl.created_at AS at, (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date AS m,
               pl.provider_id, 'placement.' || pl.outcome AS what
          FROM placements pl JOIN orders o ON o.id = pl.order_id
         WHERE pl.created_at >= w AND pl.created_at < e
        UNION ALL
        SELECT ev.at, (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date, o.provider_id, ev.kind
          FROM order_events ev JOIN orders o ON o.id = ev.order_id
         WHERE ev.at >= w AND ev.at < e AND o.provider_id IS NOT NULL
           AND ev.kind IN ('check.waiting', 'check.no_news', 'check.approved', 'check.cancelled', 'gave_up')
    ) a
     GROUP BY 1, 2, 3, 4;
END $$;

-- Hours [from, to), from their slices.
CREATE FUNCTION orderctl_roll_up_hours(from_hour timestamptz, to_hour timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_hours (hour, created_month, tenant_id, status, orders, durations)
    SELECT date_trunc('hour', s.slice, 'UTC'), s.created_month, s.tenant_id, s.status, sum(s.orders),
           orderctl_histogram_sum(s.durations)
      FROM order_slices s
     WHERE s.slice >= from_hour AND s.slice < to_hour
     GROUP BY 1, 2, 3, 4;
    INSERT INTO provider_activity_hours (hour, created_month, provider_id, what, n)
    SELECT date_trunc('hour', s.slice, 'UTC'), s.created_month, s.provider_id, s.what, sum(s.n)
      FROM provider_activity_slices s
     WHERE s.slice >= from_hour AND s.slice < to_hour
     GROUP BY 1, 2, 3, 4;
END $$;

-- Days [from, to), from their hours.
CREATE FUNCTION orderctl_roll_up_days(from_day timestamptz, to_day timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_days (day, created_month, tenant_id, status, orders, durations)
    SELECT (h.hour AT TIME ZONE 'UTC')::date, h.created_month, h.tenant_id, h.status, sum(h.orders),
           orderctl_histogram_sum(h.durations)
      FROM order_hours h
     WHERE h.hour >= from_day AND h.hour < to_day
     GROUP BY 1, 2, 3, 4;
    INSERT INTO provider_activity_days (day, created_month, provider_id, what, n)
    SELECT (h.hour AT TIME ZONE 'UTC')::date, h.created_month, h.provider_id, h.what, sum(h.n)
      FROM provider_activity_hours h
     WHERE h.hour >= from_day AND h.hour < to_day
     GROUP BY 1, 2, 3, 4;
END $$;

-- The slices of what is rolled up already.
SELECT orderctl_roll_up_slices('-infinity', rolled_up_until) FROM rollup_watermark;

-- The job: the closed slices since the watermark, at most `max_days` days of them a call (a
-- first catch-up over years is spread over several sweeps), every hour and day they complete,
-- and the all-time totals. Returns the number of slices rolled up. Two callers at once: the
-- second skips (SKIP LOCKED).
DROP FUNCTION orderctl_roll_up(integer, interval);
CREATE FUNCTION orderctl_roll_up(max_days integer DEFAULT 31, settle interval DEFAULT interval '1 minute',
                                 lag interval DEFAULT interval '1 hour') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    w timestamptz;
    e timestamptz;
BEGIN
    SELECT rolled_up_until INTO w FROM rollup_watermark FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    e := least(w + max_days * interval '1 day', orderctl_rollup_horizon(now(), settle, lag));
    IF e <= w THEN
        RETURN 0;
    END IF;
    INSERT INTO order_totals AS t (created_month, tenant_id, provider_id, status, external_status, orders)
    SELECT (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date, o.tenant_id,
           coalesce(o.provider_id, 0), o.status, o.external_status, count(*)
      FROM orders o
     WHERE o.status <> 'pending' AND NOT o.operator_forced AND o.completed_at >= w AND o.completed_at < e
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (created_month, tenant_id, provider_id, status, external_status)
       DO UPDATE SET orders = t.orders + EXCLUDED.orders;
    PERFORM orderctl_roll_up_slices(w, e);
    -- The hours whose last slice is now in: [the hour at or before w, the hour at or before e).
    PERFORM orderctl_roll_up_hours(date_trunc('hour', w, 'UTC'), date_trunc('hour', e, 'UTC'));
    PERFORM orderctl_roll_up_days(date_trunc('day', w, 'UTC'), date_trunc('day', e, 'UTC'));
    UPDATE rollup_watermark SET rolled_up_until = e;
    RETURN (extract(epoch FROM e - w) / 300)::integer;
END $$;
