//! `orderctl dispatch ORDER`: an operator sends an order (again) through the pipeline.

use crate::cli::DispatchArgs;
use crate::commands::inspect;
use crate::db::{
    self,
    orders::{self, OrderRef},
};
use crate::dispatch::{self, DispatchOptions, DispatchResult};
use crate::error::{Error, Result};
use crate::output;
use crate::provider::cache::ProviderCache;
use crate::settings::Settings;

pub fn run(s: &Settings, a: &DispatchArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    let policy = a.policy.policy()?;
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    let opts = DispatchOptions {
        provider_override: a.provider.clone(),
        dry_run: a.dry_run,
        policy,
        placement_lease: s.http.request_timeout * 3,
        operator: true,
    };
    let providers = ProviderCache::new(s.http);
    let report = dispatch::dispatch(&mut client, &providers, order.id, &opts)?;
    if let DispatchResult::DryRun { provider, request } = &report.result {
        if s.json() {
            output::print_json(&report);
        } else {
            println!("dry run: order {} would be sent to {provider}:\n{request}", order.number);
        }
        return Ok(());
    }
    let after = orders::load_order(&mut client, order.id)?;
    inspect::print_order_brief(s, &mut client, &after, Some(&report.result))?;
    outcome_error(&report.result, after.number)
}

/// The exit status of a dispatch: scripts branch on it.
pub fn outcome_error(r: &DispatchResult, number: i64) -> Result<()> {
    match r {
        DispatchResult::Sent { .. }
        | DispatchResult::Approved { .. }
        | DispatchResult::WaitingForOperator
        | DispatchResult::DryRun { .. } => Ok(()),
        DispatchResult::Rejected { message } => {
            Err(Error::refused(format!("order {number} was cancelled by the provider at once and refunded: {message}")))
        }
        DispatchResult::NotDispatchable { message } => {
            Err(Error::refused(format!("order {number} was not dispatched: {message}")))
        }
        DispatchResult::Stopped { message, .. } => Err(Error::needs_action(format!("order {number} was not sent: {message}"))),
        DispatchResult::PlacementRejected { provider, message } => {
            Err(Error::provider(format!("{provider} rejected order {number}: {message}")).with_hint(format!(
                "fix the cause and `orderctl dispatch {number} --provider NAME`, or `orderctl reject {number} --reason TEXT`"
            )))
        }
        DispatchResult::AwaitingReconciliation { provider, reference, message } => {
            Err(Error::provider(format!("the placement of order {number} with {provider} had an unknown outcome ({message})"))
                .with_hint(format!(
                    "it keeps reference {reference} and is reconciled by a status check; `orderctl poll {number}` checks now"
                )))
        }
    }
}
