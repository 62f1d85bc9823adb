-- Issue 23 (items 5-7): what an order cost at its provider, the provider's currency and request
-- rate limit, and provider kinds validated by orderctl's one list of kinds (`provider::kind`)
-- instead of a CHECK that a new kind would have to migrate.

-- A provider kind is whatever `provider::kind::KINDS` lists; a row with a kind orderctl does not
-- know is refused when read (no silent default). Only the word's shape is held here.
ALTER TABLE providers DROP CONSTRAINT providers_kind_check;
ALTER TABLE providers ADD CONSTRAINT providers_kind_word CHECK (kind ~ '^[a-z][a-z0-9_]*$');

-- The currency the provider charges in (ISO-4217-like code), NULL when the setup names none.
ALTER TABLE providers ADD COLUMN currency text CHECK (currency ~ '^[A-Z]{3}$');
-- Most HTTP calls per window to this provider from every orderctl process together; NULL: no limit.
ALTER TABLE providers
    ADD COLUMN rate_limit_calls integer CHECK (rate_limit_calls > 0),
    ADD COLUMN rate_limit_window_ms integer CHECK (rate_limit_window_ms > 0),
    ADD CONSTRAINT providers_rate_limit_whole CHECK ((rate_limit_calls IS NULL) = (rate_limit_window_ms IS NULL));

-- The provider's cost of the accepted placement, from its reply, in provider_cost_currency (the
-- provider's currency when it was accepted; NULL when the setup named none). Dealer data: never
-- in tenant views, webhook bodies or tenant-visible metrics.
ALTER TABLE orders
    ADD COLUMN provider_cost numeric(14,2) CHECK (provider_cost >= 0),
    ADD COLUMN provider_cost_currency text;

-- A provider's rate-limit budget, shared by every process (see src/db/pace.rs): the current
-- time slot (milliseconds since the epoch divided by the slot length), the calls granted in it,
-- and until when checks must leave the budget to placements that found it spent.
CREATE TABLE provider_call_pace (
    provider_id                 bigint PRIMARY KEY REFERENCES providers(id),
    slot                        bigint NOT NULL DEFAULT 0,
    calls                       integer NOT NULL DEFAULT 0,
    placements_waiting_until_ms bigint NOT NULL DEFAULT 0
);

-- The providers' catalogue prices as last read (`provider check`, `doctor --providers`), keyed
-- by the kind's catalogue key (`provider::kind::KindSpec::item_key`): what `routing check` and
-- `doctor` hold package prices against. Dealer data.
CREATE TABLE provider_catalogue_prices (
    provider_id bigint NOT NULL REFERENCES providers(id),
    item_key    text NOT NULL,
    price       numeric(14,2) NOT NULL CHECK (price >= 0),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, item_key)
);
