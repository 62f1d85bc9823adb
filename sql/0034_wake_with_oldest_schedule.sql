-- orderctl schema, version 34: the wake-up of new orders says how old their schedule is.
--
-- A lane reads its due indexes from a floor (`db::claims::ClaimFloor`: past the dead entries
-- a long-held snapshot leaves in front of the live ones), FLOOR_GRACE (100 ms) behind its
-- claim's clock. A new order is scheduled at its transaction's start (`now()`), and becomes
-- visible only when that transaction commits: a shop whose transaction ran longer than the
-- grace (a web request that charges, renders and then commits; one statement inserting
-- thousands of orders) had its orders below every floor, found only by the next whole-index
-- claim, up to a second later (and up to 60 s when whole-index claims are slow). Measured in
-- the benchmark: 5,000 orders inserted in one statement of 0.19 s waited 0.9 s before the
-- first claim.
--
-- The notification now ends with `from:<microseconds since the epoch>`, the oldest schedule
-- among the new rows; a lane it wakes reads its due placements from there on its next claim.
-- Daemons that do not know the part ignore it (they take the integers of the list as lanes).
CREATE OR REPLACE FUNCTION orders_notify_new() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lanes text;
    oldest timestamptz;
BEGIN
    SELECT string_agg(DISTINCT lane::text, ','), min(next_check_at) INTO lanes, oldest
      FROM new_rows WHERE next_check_at IS NOT NULL;
    IF lanes IS NOT NULL THEN
        PERFORM pg_notify('orderctl_work',
                          lanes || ',from:' || floor(extract(epoch FROM oldest) * 1000000)::bigint);
    END IF;
    RETURN NULL;
END $$;
