//! Webhook deliveries: claiming the due ones (like orders: `SKIP LOCKED` and a lease, so any
//! number of daemons and sweeps share them and a crashed one's come due again), writing each
//! attempt's result under its lease, listing them, and requeueing failed ones. Events are
//! written by `outbox`, in the transitions' transactions.
//!
//! A webhook's secret is selected only where a request is signed (`claim_due`,
//! `tenant_webhooks`), never by a listing.

use crate::domain::webhook::Secret;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use crate::db::GenericClient;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// A claimed delivery with everything its request needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    /// The lease it was claimed with; its result is written only under it.
    pub lease: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub url: String,
    pub secret: Secret,
    pub body: String,
    /// Attempts of its retry series before this one.
    pub attempts: u32,
    /// Since its retry series started, on the database's clock, at the claim.
    pub series_age: Duration,
}

/// Which deliveries a claim may take.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryQuery<'a> {
    pub tenant: Option<i64>,
    /// A drain (`sweep`): only what was due by this moment.
    pub due_by: Option<DateTime<Utc>>,
    /// Only these deliveries (`webhook retry`).
    pub ids: Option<&'a [i64]>,
}

/// Claim up to `limit` due deliveries of enabled webhooks: their next attempt moves a lease
/// ahead and their lease token is bumped, in one statement (its own transaction).
pub fn claim_due(client: &mut impl GenericClient, q: DeliveryQuery, limit: i64, lease: Duration) -> Result<Vec<DueDelivery>> {
    let rows = client.query(
        "UPDATE webhook_deliveries d
            SET next_attempt_at = now() + make_interval(secs => $5::bigint / 1000.0), lease = d.lease + 1
           FROM (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                  WHERE d.state = 'pending' AND d.next_attempt_at <= coalesce($2::timestamptz, now()) AND w.enabled
                    AND ($1::bigint IS NULL OR d.tenant_id = $1) AND ($3::bigint[] IS NULL OR d.id = ANY($3))
                  ORDER BY d.next_attempt_at LIMIT $4 FOR UPDATE OF d SKIP LOCKED) c,
                webhooks w
          WHERE d.id = c.id AND w.id = d.webhook_id
          RETURNING d.id, d.lease, d.event_id, d.event_type, w.url, w.secret, d.body, d.attempts,
                    (extract(epoch FROM now() - d.retry_from) * 1000)::bigint",
        &[&q.tenant, &q.due_by, &q.ids, &limit, &(lease.as_millis() as i64)],
    )?;
    Ok(rows
        .iter()
        .map(|r| DueDelivery {
            id: r.get(0),
            lease: r.get(1),
            event_id: r.get(2),
            event_type: r.get(3),
            url: r.get(4),
            secret: Secret::new(r.get(5)),
            body: r.get(6),
            attempts: r.get::<_, i32>(7).max(0) as u32,
            series_age: Duration::from_millis(r.get::<_, i64>(8).max(0) as u64),
        })
        .collect())
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    /// Not delivered; tried again after this long.
    Retry {
        after: Duration,
        status: Option<u16>,
        error: String,
    },
    /// Not delivered, and its retries are used up.
    Failed {
        status: Option<u16>,
        error: String,
    },
}

impl Outcome {
    /// The metric and report word.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// Write attempts' outcomes, each under the lease its delivery was claimed with (a result whose
/// lease moved on is dropped: someone else owns the delivery now). Returns the ids written.
pub fn record(client: &mut impl GenericClient, results: &[(i64, i64, Outcome)]) -> Result<Vec<i64>> {
    if results.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<i64> = results.iter().map(|r| r.0).collect();
    let leases: Vec<i64> = results.iter().map(|r| r.1).collect();
    let states: Vec<&str> = results
        .iter()
        .map(|r| match r.2 {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "pending",
            Outcome::Failed { .. } => "failed",
        })
        .collect();
    let delays: Vec<i64> =
        results.iter().map(|r| if let Outcome::Retry { after, .. } = r.2 { after.as_millis() as i64 } else { 0 }).collect();
    let statuses: Vec<Option<i32>> = results
        .iter()
        .map(|r| match &r.2 {
            Outcome::Delivered { status } => Some(*status as i32),
            Outcome::Retry { status, .. } | Outcome::Failed { status, .. } => status.map(|s| s as i32),
        })
        .collect();
    let errors: Vec<Option<&str>> = results
        .iter()
        .map(|r| match &r.2 {
            Outcome::Delivered { .. } => None,
            Outcome::Retry { error, .. } | Outcome::Failed { error, .. } => Some(error.as_str()),
        })
        .collect();
    let rows = client.query(
        "UPDATE webhook_deliveries d
            SET state = u.state,
                attempts = d.attempts + 1,
                next_attempt_at = CASE WHEN u.state = 'pending' THEN now() + make_interval(secs => u.delay_ms / 1000.0) END,
                last_status = u.status,
                last_error = u.error,
                delivered_at = CASE WHEN u.state = 'delivered' THEN now() END
           FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::int[], $6::text[])
                AS u(id, lease, state, delay_ms, status, error)
          WHERE d.id = u.id AND d.lease = u.lease AND d.state = 'pending'
          RETURNING d.id",
        &[&ids, &leases, &states, &delays, &statuses, &errors],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One delivery as `webhook list` shows it (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryListing {
    pub id: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub tenant: String,
    pub url: String,
    pub order_id: Uuid,
    pub order_number: i64,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Deliveries, newest first, at most `limit` (only failed ones with `failed_only`).
pub fn list(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    failed_only: bool,
    limit: i64,
) -> Result<Vec<DeliveryListing>> {
    let rows = client.query(
        "SELECT d.id, d.event_id, d.event_type, t.name, w.url, d.order_id, o.number, d.state, d.attempts,
                d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.delivered_at
           FROM webhook_deliveries d
           JOIN tenants t ON t.id = d.tenant_id
           JOIN webhooks w ON w.id = d.webhook_id
           JOIN orders o ON o.id = d.order_id
          WHERE ($1::text IS NULL OR t.name = $1) AND (NOT $2 OR d.state = 'failed')
          ORDER BY d.created_at DESC, d.id DESC LIMIT $3",
        &[&tenant, &failed_only, &limit],
    )?;
    Ok(rows
        .iter()
        .map(|r| DeliveryListing {
            id: r.get(0),
            event_id: r.get(1),
            event_type: r.get(2),
            tenant: r.get(3),
            url: r.get(4),
            order_id: r.get(5),
            order_number: r.get(6),
            state: r.get(7),
            attempts: r.get(8),
            next_attempt_at: r.get(9),
            last_status: r.get(10),
            last_error: r.get(11),
            created_at: r.get(12),
            delivered_at: r.get(13),
        })
        .collect())
}

/// What `webhook retry` names.
#[derive(Debug, Clone, Copy)]
pub enum RetryTarget {
    /// One delivery, by its id.
    Delivery(i64),
    /// Every delivery of one event, by the event id.
    Event(Uuid),
    /// Every failed delivery.
    Failed,
}

/// Make deliveries due now with a fresh retry series (attempts from 0, the give-up window from
/// now). A delivered one is never sent again by this: that is refused. Returns the ids.
pub fn requeue(client: &mut impl GenericClient, tenant: Option<&str>, target: RetryTarget) -> Result<Vec<i64>> {
    let (one, event) = match target {
        RetryTarget::Delivery(id) => (Some(id), None),
        RetryTarget::Event(e) => (None, Some(e)),
        RetryTarget::Failed => (None, None),
    };
    if !matches!(target, RetryTarget::Failed) {
        let states: Vec<String> = client
            .query(
                "SELECT d.state FROM webhook_deliveries d JOIN tenants t ON t.id = d.tenant_id
                  WHERE ($1::text IS NULL OR t.name = $1) AND (d.id = $2 OR d.event_id = $3)",
                &[&tenant, &one, &event],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let what = match target {
            RetryTarget::Delivery(id) => format!("webhook delivery {id}"),
            _ => format!("webhook event {}", event.unwrap_or_default()),
        };
        if states.is_empty() {
            let scope = tenant.map(|t| format!(" in tenant {t}")).unwrap_or_default();
            return Err(Error::not_found(format!("{what} does not exist{scope}"))
                .with_hint("`orderctl webhook list` shows deliveries with their ids and event ids"));
        }
        if states.iter().all(|s| s == "delivered") {
            return Err(Error::refused(format!("{what} was already delivered; nothing to retry"))
                .with_hint("receivers deduplicate by event id; a delivered event is not sent again"));
        }
    }
    let rows = client.query(
        "UPDATE webhook_deliveries d SET state = 'pending', attempts = 0, retry_from = now(), next_attempt_at = now()
           FROM tenants t
          WHERE t.id = d.tenant_id AND ($1::text IS NULL OR t.name = $1) AND d.state <> 'delivered'
            AND CASE WHEN $2::bigint IS NOT NULL THEN d.id = $2
                     WHEN $3::uuid IS NOT NULL THEN d.event_id = $3
                     ELSE d.state = 'failed' END
          RETURNING d.id",
        &[&tenant, &one, &event],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A tenant's enabled webhook, with its secret (for `webhook test`).
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: Secret,
}

pub fn tenant_webhooks(client: &mut impl GenericClient, tenant_id: i64) -> Result<Vec<WebhookTarget>> {
    Ok(client
        .query("SELECT url, secret FROM webhooks WHERE tenant_id = $1 AND enabled ORDER BY id", &[&tenant_id])?
        .iter()
        .map(|r| WebhookTarget { url: r.get(0), secret: Secret::new(r.get(1)) })
        .collect())
}

/// Deliveries by state, for `doctor` and the metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub failed: i64,
    /// Pending deliveries whose attempt is more than `late_after` overdue (nothing is delivering).
    pub overdue: i64,
}

pub fn counts(client: &mut impl GenericClient, tenant: Option<&str>, late_after: Duration) -> Result<DeliveryCounts> {
    let r = client.query_one(
        "SELECT count(*) FILTER (WHERE d.state = 'pending'),
                count(*) FILTER (WHERE d.state = 'failed'),
                count(*) FILTER (WHERE d.state = 'pending' AND d.next_attempt_at < now() - make_interval(secs => $2::bigint / 1000.0))
           FROM webhook_deliveries d JOIN tenants t ON t.id = d.tenant_id
          WHERE d.state <> 'delivered' AND ($1::text IS NULL OR t.name = $1)",
        &[&tenant, &(late_after.as_millis() as i64)],
    )?;
    Ok(DeliveryCounts { pending: r.get(0), failed: r.get(1), overdue: r.get(2) })
}
