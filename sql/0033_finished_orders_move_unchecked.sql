-- orderctl schema, version 33: an order that finishes moves to its month without three
-- foreign-key checks and without the new-order trigger (issue 24 item 4).
--
-- Since 0031 an order that finishes is moved by its write-back's UPDATE from `orders_live` to
-- its month of `orders_done`, and PostgreSQL does the move as a delete and an insert. The
-- insert fired the three foreign keys of `orders` (to its user, package and provider), each a
-- lookup that locks the referenced row FOR KEY SHARE, for a row whose references had not
-- changed. Measured with pg_stat_statements (track = all) in the benchmark's main variant,
-- 20,000 orders of one buyer: the checks against `users` alone took 187 us an order (the
-- shop's insert, its ledger row and the move: the buyer's row is locked by every charge, so
-- each check's lock made a new multixact), against `packages` and `providers` 13 and 17 us.
-- And the lock is a wait, not only a cost: a web app that holds its buyer's row FOR UPDATE
-- while it charges (Django's select_for_update) held up the daemon's write-back of every order
-- of that buyer until it committed.
--
-- So the three keys are now on `orders_live` alone: an order's user, package and provider are
-- checked when it is created and whenever they change while it has work (a placement claim
-- sets the provider), as before. A finished order cannot change them through orderctl, and
-- what the keys guarded for finished orders is kept by triggers that read instead of lock:
--
-- * `users`, `packages`, `providers`: deleting a row (or changing its key) that a finished
--   order still names is refused with SQLSTATE 23503 under the old key's name, as the foreign
--   key refused it (setup retires these rows; nothing of orderctl deletes them). The check
--   reads `orders_done` by the referencing column with no index, as the foreign key's own
--   check did.
-- * An order inserted already finished (an import, a restore of an archive) goes straight into
--   `orders_done`: the statement trigger that writes its keys checks its references.
-- * A hand edit of a finished order's user, package or provider is checked by a row trigger on
--   `orders_done`.
--
-- These checks take no row lock, so a delete of a user racing the very transaction that
-- finishes that user's first order could leave it dangling; the live partition's foreign key
-- still locks while the order has work, and deletes of these rows are an operator's hand repair.

ALTER TABLE orders DROP CONSTRAINT orders_tenant_id_package_id_fkey,
                   DROP CONSTRAINT orders_tenant_id_provider_id_fkey,
                   DROP CONSTRAINT orders_tenant_id_user_id_fkey;
ALTER TABLE orders_live
    ADD CONSTRAINT orders_tenant_id_package_id_fkey FOREIGN KEY (tenant_id, package_id) REFERENCES packages (tenant_id, id),
    ADD CONSTRAINT orders_tenant_id_provider_id_fkey FOREIGN KEY (tenant_id, provider_id) REFERENCES providers (tenant_id, id),
    ADD CONSTRAINT orders_tenant_id_user_id_fkey FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id);

-- Which of an order's references does not exist in its tenant: 'user_id', 'package_id',
-- 'provider_id', or NULL when all do.
CREATE FUNCTION orderctl_missing_reference(tenant bigint, user_id bigint, package_id bigint, provider_id bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = $1 AND u.id = $2) THEN 'user_id'
        WHEN NOT EXISTS (SELECT 1 FROM packages p WHERE p.tenant_id = $1 AND p.id = $3) THEN 'package_id'
        WHEN $4 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM providers p WHERE p.tenant_id = $1 AND p.id = $4) THEN 'provider_id'
    END
$$;

CREATE OR REPLACE FUNCTION orders_keep_keys() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan record;
BEGIN
    INSERT INTO order_keys SELECT id, number, tenant_id, request_id, created_at FROM new_rows;
    -- Orders inserted already finished (the partition key false: sql/0031) have no foreign
    -- keys in `orders_done`; a shop's new orders are all live and skip this at the filter.
    SELECT f.number, f.missing INTO orphan
      FROM (SELECT n.number, orderctl_missing_reference(n.tenant_id, n.user_id, n.package_id, n.provider_id) AS missing
              FROM new_rows n WHERE n.status <> 'pending' AND n.next_check_at IS NULL) f
     WHERE f.missing IS NOT NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'finished order % names a % that does not exist in its tenant', orphan.number, orphan.missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'orders_tenant_id_' || orphan.missing || '_fkey',
                  TABLE = 'orders';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION orders_done_references_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text := orderctl_missing_reference(NEW.tenant_id, NEW.user_id, NEW.package_id, NEW.provider_id);
BEGIN
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'finished order % would name a % that does not exist in its tenant', NEW.number, missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'orders_tenant_id_' || missing || '_fkey',
                  TABLE = 'orders';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_done_references_changed BEFORE UPDATE OF tenant_id, user_id, package_id, provider_id ON orders_done
    FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.user_id IS DISTINCT FROM NEW.user_id
                       OR OLD.package_id IS DISTINCT FROM NEW.package_id OR OLD.provider_id IS DISTINCT FROM NEW.provider_id)
    EXECUTE FUNCTION orders_done_references_changed();

-- A user, package or provider that finished orders still name stays (TG_ARGV[0]: the column
-- of `orders` that names it).
CREATE FUNCTION orders_done_keeps_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    named boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.tenant_id = OLD.tenant_id AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM orders_done o WHERE o.tenant_id = $1 AND o.%I = $2)', TG_ARGV[0])
       INTO named USING OLD.tenant_id, OLD.id;
    IF named THEN
        RAISE EXCEPTION '% % of tenant % is named by finished orders', TG_TABLE_NAME, OLD.id, OLD.tenant_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'orders_tenant_id_' || TG_ARGV[0] || '_fkey',
                  TABLE = 'orders',
                  HINT = 'retire it in the setup file instead, or archive the months of those orders first';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_done_keeps_users BEFORE DELETE OR UPDATE OF tenant_id, id ON users
    FOR EACH ROW EXECUTE FUNCTION orders_done_keeps_references('user_id');
CREATE TRIGGER orders_done_keeps_packages BEFORE DELETE OR UPDATE OF tenant_id, id ON packages
    FOR EACH ROW EXECUTE FUNCTION orders_done_keeps_references('package_id');
CREATE TRIGGER orders_done_keeps_providers BEFORE DELETE OR UPDATE OF tenant_id, id ON providers
    FOR EACH ROW EXECUTE FUNCTION orders_done_keeps_references('provider_id');

-- The move is an insert into the month's partition, so the BEFORE INSERT trigger that schedules
-- a new order ran for every finishing order too (a PL/pgSQL call that found nothing to do: 3.3 ms
-- for a write-back of 491 orders in auto_explain). Its condition is now the trigger's WHEN,
-- evaluated without calling the function; the function is unchanged.
DROP TRIGGER orders_schedule_new ON orders;
CREATE TRIGGER orders_schedule_new BEFORE INSERT ON orders FOR EACH ROW
    WHEN (NEW.status = 'pending' AND NEW.external_status = 'not_sent' AND NEW.next_check_at IS NULL AND NEW.attention IS NULL)
    EXECUTE FUNCTION orders_schedule_new();
