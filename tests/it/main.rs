//! One integration-test binary (linked once), one module per capability.

mod support;

mod cli;
mod forwarding;
mod migrate;
mod monitor;
mod operator;
mod orders;
mod providers;
mod reliability;
mod routing;
mod schedules;
mod setup;
