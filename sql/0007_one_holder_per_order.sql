-- orderctl schema, version 7: an order is never held by two providers, never stalls the others,
-- never loses its goods, and never tells one tenant another's business.

-- Every placement attempt keeps its own recorded outcome. A re-placement (same provider, same
-- reference, after the provider was shown not to have it) is a new row with the next attempt
-- number; nothing overwrites the outcome an earlier attempt recorded, least of all an unknown
-- one. What a later status check found about an attempt whose outcome was unknown is kept
-- beside it (`reconciled`), not over it.
ALTER TABLE placements ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt > 0);
ALTER TABLE placements
    ADD COLUMN reconciled text CHECK (reconciled IN ('found', 'absent')),
    ADD COLUMN reconciled_at timestamptz,
    ADD CONSTRAINT placements_reconciled_has_time CHECK ((reconciled IS NULL) = (reconciled_at IS NULL));
ALTER TABLE placements DROP CONSTRAINT placements_provider_id_referans_key;
ALTER TABLE placements ADD CONSTRAINT placements_provider_referans_attempt UNIQUE (provider_id, referans, attempt);

-- How long after a placement whose outcome is unknown the provider may still record it: a
-- "not found" inside this window is no news, never proof of absence. A property of the
-- provider (a dealer site that hangs for minutes), the same for the daemon, `poll`, `dispatch`
-- and `sweep`. Runs from the latest placement of the reference.
ALTER TABLE providers ADD COLUMN reconcile_for_ms bigint NOT NULL DEFAULT 600000
    CONSTRAINT provider_reconcile_for_bounds CHECK (reconcile_for_ms BETWEEN 1000 AND 2592000000);

ALTER TABLE orders
    -- When the current claim was taken (a check or a placement in flight): the safety sweep
    -- leaves such an order alone until the claim's lease runs out. Cleared by every write-back.
    ADD COLUMN claimed_at timestamptz,
    -- An operator's decision, as given: repeating it is "already done", a different one is a
    -- conflict that says what stands.
    ADD COLUMN operator_reason text,
    ADD COLUMN settlement text CHECK (settlement IN ('recharge', 'write_off')),
    -- The product delivers PINs (the mapping of the provider it was placed with says so): an
    -- approval without one is flagged, never silently approved.
    ADD COLUMN expects_pin boolean NOT NULL DEFAULT false;

ALTER TABLE orders DROP CONSTRAINT orders_attention_check;
ALTER TABLE orders ADD CONSTRAINT orders_attention_check CHECK (attention IN (
    'routing', 'no_mapping', 'provider_disabled', 'code_stock_empty',
    'placement_rejected', 'placement_limit', 'given_up',
    'delivered_after_refund', 'delivered_after_manual_approval', 'write_refused',
    'forward_refused', 'may_be_held', 'pin_missing'));

-- An order of quantity N from code stock gets N codes (in one transaction). A code still goes
-- to one order only: `code_items (code_group_id, code)` is unique and a code's row names one order.
DROP INDEX code_items_one_per_order;
CREATE INDEX code_items_order ON code_items (order_id) WHERE order_id IS NOT NULL;
