-- orderctl schema, version 1.
--
-- Plain SQL, applied once by `orderctl migrate` inside a transaction. It needs no superuser:
-- everything here can be created by an ordinary owner of the database.
--
-- Conventions: money is numeric(14,2) (never float); times are timestamptz; names are unique
-- within a tenant; every money movement is a ledger row whose unique key makes it happen once.

CREATE TABLE tenants (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id               bigserial PRIMARY KEY,
    tenant_id        bigint NOT NULL REFERENCES tenants(id),
    name             text NOT NULL CHECK (name <> ''),
    email            text NOT NULL DEFAULT '',
    balance          numeric(14,2) NOT NULL DEFAULT 0,
    overdraft_limit  numeric(14,2) NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    -- The balance the setup file declared last time it was applied. `apply` posts the
    -- difference between a newly declared balance and this one to the ledger, so re-applying
    -- the same file never resets a balance that orders have since spent.
    declared_balance numeric(14,2) NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id),
    -- Spending is checked against balance + overdraft when charging; the database holds the line too.
    CHECK (balance >= -overdraft_limit)
);

CREATE TABLE providers (
    id           bigserial PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES tenants(id),
    name         text NOT NULL CHECK (name <> ''),
    kind         text NOT NULL CHECK (kind IN ('znet', 'xstor')),
    base_url     text NOT NULL,
    -- Secret. Never selected by listing queries; only the adapter reads it.
    credentials  jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled      boolean NOT NULL DEFAULT true,
    -- Calls in flight allowed against this provider across every orderctl process.
    max_in_flight integer NOT NULL DEFAULT 16 CHECK (max_in_flight > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE code_groups (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id),
    name        text NOT NULL CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE products (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id),
    name        text NOT NULL CHECK (name <> ''),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE packages (
    id                   bigserial PRIMARY KEY,
    tenant_id            bigint NOT NULL REFERENCES tenants(id),
    product_id           bigint NOT NULL,
    name                 text NOT NULL CHECK (name <> ''),
    price                numeric(14,2) NOT NULL CHECK (price >= 0),
    enabled              boolean NOT NULL DEFAULT true,
    -- Routing: how an order for this package reaches its goods.
    routing_mode         text NOT NULL DEFAULT 'manual' CHECK (routing_mode IN ('auto', 'manual')),
    provider_type        text NOT NULL DEFAULT 'manual' CHECK (provider_type IN ('external', 'codes', 'manual')),
    primary_provider_id  bigint,
    fallback_provider_id bigint,
    code_group_id        bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id),
    -- Routing can only point at things of the same tenant.
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
    FOREIGN KEY (tenant_id, primary_provider_id) REFERENCES providers (tenant_id, id),
    FOREIGN KEY (tenant_id, fallback_provider_id) REFERENCES providers (tenant_id, id),
    FOREIGN KEY (tenant_id, code_group_id) REFERENCES code_groups (tenant_id, id),
    -- The incident in domain.md: auto routing that has nowhere to send an order.
    CONSTRAINT routing_auto_external_needs_primary
        CHECK (NOT (routing_mode = 'auto' AND provider_type = 'external' AND primary_provider_id IS NULL)),
    CONSTRAINT routing_codes_needs_code_group
        CHECK (provider_type <> 'codes' OR code_group_id IS NOT NULL),
    CONSTRAINT routing_auto_cannot_be_manual
        CHECK (NOT (routing_mode = 'auto' AND provider_type = 'manual')),
    CONSTRAINT routing_fallback_differs_from_primary
        CHECK (fallback_provider_id IS NULL OR fallback_provider_id IS DISTINCT FROM primary_provider_id)
);

-- What a provider calls our package. znet needs {"oyun", "kupur"}; x-stor {"product_id", "player_param"}.
CREATE TABLE package_mappings (
    package_id   bigint NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    provider_id  bigint NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    params       jsonb NOT NULL,
    PRIMARY KEY (package_id, provider_id)
);

-- Our own stock of PINs: available -> reserved -> used.
CREATE TABLE code_items (
    id             bigserial PRIMARY KEY,
    code_group_id  bigint NOT NULL REFERENCES code_groups(id),
    code           text NOT NULL,
    state          text NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'reserved', 'used')),
    order_id       uuid,
    used_at        timestamptz,
    UNIQUE (code_group_id, code),
    CHECK ((state = 'available') = (order_id IS NULL))
);
-- One order never holds two codes, and a code never goes to two orders.
CREATE UNIQUE INDEX code_items_one_per_order ON code_items (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX code_items_available ON code_items (code_group_id, id) WHERE state = 'available';

CREATE SEQUENCE order_number_seq START 1000;

CREATE TABLE orders (
    id                  uuid PRIMARY KEY,
    -- Short human number, what an operator types and reads over the phone.
    number              bigint NOT NULL UNIQUE DEFAULT nextval('order_number_seq'),
    tenant_id           bigint NOT NULL REFERENCES tenants(id),
    user_id             bigint NOT NULL REFERENCES users(id),
    package_id          bigint NOT NULL REFERENCES packages(id),
    quantity            integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    user_identifier     text NOT NULL,
    extra_field         text NOT NULL DEFAULT '',
    price               numeric(14,2) NOT NULL CHECK (price >= 0),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'rejected')),
    external_status     text NOT NULL DEFAULT 'not_sent'
                        CHECK (external_status IN ('not_sent', 'dispatching', 'sent', 'processing', 'done', 'failed')),
    provider_id         bigint REFERENCES providers(id),
    external_order_id   text,
    provider_referans   text,
    pin_code            text,
    last_message        text,
    -- A placement whose outcome is unknown (timeout, 5xx, garbage). A status check with the
    -- same reference decides whether it exists; it is never placed blindly again.
    awaiting_reconciliation boolean NOT NULL DEFAULT false,
    -- Why the order needs an operator (NULL: it does not). Set when dispatch stopped on a
    -- configuration problem, a placement was rejected with no fallback left, or the order was
    -- given up after the time limit. `inspect` turns it into a sentence.
    attention           text CHECK (attention IN ('routing', 'no_mapping', 'provider_disabled',
                            'code_stock_empty', 'placement_rejected', 'given_up')),
    checks              integer NOT NULL DEFAULT 0,
    no_news             integer NOT NULL DEFAULT 0,
    -- The work queue: an order is due when next_check_at <= now(). NULL means nothing is
    -- scheduled (finished, or waiting for an operator). A claim pushes it forward by a lease.
    next_check_at       timestamptz,
    -- Bumped by every claim and every state change; write-backs carry the value they claimed
    -- with and are dropped when it moved on.
    lease               bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    dispatched_at       timestamptz,
    sent_at             timestamptz,
    last_sync_at        timestamptz,
    completed_at        timestamptz,
    duration_ms         bigint,
    FOREIGN KEY (tenant_id, provider_id) REFERENCES providers (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, package_id) REFERENCES packages (tenant_id, id),
    -- Finished orders are finished: approved means done, rejected means failed.
    CHECK (status <> 'approved' OR external_status = 'done'),
    CHECK (status <> 'rejected' OR external_status = 'failed'),
    CHECK (status = 'pending' OR next_check_at IS NULL),
    CHECK (external_status NOT IN ('dispatching', 'sent', 'processing') OR provider_referans IS NOT NULL)
);

-- The hot index: only orders with work scheduled are in it, so millions of finished orders
-- never slow down the claim.
CREATE INDEX orders_due ON orders (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX orders_open_sent ON orders (sent_at) WHERE status = 'pending' AND external_status IN ('sent', 'processing');
CREATE INDEX orders_tenant_created ON orders (tenant_id, created_at DESC);
CREATE INDEX orders_not_sent ON orders (created_at) WHERE external_status = 'not_sent' AND status = 'pending';
CREATE UNIQUE INDEX orders_provider_referans ON orders (provider_id, provider_referans) WHERE provider_referans IS NOT NULL;

-- Every placement attempt, one row per (order, provider reference). The reference is written
-- and committed here before the HTTP call; its unique key is what makes a placement at most once.
CREATE TABLE placements (
    id           bigserial PRIMARY KEY,
    order_id     uuid NOT NULL REFERENCES orders(id),
    provider_id  bigint NOT NULL REFERENCES providers(id),
    referans     text NOT NULL,
    outcome      text NOT NULL DEFAULT 'in_flight'
                 CHECK (outcome IN ('in_flight', 'accepted', 'rejected', 'ambiguous', 'absent')),
    message      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    UNIQUE (provider_id, referans)
);
CREATE INDEX placements_order ON placements (order_id, id);

-- Money movements. (order_id, kind) is unique for order charges and refunds, so each happens
-- exactly once whatever retries or crashes; user balances change only together with a row here.
CREATE TABLE ledger (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id),
    user_id     bigint NOT NULL REFERENCES users(id),
    order_id    uuid REFERENCES orders(id),
    kind        text NOT NULL CHECK (kind IN ('opening_balance', 'adjustment', 'charge', 'refund')),
    amount      numeric(14,2) NOT NULL,
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('charge', 'refund')) = (order_id IS NOT NULL)),
    CHECK (kind <> 'charge' OR amount <= 0),
    CHECK (kind <> 'refund' OR amount >= 0)
);
CREATE UNIQUE INDEX ledger_once_per_order ON ledger (order_id, kind) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_one_opening_balance ON ledger (user_id) WHERE kind = 'opening_balance';
CREATE INDEX ledger_user ON ledger (user_id, created_at);

-- The history an operator reads: every step and every change of an order.
CREATE TABLE order_events (
    id          bigserial PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders(id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL,
    status      text,
    external_status text,
    message     text NOT NULL DEFAULT ''
);
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE INDEX order_events_kind_at ON order_events (at, kind);

-- Periodic runs deduplicated in the database: only the process that inserts (job, slot) runs it.
CREATE TABLE periodic_runs (
    job         text NOT NULL,
    slot        timestamptz NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    runner      text NOT NULL DEFAULT '',
    summary     jsonb,
    PRIMARY KEY (job, slot)
);

-- Calls in flight per provider across all orderctl processes. A row is a permit; it carries an
-- expiry so a crashed holder's permit lapses by itself.
CREATE TABLE provider_permits (
    provider_id bigint NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    slot        integer NOT NULL,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (provider_id, slot)
);

-- Rows written by other software (the shop's web app inserting orders) are scheduled for
-- dispatch at once, and waiting daemons are woken. The notification is only a hint: daemons
-- also poll, so a connection pooler that drops LISTEN costs latency, never an order.
CREATE FUNCTION orders_schedule_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND NEW.external_status = 'not_sent' AND NEW.next_check_at IS NULL
       AND NEW.attention IS NULL THEN
        NEW.next_check_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_schedule_new BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_schedule_new();

CREATE FUNCTION orders_notify_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orderctl_work', '');
    RETURN NULL;
END $$;
CREATE TRIGGER orders_notify_new AFTER INSERT ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION orders_notify_new();
