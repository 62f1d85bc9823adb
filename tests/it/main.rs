//! One integration-test binary (linked once), one module per capability.

mod support;

mod migrate;
mod routing;
mod setup;
