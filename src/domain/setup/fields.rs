//! One table of fields per kind of setup object, in the file's own words and shapes. The plan
//! compares these, `export` prints them and `apply` reads them back, so a field added to a
//! setup object is added here once and cannot be forgotten by one of the three: a field missing
//! here would make export → apply report a change (the property test in `tests/it/setup_plan.rs`
//! catches that).
//!
//! Code groups have no fields but their codes, which are goods: the plan counts the codes a
//! file adds and `export` writes stock counts (`plan::code_stock`), never codes.
//!
//! A field is a path in the file (`routing.primary`, `credentials.sifre`) and its JSON value;
//! a `None`-like value (absent optional field) is `Value::Null` and is left out of a document.
//! Secret fields are compared by value but shown masked, and exported as a reference (when the
//! value is one) or as `{"stored": true}`, which `apply` reads as "keep what is stored".

use super::{PackageSetup, ProviderSetup, TenantSetup, UpstreamSetup, UserSetup, WebhookDelivery, WebhookSetup};
use crate::domain::backoff::ScheduleOverride;
use crate::domain::endpoint::Access;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The kinds of object a setup file names, in the order a plan lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Tenant,
    User,
    Provider,
    CodeGroup,
    /// Created by the first package that names it; never changed or retired by a file.
    Product,
    Package,
    Webhook,
    /// A top-level `exchange_rates` entry, named by its pair ("USD/TRY"); of no tenant.
    ExchangeRate,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant",
            Kind::User => "user",
            Kind::Provider => "provider",
            Kind::CodeGroup => "code group",
            Kind::Product => "product",
            Kind::Package => "package",
            Kind::Webhook => "webhook",
            Kind::ExchangeRate => "exchange rate",
        }
    }
}

/// One field of an object: where it is in the file, its value, and whether it is a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub path: Vec<String>,
    pub value: Value,
    pub secret: bool,
}

impl Field {
    pub fn name(&self) -> String {
        self.path.join(".")
    }
    /// The value as a plan or a message may show it: secret strings masked, references shown.
    pub fn shown(&self) -> Value {
        match &self.value {
            Value::String(_) if self.secret => json!("***"),
            v => v.clone(),
        }
    }
    /// The value as `export` writes it: a stored secret value becomes `{"stored": true}`.
    fn exported(&self) -> Value {
        match &self.value {
            Value::String(_) if self.secret => stored_marker(),
            v => v.clone(),
        }
    }
}

/// `{"stored": true}`: in a setup file, "keep the secret the database holds".
pub fn stored_marker() -> Value {
    json!({"stored": true})
}

/// Whether a value is `{"stored": true}`.
pub fn is_stored_marker(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.len() == 1 && m.get("stored") == Some(&Value::Bool(true)))
}

fn field(path: &[&str], value: impl Into<Value>) -> Field {
    Field { path: path.iter().map(|s| s.to_string()).collect(), value: value.into(), secret: false }
}

fn secret(path: &[&str], value: Value) -> Field {
    Field { secret: true, ..field(path, value) }
}

fn duration(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| Value::String(humantime::format_duration(d).to_string()))
}

/// An amount as the database stores it, two places: "0" and "0.00" are one amount.
fn money(d: &rust_decimal::Decimal) -> Value {
    Value::String(format!("{d:.2}"))
}

fn text(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

// Each function below takes its object apart with an exhaustive pattern (no `..`): a field
// added to the struct does not compile until it is added here, and so to the plan and export.

/// The tenant's own fields (its objects are listed apart).
pub fn tenant(t: &TenantSetup) -> Vec<Field> {
    let TenantSetup { name: _, currency, users: _, providers: _, code_groups: _, packages: _, webhooks: _ } = t;
    vec![field(&["currency"], text(currency))]
}

/// An exchange rate's one field, as the file writes it (the normalised decimal: "34.1" and
/// "34.10" are one rate).
pub fn exchange_rate(rate: &rust_decimal::Decimal) -> Vec<Field> {
    vec![field(&["rate"], rate.normalize().to_string())]
}

pub fn user(u: &UserSetup) -> Vec<Field> {
    let UserSetup { name: _, email, balance, overdraft_limit } = u;
    vec![
        field(&["email"], email.clone()),
        field(&["balance"], money(balance)),
        field(&["overdraft_limit"], money(overdraft_limit)),
    ]
}

pub fn provider(p: &ProviderSetup) -> Vec<Field> {
    let ProviderSetup {
        name: _,
        kind,
        base_url,
        credentials,
        enabled,
        max_in_flight,
        schedule,
        reconcile_for,
        health,
        currency,
        rate_limit,
    } = p;
    let mut out = vec![field(&["kind"], kind.as_str()), field(&["base_url"], base_url.clone())];
    if let Value::Object(m) = credentials {
        for (name, v) in m {
            out.push(secret(&["credentials", name], v.clone()));
        }
    }
    let ScheduleOverride { first_check, backoff_base, backoff_max, max_checks, give_up_after } = *schedule;
    out.extend([
        field(&["enabled"], *enabled),
        field(&["max_in_flight"], *max_in_flight),
        field(&["schedule", "first_check"], duration(first_check)),
        field(&["schedule", "backoff_base"], duration(backoff_base)),
        field(&["schedule", "backoff_max"], duration(backoff_max)),
        field(&["schedule", "max_checks"], max_checks.map_or(Value::Null, Value::from)),
        field(&["schedule", "give_up_after"], duration(give_up_after)),
        field(&["reconcile_for"], duration(Some(*reconcile_for))),
        field(&["low_balance"], health.low_balance.as_ref().map_or(Value::Null, money)),
        field(&["hold_for"], duration(Some(health.hold_for))),
        field(&["breaker", "failures"], health.breaker_failures),
        field(&["breaker", "cool_down"], duration(Some(health.breaker_cool_down))),
        field(&["probe_every"], duration(Some(health.probe_every))),
        field(&["currency"], currency.clone().map_or(Value::Null, Value::from)),
        field(&["rate_limit"], rate_limit.map_or(Value::Null, |r| Value::from(r.to_string()))),
    ]);
    out
}

pub fn package(p: &PackageSetup) -> Vec<Field> {
    let PackageSetup { name: _, product, price, enabled, mode, provider_type, primary, fallback, code_group, upstream, mappings } =
        p;
    let mut out = vec![
        field(&["product"], product.clone()),
        field(&["price"], money(price)),
        field(&["enabled"], *enabled),
        field(&["routing", "mode"], mode.as_str()),
        field(&["routing", "provider_type"], provider_type.as_str()),
        field(&["routing", "primary"], text(primary)),
        field(&["routing", "fallback"], text(fallback)),
        field(&["routing", "code_group"], text(code_group)),
    ];
    let up = |f: fn(&UpstreamSetup) -> &String| upstream.as_ref().map_or(Value::Null, |u| Value::String(f(u).clone()));
    out.extend([
        field(&["routing", "upstream", "tenant"], up(|u| &u.tenant)),
        field(&["routing", "upstream", "package"], up(|u| &u.package)),
        field(&["routing", "upstream", "account"], up(|u| &u.account)),
    ]);
    // The whole parameter object of each provider, `delivers_pin` included.
    for (provider, params) in mappings {
        out.push(field(&["mappings", provider], params.clone()));
    }
    out
}

pub fn webhook(w: &WebhookSetup) -> Vec<Field> {
    let WebhookSetup { url: _, secret: key, events, enabled, delivery } = w;
    let WebhookDelivery { access: Access { allow_private_network, allow_http }, retry_horizon } = *delivery;
    let events: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
    vec![
        secret(&["secret"], key.clone().unwrap_or_else(stored_marker)),
        field(&["events"], Value::from(events)),
        field(&["enabled"], *enabled),
        field(&["allow_private_network"], allow_private_network),
        field(&["allow_http"], allow_http),
        field(&["retry_horizon"], duration(retry_horizon)),
    ]
}

/// A file element from its identity (`{"name": ...}` or `{"url": ...}`) and its fields, nested
/// by path; absent values are left out, secrets written as the module doc says.
pub fn document(identity: (&str, &str), fields: &[Field]) -> Value {
    let mut root = Map::new();
    root.insert(identity.0.to_string(), Value::String(identity.1.to_string()));
    for f in fields {
        let value = f.exported();
        if value.is_null() {
            continue;
        }
        let (last, parents) = f.path.split_last().expect("a field has a path");
        let mut at = &mut root;
        for p in parents {
            at = at.entry(p.clone()).or_insert_with(|| Value::Object(Map::new())).as_object_mut().expect("objects nest");
        }
        at.insert(last.clone(), value);
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_nest_by_path_leave_out_absent_values_and_never_carry_a_secret() {
        let fields = vec![
            field(&["routing", "mode"], "auto"),
            field(&["routing", "primary"], Value::Null),
            secret(&["credentials", "sifre"], json!("s3cret")),
            secret(&["credentials", "kod"], json!({"env": "ZNET_KOD"})),
        ];
        let doc = document(("name", "p"), &fields);
        assert_eq!(
            doc,
            json!({"name": "p", "routing": {"mode": "auto"},
                   "credentials": {"sifre": {"stored": true}, "kod": {"env": "ZNET_KOD"}}})
        );
        assert_eq!(fields[2].shown(), json!("***"));
        assert_eq!(fields[3].shown(), json!({"env": "ZNET_KOD"}), "a reference is not a secret");
        assert!(is_stored_marker(&doc["credentials"]["sifre"]));
    }
}
