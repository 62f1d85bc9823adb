-- orderctl schema, version 10: objects a setup file no longer names can be retired
-- (`orderctl apply --prune`), never deleted: orders, placements, the ledger and webhook
-- deliveries keep pointing at them, so history stays readable. Re-adding one to the file
-- revives it (retired_at back to NULL). Users are never retired (balances and ledger stay).

-- A retired object is disabled too, so every reader that already skips disabled ones (order
-- creation, placement, the outbox) skips retired ones without knowing the word.
ALTER TABLE providers ADD COLUMN retired_at timestamptz,
    ADD CONSTRAINT providers_retired_disabled CHECK (retired_at IS NULL OR NOT enabled);
ALTER TABLE packages ADD COLUMN retired_at timestamptz,
    ADD CONSTRAINT packages_retired_disabled CHECK (retired_at IS NULL OR NOT enabled);
ALTER TABLE webhooks ADD COLUMN retired_at timestamptz,
    ADD CONSTRAINT webhooks_retired_disabled CHECK (retired_at IS NULL OR NOT enabled);
-- A code group has no enabled flag: retired, no live package may draw from it.
ALTER TABLE code_groups ADD COLUMN retired_at timestamptz;

-- The pending deliveries of a retired webhook are cancelled: never sent, shown as such.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_state_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_state_check
    CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled'));

-- A live package never routes to a retired provider or code group, nor forwards to a retired
-- package, whoever writes the rows (apply checks first and says so in words; this is the line
-- other tools cannot cross).
CREATE FUNCTION orderctl_package_routes_live() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.retired_at IS NULL AND (
           EXISTS (SELECT 1 FROM providers p WHERE p.id IN (NEW.primary_provider_id, NEW.fallback_provider_id)
                                               AND p.retired_at IS NOT NULL)
        OR EXISTS (SELECT 1 FROM code_groups g WHERE g.id = NEW.code_group_id AND g.retired_at IS NOT NULL)
        OR EXISTS (SELECT 1 FROM packages u WHERE u.id = NEW.upstream_package_id AND u.retired_at IS NOT NULL)) THEN
        RAISE EXCEPTION 'package % routes to a retired provider, code group or package', NEW.name
            USING ERRCODE = 'check_violation', CONSTRAINT = 'packages_route_to_live_objects';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER packages_route_to_live_objects BEFORE INSERT OR UPDATE ON packages
    FOR EACH ROW EXECUTE FUNCTION orderctl_package_routes_live();

CREATE FUNCTION orderctl_retire_unrouted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.retired_at IS NOT NULL AND OLD.retired_at IS NULL AND EXISTS (
        SELECT 1 FROM packages k
         WHERE k.retired_at IS NULL
           AND CASE TG_TABLE_NAME
                 WHEN 'providers' THEN NEW.id IN (k.primary_provider_id, k.fallback_provider_id)
                 WHEN 'code_groups' THEN k.code_group_id = NEW.id
                 ELSE k.upstream_package_id = NEW.id END) THEN
        RAISE EXCEPTION '% % is still routed to by a live package', TG_TABLE_NAME, NEW.name
            USING ERRCODE = 'check_violation', CONSTRAINT = 'retired_objects_unrouted';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER providers_retire_unrouted BEFORE UPDATE OF retired_at ON providers
    FOR EACH ROW EXECUTE FUNCTION orderctl_retire_unrouted();
CREATE TRIGGER code_groups_retire_unrouted BEFORE UPDATE OF retired_at ON code_groups
    FOR EACH ROW EXECUTE FUNCTION orderctl_retire_unrouted();
CREATE TRIGGER packages_retire_unrouted BEFORE UPDATE OF retired_at ON packages
    FOR EACH ROW EXECUTE FUNCTION orderctl_retire_unrouted();
