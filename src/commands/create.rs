//! `orderctl create`: charge the buyer and insert the order in one transaction; for auto
//! routing, dispatch right away.

use crate::cli::CreateArgs;
use crate::commands::{inspect, require_tenant};
use crate::db::{self, orders};
use crate::dispatch::{self, DispatchOptions};
use crate::error::{Error, Result};
use crate::provider::cache::ProviderCache;
use crate::settings::Settings;

/// Longest player id and extra text accepted; longer input is refused, never cut.
const MAX_PLAYER: usize = 200;
const MAX_EXTRA: usize = 2000;
const MAX_QUANTITY: i32 = 1000;

pub fn parse_quantity(s: &str) -> Result<i32> {
    let q: i64 = s.trim().parse().map_err(|_| {
        Error::invalid(format!("--quantity '{}' is not a whole number", orders::truncate(s, 40)))
            .with_hint(format!("give a number from 1 to {MAX_QUANTITY}"))
    })?;
    if !(1..=MAX_QUANTITY as i64).contains(&q) {
        return Err(Error::invalid(format!("--quantity {q} is out of range"))
            .with_hint(format!("give a number from 1 to {MAX_QUANTITY}")));
    }
    Ok(q as i32)
}

pub fn validate_text(what: &str, s: &str, max: usize, required: bool) -> Result<()> {
    if required && s.trim().is_empty() {
        let hint = if what.starts_with("player id") {
            "give the player id (the account the goods go to)".to_string()
        } else {
            format!("give a non-empty {what}")
        };
        return Err(Error::invalid(format!("{what} is empty")).with_hint(hint));
    }
    if s.chars().count() > max {
        return Err(Error::invalid(format!("{what} is {} characters long; at most {max} are accepted", s.chars().count())));
    }
    if s.contains('\0') {
        return Err(Error::invalid(format!("{what} contains a NUL byte, which cannot be stored")));
    }
    Ok(())
}

pub fn run(s: &Settings, a: &CreateArgs) -> Result<()> {
    let tenant = require_tenant(s, "create")?;
    let quantity = parse_quantity(&a.quantity)?;
    validate_text("player id (--player)", &a.player, MAX_PLAYER, true)?;
    validate_text("--extra", &a.extra, MAX_EXTRA, false)?;
    let policy = a.policy.policy()?;
    let mut client = db::connect(&s.database_url)?;
    let created = orders::create_order(
        &mut client,
        &orders::NewOrder { tenant, user: &a.user, package: &a.package, player: &a.player, extra: &a.extra, quantity },
    )?;
    log::info!("order {} created ({}), charged {}", created.number, created.id, created.price);
    let mut dispatch_result = None;
    if created.routing_mode == "auto" && !a.no_dispatch {
        let opts = DispatchOptions {
            provider_override: None,
            dry_run: false,
            policy,
            placement_lease: s.http.request_timeout * 3,
            operator: false,
        };
        let providers = ProviderCache::new(s.http);
        dispatch_result = Some(dispatch::dispatch(&mut client, &providers, created.id, &opts)?.result);
    }
    let order = orders::load_order(&mut client, created.id)?;
    inspect::print_order_brief(s, &mut client, &order, dispatch_result.as_ref())
}
