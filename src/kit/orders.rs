//! Orders written straight into the database, as a shop's web app writes them.

use crate::db::Client;
use crate::error::Result;
use uuid::Uuid;

/// Insert `n` orders for `user` of `tenant` into `package`, charged through the ledger, in one
/// statement (no `created` event: the web app writes none). Returns their ids.
pub fn insert_orders(c: &mut Client, tenant: &str, user: &str, package: &str, n: i64) -> Result<Vec<Uuid>> {
    let rows = c.query(
        "WITH buyer AS (
             SELECT u.id, u.tenant_id FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = $1 AND u.name = $2)
         , new AS (
             INSERT INTO orders (tenant_id, user_id, package_id, user_identifier, price)
             SELECT b.tenant_id, b.id, p.id, 'player-' || g, p.price
               FROM buyer b JOIN packages p ON p.tenant_id = b.tenant_id AND p.name = $3, generate_series(1, $4::bigint) g
             RETURNING id, tenant_id, user_id, price)
         , charge AS (INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount)
                      SELECT tenant_id, user_id, id, 'charge', -price FROM new RETURNING amount)
         , paid AS (UPDATE users SET balance = balance + (SELECT sum(amount) FROM charge) WHERE id = (SELECT id FROM buyer))
         SELECT id FROM new",
        &[&tenant, &user, &package, &n],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
