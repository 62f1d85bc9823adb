//! Order outcomes counted in the database (`order_outcome_counts`), in the transaction of the
//! transition that causes them, whoever writes it: a daemon's lane, a sweep, an operator's
//! `approve` from the command line. Every daemon's metrics read the totals (`totals`), so a
//! count never depends on which process did the work. Rows are sharded (one of 16 picked at
//! random per statement) so concurrent writers rarely wait on one hot row.

use crate::db::transitions::Reached;
use crate::db::GenericClient;
use crate::domain::lifecycle::states::FinishedOutcome;
use crate::domain::lifecycle::{Notice, OrderStatus};
use crate::error::Result;

/// Shards per (tenant, outcome).
const SHARDS: i16 = 16;

/// Count what written transitions came to: orders finished (approved, rejected) and orders
/// flagged for an operator (needs_action).
pub(crate) fn count(tx: &mut impl GenericClient, done: &[Reached]) -> Result<()> {
    let mut tenants: Vec<i64> = Vec::new();
    let mut outcomes: Vec<&str> = Vec::new();
    for r in done {
        let t = &r.write.transition;
        let outcome = match (t.final_status(), t.notice) {
            (Some(OrderStatus::Approved), _) => FinishedOutcome::Approved,
            (Some(_), _) => FinishedOutcome::Rejected,
            (None, Some(Notice::NeedsAction)) => FinishedOutcome::NeedsAction,
            _ => continue,
        };
        tenants.push(r.tenant_id);
        outcomes.push(outcome.as_str());
    }
    if tenants.is_empty() {
        return Ok(());
    }
    let shard: i16 = rand::random_range(0..SHARDS);
    tx.execute(
        "INSERT INTO order_outcome_counts AS c (tenant_id, outcome, shard, n)
         SELECT u.tenant_id, u.outcome, $3, count(*)
           FROM unnest($1::bigint[], $2::text[]) AS u(tenant_id, outcome)
          GROUP BY 1, 2
          ORDER BY 1, 2
         ON CONFLICT (tenant_id, outcome, shard) DO UPDATE SET n = c.n + EXCLUDED.n",
        &[&tenants, &outcomes, &shard],
    )?;
    Ok(())
}

/// The totals: (tenant, outcome, orders), of one tenant or all.
pub fn totals(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<Vec<(String, String, i64)>> {
    Ok(client
        .query(
            "SELECT t.name, c.outcome, sum(c.n)::bigint FROM order_outcome_counts c JOIN tenants t ON t.id = c.tenant_id
              WHERE ($1::bigint IS NULL OR c.tenant_id = $1) GROUP BY 1, 2 ORDER BY 1, 2",
            &[&tenant],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
