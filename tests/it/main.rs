//! One integration-test binary (linked once), one module per capability.

mod support;

mod migrate;
mod monitor;
mod orders;
mod providers;
mod routing;
mod setup;
mod reliability;
