//! The Znet dealer API as the simulator speaks it (`/servis/*.php`, plain `|` text), strictly in
//! the forms `shared/notes/providers.md` quotes from the vendor's document and the integration
//! notes.

use super::state::{money, order_fate, Proto, State};
use super::{param, Draw, Dynamic, Reply, Shared};

/// (oyun_bilgi_id, game name). Every game sells every denomination in `DENOMINATIONS`.
const GAMES: &[(&str, &str)] = &[("7001", "PUBG Mobile"), ("7002", "Free Fire"), ("7003", "Valorant")];
/// (kupur, price in cents).
const DENOMINATIONS: &[(&str, i64)] = &[("60", 1012), ("325", 5060), ("660", 10120)];

/// Most digits a `referans` may have (the dealer keeps it in a numeric column).
const REFERANS_MAX_DIGITS: usize = 18;

/// The documented waiting text (`OK|1| - |İşlem bekleniyor`).
pub const WAITING_NOTE: &str = "İşlem bekleniyor";

fn price(oyun: &str, kupur: &str) -> Option<i64> {
    GAMES.iter().find(|(id, _)| *id == oyun)?;
    DENOMINATIONS.iter().find(|(k, _)| *k == kupur).map(|(_, p)| *p)
}

fn text(s: impl Into<String>) -> Reply {
    Reply::text(200, s.into())
}

/// A `referans` / `tahsilat_api_islem_id` as the dealer's numeric column holds it: digits only,
/// at most 18 of them, leading zeros dropped. `None` for anything else.
pub fn canonical_referans(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = raw.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (digits.len() <= REFERANS_MAX_DIGITS).then(|| digits.to_string())
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

/// `{"success": true, "result": [...]}` with string values and only the fields of the
/// documented example (`aciklama`, `oyun_id` and `error` "may be present": they are not).
pub fn catalogue() -> Reply {
    let mut result = Vec::new();
    let mut id = 0;
    for (oyun, game) in GAMES {
        for (kupur, cents) in DENOMINATIONS {
            id += 1;
            result.push(serde_json::json!({
                "id": id.to_string(), "adi": format!("{game} {kupur}"), "fiyat": money(*cents),
                "oyun_adi": game, "oyun_bilgi_id": oyun, "kupur": kupur,
            }));
        }
    }
    Reply::json(200, &serde_json::json!({"success": true, "result": result}))
}

/// `pin_ekle.php`. Returns the reply and whether an order was recorded.
pub fn place(shared: &Shared, d: &Dynamic, draw: Draw, pairs: &[(String, String)]) -> (Reply, bool) {
    let Some(referans) = canonical_referans(param(pairs, "referans").unwrap_or("")) else {
        return (text("3|Referans Bilgisi Geçersiz"), false);
    };
    let Some(cents) = price(param(pairs, "oyun").unwrap_or(""), param(pairs, "kupur").unwrap_or("")) else {
        return (text("3|Kupur Bilgisi Bulunamadı"), false);
    };
    if let Some(id) = shared.store.double_placement(Proto::Znet, &referans) {
        return (text(format!("4|Daha Önce Gönderilmiş ({id})")), false);
    }
    if d.reject_replacements && shared.store.was_seen_unrecorded(Proto::Znet, &referans) {
        return (text("8|Bağlantı hatası veya yetersiz bakiye"), false);
    }
    if draw.reject {
        return (text("3|Yetersiz Bakiye"), false);
    }
    if d.maintenance {
        return (text("3|Sistem bakımda, lütfen daha sonra deneyin"), false);
    }
    if shared.store.balance_cents(Proto::Znet) < cents {
        shared.store.no_balance_refusal();
        return (text("8|Bağlantı hatası veya yetersiz bakiye"), false);
    }
    let fate = order_fate(shared.seed, &referans, d.cancel_share, d.complete_after, d.jitter);
    match shared.store.place(Proto::Znet, &referans, fate, cents) {
        Ok(_) => (text(format!("OK|{}|{}", money(cents), money(shared.store.balance_cents(Proto::Znet)))), true),
        // The vendor's other services answer a repeated id like this.
        Err(super::state::Double(id)) => (text(format!("4|Daha Önce Gönderilmiş ({id})")), false),
    }
}

/// `pin_kontrol.php`.
pub fn check(shared: &Shared, d: &Dynamic, pairs: &[(String, String)]) -> Reply {
    let found = canonical_referans(param(pairs, "tahsilat_api_islem_id").unwrap_or(""))
        .and_then(|r| shared.store.lookup(Proto::Znet, &[r.as_str()], false).pop().flatten());
    match found {
        None => text("3|Sipariş bulunamadı"),
        Some(f) => match f.state {
            State::Waiting => text(format!("OK|1| - |{}", d.waiting_note.as_deref().unwrap_or(WAITING_NOTE))),
            State::Approved => text(format!("OK|2|{}|Onaylandı", f.pin)),
            State::Cancelled => text("OK|3| - |İşlem iptal edildi"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referans_is_a_number_as_a_numeric_column_holds_it() {
        assert_eq!(canonical_referans("123456").as_deref(), Some("123456"));
        assert_eq!(canonical_referans(" 00123 ").as_deref(), Some("123"));
        assert_eq!(canonical_referans("000").as_deref(), Some("0"));
        assert_eq!(canonical_referans("999999999999999999").as_deref(), Some("999999999999999999"));
        for bad in ["", "1234567890123456789", "12a", "-5", "1.5", "d3f0c9a2-7b1e-4c1e-9f0a-1b2c3d4e5f60", "zr-1"] {
            assert_eq!(canonical_referans(bad), None, "{bad}");
        }
    }
}
