//! One module per subcommand. Each takes the parsed arguments and the resolved settings and
//! does its work through `db`, `dispatch`, `monitor` and `provider`.

mod apply;
mod completions;
mod create;
mod daemon;
mod demo;
mod dispatch;
mod doctor;
mod doctor_connection;
mod inspect;
mod list;
mod listings;
mod man;
mod migrate;
mod operator;
mod partitions;
mod poll;
mod provider_check;
mod provider_control;
mod routing_check;
mod simulate;
mod stats;
mod stats_money;
mod sweep;
mod webhook;

use crate::cli::{Cli, Command, PackageCommand, ProviderCommand, RoutingCommand, TenantCommand, UserCommand, WebhookCommand};
use crate::error::Result;
use crate::settings::Settings;

pub fn run(cli: Cli) -> Result<()> {
    let settings = Settings::from_args(&cli.global)?;
    let s = &settings;
    // Providers with a rate limit count their calls in this database (`db::pace`).
    crate::db::pace::use_database(&s.database_url);
    match cli.command {
        Command::Migrate(a) => migrate::run(s, &a),
        Command::Apply(a) => apply::run(s, &a),
        Command::Export(_) => apply::export(s),
        Command::Routing(RoutingCommand::Check) => routing_check::run(s),
        Command::Tenant(TenantCommand::List) => listings::tenants(s),
        Command::User(UserCommand::List) => listings::users(s),
        Command::Provider(ProviderCommand::List(a)) => listings::providers(s, &a),
        Command::Provider(ProviderCommand::Check(a)) => provider_check::run(s, &a),
        Command::Provider(ProviderCommand::Pause(a)) => provider_control::pause(s, &a),
        Command::Provider(ProviderCommand::Resume(a)) => provider_control::resume(s, &a),
        Command::Provider(ProviderCommand::Drain(a)) => provider_control::drain(s, &a),
        Command::Package(PackageCommand::List) => listings::packages(s),
        Command::Create(a) => create::run(s, &a),
        Command::Dispatch(a) => dispatch::run(s, &a),
        Command::Approve(a) => operator::approve(s, &a),
        Command::Reject(a) => operator::reject(s, &a),
        Command::Settle(a) => operator::settle(s, &a),
        Command::Inspect(a) => inspect::run(s, &a),
        Command::List(a) => list::run(s, &a),
        Command::Poll(a) => poll::run(s, &a),
        Command::Sweep(a) => sweep::run(s, &a),
        Command::Daemon(a) => daemon::run(s, &a),
        Command::Stats(a) => stats::run(s, &a),
        Command::Doctor(a) => doctor::run(s, &a),
        Command::Partitions(a) => partitions::list(s, &a),
        Command::Archive(a) => partitions::archive(s, &a),
        Command::Webhook(WebhookCommand::List(a)) => webhook::list(s, &a),
        Command::Webhook(WebhookCommand::Retry(a)) => webhook::retry(s, &a),
        Command::Webhook(WebhookCommand::Endpoints) => webhook::endpoints(s),
        Command::Webhook(WebhookCommand::Replay(a)) => webhook::replay(s, &a),
        Command::Webhook(WebhookCommand::Pause(a)) => webhook::pause(s, &a, true),
        Command::Webhook(WebhookCommand::Resume(a)) => webhook::pause(s, &a, false),
        Command::Webhook(WebhookCommand::RotateSecret(a)) => webhook::rotate_secret(s, &a),
        Command::Webhook(WebhookCommand::Test(a)) => webhook::test(s, &a),
        Command::Demo(a) => demo::run(s, &a),
        Command::Simulate(a) => simulate::run(s, &a),
        Command::Completions(a) => completions::run(&a),
        Command::Man(a) => man::run(&a),
    }
}

/// The tenant a command needs, or a usage error that says how to give it.
fn require_tenant<'a>(s: &'a Settings, command: &str) -> Result<&'a str> {
    s.tenant.as_deref().ok_or_else(|| {
        crate::error::Error::usage(format!("`orderctl {command}` needs a tenant"))
            .with_hint("add --tenant NAME (or set ORDERCTL_TENANT)")
    })
}
