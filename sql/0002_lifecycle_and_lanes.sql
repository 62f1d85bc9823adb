-- orderctl schema, version 2: one explicit order lifecycle, and provider lanes.
--
-- The lifecycle itself is Rust (src/domain/lifecycle); these columns are what it needs to be
-- total and bounded, and what lets each provider's work be claimed on its own.

-- Which lane does an order's next piece of work: a provider's id (placements and status checks
-- over HTTP), or 0, the routing lane (routing, code stock, manual routing: no HTTP). Set on
-- insert from the package's routing, and moved by transitions (a fallback, an operator's choice).
ALTER TABLE orders ADD COLUMN lane bigint NOT NULL DEFAULT 0;

-- Placements sent to the order's current provider. Bounded by the lifecycle (a few per provider
-- per order); an operator's dispatch and a move to another provider start it again.
ALTER TABLE orders ADD COLUMN placement_attempts integer NOT NULL DEFAULT 0 CHECK (placement_attempts >= 0);

-- When the current placement was claimed (its reference committed). `dispatched_at` is the
-- first dispatch and is never reset: the give-up deadline runs from it.
ALTER TABLE orders ADD COLUMN placed_at timestamptz;

-- An operator approved or rejected the order while its provider still held it (--force): the
-- order keeps being watched until the provider answers, and a late answer is recorded.
ALTER TABLE orders ADD COLUMN operator_forced boolean NOT NULL DEFAULT false;

-- The PIN a provider delivered after an operator had already decided the order.
ALTER TABLE orders ADD COLUMN late_pin text;

-- `create --request-id KEY`: a create repeated with the same key returns the same order and
-- charges nothing.
ALTER TABLE orders ADD COLUMN request_id text CHECK (request_id IS NULL OR request_id <> '');
CREATE UNIQUE INDEX orders_request_id ON orders (tenant_id, request_id) WHERE request_id IS NOT NULL;

ALTER TABLE orders DROP CONSTRAINT orders_attention_check;
ALTER TABLE orders ADD CONSTRAINT orders_attention_check CHECK (attention IN (
    'routing', 'no_mapping', 'provider_disabled', 'code_stock_empty',
    'placement_rejected', 'placement_limit', 'given_up',
    'delivered_after_refund', 'delivered_after_manual_approval', 'write_refused'));

-- A finished order is finished, except that an operator's forced decision keeps the provider's
-- side watched (and a late answer recorded).
ALTER TABLE orders DROP CONSTRAINT orders_check;
ALTER TABLE orders DROP CONSTRAINT orders_check1;
ALTER TABLE orders DROP CONSTRAINT orders_check2;
ALTER TABLE orders ADD CONSTRAINT orders_approved_is_done CHECK (status <> 'approved' OR external_status = 'done' OR operator_forced);
ALTER TABLE orders ADD CONSTRAINT orders_rejected_is_failed CHECK (status <> 'rejected' OR external_status = 'failed' OR operator_forced);
ALTER TABLE orders ADD CONSTRAINT orders_final_unscheduled CHECK (status = 'pending' OR next_check_at IS NULL OR operator_forced);

-- The hot indexes, by lane: each lane claims its own due work, placements and checks apart
-- (a lane with thousands of new orders due never walks past them to find a check, nor the
-- other way round).
DROP INDEX orders_due;
CREATE INDEX orders_due ON orders (lane, next_check_at) WHERE next_check_at IS NOT NULL AND external_status <> 'not_sent';
CREATE INDEX orders_due_placements ON orders (lane, next_check_at) WHERE next_check_at IS NOT NULL AND external_status = 'not_sent';
-- Orders that need an operator: `list --stuck`, `doctor` and `stats` find them before any LIMIT.
CREATE INDEX orders_attention ON orders (created_at) WHERE attention IS NOT NULL;

-- Placements: a placement that was claimed but never sent (its claim grew older than its lease
-- before the call could start), and one the provider said it had seen before.
ALTER TABLE placements DROP CONSTRAINT placements_outcome_check;
ALTER TABLE placements ADD CONSTRAINT placements_outcome_check CHECK (outcome IN (
    'in_flight', 'accepted', 'rejected', 'ambiguous', 'sent_before', 'absent', 'not_sent'));

-- Money: an operator settles a provider's delivery after a refund by charging the buyer again
-- (recharge) or by writing the cost off (a zero-amount row that records the decision). Each at
-- most once per order, like charges and refunds.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger DROP CONSTRAINT ledger_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN (
    'opening_balance', 'adjustment', 'charge', 'refund', 'recharge', 'write_off'));
ALTER TABLE ledger ADD CONSTRAINT ledger_order_kinds CHECK ((kind IN ('charge', 'refund', 'recharge', 'write_off')) = (order_id IS NOT NULL));
ALTER TABLE ledger ADD CONSTRAINT ledger_recharge_is_a_charge CHECK (kind <> 'recharge' OR amount <= 0);
ALTER TABLE ledger ADD CONSTRAINT ledger_write_off_moves_nothing CHECK (kind <> 'write_off' OR amount = 0);

-- One event can carry the steps of a whole dispatch (route, claim, place, record), so an order's
-- history costs a few rows, not one per step.
ALTER TABLE order_events ADD COLUMN steps jsonb;

-- References, committed before any call. Znet's are numbers: epoch milliseconds × 100000 + a
-- sequence, 18 digits, unique per provider (the unique index on (provider_id, provider_referans)
-- holds the line), and never repeated by a reinstalled database the way a bare sequence would be.
-- x-stor's are UUIDs: the order's own id the first time it goes to a provider (so provider
-- support can find it by our id), a fresh one for any later attempt there.
CREATE SEQUENCE placement_reference_seq;
CREATE FUNCTION orderctl_new_reference(style text, order_id uuid, provider_id bigint) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT CASE
        WHEN style = 'numeric' THEN ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000)
                                     + nextval('placement_reference_seq') % 100000)::text
        WHEN NOT EXISTS (SELECT 1 FROM placements p WHERE p.order_id = $2 AND p.provider_id = $3) THEN $2::text
        ELSE gen_random_uuid()::text
    END
$$;

-- New orders: routed at insert when their package's routing names a provider (the provider's
-- lane places them with no extra hop); everything else goes to the routing lane.
CREATE OR REPLACE FUNCTION orders_schedule_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND NEW.external_status = 'not_sent' AND NEW.next_check_at IS NULL
       AND NEW.attention IS NULL THEN
        NEW.next_check_at := now();
        IF NEW.lane = 0 THEN
            SELECT coalesce(p.primary_provider_id, 0) INTO NEW.lane
              FROM packages p
             WHERE p.id = NEW.package_id AND p.routing_mode = 'auto' AND p.provider_type = 'external';
            NEW.lane := coalesce(NEW.lane, 0);
            IF NEW.lane <> 0 THEN
                NEW.provider_id := NEW.lane;
            END IF;
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- Wake the lanes that got new work (a hint only: daemons also poll).
DROP TRIGGER orders_notify_new ON orders;
DROP FUNCTION orders_notify_new();
CREATE FUNCTION orders_notify_new() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lanes text;
BEGIN
    SELECT string_agg(DISTINCT lane::text, ',') INTO lanes FROM new_rows WHERE next_check_at IS NOT NULL;
    IF lanes IS NOT NULL THEN
        PERFORM pg_notify('orderctl_work', lanes);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER orders_notify_new AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_notify_new();

-- Existing open orders move into their lanes: everything with a provider is that provider's.
UPDATE orders SET lane = provider_id
 WHERE provider_id IS NOT NULL AND status = 'pending' AND external_status IN ('dispatching', 'sent', 'processing');
UPDATE orders SET placed_at = dispatched_at WHERE external_status = 'dispatching';
