//! Webhook deliveries: claiming the due ones (like orders: `SKIP LOCKED` and a lease, so any
//! number of daemons and sweeps share them and a crashed one's come due again), writing each
//! attempt's result under its lease, listing them, and requeueing failed ones. Events are
//! written by `outbox`, in the transitions' transactions.
//!
//! A webhook's secret (a plain value or an `env`/`file` reference, `crate::secret`) is
//! resolved only where a request is signed (`claim_due`, `tenant_webhooks`); listings and the
//! daemon's checks (`endpoints`, `secret_states`) read it only to say whether it resolves on
//! this host, never to show it.

use crate::db::row::state;
use crate::db::GenericClient;
use crate::domain::endpoint::Access;
use crate::domain::lifecycle::states::DeliveryState;
use crate::domain::webhook::Secret;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
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
    pub tenant: String,
    pub webhook_id: i64,
    pub url: String,
    /// The current secret, and during a rotation window the previous one.
    pub secrets: Vec<Secret>,
    /// Why the current secret does not resolve on this host (a reference to a missing variable
    /// or file): the request is not sent, the attempt fails for this endpoint only.
    pub unresolved: Option<String>,
    pub access: Access,
    /// The endpoint's own retry horizon (None: the process's).
    pub horizon: Option<Duration>,
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
    /// Only these deliveries (`webhook retry`, `webhook replay`): sent even to a paused or
    /// disabled endpoint, since an operator asked for them.
    pub ids: Option<&'a [i64]>,
}

/// Requests in flight to one endpoint at once, across every process: a slow or hanging
/// endpoint holds at most this many of a process's senders, never the others' deliveries.
pub const PER_ENDPOINT: i64 = 2;

/// Claim up to `limit` due deliveries, in one statement (its own transaction):
/// - per endpoint (locked `SKIP LOCKED` while claiming, so two processes never count one
///   endpoint's room at once) at most [`PER_ENDPOINT`] in flight, counting every process's;
/// - per order and endpoint, only the oldest pending event (by `sequence`): the next waits
///   until the previous was delivered or dead-lettered;
/// - none of a paused or disabled endpoint, unless named by `ids`.
///
/// Each claimed delivery's next attempt and its in-flight mark move a lease ahead, and its
/// lease token is bumped.
pub fn claim_due(client: &mut impl GenericClient, q: DeliveryQuery, limit: i64, lease: Duration) -> Result<Vec<DueDelivery>> {
    let rows = client.query(
        &format!(
            "WITH endpoints AS (
             SELECT w.id,
                    $6::bigint - (SELECT count(*) FROM webhook_deliveries f
                                  WHERE f.webhook_id = w.id AND f.state = {to_deliver} AND f.in_flight_until > now()) AS room
               FROM webhooks w
              WHERE w.enabled AND ($3::bigint[] IS NOT NULL OR (NOT w.paused AND w.disabled_at IS NULL))
                AND ($1::bigint IS NULL OR w.tenant_id = $1)
                AND EXISTS (SELECT 1 FROM webhook_deliveries d
                             WHERE d.webhook_id = w.id AND d.state = {to_deliver}
                               AND d.next_attempt_at <= coalesce($2::timestamptz, now()))
              FOR NO KEY UPDATE OF w SKIP LOCKED),
         picked AS (
             SELECT p.id FROM endpoints e CROSS JOIN LATERAL (
                 SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
                  WHERE d.webhook_id = e.id AND d.state = {to_deliver}
                    AND d.next_attempt_at <= coalesce($2::timestamptz, now())
                    AND ($3::bigint[] IS NULL OR d.id = ANY($3))
                    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries b
                                     WHERE b.webhook_id = d.webhook_id AND b.order_id = d.order_id
                                       AND b.state = {to_deliver} AND b.sequence < d.sequence)
                  ORDER BY d.next_attempt_at LIMIT greatest(e.room, 0)
                  FOR UPDATE OF d SKIP LOCKED) p
              ORDER BY p.next_attempt_at LIMIT $4)
         UPDATE webhook_deliveries d
            SET next_attempt_at = now() + make_interval(secs => $5::bigint / 1000.0),
                in_flight_until = now() + make_interval(secs => $5::bigint / 1000.0),
                lease = d.lease + 1
           FROM picked c, webhooks w, tenants t
          WHERE d.id = c.id AND w.id = d.webhook_id AND t.id = d.tenant_id
          RETURNING d.id, d.lease, d.event_id, d.event_type, t.name AS tenant, w.id AS webhook_id, w.url, w.secret,
                    CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END AS previous_secret,
                    w.allow_private_network, w.allow_http, w.retry_horizon_ms, d.body, d.attempts,
                    (extract(epoch FROM now() - d.retry_from) * 1000)::bigint AS series_age_ms",
            to_deliver = DeliveryState::Pending.sql()
        ),
        &[&q.tenant, &q.due_by, &q.ids, &limit, &(lease.as_millis() as i64), &PER_ENDPOINT],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r, signing_secrets(r.get("secret"), r.get("previous_secret"))))
        .map(|(r, signing)| DueDelivery {
            id: r.get("id"),
            lease: r.get("lease"),
            event_id: r.get("event_id"),
            event_type: r.get("event_type"),
            tenant: r.get("tenant"),
            webhook_id: r.get("webhook_id"),
            url: r.get("url"),
            unresolved: signing.as_ref().err().cloned(),
            secrets: signing.unwrap_or_default(),
            access: Access { allow_private_network: r.get("allow_private_network"), allow_http: r.get("allow_http") },
            horizon: r.get::<_, Option<i64>>("retry_horizon_ms").map(|ms| Duration::from_millis(ms.max(1) as u64)),
            body: r.get("body"),
            attempts: r.get::<_, i32>("attempts").max(0) as u32,
            series_age: Duration::from_millis(r.get::<_, i64>("series_age_ms").max(0) as u64),
        })
        .collect())
}

/// The secrets a request is signed with, resolved now (`crate::secret`): the current one, and
/// the previous one while it still signs. A previous one that no longer resolves is left out
/// (it is only a courtesy during a rotation); a current one that does not is why nothing can be
/// signed, naming the variable or file, never a value.
fn signing_secrets(current: serde_json::Value, previous: Option<serde_json::Value>) -> std::result::Result<Vec<Secret>, String> {
    let current = crate::secret::resolve_value(&current).map_err(|why| format!("secret: {why}"))?;
    let previous = previous.and_then(|p| crate::secret::resolve_value(&p).ok());
    Ok(std::iter::once(current).chain(previous).map(Secret::new).collect())
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

/// What `record` wrote: the deliveries, and the endpoints it disabled (failed for a whole
/// horizon) as (id, url).
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub ids: Vec<i64>,
    pub disabled: Vec<(i64, String)>,
}

/// Write attempts' outcomes, each under the lease its delivery was claimed with (a result whose
/// lease moved on is dropped: someone else owns the delivery now), and what they say of their
/// endpoints: a success clears `failing_since`; a delivery dead-lettered with no success of its
/// endpoint since its retry series began means the endpoint failed for its whole horizon, and
/// it is disabled (`doctor`, metrics; `webhook resume` enables it again).
pub fn record(client: &mut impl GenericClient, results: &[(i64, i64, Outcome)]) -> Result<Recorded> {
    if results.is_empty() {
        return Ok(Recorded::default());
    }
    let ids: Vec<i64> = results.iter().map(|r| r.0).collect();
    let leases: Vec<i64> = results.iter().map(|r| r.1).collect();
    let states: Vec<&str> = results
        .iter()
        .map(|r| match r.2 {
            Outcome::Delivered { .. } => DeliveryState::Delivered.as_str(),
            Outcome::Retry { .. } => DeliveryState::Pending.as_str(),
            Outcome::Failed { .. } => DeliveryState::Failed.as_str(),
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
    let mut tx = client.transaction()?;
    let rows = tx.query(
        &format!(
            "UPDATE webhook_deliveries d
            SET state = u.state,
                attempts = d.attempts + 1,
                next_attempt_at = CASE WHEN u.state = {to_deliver} THEN now() + make_interval(secs => u.delay_ms / 1000.0) END,
                in_flight_until = NULL,
                last_status = u.status,
                last_error = u.error,
                delivered_at = CASE WHEN u.state = {delivered} THEN now() END
           FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::int[], $6::text[])
                AS u(id, lease, state, delay_ms, status, error)
          WHERE d.id = u.id AND d.lease = u.lease AND d.state = {to_deliver}
          RETURNING d.id, d.webhook_id, u.state, d.retry_from",
            to_deliver = DeliveryState::Pending.sql(),
            delivered = DeliveryState::Delivered.sql()
        ),
        &[&ids, &leases, &states, &delays, &statuses, &errors],
    )?;
    let written: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
    let endpoints: Vec<i64> = rows.iter().map(|r| r.get("webhook_id")).collect();
    let outcomes: Vec<String> = rows.iter().map(|r| r.get("state")).collect();
    let series: Vec<DateTime<Utc>> = rows.iter().map(|r| r.get("retry_from")).collect();
    // Endpoints in id order, so two writers never wait on each other's rows in a cycle.
    let disabled = tx
        .query(
            &format!(
                "WITH e AS (SELECT u.webhook_id, bool_or(u.state = {delivered}) AS ok,
                               min(u.retry_from) FILTER (WHERE u.state = {undeliverable}) AS dead_since
                          FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS u(webhook_id, state, retry_from)
                         GROUP BY 1 ORDER BY 1)
             UPDATE webhooks w
                SET last_success_at = CASE WHEN e.ok THEN now() ELSE w.last_success_at END,
                    failing_since = CASE WHEN e.ok THEN NULL ELSE coalesce(w.failing_since, now()) END,
                    disabled_at = CASE WHEN NOT e.ok AND w.disabled_at IS NULL AND e.dead_since IS NOT NULL
                                        AND (w.last_success_at IS NULL OR w.last_success_at < e.dead_since)
                                       THEN now() ELSE w.disabled_at END,
                    disabled_reason = CASE WHEN NOT e.ok AND w.disabled_at IS NULL AND e.dead_since IS NOT NULL
                                            AND (w.last_success_at IS NULL OR w.last_success_at < e.dead_since)
                                           THEN 'failed for its whole retry horizon' ELSE w.disabled_reason END
               FROM e
              WHERE w.id = e.webhook_id
              RETURNING w.id, w.url, w.disabled_at IS NOT NULL AND w.disabled_at = now()",
                delivered = DeliveryState::Delivered.sql(),
                undeliverable = DeliveryState::Failed.sql()
            ),
            &[&endpoints, &outcomes, &series],
        )?
        .iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    tx.commit()?;
    Ok(Recorded { ids: written, disabled })
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
    /// The event's number within its order.
    pub sequence: i32,
    pub state: DeliveryState,
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
        &format!("SELECT d.id, d.event_id, d.event_type, t.name AS tenant, w.url, d.order_id, o.number AS order_number, d.state, d.attempts,
                d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.delivered_at, d.sequence
           FROM webhook_deliveries d
           JOIN tenants t ON t.id = d.tenant_id
           JOIN webhooks w ON w.id = d.webhook_id
           JOIN orders o ON o.id = d.order_id
          WHERE ($1::text IS NULL OR t.name = $1) AND (NOT $2 OR d.state = {undeliverable})
          ORDER BY d.created_at DESC, d.id DESC LIMIT $3", undeliverable = DeliveryState::Failed.sql()),
        &[&tenant, &failed_only, &limit],
    )?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryListing {
                id: r.get("id"),
                event_id: r.get("event_id"),
                event_type: r.get("event_type"),
                tenant: r.get("tenant"),
                url: r.get("url"),
                order_id: r.get("order_id"),
                order_number: r.get("order_number"),
                state: state(r, "state")?,
                attempts: r.get("attempts"),
                next_attempt_at: r.get("next_attempt_at"),
                last_status: r.get("last_status"),
                last_error: r.get("last_error"),
                created_at: r.get("created_at"),
                delivered_at: r.get("delivered_at"),
                sequence: r.get("sequence"),
            })
        })
        .collect()
}

/// What `webhook retry` and `webhook replay` name.
#[derive(Debug, Clone, Copy)]
pub enum RetryTarget {
    /// One delivery, by its id.
    Delivery(i64),
    /// Every delivery of one event, by the event id.
    Event(Uuid),
    /// Every dead-lettered delivery.
    Failed,
    /// The dead-lettered deliveries of one endpoint whose events are this recent.
    EndpointSince(i64, DateTime<Utc>),
}

/// Make deliveries due now with a fresh retry series (attempts from 0, the horizon from now).
/// A delivered one is sent again only when `again` (`webhook replay ID`); otherwise naming only
/// delivered ones is refused. Returns the ids.
pub fn requeue(client: &mut impl GenericClient, tenant: Option<&str>, target: RetryTarget, again: bool) -> Result<Vec<i64>> {
    let (one, event, endpoint, since) = match target {
        RetryTarget::Delivery(id) => (Some(id), None, None, None),
        RetryTarget::Event(e) => (None, Some(e), None, None),
        RetryTarget::Failed => (None, None, None, None),
        RetryTarget::EndpointSince(w, t) => (None, None, Some(w), Some(t)),
    };
    if one.is_some() || event.is_some() {
        let states: Vec<DeliveryState> = client
            .query(
                "SELECT d.state FROM webhook_deliveries d JOIN tenants t ON t.id = d.tenant_id
                  WHERE ($1::text IS NULL OR t.name = $1) AND (d.id = $2 OR d.event_id = $3)",
                &[&tenant, &one, &event],
            )?
            .iter()
            .map(|r| state(r, "state"))
            .collect::<Result<_>>()?;
        let what = match one {
            Some(id) => format!("webhook delivery {id}"),
            None => format!("webhook event {}", event.unwrap_or_default()),
        };
        if states.is_empty() {
            let scope = tenant.map(|t| format!(" in tenant {t}")).unwrap_or_default();
            return Err(Error::not_found(format!("{what} does not exist{scope}"))
                .with_hint("`orderctl webhook list` shows deliveries with their ids and event ids"));
        }
        if !again && states.iter().all(|s| *s == DeliveryState::Delivered) {
            return Err(Error::refused(format!("{what} was already delivered; nothing to retry"))
                .with_hint("receivers deduplicate by event id; `orderctl webhook replay` sends a delivered event again"));
        }
    }
    let rows = client.query(
        &format!(
            "UPDATE webhook_deliveries d
            SET state = {to_deliver}, attempts = 0, retry_from = now(), next_attempt_at = now(), delivered_at = NULL,
                in_flight_until = NULL
           FROM tenants t
          WHERE t.id = d.tenant_id AND ($1::text IS NULL OR t.name = $1)
            AND (d.state = {undeliverable} OR (d.state = {delivered} AND $6))
            -- A retired webhook (`apply --prune`) gets nothing again: its url asked for no more.
            AND NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id AND w.retired_at IS NOT NULL)
            AND CASE WHEN $2::bigint IS NOT NULL THEN d.id = $2
                     WHEN $3::uuid IS NOT NULL THEN d.event_id = $3
                     WHEN $4::bigint IS NOT NULL THEN d.webhook_id = $4 AND d.created_at >= $5 AND d.state = {undeliverable}
                     ELSE d.state = {undeliverable} END
          RETURNING d.id",
            to_deliver = DeliveryState::Pending.sql(),
            undeliverable = DeliveryState::Failed.sql(),
            delivered = DeliveryState::Delivered.sql()
        ),
        &[&tenant, &one, &event, &endpoint, &since, &again],
    )?;
    // A pending one named by id or event is sent now too (it is due now).
    let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    if one.is_some() || event.is_some() {
        let pending = client.query(
            &format!(
                "UPDATE webhook_deliveries d SET next_attempt_at = now()
               FROM tenants t
              WHERE t.id = d.tenant_id AND ($1::text IS NULL OR t.name = $1) AND d.state = {to_deliver}
                AND (d.id = $2 OR d.event_id = $3) AND (d.in_flight_until IS NULL OR d.in_flight_until <= now())
              RETURNING d.id",
                to_deliver = DeliveryState::Pending.sql()
            ),
            &[&tenant, &one, &event],
        )?;
        ids.extend(pending.iter().map(|r| r.get::<_, i64>(0)).filter(|id| !ids.contains(id)).collect::<Vec<_>>());
    }
    Ok(ids)
}

/// An endpoint as `webhook endpoints` shows it (never a secret).
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub id: i64,
    pub tenant: String,
    pub url: String,
    /// `active`, `paused`, `disabled` (failed for its whole horizon), `off` (`"enabled": false`)
    /// or `retired` (no longer in the setup file, `apply --prune`).
    pub state: String,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The endpoint's own horizon in ms (None: the process's).
    pub retry_horizon_ms: Option<i64>,
    /// Until when the previous secret signs too (a rotation in progress).
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub allow_private_network: bool,
    pub allow_http: bool,
    pub pending: i64,
    pub failed: i64,
    /// Where its signing secret comes from, as this host sees it (never the value):
    /// "reference", "plain value", or "unresolved: secret: environment variable X is not set".
    pub secret: String,
}

/// Endpoints, by tenant and url.
pub fn endpoints(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<Endpoint>> {
    let rows = client.query(
        &format!(
            "SELECT w.id, t.name, w.url,
                CASE WHEN w.retired_at IS NOT NULL THEN 'retired' WHEN NOT w.enabled THEN 'off' WHEN w.disabled_at IS NOT NULL THEN 'disabled'
                     WHEN w.paused THEN 'paused' ELSE 'active' END,
                w.disabled_reason, w.failing_since, w.last_success_at, w.retry_horizon_ms,
                CASE WHEN w.previous_secret_until > now() THEN w.previous_secret_until END,
                w.allow_private_network, w.allow_http,
                (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = {to_deliver}),
                (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = {undeliverable}),
                w.secret
           FROM webhooks w JOIN tenants t ON t.id = w.tenant_id
          WHERE ($1::text IS NULL OR t.name = $1)
          ORDER BY t.name, w.url",
            to_deliver = DeliveryState::Pending.sql(),
            undeliverable = DeliveryState::Failed.sql()
        ),
        &[&tenant],
    )?;
    Ok(rows
        .iter()
        .map(|r| Endpoint {
            id: r.get(0),
            tenant: r.get(1),
            url: r.get(2),
            state: r.get(3),
            disabled_reason: r.get(4),
            failing_since: r.get(5),
            last_success_at: r.get(6),
            retry_horizon_ms: r.get(7),
            previous_secret_until: r.get(8),
            allow_private_network: r.get(9),
            allow_http: r.get(10),
            pending: r.get(11),
            failed: r.get(12),
            secret: secret_state(&r.get(13)),
        })
        .collect())
}

/// One enabled endpoint's secret as this host resolves it (never the value).
pub struct SecretState {
    pub tenant: String,
    pub id: i64,
    pub url: String,
    /// Why its current secret does not resolve here; None: it does.
    pub unresolved: Option<String>,
}

/// Every enabled endpoint's secret resolved (the daemon's reload and its metrics).
pub fn secret_states(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<Vec<SecretState>> {
    let rows = client.query(
        "SELECT t.name, w.id, w.url, w.secret, CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END
           FROM webhooks w JOIN tenants t ON t.id = w.tenant_id
          WHERE w.enabled AND ($1::bigint IS NULL OR w.tenant_id = $1) ORDER BY w.id",
        &[&tenant],
    )?;
    Ok(rows
        .iter()
        .map(|r| SecretState {
            tenant: r.get(0),
            id: r.get(1),
            url: r.get(2),
            unresolved: signing_secrets(r.get(3), r.get(4)).err(),
        })
        .collect())
}

/// Where a stored secret comes from as this host sees it (`webhook endpoints`).
fn secret_state(stored: &serde_json::Value) -> String {
    match (stored.is_string(), crate::secret::resolve_value(stored)) {
        (true, _) => "plain value".into(),
        (false, Ok(_)) => "reference".into(),
        (false, Err(why)) => format!("unresolved: secret: {why}"),
    }
}

/// The endpoint an operator named: its id, or its url (unique within a tenant; give `--tenant`
/// when several tenants use one url).
pub fn find_endpoint(client: &mut impl GenericClient, tenant: Option<&str>, name: &str) -> Result<(i64, String)> {
    let id: Option<i64> = name.trim().parse().ok();
    let rows = client.query(
        "SELECT w.id, w.url FROM webhooks w JOIN tenants t ON t.id = w.tenant_id
          WHERE ($1::text IS NULL OR t.name = $1) AND (w.id = $2 OR w.url = $3)",
        &[&tenant, &id, &name.trim()],
    )?;
    match rows.as_slice() {
        [one] => Ok((one.get(0), one.get(1))),
        [] => Err(Error::not_found(format!("no webhook endpoint {}", crate::db::orders::truncate(name, 200)))
            .with_hint("`orderctl webhook endpoints` lists them with their ids")),
        _ => Err(Error::usage(format!("several tenants have a webhook at {name}; name it by id or give --tenant"))
            .with_hint("`orderctl webhook endpoints` lists them with their ids")),
    }
}

/// `webhook pause` (true) or `resume` (false; also enables an endpoint that was disabled for
/// failing, with its failure streak forgotten). Returns whether anything changed.
pub fn set_paused(client: &mut impl GenericClient, id: i64, paused: bool) -> Result<bool> {
    let n = if paused {
        client.execute("UPDATE webhooks SET paused = true WHERE id = $1 AND NOT paused", &[&id])?
    } else {
        client.execute(
            "UPDATE webhooks SET paused = false, disabled_at = NULL, disabled_reason = NULL, failing_since = NULL
              WHERE id = $1 AND (paused OR disabled_at IS NOT NULL)",
            &[&id],
        )?
    };
    Ok(n > 0)
}

/// A new signing secret (a plain value or a reference, as `secret` holds it); the current one
/// keeps signing next to it (a second signature) for `overlap`. Returns until when.
pub fn rotate_secret(
    client: &mut impl GenericClient,
    id: i64,
    secret: &serde_json::Value,
    overlap: Duration,
) -> Result<DateTime<Utc>> {
    let r = client.query_one(
        "UPDATE webhooks SET previous_secret = secret, secret = $2,
                previous_secret_until = now() + make_interval(secs => $3::bigint / 1000.0)
          WHERE id = $1 RETURNING previous_secret_until",
        &[&id, &secret, &(overlap.as_millis() as i64)],
    )?;
    Ok(r.get(0))
}

/// A tenant's enabled webhook, with its secrets (for `webhook test`).
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    /// Resolved on this host, or why the current one does not resolve.
    pub secrets: std::result::Result<Vec<Secret>, String>,
    pub access: Access,
}

pub fn tenant_webhooks(client: &mut impl GenericClient, tenant_id: i64) -> Result<Vec<WebhookTarget>> {
    Ok(client
        .query(
            "SELECT url, secret, CASE WHEN previous_secret_until > now() THEN previous_secret END,
                    allow_private_network, allow_http
               FROM webhooks WHERE tenant_id = $1 AND enabled ORDER BY id",
            &[&tenant_id],
        )?
        .iter()
        .map(|r| WebhookTarget {
            url: r.get(0),
            secrets: signing_secrets(r.get(1), r.get(2)),
            access: Access { allow_private_network: r.get(3), allow_http: r.get(4) },
        })
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
        &format!(
            "SELECT count(*) FILTER (WHERE d.state = {to_deliver}),
                count(*) FILTER (WHERE d.state = {undeliverable}),
                count(*) FILTER (WHERE d.state = {to_deliver} AND NOT w.paused AND w.disabled_at IS NULL
                                   AND d.next_attempt_at < now() - make_interval(secs => $2::bigint / 1000.0))
           FROM webhook_deliveries d JOIN tenants t ON t.id = d.tenant_id JOIN webhooks w ON w.id = d.webhook_id
          WHERE d.state IN ({to_deliver}, {undeliverable}) AND ($1::text IS NULL OR t.name = $1)",
            to_deliver = DeliveryState::Pending.sql(),
            undeliverable = DeliveryState::Failed.sql()
        ),
        &[&tenant, &(late_after.as_millis() as i64)],
    )?;
    Ok(DeliveryCounts { pending: r.get(0), failed: r.get(1), overdue: r.get(2) })
}
