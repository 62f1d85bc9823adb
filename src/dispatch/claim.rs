//! Claim: locked due orders of a provider's lane become work. Placements get their reference
//! written and committed before any call; checks only take a lease; orders that need no call
//! (a configuration stop, a used-up placement budget) get their transition at once. All of it
//! in the caller's transaction, which commits before any provider is called.

use super::{LaneProvider, Timing};
use crate::db::claims::{self, DueRow};
use crate::db::routing::fallback_for;
use crate::db::transitions::{self, refused_write, PlacementClaim, StepRecord, Write};
use crate::db::GenericClient;
use crate::domain::lifecycle::{self, work_for, Attention, Work, MAX_PLACEMENTS};
use crate::domain::provider_health::{gate, Gate};
use crate::error::Result;
use crate::provider::{CheckKey, PlacementRequest};
use std::collections::HashMap;
use std::time::Instant;

/// A placement whose reference is committed: it may now be sent, once.
#[derive(Debug, Clone)]
pub struct PlaceJob {
    pub row: DueRow,
    /// The lease the placement was claimed with.
    pub lease: i64,
    pub request: PlacementRequest,
    /// When the claim committed (this process's monotonic clock: only its age matters).
    pub claimed: Instant,
    pub steps: Vec<StepRecord>,
    /// An earlier attempt with this reference may have reached the provider.
    pub resent: bool,
    /// Claimed under the provider's careful-placement permit, held under this name (the one
    /// `db::permits::acquire_careful` returned; placements one at a time,
    /// `domain::provider_health::pace`): recording the answer gives it back.
    pub careful: Option<String>,
}

impl PlaceJob {
    pub fn reference(&self) -> &str {
        &self.request.reference
    }
}

/// A status check under a lease.
#[derive(Debug, Clone)]
pub struct CheckJob {
    pub row: DueRow,
    pub lease: i64,
    pub key: CheckKey,
    pub claimed: Instant,
}

/// What one claim produced.
#[derive(Debug, Default)]
pub struct Claimed {
    pub places: Vec<PlaceJob>,
    pub checks: Vec<CheckJob>,
    /// Transitions decided without a call, to write in the claim's transaction.
    pub decided: Vec<Write>,
}

/// Turn locked rows of `lp`'s lane into work (in the caller's transaction), and write the
/// decided transitions there too.
pub fn claim_for_provider(tx: &mut impl GenericClient, lp: &LaneProvider, rows: Vec<DueRow>, timing: Timing) -> Result<Claimed> {
    claim_rows(tx, lp, rows, Vec::new(), timing)
}

impl super::isolate::Batch for Claimed {
    fn merge(&mut self, other: Self) {
        self.places.extend(other.places);
        self.checks.extend(other.checks);
        self.decided.extend(other.decided);
    }
    fn flagged(&mut self, w: Write) {
        self.decided.push(w);
    }
}

/// As `claim_for_provider`, with `checked`: rows `lock_and_claim_checks` already claimed (a
/// check among them needs no claim of its own; any other decision is written under the
/// lease that claim took). An order whose claim fails is flagged; the rest are claimed.
pub fn claim_rows(
    tx: &mut impl GenericClient,
    lp: &LaneProvider,
    rows: Vec<DueRow>,
    checked: Vec<DueRow>,
    timing: Timing,
) -> Result<Claimed> {
    let claimed_ids: std::collections::HashSet<uuid::Uuid> = checked.iter().map(|r| r.id).collect();
    let all: Vec<DueRow> = checked.into_iter().chain(rows).collect();
    super::isolate::per_order(tx, all, &format!("claiming work for {}", lp.name), |sp, rows| {
        let (checked, rows): (Vec<DueRow>, Vec<DueRow>) = rows.into_iter().partition(|r| claimed_ids.contains(&r.id));
        claim_batch(sp, lp, rows, checked, timing)
    })
}

fn claim_batch(
    tx: &mut impl GenericClient,
    lp: &LaneProvider,
    rows: Vec<DueRow>,
    checked: Vec<DueRow>,
    timing: Timing,
) -> Result<Claimed> {
    let mut out = Claimed::default();
    let mut to_place: Vec<(DueRow, bool)> = Vec::new();
    let mut to_check: Vec<DueRow> = Vec::new();
    let now = Instant::now();
    for (row, already_claimed) in checked.into_iter().map(|r| (r, true)).chain(rows.into_iter().map(|r| (r, false))) {
        match work_for(&row.facts) {
            Work::Check { .. } if already_claimed => {
                let key = check_key(&row);
                out.checks.push(CheckJob { lease: row.lease, row, key, claimed: now });
            }
            Work::Check { .. } => to_check.push(row),
            Work::Place { reuse } => to_place.push((row, reuse)),
            Work::Decide(t) => out.decided.push(write(&row, *t)),
            // A new order in a provider's lane (a row edited by hand): back to routing.
            Work::Route => out.decided.push(write(
                &row,
                lifecycle::Transition { lane: Some(0), schedule: lifecycle::Schedule::Now, ..Default::default() },
            )),
        }
    }
    let to_place = held_back(tx, lp, to_place, &mut out)?;
    let mappings = mappings(tx, lp.id, &to_place)?;
    let mut claims = Vec::new();
    let mut placeable = Vec::new();
    for (row, reuse) in to_place {
        match stop_reason(lp, mappings.get(&row.package_id)) {
            Some((attention, message)) => {
                let fallback = fallback_for(tx, &row, lp.id)?;
                out.decided.push(write(&row, lifecycle::config_stop(&row.facts, attention, &message, fallback.as_ref())));
            }
            None => {
                // A reference this provider cannot take (a Znet order sent with a UUID before
                // references were numbers) is not sent again: the provider never got it, so a
                // fresh one is just as safe.
                let reuse = reuse && row.facts.reference.as_deref().map(|r| lp.accepts_reference(r)).unwrap_or(false);
                let expects_pin = delivers_pin(mappings.get(&row.package_id));
                claims.push(PlacementClaim {
                    order_id: row.id,
                    order_created_at: row.created_at,
                    provider_id: lp.id,
                    reuse,
                    expects_pin,
                });
                placeable.push((row, reuse));
            }
        }
    }
    let written = transitions::claim_placements(tx, &claims, lp.reference_style(), timing.lease)?;
    let taken: HashMap<_, _> = written.taken.into_iter().collect();
    let by_id: HashMap<_, _> = written.claimed.into_iter().map(|c| (c.order_id, c)).collect();
    for (mut row, reuse) in placeable {
        if let Some(reference) = taken.get(&row.id) {
            // Sending it would place another order's reference: flagged, never retried blindly.
            let why =
                format!("the new reference {reference} is already recorded for another order at {}; nothing was sent", lp.name);
            out.decided.push(refused_write(row.id, Some(row.lease), &why));
            continue;
        }
        let Some(transitions::ClaimedPlacement { lease, reference, resent, .. }) = by_id.get(&row.id).cloned() else { continue };
        let mapping = mappings.get(&row.package_id).cloned().flatten().unwrap_or_default();
        // The row as the claim left it: the lifecycle judges the answer from here.
        row.facts.external = crate::domain::status::ExternalStatus::Dispatching;
        row.facts.reconciling = false;
        row.facts.provider_id = Some(lp.id);
        row.facts.reference = Some(reference.clone());
        row.facts.placement_attempts += 1;
        row.facts.expects_pin = delivers_pin(mappings.get(&row.package_id));
        row.since_placement = std::time::Duration::ZERO;
        let step = StepRecord::now(
            "claim",
            format!(
                "reference {reference} for {} committed before sending{} (placement {} of {MAX_PLACEMENTS})",
                lp.name,
                if reuse { ", sent again: the provider never got it" } else { "" },
                row.facts.placement_attempts
            ),
        );
        let request =
            PlacementRequest { reference, player: row.player.clone(), extra: row.extra.clone(), quantity: row.quantity, mapping };
        out.places.push(PlaceJob { row, lease, request, claimed: now, steps: vec![step], resent, careful: None });
    }
    let ids: Vec<_> = to_check.iter().map(|r| r.id).collect();
    let leases: HashMap<_, _> = claims::claim_checks(tx, &ids, timing.lease)?.into_iter().collect();
    for row in to_check {
        let Some(&lease) = leases.get(&row.id) else { continue };
        let key = check_key(&row);
        out.checks.push(CheckJob { row, lease, key, claimed: now });
    }
    crate::db::transitions::apply_live(tx, &out.decided)?;
    Ok(out)
}

/// Placements the provider cannot take now (an operator's pause or drain, a cause it gave, an
/// open breaker) are decided here without a call: the fallback, a wait, or (the hold over) the
/// end a rejection without fallback has. The rest are returned to be placed.
fn held_back(
    tx: &mut impl GenericClient,
    lp: &LaneProvider,
    rows: Vec<(DueRow, bool)>,
    out: &mut Claimed,
) -> Result<Vec<(DueRow, bool)>> {
    if rows.is_empty() {
        return Ok(rows);
    }
    let health = crate::db::provider_health::load(tx, lp.id, &lp.name)?;
    let mut open = Vec::new();
    for (row, reuse) in rows {
        let why = match gate(&health, row.package_id) {
            Gate::Open => {
                open.push((row, reuse));
                continue;
            }
            Gate::Paused(reason) => {
                out.decided.push(write(&row, lifecycle::held_back(&row.facts, lifecycle::HeldBack::Paused(&reason), None)));
                continue;
            }
            Gate::Blocked { reason, expired } => (reason, expired),
        };
        let fallback = fallback_for(tx, &row, lp.id)?;
        let held = lifecycle::HeldBack::Unavailable { reason: &why.0, expired: why.1 };
        out.decided.push(write(&row, lifecycle::held_back(&row.facts, held, fallback.as_ref())));
    }
    Ok(open)
}

/// What a status check asks the provider about.
fn check_key(row: &DueRow) -> CheckKey {
    CheckKey { reference: row.facts.reference.clone().unwrap_or_default(), external_order_id: row.external_order_id.clone() }
}

/// A transition decided for a locked row (guarded by the lease it was locked with).
pub fn write(row: &DueRow, transition: lifecycle::Transition) -> Write {
    let placement = row.facts.provider_id.zip(row.facts.reference.clone());
    Write { order_id: row.id, lease: Some(row.lease), placement, transition, steps: vec![] }
}

/// The package mappings for this provider of the packages to place (None: no mapping).
fn mappings(
    tx: &mut impl GenericClient,
    provider_id: i64,
    rows: &[(DueRow, bool)],
) -> Result<HashMap<i64, Option<serde_json::Value>>> {
    let mut packages: Vec<i64> = rows.iter().map(|(r, _)| r.package_id).collect();
    packages.sort_unstable();
    packages.dedup();
    let mut out: HashMap<i64, Option<serde_json::Value>> = packages.iter().map(|p| (*p, None)).collect();
    if packages.is_empty() {
        return Ok(out);
    }
    for r in tx.query(
        "SELECT package_id, params FROM package_mappings WHERE provider_id = $1 AND package_id = ANY($2)",
        &[&provider_id, &packages],
    )? {
        out.insert(r.get(0), Some(r.get(1)));
    }
    Ok(out)
}

/// The mapping says the product delivers PINs (`delivers_pin: true` in the setup file).
fn delivers_pin(mapping: Option<&Option<serde_json::Value>>) -> bool {
    mapping.and_then(|m| m.as_ref()).and_then(|m| m.get("delivers_pin")).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Why this provider cannot take a placement now, if it cannot.
fn stop_reason(lp: &LaneProvider, mapping: Option<&Option<serde_json::Value>>) -> Option<(Attention, String)> {
    if !lp.enabled {
        return Some((
            Attention::ProviderDisabled,
            format!("provider {} is disabled (or retired: no longer in the setup file); enable it there, or route the package elsewhere, then `orderctl dispatch`", lp.name),
        ));
    }
    if let Err(why) = &lp.adapter {
        return Some((Attention::ProviderDisabled, format!("provider {} cannot be used: {why}", lp.name)));
    }
    match mapping {
        Some(Some(_)) => None,
        _ => Some((
            Attention::NoMapping,
            format!("the package has no mapping for provider {0}; add mappings.{0} to the package and apply the setup, then `orderctl dispatch`", lp.name),
        )),
    }
}
