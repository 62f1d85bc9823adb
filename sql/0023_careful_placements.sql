-- orderctl schema, version 23: careful placements (issue 23). When a provider's known balance
-- no longer covers what its placements in flight could spend, or right after it came back from
-- "no balance", its placements go one at a time across every process (the rule is
-- `domain::provider_health::pace`). Two facts it needs, shared by every daemon:
--   highest_cost: the highest cost a placement reply of this provider named (dealer data);
--   back_from_no_balance: the provider was out of balance and is available again; its next
--     placement goes alone, and an accepted one clears it.
-- The one-at-a-time permit itself is a row of provider_permits with slot -1 (the
-- max_in_flight slots are 0..n-1), so a crashed holder's permit lapses like any other.
ALTER TABLE provider_health
    ADD COLUMN highest_cost numeric CHECK (highest_cost >= 0),
    ADD COLUMN back_from_no_balance boolean NOT NULL DEFAULT false;
