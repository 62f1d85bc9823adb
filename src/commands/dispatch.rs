//! `orderctl dispatch ORDER`: an operator sends an order (again). The lifecycle decides whether
//! it may be sent; routing (or `--provider`) decides where; the placement is claimed, with its
//! reference committed, before the call, in the same transaction that checked the order: two
//! operators (or an operator and a daemon) never both send it.

use crate::cli::DispatchArgs;
use crate::commands::inspect;
use crate::db::{
    self,
    orders::{self, OrderRef, OrderRow},
};
use crate::dispatch::{route::Override, run_one, OneMode, OneOptions, OneReport, Providers, Timing};
use crate::domain::lifecycle::{self, Attention, State};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;

pub fn run(s: &Settings, a: &DispatchArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    let policy = a.policy.policy()?;
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    // Whether it may be sent at all, before anything else is looked up (checked again under
    // the order's lock).
    lifecycle::operator(&order.facts()?, &lifecycle::OperatorAction::Dispatch).map_err(crate::dispatch::refusal)?;
    let chosen = match &a.provider {
        Some(name) => {
            let (id, _enabled, retired) = db::routing::provider_by_name(&mut client, order.tenant_id, name)?;
            // A retired provider is refused before anything is written (a disabled one stops
            // the order on configuration, with a diagnosis, as routing to it would).
            if retired {
                return Err(Error::refused(format!(
                    "provider {name} was retired by `orderctl apply --prune`; order {} was not sent",
                    order.number
                ))
                .with_hint("name it in the setup file again and apply, or choose another provider"));
            }
            Some(Override { provider_id: id, name: name.clone() })
        }
        None => None,
    };
    let providers = Providers::new(s.http, policy);
    let opts = OneOptions { mode: OneMode::Operator { chosen, dry_run: a.dry_run }, timing: Timing::one_order(&s.http) };
    let report = run_one(&mut client, &providers, order.id, &opts)?;
    if a.dry_run {
        let Some((provider, request)) = &report.dry_run else {
            return Err(Error::needs_action(format!("order {} would not be sent: {}", order.number, report.steps.join("; "))));
        };
        if s.json() {
            output::print_json(
                &serde_json::json!({"id": order.id, "number": order.number, "result": "dry_run", "provider": provider, "request": request}),
            );
        } else {
            println!("dry run: order {} would be sent to {provider}:\n{request}", order.number);
        }
        return Ok(());
    }
    let after = orders::load_order(&mut client, order.id)?;
    inspect::print_order_brief(s, &mut client, &after, Some(serde_json::to_value(&report).unwrap_or_default()))?;
    outcome(&after, &report)
}

/// The exit status of a dispatch, from where the order ended: scripts branch on it.
pub fn outcome(after: &OrderRow, report: &OneReport) -> Result<()> {
    let n = after.number;
    let facts = after.facts()?;
    let provider = after.provider.as_deref().unwrap_or("?");
    let message = after.last_message.clone().unwrap_or_default();
    match State::of(&facts) {
        State::Approved
        | State::WithProvider
        | State::Forwarded
        | State::WaitingForOperator
        | State::ToPlace { .. }
        | State::WaitingForProvider
        | State::New => Ok(()),
        State::Rejected => {
            Err(Error::refused(format!("order {n} was cancelled by the provider at once and refunded: {message}")))
        }
        State::Placing if report.calls == 0 => Err(Error::refused(format!(
            "order {n} is being placed by another process right now (reference {})",
            after.provider_referans.as_deref().unwrap_or("?")
        ))),
        State::Placing | State::Reconciling => {
            Err(Error::provider(format!("the placement of order {n} with {provider} had an unknown outcome ({message})"))
                .with_hint(format!(
                    "it keeps reference {} and is reconciled by a status check; `orderctl poll {n}` checks now",
                    after.provider_referans.as_deref().unwrap_or("?")
                )))
        }
        State::NeedsOperator(Attention::ForwardRefused) => Err(Error::refused(format!("order {n} was not forwarded: {message}"))
            .with_hint(format!("fix the cause and `orderctl dispatch {n}`, or `orderctl reject {n} --reason TEXT`"))),
        State::NeedsOperator(Attention::PlacementRejected | Attention::PlacementLimit) => {
            Err(Error::provider(format!("{provider} did not take order {n}: {message}")).with_hint(format!(
                "fix the cause and `orderctl dispatch {n} [--provider NAME]`, or `orderctl reject {n} --reason TEXT`"
            )))
        }
        State::NeedsOperator(_) => Err(Error::needs_action(format!("order {n} was not sent: {message}"))
            .with_hint(format!("`orderctl inspect {n}` says what to fix"))),
        State::Watched | State::Inconsistent => Ok(()),
    }
}
