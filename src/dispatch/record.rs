//! Record: a provider's answer becomes the lifecycle's transition, ready for the one writer
//! (`db::transitions`). The database reads here are the fallback of a refused placement; the
//! writes, what a batch's answers say about their provider and the careful permit's release.

use super::place::{Checked, Placed, Sent};
use super::LaneProvider;
use crate::db::claims::DueRow;
use crate::db::routing::fallback_for;
use crate::db::transitions::{StepRecord, Write};
use crate::db::GenericClient;
use crate::domain::lifecycle::{self, CheckContext, PlacementContext};
use crate::error::Result;
use crate::provider::PlacementOutcome;
use std::time::{Duration, Instant};

/// What the batch's answers say about their provider (balance, highest cost, breaker, a
/// refusal's cause), written once for the batch and before any of its transitions, so that the
/// careful permit `placed` gives back is free only once those facts are in. A re-placement's
/// answer says nothing new about the provider.
pub fn provider_facts<'a>(
    tx: &mut impl GenericClient,
    lp: &LaneProvider,
    batch: impl IntoIterator<Item = &'a Placed>,
) -> Result<()> {
    let answers: Vec<(i64, &PlacementOutcome)> = batch
        .into_iter()
        .filter_map(|p| match &p.sent {
            Sent::Answered(outcome) if !p.job.resent => Some((p.job.row.package_id, outcome)),
            _ => None,
        })
        .collect();
    crate::db::provider_health::after_placements(tx, lp, &answers)
}

/// The transition of a placement's answer (its provider's facts written by `provider_facts`
/// first). A definite rejection looks up the fallback that has not refused this order yet, so
/// the refusal and the move are one write.
pub fn placed(tx: &mut impl GenericClient, lp: &LaneProvider, p: &Placed) -> Result<Write> {
    let Placed { job, sent, .. } = p;
    let facts = &job.row.facts;
    let placement = Some((lp.id, job.request.reference.clone()));
    let transition = match sent {
        Sent::NotSent(why) => lifecycle::not_sent(facts, why, &lp.name),
        Sent::Deferred(why) | Sent::NoTurn(why) => lifecycle::deferred(facts, why),
        Sent::HeldBack(why) => {
            let fallback = fallback_for(tx, &job.row, lp.id)?;
            lifecycle::held_back_after_claim(facts, why, fallback.as_ref())
        }
        Sent::Answered(outcome) => {
            let fallback = match outcome {
                // A re-placement's refusal never moves the order (the first placement may be held).
                PlacementOutcome::Rejected { .. } if !job.resent => fallback_for(tx, &job.row, lp.id)?,
                _ => None,
            };
            let provider_cannot_take = !job.resent && crate::domain::provider_health::describes_provider(outcome);
            let ctx =
                PlacementContext { provider: &lp.name, policy: &lp.policy, fallback, resent: job.resent, provider_cannot_take };
            match &p.first_check {
                // The check made right after it under the same claim: one transition, one row
                // version (`lifecycle::placed_then_checked`).
                Some((answer, took)) => {
                    let cctx = check_context(lp, &job.row, job.claimed, *took, rand::random());
                    let learned = answer.external_order_id.as_deref();
                    lifecycle::placed_then_checked(facts, outcome, &ctx, &answer.outcome, learned, &cctx)
                }
                None => lifecycle::placed(facts, outcome, &ctx),
            }
        }
    };
    if let Some(holder) = &job.careful {
        // Only once the answer's facts for the provider (the balance it carried, a refusal's
        // cause) are written: the next careful claim, in any process, judges by them.
        crate::db::permits::release_careful(tx, lp.id, holder)?;
    }
    let mut steps = job.steps.clone();
    if let Some(e) = transition.first_event() {
        steps.push(StepRecord::now("record", e.message.clone()));
    }
    Ok(Write { order_id: job.row.id, lease: Some(job.lease), placement, transition, steps })
}

/// The transition of a status check's answer.
pub fn checked(lp: &LaneProvider, c: &Checked, unit: f64) -> Write {
    let Checked { job, answer, took } = c;
    let ctx = check_context(lp, &job.row, job.claimed, *took, unit);
    let transition = lifecycle::checked(&job.row.facts, &answer.outcome, answer.external_order_id.as_deref(), &ctx);
    let placement = job.row.facts.provider_id.zip(job.row.facts.reference.clone());
    Write { order_id: job.row.id, lease: Some(job.lease), placement, transition, steps: vec![] }
}

/// What a check's answer is judged with: the order's times as its claim read them, plus the
/// time since (at least the call's).
fn check_context<'a>(lp: &'a LaneProvider, row: &DueRow, claimed: Instant, took: Duration, unit: f64) -> CheckContext<'a> {
    let since_claim = claimed.elapsed().max(took);
    CheckContext {
        provider: &lp.name,
        policy: &lp.policy,
        since_dispatch: row.since_dispatch + since_claim,
        since_placement: row.since_placement + since_claim,
        absent_after: lp.reconcile_for,
        unit,
    }
}
