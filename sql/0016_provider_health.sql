-- orderctl schema, version 16: providers as machines an operator steers (issue 23, items 1-4).
-- One row of health per provider, shared by every daemon and command: the dealer balance last
-- seen, an operator's pause or drain, and the circuit breaker. Causes the provider gave itself
-- for refusing orders (no balance, maintenance, a product unavailable) are rows of their own.

-- An order whose provider cannot take it now and whose routing has no fallback waits here,
-- unsent, in its provider's lane; it is placed when the provider is available again.
ALTER TABLE orders DROP CONSTRAINT orders_external_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_external_status_check
    CHECK (external_status IN ('not_sent', 'dispatching', 'sent', 'processing', 'done', 'failed', 'waiting_for_provider'));
-- Lanes claim unsent work (new or waiting) through one partial index, everything else through the other.
DROP INDEX orders_due;
DROP INDEX orders_due_placements;
CREATE INDEX orders_due ON orders (lane, next_check_at)
    WHERE next_check_at IS NOT NULL AND external_status NOT IN ('not_sent', 'waiting_for_provider');
CREATE INDEX orders_due_placements ON orders (lane, next_check_at)
    WHERE next_check_at IS NOT NULL AND external_status IN ('not_sent', 'waiting_for_provider');

-- The setup file's health settings (low_balance, hold_for, breaker), as validated by apply.
ALTER TABLE providers ADD COLUMN health_settings jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE TABLE provider_health (
    provider_id     bigint PRIMARY KEY REFERENCES providers(id) ON DELETE CASCADE,
    -- Dealer data: never shown to a tenant or a shop.
    balance         numeric,
    balance_at      timestamptz,
    -- The low-balance log line is written once per dip below the threshold.
    low_balance_told boolean NOT NULL DEFAULT false,
    hold            text CHECK (hold IN ('paused', 'draining')),
    hold_reason     text,
    hold_at         timestamptz,
    breaker         text NOT NULL DEFAULT 'closed' CHECK (breaker IN ('closed', 'open', 'half_open')),
    -- Failed calls in a row (reset by any usable answer).
    failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    -- When the breaker left closed (a failed probe does not move it: `hold_for` runs from here).
    breaker_since   timestamptz,
    -- While open: when the cool-down ends and one probe may decide.
    probe_after     timestamptz,
    breaker_reason  text,
    -- While the breaker is not closed: the next call any daemon may make to this provider.
    next_call_at    timestamptz,
    -- The next periodic balance call (a refresh, or a probe of an unavailable provider).
    next_probe_at   timestamptz,
    CHECK ((hold IS NULL) = (hold_reason IS NULL))
);

CREATE TABLE provider_unavailable (
    provider_id bigint NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    -- 0: the whole provider; otherwise one package's product at that provider.
    package_id  bigint NOT NULL DEFAULT 0,
    cause       text NOT NULL CHECK (cause IN ('no_balance', 'maintenance', 'product_unavailable')),
    reason      text NOT NULL,
    -- no_balance: the dealer balance known when it ran out; only a higher one (above
    -- low_balance) makes the provider available again.
    balance_then numeric,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, package_id)
);

-- What happened to a provider: breaker opened/closed, paused, resumed, unavailable, available.
CREATE TABLE provider_events (
    id          bigserial PRIMARY KEY,
    provider_id bigint NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    message     text NOT NULL
);
CREATE INDEX provider_events_by_provider ON provider_events (provider_id, at);

-- Every provider has its health row from the start (writers only update it).
INSERT INTO provider_health (provider_id) SELECT id FROM providers;
CREATE FUNCTION orderctl_provider_health_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO provider_health (provider_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER providers_health_row AFTER INSERT ON providers
    FOR EACH ROW EXECUTE FUNCTION orderctl_provider_health_row();
