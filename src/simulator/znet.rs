//! The Znet dealer API as the simulator speaks it (`/servis/*.php`, plain `|` text).

use super::state::{money, order_fate, Proto, State};
use super::{param, Dynamic, Reply, Shared};

/// (oyun_bilgi_id, game name). Every game sells every denomination in `DENOMINATIONS`.
const GAMES: &[(&str, &str)] = &[("7001", "PUBG Mobile"), ("7002", "Free Fire"), ("7003", "Valorant")];
/// (kupur, price in cents).
const DENOMINATIONS: &[(&str, i64)] = &[("60", 1012), ("325", 5060), ("660", 10120)];

fn price(oyun: &str, kupur: &str) -> Option<i64> {
    GAMES.iter().find(|(id, _)| *id == oyun)?;
    DENOMINATIONS.iter().find(|(k, _)| *k == kupur).map(|(_, p)| *p)
}

fn text(s: impl Into<String>) -> Reply {
    Reply::text(200, s.into())
}

/// Is this Znet call answerable at all? Bad credentials get the real thing: HTTP 200, no body.
pub fn authorised(shared: &Shared, pairs: &[(String, String)]) -> bool {
    let kod = param(pairs, "kod").unwrap_or("");
    let sifre = param(pairs, "sifre").unwrap_or("");
    if kod.is_empty() || sifre.is_empty() {
        return false;
    }
    shared.znet_logins.is_empty() || shared.znet_logins.iter().any(|(k, s)| k == kod && s == sifre)
}

pub fn balance(shared: &Shared) -> Reply {
    text(format!("OK|{}", money(shared.store.balance_cents(Proto::Znet))))
}

pub fn catalogue() -> Reply {
    let mut result = Vec::new();
    let mut id = 0;
    for (oyun, game) in GAMES {
        for (kupur, cents) in DENOMINATIONS {
            id += 1;
            result.push(serde_json::json!({
                "id": id, "adi": format!("{game} {kupur}"), "aciklama": format!("{game} {kupur} kupür"),
                "oyun_id": oyun.trim_start_matches("700"), "oyun_adi": game, "fiyat": money(*cents),
                "kupur": kupur, "oyun_bilgi_id": oyun,
            }));
        }
    }
    Reply::json(200, &serde_json::json!({"success": true, "result": result, "error": null}))
}

pub fn place(shared: &Shared, d: &Dynamic, pairs: &[(String, String)]) -> Reply {
    let referans = param(pairs, "referans").unwrap_or("").trim();
    if referans.is_empty() {
        return text("3|Referans bilgisi eksik");
    }
    let Some(cents) = price(param(pairs, "oyun").unwrap_or(""), param(pairs, "kupur").unwrap_or("")) else {
        return text("3|Kupur Bilgisi Bulunamadı");
    };
    let fate = order_fate(shared.seed, referans, d.cancel_share, d.complete_after, d.jitter);
    match shared.store.place(Proto::Znet, referans, fate, cents) {
        Ok(_) => text(format!("OK|{}|{}", money(cents), money(shared.store.balance_cents(Proto::Znet)))),
        Err(_) => text("3|Referans daha önce kullanılmış"),
    }
}

pub fn check(shared: &Shared, pairs: &[(String, String)]) -> Reply {
    let reference = param(pairs, "tahsilat_api_islem_id").unwrap_or("").trim();
    match shared.store.lookup(Proto::Znet, &[reference], false).pop().flatten() {
        None => text("3|Sipariş bulunamadı"),
        Some(f) => match f.state {
            State::Waiting => text("OK|1| |Beklemede"),
            State::Approved => text(format!("OK|2|{}|Onaylandı", f.pin)),
            State::Cancelled => text("OK|3| |İptal edildi"),
        },
    }
}
