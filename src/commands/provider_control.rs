//! `orderctl provider pause | resume | drain NAME`: an operator steers a provider for every
//! daemon and command at once. The hold is a row in Postgres (`provider_health`) that every
//! placement's claim reads, so it is honoured within one claim (well inside 2 s) everywhere.
//! Nothing is refunded or flagged because of a pause: its orders wait with the reason.

use crate::cli::{ProviderHoldArgs, ProviderNameArgs};
use crate::db::{self, provider_health};
use crate::domain::lifecycle::states::OperatorHold;
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use serde_json::json;

pub fn pause(s: &Settings, a: &ProviderHoldArgs) -> Result<()> {
    hold(s, &a.name, Some((OperatorHold::Paused, &a.reason)))
}

pub fn drain(s: &Settings, a: &ProviderHoldArgs) -> Result<()> {
    hold(s, &a.name, Some((OperatorHold::Draining, &a.reason)))
}

pub fn resume(s: &Settings, a: &ProviderNameArgs) -> Result<()> {
    hold(s, &a.name, None)
}

fn hold(s: &Settings, name: &str, hold: Option<(OperatorHold, &String)>) -> Result<()> {
    let reason = hold.map(|(_, r)| r.trim().to_string());
    if reason.as_deref() == Some("") {
        return Err(Error::usage("--reason is empty").with_hint("say why, in words the next operator understands"));
    }
    let mut client = db::connect(&s.database_url)?;
    let (id, tenant) = provider_id(&mut client, s.tenant.as_deref(), name)?;
    let what = match hold {
        Some((h, _)) => {
            let mut tx = client.transaction()?;
            let text = reason.clone().unwrap_or_default();
            if provider_health::set_hold(&mut tx, id, Some((h, &text)))? {
                let said = match h {
                    OperatorHold::Paused => format!("paused by an operator: {text}; no placements, orders wait"),
                    OperatorHold::Draining => format!("draining by an operator: {text}; no new placements, checks continue"),
                };
                provider_health::event(&mut tx, id, h.as_str(), &said)?;
            }
            tx.commit()?;
            h.as_str()
        }
        None => {
            provider_health::resume(&mut client, id)?;
            "resumed"
        }
    };
    if s.json() {
        output::print_json(&json!({"tenant": tenant, "provider": name, "state": what, "reason": reason}));
    } else {
        println!("provider {name} (tenant {tenant}): {what}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default());
    }
    Ok(())
}

/// The provider named `name` (in `tenant` when given): (id, tenant name).
fn provider_id(client: &mut impl db::GenericClient, tenant: Option<&str>, name: &str) -> Result<(i64, String)> {
    let rows = client.query(
        "SELECT p.id, t.name AS tenant FROM providers p JOIN tenants t ON t.id = p.tenant_id
          WHERE p.name = $1 AND ($2::text IS NULL OR t.name = $2) ORDER BY t.name",
        &[&name, &tenant],
    )?;
    match rows.as_slice() {
        [r] => Ok((r.get("id"), r.get("tenant"))),
        [] => Err(Error::not_found(format!(
            "no provider is named '{name}'{}",
            tenant.map(|t| format!(" in tenant {t}")).unwrap_or_default()
        ))
        .with_hint("list providers with `orderctl provider list`")),
        many => {
            let tenants: Vec<String> = many.iter().map(|r| r.get::<_, String>("tenant")).collect();
            Err(Error::usage(format!("provider '{name}' exists in several tenants ({}); say which one", tenants.join(", ")))
                .with_hint(format!("add --tenant {}", tenants[0])))
        }
    }
}
