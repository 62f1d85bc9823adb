//! `orderctl webhook list|retry|test`: the deliveries of the shops' webhooks, failed ones sent
//! again, and a signed `ping` to check an endpoint and its secret. No output ever shows a
//! webhook's secret.
//!
//! Exit codes: 0 when everything asked for was delivered (or listed); 8 (needs action) when an
//! endpoint did not take a request; 3 when the delivery, event or tenant does not exist (in
//! the `--tenant` scope); 5 when `retry` names a delivery that was already delivered.

use crate::cli::{WebhookListArgs, WebhookRetryArgs, WebhookTestArgs};
use crate::db::{self, webhooks::RetryTarget};
use crate::domain::webhook::PING;
use crate::error::{Error, Result};
use crate::lane::webhooks::{round, WebhookSettings};
use crate::output;
use crate::settings::Settings;
use crate::webhook::{Request, Sender};
use serde::Serialize;
use std::time::Duration;

pub fn list(s: &Settings, a: &WebhookListArgs) -> Result<()> {
    let mut client = db::connect(&s.database_url)?;
    if let Some(t) = &s.tenant {
        db::routing::tenant_id(&mut client, t)?;
    }
    let rows = db::webhooks::list(&mut client, s.tenant.as_deref(), a.failed, a.limit.clamp(1, 10_000))?;
    if s.json() {
        output::print_json(&rows);
        return Ok(());
    }
    let mut t = output::table(&["id", "event", "type", "order", "url", "state", "attempts", "next attempt", "last error"]);
    for r in &rows {
        t.add_row(vec![
            r.id.to_string(),
            r.event_id.to_string(),
            r.event_type.clone(),
            r.order_number.to_string(),
            r.url.clone(),
            r.state.clone(),
            r.attempts.to_string(),
            r.next_attempt_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_else(|| "-".into()),
            r.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// One attempt as `retry` and `test` report it.
#[derive(Debug, Serialize)]
struct AttemptReport {
    /// The delivery id (`retry`), none for a ping.
    id: Option<i64>,
    event_id: String,
    url: String,
    delivered: bool,
    /// `delivered`, `retry` (tried again later), `failed`, or for a ping `ok` / `error`.
    outcome: &'static str,
    status: Option<u16>,
    error: Option<String>,
    ms: u128,
}

pub fn retry(s: &Settings, a: &WebhookRetryArgs) -> Result<()> {
    let delivery = a.webhooks.settings(&s.http)?;
    let target = match (&a.id, a.failed) {
        (_, true) => RetryTarget::Failed,
        (Some(id), false) => parse_target(id)?,
        (None, false) => return Err(Error::usage("name a delivery id or an event id, or give --failed")),
    };
    let mut client = db::connect(&s.database_url)?;
    let tenant_id = match &s.tenant {
        Some(t) => Some(db::routing::tenant_id(&mut client, t)?),
        None => None,
    };
    let ids = db::webhooks::requeue(&mut client, s.tenant.as_deref(), target)?;
    let settings = WebhookSettings {
        database_url: s.database_url.clone(),
        send: delivery.send,
        retry: delivery.retry,
        concurrency: delivery.concurrency,
        tenant: tenant_id,
        idle_poll: Duration::from_millis(100),
        drain: None,
    };
    // Sent now, a round at a time; a delivery another process claimed first is its to send.
    let sender = Sender::new(settings.send);
    let mut reports = Vec::new();
    let mut left: Vec<i64> = ids.clone();
    while !left.is_empty() {
        let q = db::webhooks::DeliveryQuery { tenant: tenant_id, due_by: None, ids: Some(&left) };
        let done = round(&mut client, &sender, &settings, q)?;
        if done.is_empty() {
            break;
        }
        left.retain(|id| !done.iter().any(|d| d.delivery.id == *id));
        reports.extend(done.into_iter().map(|d| AttemptReport {
            id: Some(d.delivery.id),
            event_id: d.delivery.event_id.to_string(),
            url: d.delivery.url.clone(),
            delivered: d.attempt.answer.delivered(),
            outcome: d.outcome.word(),
            status: d.attempt.answer.status(),
            error: d.attempt.answer.error(),
            ms: d.attempt.took.as_millis(),
        }));
    }
    report(s, &reports, ids.len() - reports.len());
    finish(&reports, "retry")
}

/// A delivery id (a number) or an event id (a uuid).
fn parse_target(text: &str) -> Result<RetryTarget> {
    let t = text.trim();
    if let Ok(id) = t.parse::<i64>() {
        if id > 0 {
            return Ok(RetryTarget::Delivery(id));
        }
    }
    if let Ok(event) = uuid::Uuid::parse_str(t) {
        return Ok(RetryTarget::Event(event));
    }
    Err(Error::invalid(format!("'{}' is neither a delivery id nor an event id", db::orders::truncate(text, 80)))
        .with_hint("`orderctl webhook list` shows each delivery's id and its event id"))
}

pub fn test(s: &Settings, a: &WebhookTestArgs) -> Result<()> {
    let delivery = a.webhooks.settings(&s.http)?;
    if let Some(scope) = &s.tenant {
        if scope != &a.tenant {
            return Err(Error::not_found(format!("tenant {} does not exist in the --tenant {scope} scope", a.tenant))
                .with_hint(format!("run it without --tenant, or for tenant {scope}")));
        }
    }
    let mut client = db::connect(&s.database_url)?;
    let tenant_id = db::routing::tenant_id(&mut client, &a.tenant)?;
    let targets = db::webhooks::tenant_webhooks(&mut client, tenant_id)?;
    if targets.is_empty() {
        return Err(Error::not_found(format!("tenant {} has no enabled webhooks", a.tenant))
            .with_hint("declare them under the tenant's \"webhooks\" in the setup file and apply it"));
    }
    let sender = Sender::new(delivery.send);
    let reports: Vec<AttemptReport> = std::thread::scope(|scope| {
        let calls: Vec<_> = targets
            .iter()
            .map(|w| {
                let (sender, tenant) = (&sender, &a.tenant);
                scope.spawn(move || {
                    let id = uuid::Uuid::new_v4();
                    let body = serde_json::json!({
                        "id": id,
                        "type": PING,
                        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "tenant": tenant,
                    })
                    .to_string();
                    let event_id = id.to_string();
                    let attempt = sender.send(&Request { url: &w.url, secret: &w.secret, event_id: &event_id, body: &body });
                    AttemptReport {
                        id: None,
                        event_id,
                        url: w.url.clone(),
                        delivered: attempt.answer.delivered(),
                        outcome: if attempt.answer.delivered() { "ok" } else { "error" },
                        status: attempt.answer.status(),
                        error: attempt.answer.error(),
                        ms: attempt.took.as_millis(),
                    }
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("a webhook request thread panicked")).collect()
    });
    report(s, &reports, 0);
    finish(&reports, "test")
}

fn report(s: &Settings, reports: &[AttemptReport], claimed_elsewhere: usize) {
    if s.json() {
        output::print_json(&serde_json::json!({ "attempts": reports, "claimed_elsewhere": claimed_elsewhere }));
        return;
    }
    let mut t = output::table(&["id", "event", "url", "outcome", "status", "ms", "error"]);
    for r in reports {
        t.add_row(vec![
            r.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            r.event_id.clone(),
            r.url.clone(),
            r.outcome.to_string(),
            r.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            r.ms.to_string(),
            r.error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
    if claimed_elsewhere > 0 {
        println!("{claimed_elsewhere} delivery(ies) were being sent by another process (a daemon or sweep) and are left to it");
    }
    if reports.is_empty() {
        println!("nothing to send");
    }
}

fn finish(reports: &[AttemptReport], what: &str) -> Result<()> {
    let failed = reports.iter().filter(|r| !r.delivered).count();
    if failed == 0 {
        return Ok(());
    }
    let hint = if what == "test" {
        "check that the endpoint answers 2xx to a POST and checks the signature with the tenant's secret"
    } else {
        "`orderctl webhook list` shows each delivery's last error; failed ones are tried again by their schedule"
    };
    Err(Error::needs_action(format!("{failed} of {} webhook request(s) were not taken by their endpoint", reports.len()))
        .with_hint(hint))
}
