-- orderctl schema, version 6: two indexes that every order paid for and no query read.
--
-- An update of an order that is not HOT (every claim and write-back moves `next_check_at`,
-- which the due indexes hold) writes an entry into each of the order's indexes. These two were
-- written four and five times per order, end to end, and read by nothing:
--
-- * orders_provider_referans (unique per provider and reference). References are unique in
--   `placements` (UNIQUE (provider_id, referans)), which holds every reference ever sent,
--   not only each order's current one; an order's reference is only ever written by the claim
--   that records its placement row in the same statement, and that claim now refuses a
--   reference recorded for another order. Nothing looks an order up by its reference.
-- * orders_tenant_created. `list` reads newest first by number (one global sequence taken at
--   insert), stats read the history and placements by time, and a shop's own pages read a
--   user's orders by user.
DROP INDEX IF EXISTS orders_provider_referans;
DROP INDEX IF EXISTS orders_tenant_created;
