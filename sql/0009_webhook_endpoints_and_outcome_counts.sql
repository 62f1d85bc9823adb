-- orderctl schema, version 9: webhook endpoints delivered independently and in order, with a
-- retry horizon, pause, rotation and address rules each; and order outcomes counted in the
-- database so that every daemon's /metrics sees what any process (a CLI approve too) did.

-- An endpoint (a row of `webhooks`) and how its deliveries go.
ALTER TABLE webhooks
    -- SSRF: loopback, link-local, private and unspecified addresses are refused unless this is
    -- set (which also allows plain http there); checked at apply and again after DNS at send.
    ADD COLUMN allow_private_network boolean NOT NULL DEFAULT false,
    -- Plain http to a public host (https is required otherwise).
    ADD COLUMN allow_http boolean NOT NULL DEFAULT false,
    -- How long a delivery is retried before it is dead-lettered; NULL: the process's
    -- --webhook-retry-horizon (3 days by default).
    ADD COLUMN retry_horizon_ms bigint CHECK (retry_horizon_ms > 0),
    -- Rotation: the secret before the last change signs too (a second v1 signature) until then.
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_until timestamptz,
    -- `webhook pause`: nothing is sent until `webhook resume`; events still queue.
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    -- Set when the endpoint failed for its whole retry horizon; `webhook resume` clears it.
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_reason text,
    -- The first failed attempt since the last success (NULL while it answers).
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN last_success_at timestamptz,
    ADD CONSTRAINT webhooks_previous_secret_window CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL));

-- Deliveries: the order's event number (1, 2, ... per order, the same for every endpoint), and
-- while a request is in flight, until when its claim holds (each endpoint has a bound on these).
ALTER TABLE webhook_deliveries
    ADD COLUMN sequence integer NOT NULL DEFAULT 1 CHECK (sequence > 0),
    ADD COLUMN in_flight_until timestamptz;
-- Events written before this migration are numbered in the order they were written.
UPDATE webhook_deliveries d SET sequence = n.seq
  FROM (SELECT id, dense_rank() OVER (PARTITION BY order_id ORDER BY created_at, event_id) AS seq FROM webhook_deliveries) n
 WHERE d.id = n.id AND n.seq > 1;

-- A delivery waits for the earlier events of its order to the same endpoint.
CREATE INDEX webhook_deliveries_order_sequence ON webhook_deliveries (webhook_id, order_id, sequence) WHERE state = 'pending';
-- The claim's per-endpoint view of what is due and what is in flight.
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (webhook_id, next_attempt_at) WHERE state = 'pending';
-- `webhook replay --endpoint E --since T`.
CREATE INDEX webhook_deliveries_endpoint_created ON webhook_deliveries (webhook_id, created_at);

-- Finished orders by tenant and status, counted in the transaction of each transition that
-- finishes one, whoever writes it (a daemon, a sweep, an operator's command). Several rows per
-- (tenant, status), one picked at random per statement, so concurrent writers rarely wait on
-- one hot row; readers sum them.
CREATE TABLE order_outcome_counts (
    tenant_id bigint NOT NULL REFERENCES tenants(id),
    outcome   text NOT NULL CHECK (outcome IN ('approved', 'rejected', 'needs_action')),
    shard     smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    n         bigint NOT NULL DEFAULT 0 CHECK (n >= 0),
    PRIMARY KEY (tenant_id, outcome, shard)
);

-- Orders finished before this migration are counted once, so the totals start right.
INSERT INTO order_outcome_counts (tenant_id, outcome, shard, n)
SELECT tenant_id, status, 0, count(*) FROM orders WHERE status IN ('approved', 'rejected') GROUP BY 1, 2;
