//! Conformance: every reply `shared/notes/providers.md` quotes from the providers' documents and
//! integration notes, verbatim, and every quirk it lists, fed to the adapters' classifiers with
//! the outcome each must mean to orderctl. Only the documents decide these expectations; the
//! simulator plays no part here.

use super::*;
use rust_decimal::Decimal;

fn rejected(o: &PlacementOutcome) -> &str {
    match o {
        PlacementOutcome::Rejected { message } => message,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

mod znet_documented {
    use super::super::znet::{classify_check, classify_placement, parse_balance, parse_catalogue};
    use super::*;

    #[test]
    fn bakiye_kontrol() {
        let b = parse_balance(200, "OK|12755.23").unwrap();
        assert_eq!((b.balance.as_str(), b.debt.as_deref(), b.currency.as_deref()), ("12755.23", None, Some("TRY")));
        // "some sites add a third field, debt: OK|balance|debt"
        let b = parse_balance(200, "OK|12755.23|250.00").unwrap();
        assert_eq!((b.balance.as_str(), b.debt.as_deref()), ("12755.23", Some("250.00")));
        // "an integration note also shows ERROR|Invalid credentials"
        assert!(
            matches!(parse_balance(200, "ERROR|Invalid credentials"), Err(ProviderError::Refused(m)) if m.contains("Invalid credentials"))
        );
        // "<code>|<text>"
        assert!(
            matches!(parse_balance(200, "3|Açıklama"), Err(ProviderError::Refused(m)) if m.contains("Açıklama") && m.contains('3'))
        );
        // "No dealer, API off or a wrong fixed IP → an empty body, no error text at all."
        assert!(matches!(parse_balance(200, ""), Err(ProviderError::Auth(_))));
        // "HTML body = wrong base URL"
        assert!(matches!(
            parse_balance(200, "<!DOCTYPE html><html><body>Bayi Girişi</body></html>"),
            Err(ProviderError::WrongBaseUrl(_))
        ));
    }

    #[test]
    fn pin_listesi() {
        let items = parse_catalogue(
            200,
            r#"{"success": true, "result": [{"id": "12345", "adi": "PUBG Mobile 60 UC", "fiyat": "45.50",
  "oyun_adi": "PUBG Mobile", "oyun_bilgi_id": "100", "kupur": "UC60"}]}"#,
        )
        .unwrap();
        assert_eq!(items.len(), 1);
        // A package mapping's `oyun` is the catalogue's `oyun_bilgi_id`.
        assert_eq!((items[0].id.as_str(), items[0].price.as_str()), ("100", "45.50"));
        assert_eq!(items[0].name, "PUBG Mobile 60 UC");
        assert!(items[0].detail.contains("UC60"));
        // The mapping {"oyun": "100", "kupur": "UC60"} names this entry (its catalogue cost).
        let k = &super::super::znet::KIND;
        assert_eq!((k.mapping_key)(&serde_json::json!({"oyun": "100", "kupur": "UC60"})), Some((k.item_key)(&items[0])));
        // The table's form, with `aciklama`, `oyun_id` and `"error":null`.
        let items = parse_catalogue(
            200,
            r#"{"success":true,"result":[{"id":"1","adi":"60 UC","aciklama":"x","oyun_id":"3","oyun_adi":"PUBG Mobile","fiyat":"1.00","kupur":"60","oyun_bilgi_id":"7001"}],"error":null}"#,
        )
        .unwrap();
        assert_eq!(items[0].id, "7001");
        assert!(matches!(
            parse_catalogue(200, r#"{"success": false, "error": "Authentication failed"}"#),
            Err(ProviderError::Refused(m)) if m.contains("Authentication failed")
        ));
    }

    #[test]
    fn pin_ekle() {
        assert!(matches!(
            classify_placement(200, "OK|10.12|980.88"),
            PlacementOutcome::Accepted { early: None, external_order_id: None, .. }
        ));
        // "OK|<dealer cost>|<remaining balance>": the cost is recorded exactly, and only as the
        // documents show it (a decimal point, two places); anything else is no cost, never a guess.
        for (body, cost) in [
            ("OK|10.12|980.88", Some(Decimal::new(1012, 2))),
            ("OK|10|980.88", Some(Decimal::new(1000, 2))),
            ("OK|10,12|980,88", None),
            ("OK|10.125|980.88", None),
        ] {
            match classify_placement(200, body) {
                PlacementOutcome::Accepted { cost: c, balance, .. } => {
                    assert_eq!(c, cost, "{body}");
                    // The remaining dealer balance, read from the same reply.
                    if cost.is_some() {
                        assert_eq!(balance, Some(Decimal::new(98088, 2)), "{body}");
                    }
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // "the vendor document says 3|Açıklama"
        assert_eq!(rejected(&classify_placement(200, "3|Açıklama")), "3: Açıklama");
        assert_eq!(rejected(&classify_placement(200, "3|Kupur Bilgisi Bulunamadı")), "3: Kupur Bilgisi Bulunamadı");
        // "the integration notes show 8|Bağlantı hatası veya yetersiz bakiye"
        assert_eq!(
            rejected(&classify_placement(200, "8|Bağlantı hatası veya yetersiz bakiye")),
            "8: Bağlantı hatası veya yetersiz bakiye"
        );
        // "Read every <digits>|text reply as an error with that code"
        for body in ["1|x", "2|Bayi pasif", "5|Yetersiz Bakiye", "99|Bilinmeyen hata"] {
            let code = body.split('|').next().unwrap();
            assert!(rejected(&classify_placement(200, body)).starts_with(&format!("{code}: ")), "{body}");
        }
        // A repeated id.
        assert_eq!(
            classify_placement(200, "4|Daha Önce Gönderilmiş (166189)"),
            PlacementOutcome::SentBefore { message: "4: Daha Önce Gönderilmiş (166189)".into() }
        );
        assert_eq!(
            classify_placement(200, "OK|8|Bu İşlem Daha Önce Gönderildi"),
            PlacementOutcome::SentBefore { message: "8: Bu İşlem Daha Önce Gönderildi".into() }
        );
        // Unknown: the order may or may not exist.
        for (status, body) in [
            (200, ""),
            (200, "<html><head><title>Bayi Paneli</title></head></html>"),
            (200, "\u{feff}<br />\n<b>Warning</b>: mysql_connect()"),
            (500, "3|Kupur Bilgisi Bulunamadı"),
            (502, ""),
            (200, "OK"),
            (200, "OK|10.12"),
            (200, "ERROR|Invalid credentials"),
            (200, "Bakımdayız"),
        ] {
            assert!(matches!(classify_placement(status, body), PlacementOutcome::Ambiguous { .. }), "{status} {body:?}");
        }
    }

    #[test]
    fn pin_kontrol() {
        assert_eq!(
            classify_check(200, "OK|2|AB12-CD34-EF56-GH78|Açıklama"),
            CheckOutcome::Approved { pin: Some("AB12-CD34-EF56-GH78".into()), message: "Açıklama".into() }
        );
        assert_eq!(classify_check(200, "OK|1| |Açıklama"), CheckOutcome::Waiting { message: "Açıklama".into() });
        assert_eq!(classify_check(200, "OK|3| |Açıklama"), CheckOutcome::Cancelled { message: "Açıklama".into() });
        assert_eq!(
            classify_check(200, "OK|1| - |İşlem bekleniyor"),
            CheckOutcome::Waiting { message: "İşlem bekleniyor".into() }
        );
        assert_eq!(
            classify_check(200, "OK|3| - |İşlem iptal edildi"),
            CheckOutcome::Cancelled { message: "İşlem iptal edildi".into() }
        );
        // "a PIN field of - is no PIN", also when approved (a top-up has none).
        assert_eq!(
            classify_check(200, "OK|2| - |Yükleme yapıldı"),
            CheckOutcome::Approved { pin: None, message: "Yükleme yapıldı".into() }
        );
        // "The fields after field 3 ..., joined, are the provider's message."
        assert_eq!(
            classify_check(200, "OK|2|P-1|a|b"),
            CheckOutcome::Approved { pin: Some("P-1".into()), message: "a|b".into() }
        );
        // "A failed query is 3|Açıklama": no news, unless it says the reference is not found.
        assert!(matches!(classify_check(200, "3|Açıklama"), CheckOutcome::NoNews { .. }));
        assert!(matches!(classify_check(200, "3|Referans bulunamadı"), CheckOutcome::NotFound { .. }));
        assert!(matches!(classify_check(200, "3|Sipariş bulunamadı"), CheckOutcome::NotFound { .. }));
        assert!(matches!(classify_check(200, "3|Bayi bulunamadı"), CheckOutcome::NoNews { .. }), "the dealer, not the order");
        for (status, body) in
            [(200, ""), (200, "<html>"), (500, "OK|2|P|x"), (200, "OK|7| |?"), (200, "ERROR|Invalid credentials")]
        {
            assert!(matches!(classify_check(status, body), CheckOutcome::NoNews { .. }), "{status} {body:?}");
        }
    }
}

mod xstor_documented {
    use super::super::xstor::{
        classify_check_by_order_id, classify_check_by_uuid, classify_placement, parse_balance, parse_catalogue,
    };
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn profile() {
        let b = parse_balance(200, r#"{"balance": "43.55", "email": "user@example.com"}"#).unwrap();
        assert_eq!((b.balance.as_str(), b.account.as_deref()), ("43.55", Some("user@example.com")));
    }

    #[test]
    fn products() {
        for qty_values in ["null", r#"{"min": 1, "max": 100}"#, r#"["10", "20", "50"]"#] {
            let body = format!(
                r#"[{{"id": "12345", "name": "PUBG Mobile 60 UC", "price": "45.50",
  "category_name": "PUBG Mobile", "available": true, "params": ["uid", "server"], "product_type": "package",
  "qty_values": {qty_values}}}]"#
            );
            let items = parse_catalogue(200, &body).unwrap();
            assert_eq!((items[0].id.as_str(), items[0].price.as_str(), items[0].available), ("12345", "45.50", true));
            let k = &super::super::xstor::KIND;
            assert_eq!((k.mapping_key)(&serde_json::json!({"product_id": "12345"})), Some((k.item_key)(&items[0])));
        }
        // "Ids and prices may be strings or numbers."
        let items = parse_catalogue(200, r#"[{"id": 12345, "name": "n", "price": 45.5, "available": true}]"#).unwrap();
        assert_eq!((items[0].id.as_str(), items[0].price.as_str()), ("12345", "45.5"));
    }

    #[test]
    fn new_order() {
        let o = classify_placement(
            200,
            r#"{"status": "OK", "data": {"order_id": "67890", "status": "success", "price": "45.50",
  "pin": "ABC123XYZ789", "replay_api": ["Order completed successfully"], "note": "..."}}"#,
        );
        match o {
            PlacementOutcome::Accepted { external_order_id, early: Some(CheckOutcome::Approved { pin, .. }), cost, .. } => {
                // "price": "45.50" is what the order cost us, exactly.
                assert_eq!(cost, Some(Decimal::new(4550, 2)));
                assert_eq!(external_order_id.as_deref(), Some("67890"));
                assert_eq!(pin.as_deref(), Some("ABC123XYZ789"));
            }
            other => panic!("{other:?}"),
        }
        for word in ["wait", "pending"] {
            let o = classify_placement(
                200,
                &format!(
                    r#"{{"status": "OK", "data": {{"order_id": 67890, "status": "{word}", "price": 45.5, "replay_api": [], "note": ""}}}}"#
                ),
            );
            assert!(
                matches!(&o, PlacementOutcome::Accepted { early: None, external_order_id: Some(id), .. } if id == "67890"),
                "{o:?}"
            );
            // "prices may be strings or numbers": 45.5 as a JSON number is 45.50 exactly.
            assert!(matches!(&o, PlacementOutcome::Accepted { cost: Some(c), .. } if *c == Decimal::new(4550, 2)), "{o:?}");
        }
        // The documented error has no numeric code: still a definite rejection.
        let m = rejected(&classify_placement(200, r#"{"status": "ERROR", "message": "Insufficient balance", "error": "..."}"#))
            .to_string();
        assert!(m.contains("Insufficient balance"), "{m}");
    }

    #[test]
    fn error_codes_of_the_api_family_with_and_without_the_code() {
        for code in [105, 106, 109, 110, 112, 113, 114, 120, 121, 122, 123, 130] {
            for body in [
                format!(r#"{{"status": "ERROR", "code": {code}, "message": "m{code}"}}"#),
                format!(r#"{{"status": "ERROR", "code": "{code}", "message": "m{code}"}}"#),
            ] {
                let m = rejected(&classify_placement(200, &body)).to_string();
                assert!(m.starts_with(&code.to_string()) && m.contains(&format!("m{code}")), "{body}: {m}");
            }
        }
        // 500 "unknown" says nothing about whether the order was taken.
        assert!(matches!(
            classify_placement(200, r#"{"status": "ERROR", "code": 500, "message": "unknown"}"#),
            PlacementOutcome::Ambiguous { .. }
        ));
        // The same errors as sites without codes send them.
        for message in ["token required", "token error", "not allowed", "IP not allowed", "maintenance", "product not found"] {
            let m = rejected(&classify_placement(200, &format!(r#"{{"status": "ERROR", "message": "{message}"}}"#))).to_string();
            assert!(m.contains(message), "{m}");
        }
        assert!(matches!(
            parse_balance(200, r#"{"status": "ERROR", "code": 121, "message": "token error"}"#),
            Err(ProviderError::Auth(_))
        ));
        assert!(matches!(parse_balance(200, r#"{"status": "ERROR", "message": "token error"}"#), Err(ProviderError::Auth(_))));
        assert!(matches!(
            parse_balance(200, r#"{"status": "ERROR", "code": 130, "message": "m"}"#),
            Err(ProviderError::Unreachable(_))
        ));
    }

    #[test]
    fn check_by_order_id() {
        let body = r#"{"status": "OK", "data": [{"order_id": "67890", "status": "success", "price": "45.50", "pin": "ABC123XYZ789",
  "note": "Order completed"}, {"order_id": "67891", "status": "pending", "note": "Processing..."}]}"#;
        let out = classify_check_by_order_id(200, body, &ids(&["67891", "67890", "67892"]));
        assert_eq!(out[0].outcome, CheckOutcome::Waiting { message: "Processing...".into() });
        assert_eq!(
            out[1].outcome,
            CheckOutcome::Approved { pin: Some("ABC123XYZ789".into()), message: "Order completed".into() }
        );
        assert_eq!(out[1].external_order_id.as_deref(), Some("67890"));
        // "Unknown ids are simply missing from data."
        assert!(matches!(out[2].outcome, CheckOutcome::NotFound { .. }));
        // Ids as numbers on either side.
        let out = classify_check_by_order_id(200, &body.replace("\"67890\"", "67890"), &ids(&["67890"]));
        assert!(matches!(out[0].outcome, CheckOutcome::Approved { .. }));
    }

    #[test]
    fn an_entry_naming_another_order_is_not_ours() {
        let body = r#"{"status": "OK", "data": [{"order_id": "67891", "status": "success", "pin": "OTHER"}]}"#;
        let out = classify_check_by_order_id(200, body, &ids(&["67890"]));
        assert!(matches!(out[0].outcome, CheckOutcome::NotFound { .. }), "{out:?}");
        // With uuid=1 an entry that names a different order_uuid is not ours either.
        let body =
            r#"{"status": "OK", "data": [{"order_id": "67891", "order_uuid": "uuid-999", "status": "success", "pin": "OTHER"}]}"#;
        assert!(matches!(classify_check_by_uuid(200, body, "uuid-123").outcome, CheckOutcome::NoNews { .. }));
    }

    #[test]
    fn check_by_uuid_learns_the_order_id_from_an_entry_without_order_uuid() {
        let body = r#"{"status": "OK", "data": [{"order_id": "67890", "status": "success", "price": "45.50", "pin": "ABC123XYZ789",
  "note": "Order completed"}]}"#;
        let a = classify_check_by_uuid(200, body, "uuid-123");
        assert_eq!(a.outcome, CheckOutcome::Approved { pin: Some("ABC123XYZ789".into()), message: "Order completed".into() });
        assert_eq!(a.external_order_id.as_deref(), Some("67890"));
        assert!(matches!(
            classify_check_by_uuid(200, r#"{"status": "OK", "data": []}"#, "uuid-123").outcome,
            CheckOutcome::NotFound { .. }
        ));
    }

    #[test]
    fn status_word_synonyms_in_check_entries() {
        for (word, label) in [
            ("wait", "waiting"),
            ("pending", "waiting"),
            ("processing", "waiting"),
            ("queued", "waiting"),
            ("accept", "approved"),
            ("success", "approved"),
            ("ok", "approved"),
            ("done", "approved"),
            ("completed", "approved"),
            ("reject", "cancelled"),
            ("failed", "cancelled"),
            ("rejected", "cancelled"),
            ("error", "cancelled"),
            ("cancelled", "cancelled"),
            ("canceled", "cancelled"),
            ("refunded?", "no_news"),
        ] {
            let body = format!(r#"{{"status": "OK", "data": [{{"order_id": "1", "status": "{word}", "note": "n"}}]}}"#);
            assert_eq!(classify_check_by_order_id(200, &body, &ids(&["1"]))[0].outcome.label(), label, "{word}");
        }
    }
}
