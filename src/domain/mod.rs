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
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
        let above = ["provider", "db", "dispatch", "daemon", "lane", "commands", "webhook", "metrics", "settings", "cli"];
        let mut offenders = vec![];
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if above.iter().any(|m| code.contains(&format!("crate::{m}::")) || code.contains(&format!("crate::{m};"))) {
                        offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "the domain reaches up:\n{}", offenders.join("\n"));
    }
}
