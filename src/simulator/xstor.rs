//! The x-stor client API as the simulator speaks it (`/client/api/...`, JSON, `api-token`),
//! strictly in the shapes `shared/notes/providers.md` quotes from the provider's documentation:
//! no `order_uuid` in any reply, ids and prices as strings, errors without a numeric code.

use super::state::{money, order_fate, Found, Proto, State};
use super::{param, Draw, Dynamic, Reply, Shared};
use serde_json::{json, Map, Value};

/// (id, name, category, price in cents).
const PRODUCTS: &[(&str, &str, &str, i64)] = &[
    ("501", "PUBG Mobile 60 UC", "PUBG Mobile", 99),
    ("502", "Free Fire 100 Diamonds", "Free Fire", 95),
    ("503", "Jawaker 1000 Tokens", "Jawaker", 150),
];
/// Largest quantity one order may have.
const MAX_QTY: i64 = 100;

/// The documented waiting note (`"note": "Processing..."`).
pub const WAITING_NOTE: &str = "Processing...";

/// The documented error shape, `{"status": "ERROR", "message": ..., "error": ...}`, without a
/// numeric code (the documented example has none).
fn error(message: &str) -> Reply {
    let key: String = message.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    let key = key.split('_').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("_");
    Reply::json(200, &json!({"status": "ERROR", "message": message, "error": key}))
}

/// `None` when the token is accepted, else the error reply.
pub fn auth_error(shared: &Shared, token: Option<&str>) -> Option<Reply> {
    match token.map(str::trim) {
        None | Some("") => Some(error("api-token required")),
        Some(t) if !shared.xstor_tokens.is_empty() && !shared.xstor_tokens.iter().any(|ok| ok == t) => {
            Some(error("Invalid api-token"))
        }
        Some(_) => None,
    }
}

pub fn profile(shared: &Shared) -> Reply {
    Reply::json(200, &json!({"balance": money(shared.store.balance_cents(Proto::Xstor)), "email": "simulator@x-stor.test"}))
}

pub fn products() -> Reply {
    let list: Vec<Value> = PRODUCTS
        .iter()
        .map(|(id, name, cat, cents)| {
            json!({"id": id, "name": name, "price": money(*cents), "category_name": cat,
                   "available": true, "params": ["playerId"], "product_type": "package",
                   "qty_values": {"min": 1, "max": MAX_QTY}})
        })
        .collect();
    Reply::json(200, &Value::Array(list))
}

/// The status word an order answers with: one of the two documented words for its state, the
/// same for an order every time (picked by its reference).
fn status_word(reference: &str, state: State) -> &'static str {
    let second = reference.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) & 1 == 1;
    match (state, second) {
        (State::Waiting, false) => "wait",
        (State::Waiting, true) => "pending",
        (State::Approved, false) => "accept",
        (State::Approved, true) => "success",
        (State::Cancelled, false) => "reject",
        (State::Cancelled, true) => "cancelled",
    }
}

/// A check entry as in the documented example: `order_id`, `status` and `note` always, `price`
/// and `pin` only for an approved order. Never `order_uuid`.
fn entry(f: &Found, d: &Dynamic) -> Value {
    let mut e = Map::new();
    e.insert("order_id".into(), json!(f.order_id.to_string()));
    e.insert("status".into(), json!(status_word(&f.reference, f.state)));
    match f.state {
        State::Approved => {
            e.insert("price".into(), json!(money(f.price_cents)));
            e.insert("pin".into(), json!(f.pin));
            e.insert("note".into(), json!("Order completed"));
        }
        State::Waiting => {
            e.insert("note".into(), json!(d.waiting_note.as_deref().unwrap_or(WAITING_NOTE)));
        }
        State::Cancelled => {
            e.insert("note".into(), json!("Order rejected"));
        }
    }
    Value::Object(e)
}

/// `newOrder/{product}/params`. Returns the reply and whether an order was recorded.
pub fn new_order(shared: &Shared, d: &Dynamic, draw: Draw, product: &str, pairs: &[(String, String)]) -> (Reply, bool) {
    let refuse = |message: &str| (error(message), false);
    let Some((_, _, _, cents)) = PRODUCTS.iter().find(|p| p.0 == product) else {
        return refuse("Product not found");
    };
    let qty = match param(pairs, "qty").map(|q| q.trim().parse::<i64>()) {
        None => 1,
        Some(Ok(q)) if (1..=MAX_QTY).contains(&q) => q,
        Some(_) => return refuse("Invalid quantity"),
    };
    if param(pairs, "playerId").map(|p| p.trim().is_empty()).unwrap_or(true) {
        return refuse("Missing parameter: playerId");
    }
    let reference = param(pairs, "order_uuid").unwrap_or("").trim();
    if reference.is_empty() {
        return refuse("Missing parameter: order_uuid");
    }
    if shared.store.double_placement(Proto::Xstor, reference).is_some() {
        return refuse("Duplicate order_uuid");
    }
    if d.reject_replacements && shared.store.was_seen_unrecorded(Proto::Xstor, reference) {
        return refuse("Duplicate order_uuid");
    }
    if draw.reject {
        return refuse("Insufficient balance");
    }
    if d.maintenance {
        // Codes appear in other members of the API family: the code as the `error` field.
        return (Reply::json(200, &json!({"status": "ERROR", "message": "Maintenance", "error": "130"})), false);
    }
    if shared.store.balance_cents(Proto::Xstor) < cents * qty {
        shared.store.no_balance_refusal();
        return refuse("Insufficient balance");
    }
    let fate = order_fate(shared.seed, reference, d.cancel_share, d.complete_after, d.jitter);
    let pin = fate.pin.clone();
    let price_cents = cents * qty;
    match shared.store.place(Proto::Xstor, reference, fate, price_cents) {
        Ok((order_id, state)) => {
            let found = Found { reference: reference.to_string(), order_id, state, pin, price_cents };
            // The placement reply carries the price whatever the state, and replay_api.
            let mut data = entry(&found, d);
            data["price"] = json!(money(price_cents));
            data["replay_api"] = if state == State::Approved { json!(["Order completed successfully"]) } else { json!([]) };
            (Reply::json(200, &json!({"status": "OK", "data": data})), true)
        }
        Err(_) => refuse("Duplicate order_uuid"),
    }
}

/// `orders=[...]`: a JSON array of numbers or strings, as text. `None` when it is not one.
fn order_list(raw: &str) -> Option<Vec<String>> {
    let Value::Array(items) = serde_json::from_str::<Value>(raw.trim()).ok()? else {
        return None;
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

pub fn check(shared: &Shared, d: &Dynamic, pairs: &[(String, String)]) -> Reply {
    let Some(raw) = param(pairs, "orders") else {
        return error("Missing parameter: orders");
    };
    let Some(keys) = order_list(raw) else {
        return error("Invalid orders parameter");
    };
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let by_uuid = param(pairs, "uuid").map(|u| u.trim() == "1").unwrap_or(false);
    let data: Vec<Value> = shared.store.lookup(Proto::Xstor, &keys, !by_uuid).iter().flatten().map(|f| entry(f, d)).collect();
    Reply::json(200, &json!({"status": "OK", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_lists_are_json_arrays_of_numbers_or_strings() {
        assert_eq!(order_list("[67890, \"67891\"]"), Some(vec!["67890".to_string(), "67891".to_string()]));
        assert_eq!(order_list("[\"d3f0c9a2-7b1e-4c1e-9f0a-1b2c3d4e5f60\"]").unwrap().len(), 1);
        assert_eq!(order_list("[]"), Some(vec![]));
        for bad in ["[a,b]", "67890", "[[1]]", "[null]", "{\"a\":1}", ""] {
            assert_eq!(order_list(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_have_the_documented_shape_without_a_code() {
        let r = error("Insufficient balance");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, json!({"status": "ERROR", "message": "Insufficient balance", "error": "insufficient_balance"}));
    }

    #[test]
    fn every_order_keeps_one_documented_word_per_state() {
        for r in ["a", "b", "c", "d"] {
            assert_eq!(status_word(r, State::Waiting), status_word(r, State::Waiting));
        }
        let words: std::collections::HashSet<&str> = (0..20).map(|i| status_word(&format!("r{i}"), State::Approved)).collect();
        assert_eq!(words.len(), 2, "both words are in use: {words:?}");
    }
}
