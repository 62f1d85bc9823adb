//! The pure core: statuses and their transitions, routing rules and their diagnosis, the
//! backoff policy. No I/O here, so every rule can be unit- and property-tested.

pub mod answers;
pub mod backoff;
pub mod diagnosis;
pub mod endpoint;
pub mod lifecycle;
/// The state columns' types live with the lifecycle; this path stays for callers.
pub use lifecycle::states as status;
pub mod money;
pub mod pace;
pub mod provider_health;
pub mod routing;
pub mod setup;
pub mod signature;
pub mod text;
pub mod webhook;
