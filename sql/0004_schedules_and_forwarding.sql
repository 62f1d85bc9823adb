-- orderctl schema, version 4: per-provider check schedules, and forwarding orders to another
-- tenant (the "internal" provider type).

-- ---------------------------------------------------------------------------------------------
-- A provider's own check schedule. Each value set replaces the global one (flag, environment or
-- built-in default) for that provider's orders; NULL keeps the global one. Durations in
-- milliseconds, within the bounds `apply` holds (src/domain/backoff.rs, `bounds`).

ALTER TABLE providers
    ADD COLUMN schedule_first_check_ms bigint
        CONSTRAINT provider_schedule_first_check_bounds CHECK (schedule_first_check_ms BETWEEN 0 AND 2592000000),
    ADD COLUMN schedule_backoff_base_ms bigint
        CONSTRAINT provider_schedule_backoff_base_bounds CHECK (schedule_backoff_base_ms BETWEEN 100 AND 2592000000),
    ADD COLUMN schedule_backoff_max_ms bigint
        CONSTRAINT provider_schedule_backoff_max_bounds CHECK (schedule_backoff_max_ms BETWEEN 100 AND 2592000000),
    ADD COLUMN schedule_max_checks integer
        CONSTRAINT provider_schedule_max_checks_bounds CHECK (schedule_max_checks BETWEEN 1 AND 1000),
    ADD COLUMN schedule_give_up_after_ms bigint
        CONSTRAINT provider_schedule_give_up_after_bounds CHECK (schedule_give_up_after_ms BETWEEN 1000 AND 2592000000),
    ADD CONSTRAINT provider_schedule_backoff_max_not_below_base
        CHECK (schedule_backoff_max_ms >= schedule_backoff_base_ms),
    ADD CONSTRAINT provider_schedule_first_check_within_give_up
        CHECK (schedule_first_check_ms <= schedule_give_up_after_ms);

-- ---------------------------------------------------------------------------------------------
-- Forwarding: a package routed `internal` sends its orders to a package of another tenant (the
-- upstream), as an order of that tenant paid by one of its users (the account). The upstream
-- order is routed by the upstream tenant's own routing; when it finishes, the forwarded order
-- finishes in the same transaction.

ALTER TABLE packages DROP CONSTRAINT packages_provider_type_check;
ALTER TABLE packages ADD CONSTRAINT packages_provider_type_check
    CHECK (provider_type IN ('external', 'codes', 'manual', 'internal'));

ALTER TABLE packages
    ADD COLUMN upstream_tenant_id bigint REFERENCES tenants(id),
    ADD COLUMN upstream_package_id bigint,
    ADD COLUMN upstream_user_id bigint,
    -- The upstream package and the paying account belong to the upstream tenant.
    ADD CONSTRAINT packages_upstream_package_fkey
        FOREIGN KEY (upstream_tenant_id, upstream_package_id) REFERENCES packages (tenant_id, id),
    ADD CONSTRAINT packages_upstream_user_fkey
        FOREIGN KEY (upstream_tenant_id, upstream_user_id) REFERENCES users (tenant_id, id),
    -- Internal routing names all three; no other routing names any.
    ADD CONSTRAINT routing_internal_needs_upstream CHECK (
        (provider_type = 'internal') = (upstream_package_id IS NOT NULL)
        AND (upstream_package_id IS NULL) = (upstream_tenant_id IS NULL)
        AND (upstream_package_id IS NULL) = (upstream_user_id IS NULL)),
    ADD CONSTRAINT routing_internal_is_another_tenant CHECK (upstream_tenant_id <> tenant_id),
    ADD CONSTRAINT routing_internal_names_no_provider CHECK (
        provider_type <> 'internal'
        OR (primary_provider_id IS NULL AND fallback_provider_id IS NULL AND code_group_id IS NULL));
CREATE INDEX packages_upstream ON packages (upstream_package_id) WHERE upstream_package_id IS NOT NULL;

-- No forwarding cycle: following a package's forwarding, package after package, never comes back
-- to a tenant already passed (A → B → A, at any depth). Checked at commit for every package whose
-- forwarding changed, on the whole chain through it (what forwards into it, and where it
-- forwards), so a file that reroutes several packages is judged by where it ends, not by the
-- order of its statements. The advisory lock makes concurrent changes take turns, so two
-- transactions can never each add one half of a cycle unseen by the other.
CREATE FUNCTION packages_forwarding_acyclic() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chain text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM packages WHERE id = NEW.id AND provider_type = 'internal') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(8030350089318115172); -- "orderfwd"
    WITH RECURSIVE down(id, tenant_id, path, depth) AS (
        SELECT p.id, p.tenant_id, t.name || '/' || p.name, 0
          FROM packages p JOIN tenants t ON t.id = p.tenant_id
         WHERE p.id = NEW.id
        UNION ALL
        SELECT p.id, p.tenant_id, t.name || '/' || p.name || ' → ' || d.path, d.depth + 1
          FROM packages p JOIN tenants t ON t.id = p.tenant_id JOIN down d ON p.upstream_package_id = d.id
         WHERE d.depth < 64
    ), up(id, tenant_id, upstream, path, depth) AS (
        SELECT p.id, p.tenant_id, p.upstream_package_id, t.name || '/' || p.name, 1
          FROM packages p JOIN tenants t ON t.id = p.tenant_id
         WHERE p.id = (SELECT upstream_package_id FROM packages WHERE id = NEW.id)
        UNION ALL
        SELECT p.id, p.tenant_id, p.upstream_package_id, u.path || ' → ' || t.name || '/' || p.name, u.depth + 1
          FROM packages p JOIN tenants t ON t.id = p.tenant_id JOIN up u ON p.id = u.upstream
         WHERE u.depth < 64
    )
    SELECT d.path || ' → ' || u.path INTO chain
      FROM down d JOIN up u ON u.tenant_id = d.tenant_id
     ORDER BY d.depth + u.depth, d.depth
     LIMIT 1;
    IF chain IS NOT NULL THEN
        RAISE EXCEPTION 'forwarding cycle: % comes back to a tenant it already passed', chain
            USING ERRCODE = 'check_violation',
                  HINT = 'route one package of the chain to a provider, code stock or an operator instead';
    END IF;
    RETURN NULL;
END $$;
-- Only a package that forwards can close a cycle: other rows queue nothing (so an ordinary
-- transaction that updates packages can still ALTER the table afterwards).
CREATE CONSTRAINT TRIGGER packages_forwarding_acyclic
    AFTER INSERT OR UPDATE OF tenant_id, provider_type, upstream_tenant_id, upstream_package_id ON packages
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.provider_type = 'internal')
    EXECUTE FUNCTION packages_forwarding_acyclic();

-- The link between a forwarded order (downstream) and the order it became upstream, both ways.
-- Each order is forwarded at most once and is the upstream of at most one order.
ALTER TABLE orders
    ADD COLUMN forwarded_to uuid REFERENCES orders(id),
    ADD COLUMN forwarded_from uuid REFERENCES orders(id),
    ADD CONSTRAINT orders_not_forwarded_to_itself CHECK (forwarded_to <> id AND forwarded_from <> id);
CREATE UNIQUE INDEX orders_forwarded_to ON orders (forwarded_to) WHERE forwarded_to IS NOT NULL;
CREATE UNIQUE INDEX orders_forwarded_from ON orders (forwarded_from) WHERE forwarded_from IS NOT NULL;

-- A forwarded order is `sent` without a provider reference: the upstream order holds it.
ALTER TABLE orders DROP CONSTRAINT orders_check3;
ALTER TABLE orders ADD CONSTRAINT orders_held_has_reference CHECK (
    external_status NOT IN ('dispatching', 'sent', 'processing') OR provider_referans IS NOT NULL OR forwarded_to IS NOT NULL);

ALTER TABLE orders DROP CONSTRAINT orders_attention_check;
ALTER TABLE orders ADD CONSTRAINT orders_attention_check CHECK (attention IN (
    'routing', 'no_mapping', 'provider_disabled', 'code_stock_empty',
    'placement_rejected', 'placement_limit', 'given_up',
    'delivered_after_refund', 'delivered_after_manual_approval', 'write_refused',
    'forward_refused'));

-- A link, once made, never changes; and at commit, each side names the other.
CREATE FUNCTION orders_forward_link_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.forwarded_to IS NOT NULL AND NEW.forwarded_to IS DISTINCT FROM OLD.forwarded_to)
       OR (OLD.forwarded_from IS NOT NULL AND NEW.forwarded_from IS DISTINCT FROM OLD.forwarded_from) THEN
        RAISE EXCEPTION 'order % is linked to the order it was forwarded to or from; that link never changes', OLD.number
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_forward_link_fixed BEFORE UPDATE OF forwarded_to, forwarded_from ON orders
    FOR EACH ROW
    WHEN (OLD.forwarded_to IS DISTINCT FROM NEW.forwarded_to OR OLD.forwarded_from IS DISTINCT FROM NEW.forwarded_from)
    EXECUTE FUNCTION orders_forward_link_fixed();

CREATE FUNCTION orders_forward_link_both_ways() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
BEGIN
    SELECT * INTO o FROM orders WHERE id = NEW.id;
    IF o.forwarded_to IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM orders u WHERE u.id = o.forwarded_to AND u.forwarded_from = o.id) THEN
        RAISE EXCEPTION 'order % is forwarded to an order that does not name it as its origin', o.number
            USING ERRCODE = 'check_violation';
    END IF;
    IF o.forwarded_from IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM orders d WHERE d.id = o.forwarded_from AND d.forwarded_to = o.id) THEN
        RAISE EXCEPTION 'order % names an origin that was not forwarded to it', o.number
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
-- Only rows that carry a link are queued: ordinary inserts and updates cost nothing here.
CREATE CONSTRAINT TRIGGER orders_forward_link_both_ways_insert
    AFTER INSERT ON orders
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.forwarded_to IS NOT NULL OR NEW.forwarded_from IS NOT NULL)
    EXECUTE FUNCTION orders_forward_link_both_ways();
CREATE CONSTRAINT TRIGGER orders_forward_link_both_ways_update
    AFTER UPDATE OF forwarded_to, forwarded_from ON orders
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.forwarded_to IS DISTINCT FROM NEW.forwarded_to OR OLD.forwarded_from IS DISTINCT FROM NEW.forwarded_from)
    EXECUTE FUNCTION orders_forward_link_both_ways();
