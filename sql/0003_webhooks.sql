-- orderctl schema, version 3: signed completion webhooks.
--
-- A tenant declares webhooks in the setup file; every transition that a shop must hear about
-- (an order approved, rejected, or flagged for an operator) writes one delivery row per
-- matching webhook in the transition's own transaction (an outbox): no transition is committed
-- without its event and no event exists without its transition. Daemons and sweeps deliver
-- them, claimed like orders (SKIP LOCKED and a lease), retried with backoff, then failed.

CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id),
    url         text NOT NULL CHECK (url ~ '^https?://'),
    -- Secret: the HMAC key of the signature. Never selected by listing queries; only the
    -- sender reads it.
    secret      text NOT NULL CHECK (secret <> ''),
    -- The event types this webhook receives.
    events      text[] NOT NULL CHECK (cardinality(events) > 0
                    AND events <@ ARRAY['order.approved', 'order.rejected', 'order.needs_action']),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, url),
    UNIQUE (tenant_id, id)
);

CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    -- The event's id (Orderctl-Event-Id): one per notice, the same for every webhook that
    -- receives it. Receivers deduplicate by it (delivery is at least once).
    event_id        uuid NOT NULL,
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    webhook_id      bigint NOT NULL,
    event_type      text NOT NULL CHECK (event_type IN ('order.approved', 'order.rejected', 'order.needs_action')),
    order_id        uuid NOT NULL REFERENCES orders(id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The exact bytes that are signed and sent, rendered when the transition was written: the
    -- event describes the order as that transition left it, however often it is retried.
    body            text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Attempts since the retry series started (`retry_from`: the event's creation, or an
    -- operator's `webhook retry`).
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    retry_from      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz DEFAULT now(),
    -- Bumped by every claim; a result is written only under the lease it was claimed with.
    lease           bigint NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    UNIQUE (event_id, webhook_id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id),
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
);

-- The delivery lane's hot index: pending deliveries only.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- `webhook list --failed` and `doctor`.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (created_at) WHERE state = 'failed';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (order_id);
