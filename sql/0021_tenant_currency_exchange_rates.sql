-- Issue 23 item 6: the tenant's currency, exchange rates an operator declares in setup, and per
-- order the rate that converted its provider cost into the tenant's money when the cost was
-- recorded, so a later rate change never rewrites a past margin.

-- The money a tenant sells in (package prices, balances); NULL: not named. A provider with no
-- `currency` of its own charges in this money, whether it is named or not.
ALTER TABLE tenants ADD COLUMN currency text CHECK (currency ~ '^[A-Z]{3}$');

-- One unit of `from_currency` is worth `rate` units of `to_currency` ("USD/TRY": "34.10").
-- Declared by the setup file's top-level `exchange_rates`; a pair the file no longer names is
-- retired by `apply --prune` (kept, no longer used for new orders), named again it is revived.
CREATE TABLE exchange_rates (
    from_currency text NOT NULL CHECK (from_currency ~ '^[A-Z]{3}$'),
    to_currency   text NOT NULL CHECK (to_currency ~ '^[A-Z]{3}$'),
    rate          numeric(20,10) NOT NULL CHECK (rate > 0),
    declared_at   timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz,
    PRIMARY KEY (from_currency, to_currency),
    CHECK (from_currency <> to_currency)
);

-- The snapshot taken with the cost: `sale_currency` is the tenant's currency then (NULL: not
-- named), `cost_rate` what one unit of provider_cost was worth in it (1 when the provider
-- charges in the tenant's money; NULL when no declared rate converts it: reported unconverted).
-- Dealer data, like the cost.
ALTER TABLE orders
    ADD COLUMN sale_currency text,
    ADD COLUMN cost_rate numeric(20,10) CHECK (cost_rate > 0);

-- Costs recorded before tenants had a currency: a provider with no currency charged in the
-- tenant's money (rate 1); any other stays unconverted, as it was reported until now.
UPDATE orders SET cost_rate = 1 WHERE provider_cost IS NOT NULL AND provider_cost_currency IS NULL;

-- The rate that converts `provider`'s cost into `tenant`'s money now: 1 for the same money,
-- the live declared rate, or NULL. The one definition placements snapshot and reports use.
CREATE FUNCTION orderctl_cost_rate(provider bigint, tenant bigint) RETURNS numeric
    LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p.currency IS NULL OR p.currency = t.currency THEN 1::numeric
                ELSE (SELECT r.rate FROM exchange_rates r
                       WHERE r.from_currency = p.currency AND r.to_currency = t.currency AND r.retired_at IS NULL) END
      FROM providers p, tenants t
     WHERE p.id = provider AND t.id = tenant
$$;
