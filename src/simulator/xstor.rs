//! The x-stor client API as the simulator speaks it (`/client/api/...`, JSON, `api-token`).

use super::state::{money, order_fate, Found, Proto, State};
use super::{param, Dynamic, Reply, Shared};
use serde_json::{json, Value};

/// (id, name, category, price in cents).
const PRODUCTS: &[(&str, &str, &str, i64)] = &[
    ("501", "PUBG Mobile 60 UC", "PUBG Mobile", 99),
    ("502", "Free Fire 100 Diamonds", "Free Fire", 95),
    ("503", "Jawaker 1000 Tokens", "Jawaker", 150),
];
/// Largest quantity one order may have.
const MAX_QTY: i64 = 100;

fn error(code: u16, message: &str) -> Reply {
    Reply::json(200, &json!({"status": "ERROR", "code": code, "message": message}))
}

/// `None` when the token is accepted, else the error reply (120 missing, 121 wrong).
pub fn auth_error(shared: &Shared, token: Option<&str>) -> Option<Reply> {
    match token.map(str::trim) {
        None | Some("") => Some(error(120, "token required")),
        Some(t) if !shared.xstor_tokens.is_empty() && !shared.xstor_tokens.iter().any(|ok| ok == t) => {
            Some(error(121, "token error"))
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
            json!({"id": id.parse::<u64>().unwrap_or(0), "name": name, "price": money(*cents), "category_name": cat,
                   "available": true, "params": ["playerId"], "product_type": "package",
                   "qty_values": {"min": 1, "max": MAX_QTY}})
        })
        .collect();
    Reply::json(200, &Value::Array(list))
}

fn entry(f: &Found) -> Value {
    let mut e = json!({"order_id": f.order_id.to_string(), "order_uuid": f.reference, "price": money(f.price_cents)});
    let (status, note) = match f.state {
        State::Waiting => ("wait", ""),
        State::Approved => ("accept", "completed"),
        State::Cancelled => ("reject", "cancelled by the simulator"),
    };
    e["status"] = json!(status);
    e["note"] = json!(note);
    if f.state == State::Approved {
        e["pin"] = json!(f.pin);
    }
    e
}

pub fn new_order(shared: &Shared, d: &Dynamic, product: &str, pairs: &[(String, String)]) -> Reply {
    let Some((_, _, _, cents)) = PRODUCTS.iter().find(|p| p.0 == product) else {
        return error(109, "product not found");
    };
    let qty = match param(pairs, "qty").map(|q| q.trim().parse::<i64>()) {
        None => 1,
        Some(Ok(q)) if q < 1 => return error(105, "quantity too small"),
        Some(Ok(q)) if q > MAX_QTY => return error(106, "quantity too large"),
        Some(Ok(q)) => q,
        Some(Err(_)) => return error(114, "missing or invalid parameter: qty"),
    };
    if param(pairs, "playerId").map(|p| p.trim().is_empty()).unwrap_or(true) {
        return error(114, "missing or invalid parameter: playerId");
    }
    let reference = param(pairs, "order_uuid").unwrap_or("").trim();
    if reference.is_empty() {
        return error(114, "missing or invalid parameter: order_uuid");
    }
    let fate = order_fate(shared.seed, reference, d.cancel_share, d.complete_after, d.jitter);
    let pin = fate.pin.clone();
    let price_cents = cents * qty;
    match shared.store.place(Proto::Xstor, reference, fate, price_cents) {
        Ok((order_id, state)) => {
            let found = Found { reference: reference.to_string(), order_id, state, pin, price_cents };
            let mut data = entry(&found);
            data["replay_api"] = json!([]);
            Reply::json(200, &json!({"status": "OK", "data": data}))
        }
        Err(_) => error(114, "order_uuid already used"),
    }
}

/// `orders=[a,b,c]` (brackets and quotes optional) as a list of keys.
fn order_list(raw: &str) -> Vec<&str> {
    raw.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').trim())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn check(shared: &Shared, pairs: &[(String, String)]) -> Reply {
    let Some(raw) = param(pairs, "orders") else {
        return error(114, "missing or invalid parameter: orders");
    };
    let keys = order_list(raw);
    let by_uuid = param(pairs, "uuid").map(|u| u.trim() == "1").unwrap_or(false);
    let data: Vec<Value> = shared.store.lookup(Proto::Xstor, &keys, !by_uuid).iter().flatten().map(entry).collect();
    Reply::json(200, &json!({"status": "OK", "data": data}))
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_lists_parse_loosely() {
        assert_eq!(super::order_list("[a, \"b\",c]"), vec!["a", "b", "c"]);
        assert_eq!(super::order_list("a"), vec!["a"]);
        assert!(super::order_list("[]").is_empty());
    }
}
