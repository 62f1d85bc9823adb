//! One integration-test binary (linked once), one module per capability.

mod support;

mod cli;
mod decisions;
mod deploy;
mod exchange_rates;
mod fidelity;
mod forwarding;
mod goods;
mod history;
mod hosts;
mod hot_path;
mod isolation;
mod lanes;
mod lifecycle;
mod long_transaction;
mod metrics;
mod migrate;
mod money_and_pace;
mod monitor;
mod operator;
mod orders;
mod provider_health;
mod providers;
mod reconcile;
mod reliability;
mod routing;
mod schedules;
mod setup;
mod setup_plan;
mod shapes;
mod states;
mod webhook_delivery;
mod webhooks;
mod write_transactions;
