//! `orderctl export`: the stored setup as a setup file, from the same field tables the plan
//! compares (`fields`), so applying it to the same database plans nothing. Retired objects are
//! left out (they are not part of the setup; naming one again would revive it). Secrets are
//! never written: references stay references, stored values become `{"stored": true}`. Code
//! stock is written as counts, never codes.

use super::fields::{self, Kind};
use super::plan::{objects, StoredSetup};
use serde_json::{json, Value};

pub fn document(stored: &StoredSetup) -> Value {
    let mut tenants = Vec::new();
    for t in &stored.tenants {
        let mut lists: Vec<(&str, Vec<Value>)> =
            ["users", "providers", "code_groups", "packages", "webhooks"].iter().map(|l| (*l, Vec::new())).collect();
        let mut tenant = json!({"name": t.setup.name});
        for (kind, name, fields) in objects(&t.setup) {
            let list = match kind {
                Kind::Tenant => {
                    for (k, v) in fields::document(("name", &name), &fields).as_object().into_iter().flatten() {
                        tenant[k] = v.clone();
                    }
                    continue;
                }
                Kind::User => "users",
                Kind::Provider => "providers",
                Kind::CodeGroup => "code_groups",
                Kind::Package => "packages",
                Kind::Webhook => "webhooks",
                // Products come with their packages; tenants are the level above.
                Kind::Product | Kind::ExchangeRate => continue,
            };
            if t.retired.contains(&(kind, name.clone())) {
                continue;
            }
            let mut doc = fields::document((if kind == Kind::Webhook { "url" } else { "name" }, &name), &fields);
            if kind == Kind::CodeGroup {
                doc["stock"] = json!(t.stock.get(&name).copied().unwrap_or_default());
            }
            lists.iter_mut().find(|(l, _)| *l == list).expect("every list is there").1.push(doc);
        }
        for (list, docs) in lists {
            tenant[list] = Value::Array(docs);
        }
        tenants.push(tenant);
    }
    let mut doc = json!({ "tenants": tenants });
    let live: serde_json::Map<String, Value> = stored
        .exchange_rates
        .iter()
        .filter(|(_, r)| !r.retired)
        .map(|(pair, r)| (pair.to_string(), Value::String(r.rate.normalize().to_string())))
        .collect();
    if !live.is_empty() {
        doc["exchange_rates"] = Value::Object(live);
    }
    doc
}

/// Keys written first, in this order: an element's identity, then a tenant's lists as
/// `apply --help` shows them. The others follow alphabetically.
const FIRST: [&str; 8] = ["name", "url", "currency", "users", "providers", "code_groups", "packages", "webhooks"];

/// The document as pretty JSON with each element's identity first, as a person writes a setup
/// file (serde_json's own order is alphabetical).
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    write(v, 0, &mut out);
    out
}

fn write(v: &Value, depth: usize, out: &mut String) {
    let pad = |d: usize| "  ".repeat(d);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| (FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()), k.as_str()));
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                out.push_str(&format!("{}{}: ", pad(depth + 1), Value::String(k.to_string())));
                write(&m[k.as_str()], depth + 1, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{}}}", pad(depth)));
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, e) in a.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write(e, depth + 1, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{}]", pad(depth)));
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_puts_the_identity_first_and_reads_back_as_the_same_document() {
        let doc = json!({"tenants": [{"webhooks": [{"url": "https://x", "enabled": true, "events": []}], "name": "a",
                                      "users": [], "code_groups": [{"stock": {"used": 1}, "name": "g"}]}]});
        let text = render(&doc);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
        assert!(text.find("\"name\": \"a\"").unwrap() < text.find("\"code_groups\"").unwrap(), "{text}");
        assert!(text.find("\"url\"").unwrap() < text.find("\"enabled\"").unwrap(), "{text}");
    }
}
