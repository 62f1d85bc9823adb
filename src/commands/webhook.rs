//! `orderctl webhook list|endpoints|retry|replay|pause|resume|rotate-secret|test`: the
//! deliveries of the shops' webhooks and their endpoints, failed ones sent again, an endpoint
//! paused, resumed or given a new secret, and a signed `ping` to check an endpoint and its
//! secret. No output ever shows a webhook's secret.
//!
//! Exit codes: 0 when everything asked for was delivered (or listed, or changed); 8 (needs
//! action) when an endpoint did not take a request; 3 when the delivery, event, endpoint or
//! tenant does not exist (in the `--tenant` scope); 4 for a bad id, time or secret; 5 when
//! `retry` names a delivery that was already delivered.

use crate::cli::{WebhookEndpointArgs, WebhookListArgs, WebhookReplayArgs, WebhookRetryArgs, WebhookRotateArgs, WebhookTestArgs};
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
    let mut t = output::table(&["id", "event", "type", "order", "seq", "url", "state", "attempts", "next attempt", "last error"]);
    for r in &rows {
        t.add_row(vec![
            r.id.to_string(),
            r.event_id.to_string(),
            r.event_type.clone(),
            r.order_number.to_string(),
            r.sequence.to_string(),
            r.url.clone(),
            r.state.to_string(),
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
    let target = match (&a.id, a.failed) {
        (_, true) => RetryTarget::Failed,
        (Some(id), false) => parse_target(id)?,
        (None, false) => return Err(Error::usage("name a delivery id or an event id, or give --failed")),
    };
    requeue_and_send(s, &a.webhooks, target, false, "retry")
}

/// `webhook replay ID` (sent again whatever its state) or `--endpoint E --since T` (that
/// endpoint's dead-lettered deliveries of events since then).
pub fn replay(s: &Settings, a: &WebhookReplayArgs) -> Result<()> {
    let target = match (&a.id, &a.endpoint, &a.since) {
        (Some(id), None, _) => parse_target(id)?,
        (None, Some(endpoint), Some(since)) => {
            let since = parse_since(since)?;
            let mut client = db::connect(&s.database_url)?;
            let (id, _) = db::webhooks::find_endpoint(&mut client, s.tenant.as_deref(), endpoint)?;
            RetryTarget::EndpointSince(id, since)
        }
        _ => return Err(Error::usage("name a delivery or event id, or give --endpoint and --since")),
    };
    requeue_and_send(s, &a.webhooks, target, true, "replay")
}

/// Make the named deliveries due now, then send them in the foreground, a round at a time; a
/// delivery another process claimed first is its to send.
fn requeue_and_send(s: &Settings, args: &crate::cli::WebhookArgs, target: RetryTarget, again: bool, what: &str) -> Result<()> {
    let delivery = args.settings(&s.http)?;
    let mut client = db::connect(&s.database_url)?;
    let tenant_id = match &s.tenant {
        Some(t) => Some(db::routing::tenant_id(&mut client, t)?),
        None => None,
    };
    let ids = db::webhooks::requeue(&mut client, s.tenant.as_deref(), target, again)?;
    let settings = WebhookSettings {
        database_url: s.database_url.clone(),
        send: delivery.send,
        retry: delivery.retry,
        concurrency: delivery.concurrency,
        tenant: tenant_id,
        idle_poll: Duration::from_millis(100),
        drain: None,
    };
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
    finish(&reports, what)
}

/// `--since`: an RFC 3339 time, or a duration ago.
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    let t = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    match humantime::parse_duration(t).ok().and_then(|d| chrono::Duration::from_std(d).ok()) {
        Some(ago) => Ok(chrono::Utc::now() - ago),
        None => {
            Err(Error::invalid(format!("--since '{}' is neither an RFC 3339 time nor a duration", db::orders::truncate(t, 80)))
                .with_hint("e.g. --since 2026-12-05T10:00:00Z or --since 6h"))
        }
    }
}

pub fn endpoints(s: &Settings) -> Result<()> {
    let mut client = db::connect(&s.database_url)?;
    if let Some(t) = &s.tenant {
        db::routing::tenant_id(&mut client, t)?;
    }
    let rows = db::webhooks::endpoints(&mut client, s.tenant.as_deref())?;
    if s.json() {
        output::print_json(&rows);
        return Ok(());
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_else(|| "-".into())
    };
    let mut t = output::table(&[
        "id",
        "tenant",
        "url",
        "state",
        "pending",
        "failed",
        "failing since",
        "last success",
        "old secret until",
        "secret",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.id.to_string(),
            r.tenant.clone(),
            r.url.clone(),
            r.state.clone(),
            r.pending.to_string(),
            r.failed.to_string(),
            time(r.failing_since),
            time(r.last_success_at),
            time(r.previous_secret_until),
            r.secret.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `webhook pause` (`paused`) or `resume`.
pub fn pause(s: &Settings, a: &WebhookEndpointArgs, paused: bool) -> Result<()> {
    let mut client = db::connect(&s.database_url)?;
    let (id, url) = db::webhooks::find_endpoint(&mut client, s.tenant.as_deref(), &a.endpoint)?;
    let changed = db::webhooks::set_paused(&mut client, id, paused)?;
    let state = if paused { "paused" } else { "active" };
    if s.json() {
        output::print_json(&serde_json::json!({"id": id, "url": url, "state": state, "changed": changed}));
    } else {
        println!("webhook endpoint {id} ({url}) is {state}{}", if changed { "" } else { " (it already was)" });
    }
    Ok(())
}

/// The new secret: a reference to an environment variable or a file (stored as the reference,
/// resolved here first so a typo is caught now), made here and written to a file (stored as the
/// value, or as a reference to that file), or one line from standard input. Never printed.
pub fn rotate_secret(s: &Settings, a: &WebhookRotateArgs) -> Result<()> {
    let secret = new_secret(a)?;
    let mut client = db::connect(&s.database_url)?;
    let (id, url) = db::webhooks::find_endpoint(&mut client, s.tenant.as_deref(), &a.endpoint)?;
    let until = db::webhooks::rotate_secret(&mut client, id, &secret, a.overlap.into())?;
    let until_text = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stored = match crate::secret::reference(&secret) {
        Some(r) => format!("a reference to {r}"),
        None => "a plain value".to_string(),
    };
    if s.json() {
        output::print_json(&serde_json::json!({
            "id": id, "url": url, "previous_secret_until": until_text,
            "stored_as": if secret.is_string() { "value" } else { "reference" },
        }));
    } else {
        println!("webhook endpoint {id} ({url}) has a new secret ({stored}); the previous one signs too until {until_text}");
    }
    eprintln!("note: put the new secret in the setup file too, or the next `apply` puts the file's secret back");
    Ok(())
}

fn new_secret(a: &WebhookRotateArgs) -> Result<serde_json::Value> {
    let reference = match (&a.secret_env, &a.secret_file, &a.generate_to) {
        (Some(var), _, _) => Some(serde_json::json!({"env": var})),
        (None, Some(path), _) => Some(serde_json::json!({"file": path})),
        (None, None, Some(path)) => {
            write_private(path, &crate::domain::signature::new_secret())?;
            let value = std::fs::read_to_string(path)
                .map_err(|e| Error::internal(format!("cannot read {} back: {e}", path.display())))?;
            return Ok(match a.as_reference {
                true => serde_json::json!({"file": path.display().to_string()}),
                false => serde_json::Value::String(value.trim().to_string()),
            });
        }
        (None, None, None) => None,
    };
    if let Some(r) = reference {
        // Resolved now, so a typo is found here rather than by the first delivery.
        crate::secret::resolve_value(&r).map_err(|why| {
            Error::invalid(format!("the new secret does not resolve on this host: {why}"))
                .with_hint("set the variable or create the file, then run this again")
        })?;
        return Ok(r);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::invalid(format!("cannot read the new secret from standard input: {e}")))?;
    match line.trim() {
        "" => Err(Error::invalid("no new secret on standard input").with_hint(
            "pipe it in (e.g. from a secrets file), or give --generate-to FILE, --secret-env VAR or --secret-file PATH",
        )),
        secret => Ok(serde_json::Value::String(secret.to_string())),
    }
}

fn write_private(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        Error::invalid(format!("cannot create {}: {e}", path.display())).with_hint("name a file that does not exist yet")
    })?;
    writeln!(f, "{secret}").map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
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
                    let attempt = match &w.secrets {
                        Ok(secrets) => {
                            sender.send(&Request { url: &w.url, secrets, access: w.access, event_id: &event_id, body: &body })
                        }
                        Err(why) => crate::webhook::Attempt::unsigned(why),
                    };
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
        "`orderctl webhook list` shows each delivery's last error; pending ones are tried again by their schedule, dead-lettered ones by `orderctl webhook replay`"
    };
    Err(Error::needs_action(format!("{failed} of {} webhook request(s) were not taken by their endpoint", reports.len()))
        .with_hint(hint))
}
