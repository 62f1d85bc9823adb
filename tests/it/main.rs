//! One integration-test binary (linked once), one module per capability.

mod support;

mod cli;
mod fidelity;
mod forwarding;
mod lanes;
mod lifecycle;
mod metrics;
mod migrate;
mod monitor;
mod operator;
mod orders;
mod providers;
mod reliability;
mod routing;
mod schedules;
mod setup;
mod webhook_delivery;
mod webhooks;
