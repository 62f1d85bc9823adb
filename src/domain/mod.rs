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

#[cfg(test)]
mod tests {
    /// The layers point down: the domain is below the provider adapters, the database and
    /// everything that runs. What it must know of them (the provider kinds for setup
    /// validation) is passed in. No file here, its tests included, may name those modules.
    #[test]
    fn the_domain_depends_on_no_layer_above_it() {
        let above = ["provider", "db", "dispatch", "daemon", "lane", "commands", "webhook", "metrics", "settings", "cli"];
        let mut offenders = vec![];
        for (rel, text) in crate::kit::source_files("domain") {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if above.iter().any(|m| code.contains(&format!("crate::{m}::")) || code.contains(&format!("crate::{m};"))) {
                    offenders.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
        assert!(offenders.is_empty(), "the domain reaches up:\n{}", offenders.join("\n"));
    }
}
