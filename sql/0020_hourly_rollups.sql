-- orderctl schema, version 20: finished history rolled up by the hour, then by the day.
--
-- Why: with 0019 alone `stats` read live every finished order, placement and check event after
-- the last rolled-up UTC midnight (up to a day and an hour) and in the window's first partial
-- day (up to another day): about two days of traffic, which grows with the traffic (27,000
-- orders a day at ten million a year), so `stats` did not stay flat with history (1.66× at
-- 300k against 10k). A second, hourly level leaves at most the window's first partial hour
-- and the hours since the watermark (one to two hours, `lag` included) to read live:
--
--   order_hours              finished orders by (completion hour, created month, tenant,
--                            status, duration bucket), as order_days by the day;
--   provider_activity_hours  placements and counted check events by (hour, created month,
--                            provider, what), as provider_activity_days.
--
-- `rollup_watermark.rolled_up_until` is now a UTC hour (it starts at a midnight): everything
-- finished, placed or checked before it is in `order_totals` and in the hourly tables. The
-- same job (`orderctl_roll_up`, called by every safety sweep of a daemon or of `orderctl
-- sweep`) rolls the closed hours up from the rows (an hour is closed `lag` after its end, for
-- the same reason as 0019's days: no transaction that began before its end can still commit
-- into it), and, in the same transaction, every UTC day whose last hour it just closed from
-- that day's hourly rows into order_days / provider_activity_days. So the days are always
-- exactly the sums of their hours, and one watermark says where both levels end: days are
-- rolled up before the midnight at or before it.
--
-- A read sums whole rolled-up days, the rolled-up hours around them (the window's first partial
-- day, the day of the watermark), and live rows for the rest. Hourly rows are kept (not folded
-- away into the days) because any window starts inside some day: `stats --since 30d` needs the
-- hours of the day it starts in, whenever that is. They are removed with their created month
-- by `orderctl archive`, as the daily ones (counts stay equal to the rows kept). There are at
-- most (hours × duration buckets in use) of them: about as many as finished orders while an
-- hour holds fewer orders than buckets, far fewer beyond.
--
-- Percentiles over rolled-up hours come from the same 5 % histogram as the days (within 2.5 %
-- of the exact value). A window with nothing rolled up in it (no job has run for a while) is
-- still computed exactly from the rows.
--
-- The rollups are rebuilt from the rows: the days 0019 rolled up have no hours, and a day must
-- be the sum of its hours. The watermark goes back to the first day anything happened; the
-- sweeps roll the history up again, at most `max_days` days of hours a call. Until they have
-- caught up, `stats` is exact, only slower (the live part starts at the watermark).

CREATE TABLE order_hours (
    hour            timestamptz NOT NULL,
    created_month   date NOT NULL,
    tenant_id       bigint NOT NULL,
    status          text NOT NULL,
    -- orderctl_duration_bucket(duration_ms); -1: no duration recorded.
    duration_bucket integer NOT NULL,
    orders          bigint NOT NULL CHECK (orders >= 0),
    PRIMARY KEY (hour, tenant_id, status, duration_bucket, created_month)
);

CREATE TABLE provider_activity_hours (
    hour          timestamptz NOT NULL,
    created_month date NOT NULL,
    provider_id   bigint NOT NULL,
    what          text NOT NULL,
    n             bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (hour, provider_id, what, created_month)
);

-- Archiving deletes by created month.
CREATE INDEX order_hours_created_month ON order_hours (created_month);
CREATE INDEX provider_activity_hours_created_month ON provider_activity_hours (created_month);

TRUNCATE order_totals, order_days, provider_activity_days;
UPDATE rollup_watermark SET rolled_up_until =
    coalesce(date_trunc('day', least(
                 (SELECT min(completed_at) FROM orders WHERE status <> 'pending'),
                 (SELECT min(created_at) FROM placements),
                 (SELECT min(at) FROM order_events)), 'UTC'),
             date_trunc('day', now(), 'UTC'));

-- Roll up the closed UTC hours since the watermark (an hour is closed `lag` after its end), at
-- most `max_days` days of them a call (a first catch-up over years of history is spread over
-- several sweeps instead of holding one for minutes), and every day they complete. Returns the
-- number of hours rolled up. Two callers at once: the second skips (SKIP LOCKED).
CREATE OR REPLACE FUNCTION orderctl_roll_up(max_days integer DEFAULT 31, lag interval DEFAULT interval '1 hour') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    w timestamptz;
    e timestamptz;
BEGIN
    SELECT rolled_up_until INTO w FROM rollup_watermark FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    e := least(w + max_days * interval '1 day', date_trunc('hour', now() - lag, 'UTC'));
    IF e <= w THEN
        RETURN 0;
    END IF;
    -- Hours [w, e), from the rows.
    INSERT INTO order_totals AS t (created_month, tenant_id, provider_id, status, external_status, orders)
    SELECT (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date, o.tenant_id,
           coalesce(o.provider_id, 0), o.status, o.external_status, count(*)
      FROM orders o
     WHERE o.status <> 'pending' AND NOT o.operator_forced AND o.completed_at >= w AND o.completed_at < e
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (created_month, tenant_id, provider_id, status, external_status)
       DO UPDATE SET orders = t.orders + EXCLUDED.orders;
    INSERT INTO order_hours (hour, created_month, tenant_id, status, duration_bucket, orders)
    SELECT date_trunc('hour', o.completed_at, 'UTC'), (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date,
           o.tenant_id, o.status, orderctl_duration_bucket(o.duration_ms), count(*)
      FROM orders o
     WHERE o.status <> 'pending' AND NOT o.operator_forced AND o.completed_at >= w AND o.completed_at < e
     GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO provider_activity_hours (hour, created_month, provider_id, what, n)
    SELECT date_trunc('hour', at, 'UTC'), m, provider_id, what, count(*) FROM (
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
    -- The days whose last hour is now rolled up, from their hours: [midnight at or before w,
    -- midnight at or before e).
    INSERT INTO order_days (day, created_month, tenant_id, status, duration_bucket, orders)
    SELECT (h.hour AT TIME ZONE 'UTC')::date, h.created_month, h.tenant_id, h.status, h.duration_bucket, sum(h.orders)
      FROM order_hours h
     WHERE h.hour >= date_trunc('day', w, 'UTC') AND h.hour < date_trunc('day', e, 'UTC')
     GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO provider_activity_days (day, created_month, provider_id, what, n)
    SELECT (h.hour AT TIME ZONE 'UTC')::date, h.created_month, h.provider_id, h.what, sum(h.n)
      FROM provider_activity_hours h
     WHERE h.hour >= date_trunc('day', w, 'UTC') AND h.hour < date_trunc('day', e, 'UTC')
     GROUP BY 1, 2, 3, 4;
    UPDATE rollup_watermark SET rolled_up_until = e;
    RETURN (extract(epoch FROM e - w) / 3600)::integer;
END $$;
