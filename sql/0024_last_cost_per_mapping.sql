-- orderctl schema, version 24: the latest recorded cost of a package at a provider, by index.
--
-- `doctor` and `routing check` compare each package's price with the cost its provider charged
-- for it last (`db::money::below_cost`). Without an index that lookup read every order of the
-- package, so `doctor` grew with history (measured: 58 ms at 10k finished orders, 666 ms at 1M,
-- 11.5x). With this index each mapping's latest cost is one index probe, whatever the history.
-- Partial: only orders that carry a cost (placed with a provider that reported one).
CREATE INDEX orders_last_cost ON orders (package_id, provider_id, sent_at DESC NULLS LAST)
    WHERE provider_cost IS NOT NULL;
