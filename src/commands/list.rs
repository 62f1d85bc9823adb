//! `orderctl list`: orders with filters, or only the ones that are not moving (`--stuck`),
//! each with its diagnosis.

use crate::cli::ListArgs;
use crate::db::summaries::order_summaries;
use crate::db::GenericClient;
use crate::db::{
    self,
    orders::{self, OrderFilter},
};
use crate::domain::diagnosis::StuckThresholds;
use crate::domain::status::{ExternalStatus, OrderStatus};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use chrono::Utc;
use comfy_table::Cell;
use serde_json::Value;

pub fn run(s: &Settings, a: &ListArgs) -> Result<()> {
    if let Some(st) = &a.status {
        st.parse::<OrderStatus>().map_err(|e| Error::invalid(format!("--status: {e}")))?;
    }
    if let Some(st) = &a.external_status {
        st.parse::<ExternalStatus>().map_err(|e| Error::invalid(format!("--external-status: {e}")))?;
    }
    if a.limit < 1 || a.limit > 100_000 {
        return Err(Error::invalid(format!("--limit {} is out of range (1 to 100000)", a.limit)));
    }
    let mut client = db::connect(&s.database_url)?;
    if let Some(t) = &s.tenant {
        db::routing::tenant_id(&mut client, t)?;
    }
    let now = Utc::now();
    let limits = StuckThresholds { overdue_after: a.stuck_after.into() };
    let rows: Vec<Value> = if a.stuck {
        stuck_orders(&mut client, s.tenant.as_deref(), limits, a.limit)?
    } else {
        let ago = |d: Option<humantime::Duration>| {
            d.map(|d| now - chrono::Duration::from_std(d.into()).unwrap_or(chrono::Duration::MAX))
        };
        let filter = OrderFilter {
            tenant: s.tenant.clone(),
            status: a.status.clone(),
            external_status: a.external_status.clone(),
            provider: a.provider.clone(),
            package: a.package.clone(),
            user: a.user.clone(),
            created_after: ago(a.since),
            created_before: ago(a.until),
            limit: a.limit,
        };
        let found = orders::list_orders(&mut client, &filter)?;
        order_summaries(&mut client, &found, limits)?
    };
    if s.json() {
        output::print_json(&rows);
        return Ok(());
    }
    let mut t = output::table(&["order", "tenant", "user", "package", "status", "external", "provider", "created", "diagnosis"]);
    for r in &rows {
        let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        t.add_row(vec![
            Cell::new(r["number"].to_string()),
            Cell::new(text("tenant")),
            Cell::new(text("user")),
            Cell::new(text("package")),
            output::status_cell(&text("status")),
            output::status_cell(&text("external_status")),
            Cell::new(text("provider")),
            Cell::new(text("created_at").get(..19).unwrap_or("").replace('T', " ")),
            Cell::new(r["diagnosis"]["sentence"].as_str().unwrap_or("")),
        ]);
    }
    println!("{t}");
    if a.stuck {
        eprintln!("{} stuck order(s)", rows.len());
    }
    Ok(())
}

/// The orders that are not moving, with their diagnosis, oldest first: the stuck predicate runs
/// in SQL before the limit, so no number of orders waiting for an operator by design hides them.
pub fn stuck_orders(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    limits: StuckThresholds,
    limit: i64,
) -> Result<Vec<Value>> {
    let found = orders::stuck_orders(client, tenant, limits.overdue_after, limit)?;
    order_summaries(client, &found, limits)
}
