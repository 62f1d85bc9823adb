//! The plan of an `apply`: what the file creates, changes, revives and retires in the database,
//! computed from the file and what is stored, before anything is written. Pure.
//!
//! Only the tenants a file declares are compared. Within them, an object the file does not name
//! (provider, code group, package, webhook) is a retirement: with `--prune` it is part of the
//! plan, without it it is listed as not in the file and left alone. Users are never retired
//! (their balances and ledger stay); one the file leaves out is only named.

use super::fields::{self, Field, Kind};
use super::{Setup, TenantSetup};
use crate::domain::money::CurrencyPair;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the database holds for some tenants: every object, live and retired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSetup {
    pub tenants: Vec<StoredTenant>,
    /// Every declared exchange rate, live and retired (they are of no tenant: all of them).
    pub exchange_rates: BTreeMap<CurrencyPair, StoredRate>,
}

/// An exchange rate as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredRate {
    pub rate: Decimal,
    pub retired: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredTenant {
    /// Every object of the tenant. A code group's `codes` holds only the stored codes that the
    /// file being planned names (to know which it adds), never the whole stock.
    pub setup: TenantSetup,
    /// The retired objects among them.
    pub retired: BTreeSet<(Kind, String)>,
    /// Code group → its stock, for `export`.
    pub stock: BTreeMap<String, Stock>,
    /// The tenant's product names (a package names one; the first creates it).
    pub products: BTreeSet<String>,
}

impl StoredTenant {
    fn is_retired(&self, kind: Kind, name: &str) -> bool {
        self.retired.contains(&(kind, name.to_string()))
    }
}

/// A code group's stock by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
    pub used: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Change,
    Revive,
    Retire,
}

/// One object the plan touches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub action: Action,
    pub kind: Kind,
    pub tenant: String,
    /// The object's name (a webhook's url).
    pub name: String,
    /// The fields that change, old → new (secrets masked). For a create, every field set.
    pub changes: Vec<FieldChange>,
}

impl Step {
    /// "package jawaker" (with the tenant: "tenant alsham, package jawaker").
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Tenant => format!("tenant {}", self.name),
            kind => format!("{} {}", kind.as_str(), self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    /// Null when the field was not set.
    pub old: Value,
    pub new: Value,
    /// A secret: both sides are shown masked (`***`); only that it changes is said.
    pub secret: bool,
}

/// Everything an apply would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Creates, changes, revivals, and (with `--prune`) retirements, in file order per tenant.
    pub steps: Vec<Step>,
    /// Without `--prune`: the objects the file no longer names, left as they are.
    pub not_in_file: Vec<Step>,
    /// Users the file no longer names (`tenant/user`): never retired, only named.
    pub users_not_in_file: Vec<String>,
}

impl Plan {
    /// Creates, changes, revivals and retirements: 0 means the database matches the file for
    /// the tenants it names, when `not_in_file` is empty too.
    pub fn changes(&self) -> usize {
        self.steps.len()
    }
    pub fn retirements(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.action == Action::Retire)
    }
}

/// The objects of a tenant with their fields, in plan order.
pub fn objects(t: &TenantSetup) -> Vec<(Kind, String, Vec<Field>)> {
    let mut out = vec![(Kind::Tenant, t.name.clone(), fields::tenant(t))];
    out.extend(t.users.iter().map(|u| (Kind::User, u.name.clone(), fields::user(u))));
    out.extend(t.providers.iter().map(|p| (Kind::Provider, p.name.clone(), fields::provider(p))));
    out.extend(t.code_groups.iter().map(|g| (Kind::CodeGroup, g.name.clone(), Vec::new())));
    out.extend(products(t).into_iter().map(|p| (Kind::Product, p, Vec::new())));
    out.extend(t.packages.iter().map(|p| (Kind::Package, p.name.clone(), fields::package(p))));
    out.extend(t.webhooks.iter().map(|w| (Kind::Webhook, w.url.clone(), fields::webhook(w))));
    out
}

/// The plan of applying `file` to what is `stored` (for the file's tenants).
pub fn plan(file: &Setup, stored: &StoredSetup, prune: bool) -> Plan {
    let mut out = Plan::default();
    for t in &file.tenants {
        let Some(s) = stored.tenants.iter().find(|s| s.setup.name == t.name) else {
            for (kind, name, f) in objects(t) {
                let changes = diff(&[], &f);
                out.steps.push(step(Action::Create, kind, &t.name, &name, with_codes(changes, t, kind, &name, None)));
            }
            continue;
        };
        let mut old: BTreeMap<(Kind, String), Vec<Field>> =
            objects(&s.setup).into_iter().filter(|(k, _, _)| *k != Kind::Product).map(|(k, n, f)| ((k, n), f)).collect();
        old.extend(s.products.iter().map(|p| ((Kind::Product, p.clone()), Vec::new())));
        let mut named = BTreeSet::new();
        for (kind, name, f) in objects(t) {
            named.insert((kind, name.clone()));
            let (action, changes) = match old.get(&(kind, name.clone())) {
                None => (Action::Create, with_codes(diff(&[], &f), t, kind, &name, None)),
                Some(before) => {
                    let action = if s.is_retired(kind, &name) { Action::Revive } else { Action::Change };
                    (action, with_codes(diff(before, &f), t, kind, &name, Some(&s.setup)))
                }
            };
            if action != Action::Change || !changes.is_empty() {
                out.steps.push(step(action, kind, &t.name, &name, changes));
            }
        }
        for (kind, name) in old.keys().filter(|k| !named.contains(k)) {
            if *kind == Kind::Product {
                continue; // an unused product stays: orders and other packages may name it
            } else if *kind == Kind::User {
                out.users_not_in_file.push(format!("{}/{name}", t.name));
            } else if !s.is_retired(*kind, name) {
                let retire = step(Action::Retire, *kind, &t.name, name, Vec::new());
                if prune {
                    out.steps.push(retire)
                } else {
                    out.not_in_file.push(retire)
                }
            }
        }
    }
    if let Some(rates) = &file.exchange_rates {
        plan_rates(rates, &stored.exchange_rates, prune, &mut out);
    }
    out
}

/// Exchange rates are compared when the file has `exchange_rates`, by the same rules as a
/// tenant's objects: a pair it no longer names is retired with `--prune`, named without.
fn plan_rates(file: &super::ExchangeRates, stored: &BTreeMap<CurrencyPair, StoredRate>, prune: bool, out: &mut Plan) {
    for (pair, rate) in file {
        let new = fields::exchange_rate(rate);
        let (action, changes) = match stored.get(pair) {
            None => (Action::Create, diff(&[], &new)),
            Some(s) => {
                let action = if s.retired { Action::Revive } else { Action::Change };
                (action, diff(&fields::exchange_rate(&s.rate), &new))
            }
        };
        if action != Action::Change || !changes.is_empty() {
            out.steps.push(step(action, Kind::ExchangeRate, "", &pair.to_string(), changes));
        }
    }
    for pair in stored.iter().filter(|(p, s)| !s.retired && !file.contains_key(p)).map(|(p, _)| p) {
        let retire = step(Action::Retire, Kind::ExchangeRate, "", &pair.to_string(), Vec::new());
        if prune {
            out.steps.push(retire)
        } else {
            out.not_in_file.push(retire)
        }
    }
}

/// The product names of a tenant's packages, each once, in file order.
fn products(t: &TenantSetup) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &t.packages {
        if !out.contains(&p.product) {
            out.push(p.product.clone());
        }
    }
    out
}

fn step(action: Action, kind: Kind, tenant: &str, name: &str, changes: Vec<FieldChange>) -> Step {
    Step { action, kind, tenant: tenant.to_string(), name: name.to_string(), changes }
}

/// The fields whose values differ, by name, in the order of `new` then `old`'s leftovers.
fn diff(old: &[Field], new: &[Field]) -> Vec<FieldChange> {
    let by_name = |fs: &[Field]| -> BTreeMap<String, Field> { fs.iter().map(|f| (f.name(), f.clone())).collect() };
    let (before, after) = (by_name(old), by_name(new));
    let mut names: Vec<String> = new.iter().map(Field::name).collect();
    names.extend(old.iter().map(Field::name).filter(|n| !after.contains_key(n)));
    let mut out = Vec::new();
    for name in names {
        let (o, n) = (before.get(&name), after.get(&name));
        let value = |f: Option<&Field>| f.map_or(Value::Null, |f| f.value.clone());
        if value(o) == value(n) {
            continue;
        }
        let shown = |f: Option<&Field>| f.map_or(Value::Null, Field::shown);
        let secret = o.or(n).is_some_and(|f| f.secret);
        out.push(FieldChange { field: name, old: shown(o), new: shown(n), secret });
    }
    out
}

/// A code group's codes the file adds (counted, never shown).
fn with_codes(
    mut changes: Vec<FieldChange>,
    t: &TenantSetup,
    kind: Kind,
    name: &str,
    stored: Option<&TenantSetup>,
) -> Vec<FieldChange> {
    if kind != Kind::CodeGroup {
        return changes;
    }
    let file = t.code_groups.iter().find(|g| g.name == name).map(|g| g.codes.as_slice()).unwrap_or_default();
    let have: BTreeSet<&String> =
        stored.and_then(|s| s.code_groups.iter().find(|g| g.name == name)).map(|g| g.codes.iter().collect()).unwrap_or_default();
    let added = file.iter().filter(|c| !have.contains(c)).count();
    if added > 0 {
        changes.push(FieldChange {
            field: "codes".into(),
            old: Value::Null,
            new: Value::String(format!("+{added} code(s)")),
            secret: false,
        });
    }
    changes
}

/// Routing the plan would leave pointing at a retired object: a package the file keeps that
/// routes to a provider or code group the file no longer names (retired by this plan with
/// `--prune`, or retired before), or forwards to such a package of another tenant in the file.
/// One sentence per reference, saying how to resolve it. `apply` refuses the plan if any.
pub fn conflicts(file: &Setup, stored: &StoredSetup, prune: bool) -> Vec<String> {
    let stored_tenant = |name: &str| stored.tenants.iter().find(|s| s.setup.name == name);
    let file_tenant = |name: &str| file.tenants.iter().find(|t| t.name == name);
    // Gone after the apply: stored but not in the file, and retired already or by this plan.
    let gone = |tenant: &str, kind: Kind, name: &str| -> bool {
        let (Some(s), Some(t)) = (stored_tenant(tenant), file_tenant(tenant)) else { return false };
        let in_file = objects(t).iter().any(|(k, n, _)| *k == kind && n == name);
        let stored = objects(&s.setup).iter().any(|(k, n, _)| *k == kind && n == name);
        !in_file && stored && (prune || s.is_retired(kind, name))
    };
    let mut out = Vec::new();
    for t in &file.tenants {
        for p in &t.packages {
            let mut refs = vec![];
            refs.extend(p.primary.iter().map(|n| ("routing.primary", t.name.as_str(), Kind::Provider, n)));
            refs.extend(p.fallback.iter().map(|n| ("routing.fallback", t.name.as_str(), Kind::Provider, n)));
            refs.extend(p.code_group.iter().map(|n| ("routing.code_group", t.name.as_str(), Kind::CodeGroup, n)));
            refs.extend(p.upstream.iter().map(|u| ("routing.upstream", u.tenant.as_str(), Kind::Package, &u.package)));
            for (field, tenant, kind, name) in refs {
                if gone(tenant, kind, name) {
                    let whose = if tenant == t.name { String::new() } else { format!(" of tenant {tenant}") };
                    out.push(format!(
                        "tenant {}, package {}: {field} names {} {name}{whose}, which the file no longer names ({}); \
                         route the package elsewhere in the file, or add {} {name} back to the file",
                        t.name,
                        p.name,
                        kind.as_str(),
                        if prune { "--prune would retire it" } else { "it is retired" },
                        kind.as_str()
                    ));
                }
            }
        }
    }
    out
}

/// What changed in the database between two readings of the same tenants (another apply that
/// ran while this one waited for the lock), one line per object.
pub fn drift(before: &StoredSetup, after: &StoredSetup) -> Vec<String> {
    type Seen = BTreeMap<(String, Kind, String), (Vec<Field>, bool)>;
    let index = |s: &StoredSetup| -> Seen {
        let mut out = Seen::new();
        for t in &s.tenants {
            for (kind, name, f) in objects(&t.setup) {
                let retired = t.is_retired(kind, &name);
                out.insert((t.setup.name.clone(), kind, name), (f, retired));
            }
        }
        out
    };
    let (old, new) = (index(before), index(after));
    let mut out = Vec::new();
    for t in after.tenants.iter().filter(|t| !before.tenants.iter().any(|b| b.setup.name == t.setup.name)) {
        out.push(format!("tenant {} created", t.setup.name));
    }
    for ((tenant, kind, name), (f, retired)) in &new {
        let what = format!("tenant {tenant}, {} {name}", kind.as_str());
        match old.get(&(tenant.clone(), *kind, name.clone())) {
            // A new tenant is named once, above.
            None if *kind == Kind::Tenant => {}
            None => out.push(format!("{what} created")),
            Some((_, was)) if *was != *retired => out.push(format!("{what} {}", if *retired { "retired" } else { "revived" })),
            Some((g, _)) => {
                let changed: Vec<String> = diff(g, f).into_iter().map(|c| c.field).collect();
                if !changed.is_empty() {
                    out.push(format!("{what} changed ({})", changed.join(", ")));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::setup::{validate, Existing};
    use serde_json::json;

    fn setup(doc: Value) -> Setup {
        validate(&doc.to_string(), &Existing::with_test_kinds()).expect("valid")
    }

    fn stored_from(doc: Value, retired: &[(Kind, &str)]) -> StoredSetup {
        let tenants = setup(doc)
            .tenants
            .into_iter()
            .map(|t| StoredTenant {
                setup: t,
                retired: retired.iter().map(|(k, n)| (*k, n.to_string())).collect(),
                stock: BTreeMap::new(),
                products: ["Jawaker".to_string()].into(),
            })
            .collect();
        StoredSetup { tenants, exchange_rates: BTreeMap::new() }
    }

    fn doc() -> Value {
        json!({"tenants": [{"name": "alsham",
            "users": [{"name": "halil", "balance": "10.00"}],
            "providers": [{"name": "znet-main", "kind": "znet", "base_url": "http://127.0.0.1:1",
                           "credentials": {"kod": "k", "sifre": "s3cret"}}],
            "code_groups": [{"name": "itunes", "codes": ["A-1"]}],
            "packages": [{"name": "jawaker", "product": "Jawaker", "price": "2.00"}],
            "webhooks": [{"url": "https://shop.example/h", "secret": "whsec_1"}]}]})
    }

    #[test]
    fn the_same_file_plans_nothing() {
        let p = plan(&setup(doc()), &stored_from(doc(), &[]), true);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_new_tenant_creates_everything() {
        let p = plan(&setup(doc()), &StoredSetup::default(), false);
        let labels: Vec<String> = p.steps.iter().map(Step::label).collect();
        assert_eq!(
            labels,
            [
                "tenant alsham",
                "user halil",
                "provider znet-main",
                "code group itunes",
                "product Jawaker",
                "package jawaker",
                "webhook https://shop.example/h"
            ]
        );
        assert!(p.steps.iter().all(|s| s.action == Action::Create));
        assert!(!format!("{p:?}").contains("s3cret") && !format!("{p:?}").contains("whsec_1"), "{p:?}");
    }

    #[test]
    fn changes_name_their_fields_and_mask_secrets() {
        let mut file = doc();
        file["tenants"][0]["providers"][0]["credentials"]["sifre"] = json!("n3w");
        file["tenants"][0]["providers"][0]["base_url"] = json!("http://127.0.0.1:2");
        file["tenants"][0]["code_groups"][0]["codes"] = json!(["A-1", "B-2", "C-3"]);
        let p = plan(&setup(file), &stored_from(doc(), &[]), false);
        assert_eq!(p.steps.len(), 2, "{p:#?}");
        let provider = &p.steps[0].changes;
        assert_eq!(
            provider[0],
            FieldChange {
                field: "base_url".into(),
                old: json!("http://127.0.0.1:1"),
                new: json!("http://127.0.0.1:2"),
                secret: false
            }
        );
        assert_eq!(
            provider[1],
            FieldChange { field: "credentials.sifre".into(), old: json!("***"), new: json!("***"), secret: true }
        );
        assert_eq!(p.steps[1].changes[0].new, json!("+2 code(s)"));
        let text = format!("{p:?}");
        assert!(!text.contains("n3w") && !text.contains("s3cret") && !text.contains("B-2"), "{text}");
    }

    #[test]
    fn removed_objects_are_named_without_prune_and_retired_with_it_but_users_never() {
        let mut file = doc();
        let t = &mut file["tenants"][0];
        for list in ["users", "providers", "code_groups", "packages", "webhooks"] {
            t[list] = json!([]);
        }
        let stored = stored_from(doc(), &[]);
        let p = plan(&setup(file.clone()), &stored, false);
        assert!(p.steps.is_empty(), "{p:#?}");
        let names: Vec<String> = p.not_in_file.iter().map(Step::label).collect();
        assert_eq!(names, ["provider znet-main", "code group itunes", "package jawaker", "webhook https://shop.example/h"]);
        assert_eq!(p.users_not_in_file, ["alsham/halil"]);
        let p = plan(&setup(file.clone()), &stored, true);
        assert_eq!(p.retirements().count(), 4);
        assert!(p.not_in_file.is_empty());
        // Already retired: nothing more to do, nothing to name.
        let all_retired = [
            (Kind::Provider, "znet-main"),
            (Kind::CodeGroup, "itunes"),
            (Kind::Package, "jawaker"),
            (Kind::Webhook, "https://shop.example/h"),
        ];
        let p = plan(&setup(file), &stored_from(doc(), &all_retired), true);
        assert!(p.steps.is_empty() && p.not_in_file.is_empty(), "{p:#?}");
    }

    #[test]
    fn re_adding_a_retired_object_revives_it_with_its_changes() {
        let mut stored_doc = doc();
        stored_doc["tenants"][0]["packages"][0]["enabled"] = json!(false);
        let p = plan(&setup(doc()), &stored_from(stored_doc, &[(Kind::Package, "jawaker")]), false);
        assert_eq!(p.steps.len(), 1);
        assert_eq!((p.steps[0].action, p.steps[0].label()), (Action::Revive, "package jawaker".to_string()));
        assert_eq!(p.steps[0].changes[0].field, "enabled");
    }

    #[test]
    fn retiring_a_provider_a_kept_package_routes_to_is_a_conflict() {
        let mut stored = doc();
        stored["tenants"][0]["providers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "znet-badpass", "kind": "znet", "base_url": "http://127.0.0.1:1", "credentials": {"kod": "k", "sifre": "x"}}));
        let mut file = stored.clone();
        file["tenants"][0]["packages"][0]["routing"] =
            json!({"mode": "auto", "provider_type": "external", "primary": "znet-badpass"});
        file["tenants"][0]["packages"][0]["mappings"] = json!({"znet-badpass": {"oyun": "1", "kupur": "2"}});
        let mut existing = Existing::with_test_kinds();
        existing.providers.entry("alsham".into()).or_default().insert("znet-badpass".into(), crate::domain::setup::TEST_KINDS[0]);
        file["tenants"][0]["providers"].as_array_mut().unwrap().pop();
        let file = validate(&file.to_string(), &existing).expect("valid: the database has the provider");
        let stored = stored_from(stored, &[]);
        assert!(conflicts(&file, &stored, false).is_empty(), "without --prune nothing is retired");
        let c = conflicts(&file, &stored, true);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with("tenant alsham, package jawaker: routing.primary names provider znet-badpass"), "{c:?}");
    }

    #[test]
    fn drift_names_what_another_apply_changed() {
        let mut after = doc();
        after["tenants"][0]["packages"][0]["price"] = json!("3.00");
        let d = drift(&stored_from(doc(), &[]), &stored_from(after, &[(Kind::Webhook, "https://shop.example/h")]));
        assert_eq!(
            d,
            ["tenant alsham, package jawaker changed (price)", "tenant alsham, webhook https://shop.example/h retired"]
        );
    }
}
