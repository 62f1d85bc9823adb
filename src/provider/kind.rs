//! Provider kinds: the one list of the protocols orderctl speaks. Everything that differs
//! between kinds (credential and mapping fields, reference form, hints for an operator, the
//! adapter itself) is a [`KindSpec`] that the kind's own module declares next to its adapter;
//! the rest of orderctl asks a [`ProviderKind`] and never names a kind. Adding a kind means a
//! module under `src/provider/` with its `KIND`, its conformance tests, and a line in [`KINDS`].
//! A name not in the list is refused everywhere (setup, stored rows): no silent default.

use super::{Provider, ProviderConfig, ReferenceStyle};
use crate::domain::setup::KindRules;
use crate::error::Result;
use serde::Serialize;
use std::fmt;

/// What one provider kind is, declared by its module (`znet::KIND`, `xstor::KIND`).
pub struct KindSpec {
    /// The word in setup files and in `providers.kind`.
    pub name: &'static str,
    /// The credential fields this kind needs, all secret.
    pub credential_fields: &'static [&'static str],
    /// The mapping fields a package needs for this kind.
    pub required_mapping_fields: &'static [&'static str],
    /// The form of reference this kind accepts; new references are made in it.
    pub reference_style: ReferenceStyle,
    /// What to do when the provider refuses our credentials.
    pub auth_hint: &'static str,
    /// What to do when the base URL answers with something that is not the API.
    pub base_url_hint: &'static str,
    /// The catalogue entry a package mapping names, as a key that [`KindSpec::item_key`] gives
    /// the same entry (so a package's price can be held against the provider's catalogue cost).
    pub mapping_key: fn(&serde_json::Value) -> Option<String>,
    pub item_key: fn(&super::CatalogueItem) -> String,
    /// The adapter for a provider of this kind (credentials already resolved and present).
    pub build: fn(ProviderConfig) -> Result<Box<dyn Provider>>,
}

/// Every kind orderctl speaks. The only list of kinds.
pub const KINDS: &[&KindSpec] = &[&super::znet::KIND, &super::xstor::KIND];

/// A provider kind: a handle on its [`KindSpec`]. Compared by name.
#[derive(Clone, Copy)]
pub struct ProviderKind(&'static KindSpec);

impl ProviderKind {
    pub const fn of(spec: &'static KindSpec) -> ProviderKind {
        ProviderKind(spec)
    }
    pub fn parse(s: &str) -> std::result::Result<ProviderKind, String> {
        KINDS.iter().find(|k| k.name == s).map(|k| ProviderKind(k)).ok_or_else(|| {
            let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
            format!("provider kind '{s}' is unknown; use {}", known.join(" or "))
        })
    }
    pub fn as_str(self) -> &'static str {
        self.0.name
    }
    pub fn spec(self) -> &'static KindSpec {
        self.0
    }
    /// The credential fields this kind needs, all secret.
    pub fn credential_fields(self) -> &'static [&'static str] {
        self.0.credential_fields
    }
    /// The mapping fields a package needs for this kind.
    pub fn required_mapping_fields(self) -> &'static [&'static str] {
        self.0.required_mapping_fields
    }
    pub fn reference_style(self) -> ReferenceStyle {
        self.0.reference_style
    }
    /// What validating a setup must know of this kind (the domain names no kind itself).
    pub fn setup_rules(self) -> KindRules {
        KindRules {
            name: self.0.name,
            credential_fields: self.0.credential_fields,
            required_mapping_fields: self.0.required_mapping_fields,
        }
    }
}

/// Every kind's setup rules, for `domain::setup::Existing::kinds`.
pub fn setup_rules() -> Vec<KindRules> {
    KINDS.iter().map(|k| ProviderKind(k).setup_rules()).collect()
}

impl PartialEq for ProviderKind {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for ProviderKind {}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProviderKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name_and_unknown_names_are_refused() {
        for k in KINDS {
            assert_eq!(ProviderKind::parse(k.name).unwrap().as_str(), k.name);
        }
        let e = ProviderKind::parse("acme").unwrap_err();
        assert!(e.contains("unknown") && e.contains("znet"), "{e}");
        let names: std::collections::BTreeSet<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(names.len(), KINDS.len(), "two kinds share a name");
    }

    #[test]
    fn the_setup_unit_tests_validate_against_the_kinds_as_declared() {
        assert_eq!(setup_rules(), crate::domain::setup::TEST_KINDS.to_vec());
    }

    /// A kind handled outside its module would name it there: no source file outside the kind
    /// modules, the simulator (which plays the providers) and tests may match on a kind's name.
    #[test]
    fn no_kind_is_named_outside_its_module() {
        let mut offenders = vec![];
        for (rel, text) in crate::kit::source_files("") {
            let exempt = rel.starts_with("simulator/")
                || rel == "provider/conformance.rs"
                || KINDS.iter().any(|k| rel == format!("provider/{}.rs", k.name));
            if exempt {
                continue;
            }
            // Only the code before the unit tests counts: examples in tests may use any kind.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for k in KINDS {
                // Code that decides by a kind's name: a match arm, a comparison, its module.
                let patterns = [
                    format!("\"{}\" =>", k.name),
                    format!("== \"{}\"", k.name),
                    format!("\"{}\" ==", k.name),
                    format!("{}::", k.name),
                ];
                for (n, line) in code.lines().enumerate() {
                    let is_doc = line.trim_start().starts_with("//");
                    if !is_doc && patterns.iter().any(|p| line.contains(p.as_str())) {
                        offenders.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
        // The one list of kinds names each module once.
        offenders.retain(|o| !o.starts_with("src/provider/kind.rs:"));
        assert!(offenders.is_empty(), "a provider kind is handled outside its module:\n{}", offenders.join("\n"));
    }
}
