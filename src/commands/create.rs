//! `orderctl create`: charge the buyer and insert the order in one transaction; for auto
//! routing, dispatch right away.

use crate::cli::CreateArgs;
use crate::commands::{inspect, require_tenant};
use crate::db::{self, orders};
use crate::dispatch::{run_one, OneMode, OneOptions, Providers, Timing};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use serde_json::json;

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
    if let Some(k) = &a.request_id {
        validate_text("--request-id", k, 200, true)?;
    }
    let policy = a.policy.policy()?;
    let mut client = db::connect(&s.database_url)?;
    let new = orders::NewOrder {
        tenant,
        user: &a.user,
        package: &a.package,
        player: &a.player,
        extra: &a.extra,
        quantity,
        request_id: a.request_id.as_deref(),
    };
    // Everything before this line changes nothing; from here on the buyer is charged, and the
    // command always reports the order (exit 0), whatever happens to the dispatch.
    let created = orders::create_order(&mut client, &new)?;
    if created.existed {
        log::warn!(
            "request id '{}' names order {} created before: it is returned as it is now, nothing was charged again",
            a.request_id.as_deref().unwrap_or(""),
            created.number
        );
    } else {
        log::info!("order {} created ({}), charged {}", created.number, created.id, created.price);
    }
    let note = if created.routing_mode == "auto" && !a.no_dispatch && !created.existed {
        let providers = Providers::new(s.http, policy);
        let opts = OneOptions { mode: OneMode::Create, timing: Timing::one_order(&s.http) };
        match run_one(&mut client, &providers, created.id, &opts) {
            Ok(report) => serde_json::to_value(&report).unwrap_or_default(),
            Err(e) => {
                log::warn!(
                    "order {} is created and charged, but its immediate dispatch failed: {}; the daemon or `orderctl sweep` \
                     dispatches it (or `orderctl dispatch {}`)",
                    created.number,
                    e.message,
                    created.number
                );
                json!({"deferred": true, "message": format!("dispatch failed: {}; left to the daemon or `orderctl sweep`", e.message)})
            }
        }
    } else {
        json!({"deferred": true, "existed": created.existed})
    };
    report(s, &created, note)
}

/// Print the created order. When the database is gone by now, what is known of it still goes
/// out: the order exists and is charged, and a script must never create it again.
fn report(s: &Settings, created: &orders::CreatedOrder, note: serde_json::Value) -> Result<()> {
    let brief = db::connect(&s.database_url).and_then(|mut c| {
        let order = orders::load_order(&mut c, created.id)?;
        inspect::print_order_brief(s, &mut c, &order, Some(note.clone()))
    });
    if let Err(e) = brief {
        log::warn!("order {} is created and charged, but it cannot be shown now: {}", created.number, e.message);
        let v = json!({
            "id": created.id, "number": created.number, "price": created.price.to_string(), "status": crate::domain::status::OrderStatus::Pending,
            "final": false, "dispatch": note, "note": "created and charged; the database could not be read back just now",
        });
        if s.json() {
            output::print_json(&v);
        } else {
            println!(
                "order {} ({}) created and charged {}; `orderctl inspect {}` shows it",
                created.number, created.id, created.price, created.number
            );
        }
    }
    Ok(())
}
