//! Provider adapters against the built-in simulator over real HTTP on 127.0.0.1, every fault,
//! and `orderctl provider check`.
//!
//! The simulator answers strictly as `shared/notes/providers.md` documents the providers, so
//! these tests show that the adapters work with what the documents promise and nothing more.
//! Znet references are numbers; x-stor orders are checked by the provider's `order_id`.

use crate::support::*;
use orderctl::provider::{
    self, CheckAnswer, CheckKey, CheckOutcome, PlacementOutcome, PlacementRequest, Provider, ProviderConfig, ProviderError,
    ProviderKind,
};
use orderctl::settings::HttpSettings;
use orderctl::simulator::{order_fate, SimSettings, Simulator};
use serde_json::json;
use std::time::Duration;

const ZNET_PASSWORD: &str = "s3cret-znet";
const XSTOR_TOKEN: &str = "tok-secret-123";

fn sim(settings: SimSettings) -> Simulator {
    Simulator::start(SimSettings { threads: 4, ..settings }, "127.0.0.1:0").expect("simulator starts")
}

/// Orders final at once, never cancelled, logins restricted so bad credentials can be tested.
fn instant() -> SimSettings {
    SimSettings {
        complete_after: Duration::ZERO,
        znet_logins: vec![format!("bayi1:{ZNET_PASSWORD}")],
        xstor_tokens: vec![XSTOR_TOKEN.to_string()],
        ..SimSettings::default()
    }
}

fn http(request_timeout: Duration) -> HttpSettings {
    HttpSettings { connect_timeout: Duration::from_secs(2), request_timeout, ..HttpSettings::default() }
}

fn znet_at(base: &str, sifre: &str) -> Box<dyn Provider> {
    provider::build(ProviderConfig {
        name: "znet-main".into(),
        kind: ProviderKind::of(&orderctl::provider::znet::KIND),
        base_url: base.to_string(),
        credentials: json!({"kod": "bayi1", "sifre": sifre}),
        http: http(Duration::from_millis(300)),
        gate: None,
    })
    .unwrap()
}

fn xstor_at(base: &str, token: &str) -> Box<dyn Provider> {
    provider::build(ProviderConfig {
        name: "xstor".into(),
        kind: ProviderKind::of(&orderctl::provider::xstor::KIND),
        base_url: base.to_string(),
        credentials: json!({"api_token": token}),
        http: http(Duration::from_millis(300)),
        gate: None,
    })
    .unwrap()
}

fn znet_order(reference: &str) -> PlacementRequest {
    PlacementRequest {
        reference: reference.to_string(),
        player: "5123456789".into(),
        extra: String::new(),
        quantity: 1,
        mapping: json!({"oyun": "7001", "kupur": 60}),
    }
}

fn xstor_order(reference: &str) -> PlacementRequest {
    PlacementRequest {
        reference: reference.to_string(),
        player: "P-42".into(),
        extra: String::new(),
        quantity: 1,
        mapping: json!({"product_id": "501", "player_param": "playerId"}),
    }
}

/// A check by our reference alone (a Znet order, or an x-stor placement whose reply was lost).
fn by_ref(reference: &str) -> CheckKey {
    CheckKey::reference(reference)
}

/// A uuid-shaped x-stor reference.
fn uuid_ref(i: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i, i)
}

fn accepted(o: &PlacementOutcome) -> bool {
    matches!(o, PlacementOutcome::Accepted { .. })
}

fn ambiguous(o: &PlacementOutcome) -> bool {
    matches!(o, PlacementOutcome::Ambiguous { .. })
}

/// The provider's order id from an accepted placement.
fn order_id_of(o: &PlacementOutcome) -> String {
    match o {
        PlacementOutcome::Accepted { external_order_id: Some(id), .. } => id.clone(),
        other => panic!("not accepted with an order id: {other:?}"),
    }
}

fn pin_of(seed: u64, reference: &str) -> String {
    order_fate(seed, reference, 0.0, Duration::ZERO, Duration::ZERO).pin
}

/// A raw GET to the simulator: (status, body).
fn raw_get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("api-token", t);
    }
    let mut resp = req.call().unwrap();
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap())
}

#[test]
fn znet_places_and_checks_until_approved_with_the_predicted_pin() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let o = z.place(&znet_order("100001"));
    assert!(accepted(&o), "{o:?}");
    assert_eq!(
        z.check(&by_ref("100001")),
        CheckAnswer {
            outcome: CheckOutcome::Approved { pin: Some(pin_of(1, "100001")), message: "Onaylandı".into() },
            external_order_id: None
        }
    );
    let st = s.stats();
    assert_eq!((st["orders_placed"].as_u64(), st["placement_calls"].as_u64()), (Some(1), Some(1)));
    assert_eq!(st["status_checks_by_order"]["100001"], 1);
    assert_eq!(st["orders"][0]["provider"], "znet");
    assert_eq!(st["orders"][0]["reference"], "100001");
}

#[test]
fn znet_waiting_and_cancelled_orders_in_the_documented_forms() {
    let s = sim(SimSettings { complete_after: Duration::from_secs(3600), ..instant() });
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    assert!(accepted(&z.place(&znet_order("200001"))));
    // The simulator answers `OK|1| - |İşlem bekleniyor`: the ` - ` PIN field is no PIN.
    assert_eq!(z.check(&by_ref("200001")).outcome, CheckOutcome::Waiting { message: "İşlem bekleniyor".into() });

    s.configure(&json!({"complete_after": 0, "cancel_share": 1.0})).unwrap();
    assert!(accepted(&z.place(&znet_order("200002"))));
    assert_eq!(z.check(&by_ref("200002")).outcome, CheckOutcome::Cancelled { message: "İşlem iptal edildi".into() });
    assert_eq!(s.stats()["orders"][1]["outcome"], "cancelled");
}

#[test]
fn znet_unknown_reference_is_not_found_and_unknown_denomination_is_rejected_with_its_code() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    assert!(matches!(z.check(&by_ref("999999")).outcome, CheckOutcome::NotFound { .. }));
    let o = z.place(&PlacementRequest { mapping: json!({"oyun": "7001", "kupur": "61"}), ..znet_order("300001") });
    assert_eq!(o, PlacementOutcome::Rejected { message: "3: Kupur Bilgisi Bulunamadı".into() });
    assert_eq!(s.stats()["orders_placed"], 0);
}

#[test]
fn znet_takes_numeric_references_and_the_simulator_refuses_others() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    assert_eq!(z.reference_style(), provider::ReferenceStyle::Numeric);
    // What the core generates: epoch milliseconds and a sequence, 18 digits.
    let reference = provider::new_reference(provider::ReferenceStyle::Numeric, 1_767_225_600_123, 42);
    assert_eq!(reference.len(), 18);
    assert!(accepted(&z.place(&znet_order(&reference))));
    assert!(matches!(z.check(&by_ref(&reference)).outcome, CheckOutcome::Approved { .. }));

    // The adapter never sends a reference with letters or dashes...
    let uuid = "d3f0c9a2-7b1e-4c1e-9f0a-1b2c3d4e5f60";
    let o = z.place(&znet_order(uuid));
    assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("numeric references")), "{o:?}");
    assert_eq!(s.stats()["placement_calls"], 1, "nothing sent");
    // ...and a dealer whose id column is numeric would refuse it, as the simulator does.
    let url = format!(
        "{}/servis/pin_ekle.php?kod=bayi1&sifre={ZNET_PASSWORD}&oyun=7001&kupur=60&referans={uuid}&musteri_tel=&oyuncu_bilgi=1",
        s.base_url()
    );
    assert_eq!(raw_get(&url, None), (200, "3|Referans Bilgisi Geçersiz".to_string()));
    assert!(matches!(znet_at(&s.base_url(), ZNET_PASSWORD).check(&by_ref(uuid)).outcome, CheckOutcome::NotFound { .. }));
    assert_eq!(s.stats()["orders_placed"], 1);
}

#[test]
fn znet_repeated_reference_is_sent_before_never_a_rejection() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    assert!(accepted(&z.place(&znet_order("400001"))));
    let id = s.stats()["orders"][0]["order_id"].as_u64().unwrap();
    assert_eq!(
        z.place(&znet_order("400001")),
        PlacementOutcome::SentBefore { message: format!("4: Daha Önce Gönderilmiş ({id})") }
    );
    // The original is untouched and a status check tells how it stands.
    assert!(matches!(z.check(&by_ref("400001")).outcome, CheckOutcome::Approved { .. }));
    let st = s.stats();
    assert_eq!((st["orders_placed"].as_u64(), st["double_placements"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn znet_quantity_above_one_is_rejected_without_a_call() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let o = z.place(&PlacementRequest { quantity: 3, ..znet_order("500001") });
    assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("quantity")), "{o:?}");
    assert_eq!(s.stats()["placement_calls"], 0);
}

#[test]
fn znet_base_url_with_and_without_servis() {
    let s = sim(instant());
    let base = s.base_url();
    for b in [base.clone(), format!("{base}/"), format!("{base}/servis"), format!("{base}/servis/")] {
        let bal = znet_at(&b, ZNET_PASSWORD).balance().unwrap_or_else(|e| panic!("{b}: {e}"));
        assert_eq!(bal.currency.as_deref(), Some("TRY"), "{b}");
        let items = znet_at(&b, ZNET_PASSWORD).catalogue().unwrap();
        assert!(items.iter().any(|i| i.id == "7001" && i.detail.contains("60")), "{items:?}");
    }
}

#[test]
fn znet_wrong_base_url_says_so() {
    let s = sim(instant());
    let z = znet_at(&format!("{}/bayi-paneli", s.base_url()), ZNET_PASSWORD);
    match z.balance() {
        Err(ProviderError::WrongBaseUrl(m)) => assert!(m.contains("base URL"), "{m}"),
        other => panic!("{other:?}"),
    }
    let o = z.place(&znet_order("600001"));
    assert!(matches!(&o, PlacementOutcome::Ambiguous { reason } if reason.contains("base URL")), "{o:?}");
}

#[test]
fn znet_bad_credentials_are_an_authentication_problem_never_a_verdict() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), "wrong-password");
    match z.balance() {
        Err(ProviderError::Auth(m)) => {
            assert!(m.contains("password") && m.contains("switched off") && m.contains("IP address"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(ambiguous(&z.place(&znet_order("700001"))));
    assert!(matches!(z.check(&by_ref("700001")).outcome, CheckOutcome::NoNews { .. }));
    assert_eq!(s.stats()["orders_placed"], 0);
}

#[test]
fn znet_faults_are_ambiguous_at_placement_and_reconcile_by_reference() {
    let s = sim(SimSettings { hang: Duration::from_secs(2), ..instant() });
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);

    s.configure(&json!({"error_share": 1.0})).unwrap();
    assert!(ambiguous(&z.place(&znet_order("800001"))));
    assert!(matches!(z.check(&by_ref("800001")).outcome, CheckOutcome::NoNews { .. }));

    s.configure(&json!({"error_share": 0, "empty_share": 1.0})).unwrap();
    assert!(ambiguous(&z.place(&znet_order("800002"))));

    s.configure(&json!({"empty_share": 0, "garbage_share": 1.0})).unwrap();
    assert!(ambiguous(&z.place(&znet_order("800003"))));
    assert!(matches!(z.check(&by_ref("800003")).outcome, CheckOutcome::NoNews { .. }));

    s.configure(&json!({"garbage_share": 0, "hang_share": 1.0})).unwrap();
    let o = z.place(&znet_order("800004"));
    assert!(matches!(&o, PlacementOutcome::Ambiguous { reason } if reason.contains("timeout")), "{o:?}");

    // Reconciliation: the same reference tells which placements exist. 500 and empty were not
    // recorded; garbage and hang were.
    s.configure(&json!({"hang_share": 0})).unwrap();
    assert!(matches!(z.check(&by_ref("800001")).outcome, CheckOutcome::NotFound { .. }));
    assert!(matches!(z.check(&by_ref("800002")).outcome, CheckOutcome::NotFound { .. }));
    assert!(matches!(z.check(&by_ref("800003")).outcome, CheckOutcome::Approved { .. }));
    assert!(matches!(z.check(&by_ref("800004")).outcome, CheckOutcome::Approved { .. }));
    let st = s.stats();
    assert_eq!(st["orders_placed"], 2);
    assert_eq!(st["faults_injected"], 6);
}

#[test]
fn double_placement_is_counted_and_refused_for_both_protocols() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    assert!(accepted(&z.place(&znet_order("900001"))));
    assert!(matches!(z.place(&znet_order("900001")), PlacementOutcome::SentBefore { .. }));
    assert!(accepted(&x.place(&xstor_order("dup-2"))));
    // The x-stor documentation says nothing about a repeated order_uuid: the simulator refuses it
    // in the documented error shape, which reads as a rejection.
    assert_eq!(x.place(&xstor_order("dup-2")), PlacementOutcome::Rejected { message: "x-stor: Duplicate order_uuid".into() });
    let st = s.stats();
    assert_eq!((st["double_placements"].as_u64(), st["orders_placed"].as_u64()), (Some(2), Some(2)));
}

#[test]
fn xstor_places_with_an_early_pin_and_checks_by_order_id() {
    let s = sim(instant());
    let x = xstor_at(&format!("{}/", s.base_url()), XSTOR_TOKEN);
    assert_eq!(x.reference_style(), provider::ReferenceStyle::Uuid);
    let reference = uuid_ref(1);
    let o = x.place(&xstor_order(&reference));
    let pin = pin_of(1, &reference);
    match &o {
        PlacementOutcome::Accepted {
            external_order_id: Some(_),
            early: Some(CheckOutcome::Approved { pin: Some(p), .. }),
            ..
        } => {
            assert_eq!(p, &pin)
        }
        other => panic!("{other:?}"),
    }
    let id = order_id_of(&o);
    assert_eq!(id, s.stats()["orders"][0]["order_id"].to_string());
    let a = x.check(&CheckKey::with_order_id(&reference, &id));
    assert!(matches!(&a.outcome, CheckOutcome::Approved { pin: Some(p), .. } if *p == pin), "{a:?}");
    assert_eq!(a.external_order_id.as_deref(), Some(id.as_str()));
    assert!(matches!(x.check(&CheckKey::with_order_id(uuid_ref(2), "424242")).outcome, CheckOutcome::NotFound { .. }));
    assert!(matches!(x.check(&by_ref(&uuid_ref(3))).outcome, CheckOutcome::NotFound { .. }));
    assert_eq!(x.balance().unwrap().account.as_deref(), Some("simulator@x-stor.test"));
    assert_eq!(x.catalogue().unwrap().iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["501", "502", "503"]);
}

#[test]
fn xstor_waiting_and_cancelled_orders() {
    let s = sim(SimSettings { complete_after: Duration::from_secs(3600), ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    let o = x.place(&xstor_order(&uuid_ref(10)));
    assert!(matches!(o, PlacementOutcome::Accepted { early: None, .. }), "{o:?}");
    let a = x.check(&CheckKey::with_order_id(uuid_ref(10), order_id_of(&o)));
    assert_eq!(a.outcome, CheckOutcome::Waiting { message: "Processing...".into() });
    s.configure(&json!({"complete_after": "0s", "cancel_share": 1.0})).unwrap();
    let o = x.place(&xstor_order(&uuid_ref(11)));
    assert!(matches!(o, PlacementOutcome::Accepted { early: Some(CheckOutcome::Cancelled { .. }), .. }), "{o:?}");
    assert!(matches!(x.check(&CheckKey::with_order_id(uuid_ref(11), order_id_of(&o))).outcome, CheckOutcome::Cancelled { .. }));
}

#[test]
fn xstor_batch_checks_150_orders_by_order_id_in_one_request() {
    let s = sim(SimSettings { cancel_share: 0.3, complete_after: Duration::from_millis(300), ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    let mut keys: Vec<CheckKey> = (0..150)
        .map(|i| {
            let reference = uuid_ref(i);
            let o = x.place(&xstor_order(&reference));
            CheckKey::with_order_id(reference, order_id_of(&o))
        })
        .collect();
    keys.push(CheckKey::with_order_id(uuid_ref(999), "99999999"));
    std::thread::sleep(Duration::from_millis(400));
    let before = s.stats()["status_calls"].as_u64().unwrap();
    let out = x.check_many(&keys);
    assert_eq!(s.stats()["status_calls"].as_u64().unwrap() - before, 1, "one request for 151 orders");
    assert_eq!(out.len(), 151);
    for (k, a) in keys.iter().zip(&out).take(150) {
        let fate = order_fate(1, &k.reference, 0.3, Duration::ZERO, Duration::ZERO);
        match &a.outcome {
            CheckOutcome::Approved { pin, .. } => {
                assert!(!fate.cancelled && pin.as_deref() == Some(fate.pin.as_str()), "{}", k.reference)
            }
            CheckOutcome::Cancelled { .. } => assert!(fate.cancelled, "{}", k.reference),
            other => panic!("{}: {other:?}", k.reference),
        }
        assert_eq!(a.external_order_id, k.external_order_id);
    }
    assert!(matches!(out[150].outcome, CheckOutcome::NotFound { .. }), "{:?}", out[150]);
    assert!(x.batch_limit() >= 150);
    // Every order was looked up once, by its order id.
    let st = s.stats();
    assert!(keys.iter().take(150).all(|k| st["status_checks_by_order"][&k.reference] == 1));
}

#[test]
fn xstor_reconciliation_by_order_uuid_learns_the_order_id() {
    let s = sim(SimSettings { complete_after: Duration::from_secs(3600), ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    // The provider took the order but the reply was mangled: we know only our reference.
    s.configure(&json!({"garbage_share": 1.0})).unwrap();
    let (lost, other) = (uuid_ref(20), uuid_ref(21));
    assert!(ambiguous(&x.place(&xstor_order(&lost))));
    s.configure(&json!({"garbage_share": 0.0})).unwrap();
    let placed = x.place(&xstor_order(&other));
    let before = s.stats()["status_calls"].as_u64().unwrap();
    let out = x.check_many(&[by_ref(&lost), CheckKey::with_order_id(&other, order_id_of(&placed)), by_ref(&uuid_ref(22))]);
    let st = s.stats();
    let lost_id =
        st["orders"].as_array().unwrap().iter().find(|o| o["reference"] == lost.as_str()).unwrap()["order_id"].to_string();
    assert_eq!(
        out[0],
        CheckAnswer { outcome: CheckOutcome::Waiting { message: "Processing...".into() }, external_order_id: Some(lost_id) }
    );
    assert_eq!(out[1].outcome, CheckOutcome::Waiting { message: "Processing...".into() });
    assert_eq!(out[1].external_order_id, Some(order_id_of(&placed)));
    assert!(matches!(out[2].outcome, CheckOutcome::NotFound { .. }), "{:?}", out[2]);
    assert_eq!(out[2].external_order_id, None);
    assert_eq!(st["status_calls"].as_u64().unwrap() - before, 3, "one request by order id, one per reference by uuid");
}

#[test]
fn the_simulator_answers_x_stor_in_the_documented_shapes_only() {
    let s = sim(instant());
    let base = s.base_url();
    let reference = uuid_ref(30);
    let (status, body) =
        raw_get(&format!("{base}/client/api/newOrder/501/params?qty=1&playerId=7&order_uuid={reference}"), Some(XSTOR_TOKEN));
    assert_eq!(status, 200);
    let placed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(placed["status"], "OK");
    let data = placed["data"].as_object().unwrap();
    let mut fields: Vec<&str> = data.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["note", "order_id", "pin", "price", "replay_api", "status"], "{body}");
    assert!(data["order_id"].is_string() && data["price"].is_string(), "{body}");
    assert!(!body.contains("order_uuid") && !body.contains(&reference), "{body}");

    let id = data["order_id"].as_str().unwrap();
    for query in [format!("orders=%5B{id}%5D"), format!("orders=%5B%22{reference}%22%5D&uuid=1")] {
        let (_, body) = raw_get(&format!("{base}/client/api/check?{query}"), Some(XSTOR_TOKEN));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entries = v["data"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{query}: {body}");
        assert_eq!(entries[0]["order_id"], id);
        assert!(!body.contains("order_uuid") && !body.contains(&reference), "{query}: {body}");
    }
    // Without uuid=1 the values are order ids: our reference finds nothing.
    let (_, body) = raw_get(&format!("{base}/client/api/check?orders=%5B%22{reference}%22%5D"), Some(XSTOR_TOKEN));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), json!({"status": "OK", "data": []}));
    // Errors in the documented shape, without a numeric code.
    let (status, body) = raw_get(&format!("{base}/client/api/check?orders=%5Bnot-json%5D"), Some(XSTOR_TOKEN));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, v["status"].as_str()), (200, Some("ERROR")));
    assert!(v["message"].is_string() && v["error"].is_string() && v.get("code").is_none(), "{body}");
    let (_, body) = raw_get(&format!("{base}/client/api/profile"), Some("wrong"));
    assert!(body.contains("\"ERROR\"") && !body.contains("\"code\""), "{body}");
    let (_, body) = raw_get(&format!("{base}/client/api/products"), Some(XSTOR_TOKEN));
    let products: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(products.as_array().unwrap().iter().all(|p| p["id"].is_string() && p["price"].is_string()), "{body}");
}

#[test]
fn xstor_bad_token_unknown_product_and_wrong_base_url() {
    let s = sim(instant());
    let bad = xstor_at(&s.base_url(), "wrong-token");
    let o = bad.place(&xstor_order("bt-1"));
    assert_eq!(o, PlacementOutcome::Rejected { message: "x-stor: Invalid api-token".into() });
    assert!(matches!(bad.balance(), Err(ProviderError::Auth(m)) if m.contains("api_token")));
    assert!(bad
        .check_many(&[by_ref("a"), CheckKey::with_order_id("b", "1")])
        .iter()
        .all(|a| matches!(a.outcome, CheckOutcome::NoNews { .. })));

    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    let o = x.place(&PlacementRequest { mapping: json!({"product_id": 999}), ..xstor_order("np-1") });
    assert_eq!(o, PlacementOutcome::Rejected { message: "x-stor: Product not found".into() });

    let html = xstor_at(&format!("{}/shop", s.base_url()), XSTOR_TOKEN);
    assert!(matches!(html.balance(), Err(ProviderError::WrongBaseUrl(_))));
    assert_eq!(s.stats()["orders_placed"], 0);
}

/// `{key: value}` for a key chosen at run time.
fn one(key: &str, value: f64) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(key.to_string(), json!(value));
    serde_json::Value::Object(m)
}

#[test]
fn xstor_faults_are_never_a_verdict() {
    let s = sim(SimSettings { hang: Duration::from_secs(1), ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    for (i, fault) in ["error_share", "garbage_share", "empty_share", "hang_share"].iter().enumerate() {
        s.configure(&one(fault, 1.0)).unwrap();
        let reference = uuid_ref(40 + i as u64);
        let o = x.place(&xstor_order(&reference));
        assert!(ambiguous(&o), "{fault}: {o:?}");
        let checks = x.check_many(&[by_ref(&reference), CheckKey::with_order_id("other", "1")]);
        // The second request may not leave in time after a hang: not asked, never a verdict.
        assert!(
            checks.iter().all(|c| matches!(c.outcome, CheckOutcome::NoNews { .. } | CheckOutcome::NotAsked { .. })),
            "{fault}: {checks:?}"
        );
        assert!(checks.iter().any(|c| matches!(c.outcome, CheckOutcome::NoNews { .. })), "{fault}: {checks:?}");
        assert!(x.balance().is_err(), "{fault}");
        s.configure(&one(fault, 0.0)).unwrap();
    }
    // The hanging calls hold the simulator's four workers until the hang is over.
    std::thread::sleep(Duration::from_millis(1100));
    // Garbage and hang were recorded by the provider, 500 and empty were not.
    let out = x.check_many(&(0..4).map(|i| by_ref(&uuid_ref(40 + i))).collect::<Vec<_>>());
    assert!(matches!(out[0].outcome, CheckOutcome::NotFound { .. }), "{out:?}");
    assert!(matches!(out[1].outcome, CheckOutcome::Approved { .. }), "{out:?}");
    assert!(matches!(out[2].outcome, CheckOutcome::NotFound { .. }), "{out:?}");
    assert!(matches!(out[3].outcome, CheckOutcome::Approved { .. }), "{out:?}");
    assert!(out[1].external_order_id.is_some() && out[3].external_order_id.is_some(), "{out:?}");
}

#[test]
fn a_waiting_note_with_a_nul_byte_and_escapes_comes_out_of_both_adapters_clean() {
    let s = sim(SimSettings { complete_after: Duration::from_secs(3600), ..instant() });
    s.configure(&json!({"waiting_note": "Sıra\u{0}da \u{1b}[31mbekliyor\r\n"})).unwrap();
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    assert!(accepted(&z.place(&znet_order("110001"))));
    let o = x.place(&xstor_order(&uuid_ref(50)));
    let expected = CheckOutcome::Waiting { message: "Sıra da [31mbekliyor".into() };
    assert_eq!(z.check(&by_ref("110001")).outcome, expected);
    assert_eq!(x.check(&CheckKey::with_order_id(uuid_ref(50), order_id_of(&o))).outcome, expected);
    assert_eq!(x.check(&by_ref(&uuid_ref(50))).outcome, expected);
    // A note too long is cut, visibly.
    s.configure(&json!({"waiting_note": "ş".repeat(5000)})).unwrap();
    let message = z.check(&by_ref("110001")).outcome.message().to_string();
    assert_eq!(message.chars().count(), provider::text::MESSAGE_MAX);
    assert!(message.ends_with(provider::text::CUT_MARKER), "{message}");
}

#[test]
fn reject_share_answers_a_definite_documented_rejection_and_records_nothing() {
    let s = sim(instant());
    s.configure(&json!({"reject_share": 1.0})).unwrap();
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    assert_eq!(z.place(&znet_order("120001")), PlacementOutcome::Rejected { message: "3: Yetersiz Bakiye".into() });
    assert_eq!(
        x.place(&xstor_order(&uuid_ref(60))),
        PlacementOutcome::Rejected { message: "x-stor: Insufficient balance".into() }
    );
    assert!(matches!(z.check(&by_ref("120001")).outcome, CheckOutcome::NotFound { .. }));
    assert_eq!(s.stats()["orders_placed"], 0);
    // Without it (and without reject_replacements) the same references go through.
    s.configure(&json!({"reject_share": 0.0})).unwrap();
    assert!(accepted(&z.place(&znet_order("120001"))));
    assert!(accepted(&x.place(&xstor_order(&uuid_ref(60)))));
    assert_eq!(s.stats()["orders_placed"], 2);
}

#[test]
fn reject_replacements_refuses_a_reference_seen_in_a_call_that_recorded_nothing() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    // A 500 "before taking the order": nothing recorded, the reference is remembered as seen.
    s.configure(&json!({"error_share": 1.0})).unwrap();
    assert!(ambiguous(&z.place(&znet_order("130001"))));
    assert!(ambiguous(&x.place(&xstor_order(&uuid_ref(70)))));
    s.configure(&json!({"error_share": 0.0, "reject_replacements": true})).unwrap();
    assert!(matches!(z.check(&by_ref("130001")).outcome, CheckOutcome::NotFound { .. }), "never recorded");
    assert_eq!(
        z.place(&znet_order("130001")),
        PlacementOutcome::Rejected { message: "8: Bağlantı hatası veya yetersiz bakiye".into() }
    );
    assert_eq!(
        x.place(&xstor_order(&uuid_ref(70))),
        PlacementOutcome::Rejected { message: "x-stor: Duplicate order_uuid".into() }
    );
    // A reference never seen is placed as usual.
    assert!(accepted(&z.place(&znet_order("130002"))));
    assert!(accepted(&x.place(&xstor_order(&uuid_ref(71)))));
    let st = s.stats();
    assert_eq!((st["orders_placed"].as_u64(), st["double_placements"].as_u64()), (Some(2), Some(0)));
    // Switched off, the provider takes the re-placement.
    s.configure(&json!({"reject_replacements": false})).unwrap();
    assert!(accepted(&z.place(&znet_order("130001"))));
    assert!(accepted(&x.place(&xstor_order(&uuid_ref(70)))));
}

#[test]
fn connection_refused_is_ambiguous_and_no_news() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let z = znet_at(&format!("http://127.0.0.1:{port}"), ZNET_PASSWORD);
    assert!(matches!(z.place(&znet_order("140001")), PlacementOutcome::Ambiguous { .. }));
    assert!(matches!(z.check(&by_ref("140001")).outcome, CheckOutcome::NoNews { .. }));
    assert!(matches!(z.balance(), Err(ProviderError::Unreachable(_))));
}

#[test]
fn simulator_process_announces_its_address_and_takes_config_at_run_time() {
    let s = Sim::start(&[
        "--complete-after",
        "0s",
        "--seed",
        "9",
        "--znet-login",
        "bayi1:pw",
        "--reject-replacements",
        "--waiting-note",
        "Sırada",
    ]);
    let z = znet_at(&s.base_url, "pw");
    assert!(accepted(&z.place(&znet_order("150001"))));
    assert_eq!(
        z.check(&by_ref("150001")).outcome,
        CheckOutcome::Approved { pin: Some(pin_of(9, "150001")), message: "Onaylandı".into() }
    );
    s.configure(json!({"error_share": 1.0}));
    assert!(ambiguous(&z.place(&znet_order("150002"))));
    s.configure(json!({"error_share": 0}));
    assert!(matches!(z.place(&znet_order("150002")), PlacementOutcome::Rejected { .. }), "--reject-replacements");
    let config: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{}/_sim/config", s.base_url)).call().unwrap().body_mut().read_to_string().unwrap(),
    )
    .unwrap();
    assert_eq!((config["reject_replacements"].as_bool(), config["waiting_note"].as_str()), (Some(true), Some("Sırada")));
    let st = s.stats();
    assert_eq!(
        (st["orders_placed"].as_u64(), st["placement_calls"].as_u64(), st["faults_injected"].as_u64()),
        (Some(1), Some(3), Some(1))
    );
    assert_eq!(st["orders"][0]["pin"], pin_of(9, "150001"));
}

#[test]
fn simulator_serves_thousands_of_requests_per_second() {
    let s = sim(SimSettings { complete_after: Duration::ZERO, ..SimSettings::default() });
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let base = s.base_url();
            std::thread::spawn(move || {
                let z = znet_at(&base, "pw");
                for i in 0..500 {
                    assert!(accepted(&z.place(&znet_order(&format!("{}{i:04}", t + 1)))));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let rate = 2000.0 / started.elapsed().as_secs_f64();
    assert_eq!(s.stats()["orders_placed"], 2000);
    // Debug build, shared CI machine: a generous floor that still catches a serialised server.
    assert!(rate > 500.0, "{rate:.0} requests/s");
}

/// A database with one tenant and the two providers pointed at `base`.
fn db_with_providers(base: &str, znet_password: &str) -> TestDb {
    let db = TestDb::new();
    let mut c = db.client();
    c.batch_execute("INSERT INTO tenants (name) VALUES ('alsham'), ('beirut')").unwrap();
    for (tenant, name, kind, creds) in [
        ("alsham", "znet-main", "znet", json!({"kod": "bayi1", "sifre": znet_password})),
        ("alsham", "xstor", "xstor", json!({"api_token": XSTOR_TOKEN})),
        ("alsham", "shared-name", "xstor", json!({"api_token": XSTOR_TOKEN})),
        ("beirut", "shared-name", "xstor", json!({"api_token": XSTOR_TOKEN})),
    ] {
        c.execute(
            "INSERT INTO providers (tenant_id, name, kind, base_url, credentials)
             SELECT id, $2, $3, $4, $5 FROM tenants WHERE name = $1",
            &[&tenant, &name, &kind, &base, &creds],
        )
        .unwrap();
    }
    db
}

#[test]
fn provider_check_prints_balance_and_catalogue_as_table_and_json() {
    let s = sim(instant());
    let db = db_with_providers(&s.base_url(), ZNET_PASSWORD);
    let out = db.cmd().args(["provider", "check", "znet-main"]).run().ok();
    assert!(out.stdout.contains("znet-main") && out.stdout.contains("TRY") && out.stdout.contains("7001"), "{}", out.stdout);
    assert!(out.stdout.contains("9 catalogue item(s)"), "{}", out.stdout);

    let j = db.cmd().args(["provider", "check", "xstor", "--output", "json"]).run().ok().json();
    assert_eq!(j["provider"], "xstor");
    assert_eq!(j["kind"], "xstor");
    assert_eq!(j["base_url"], s.base_url());
    assert!(j["balance"]["balance"].as_str().is_some());
    assert_eq!(j["catalogue"].as_array().unwrap().len(), 3);
}

#[test]
fn provider_check_explains_an_empty_znet_reply_and_never_shows_secrets() {
    let s = sim(instant());
    let password = "wrong-but-secret-pw";
    let db = db_with_providers(&s.base_url(), password);
    let out = db.cmd().args(["-vv", "provider", "check", "znet-main"]).run().code(7);
    assert!(out.stderr.contains("dealer code (kod) or password (sifre)"), "{}", out.stderr);
    assert!(out.stderr.contains("API access is switched off"), "{}", out.stderr);
    assert!(out.stderr.contains("IP address is not on the dealer's allow list"), "{}", out.stderr);
    assert!(out.stderr.contains("bakiye_kontrol.php"), "-vv logs the call: {}", out.stderr);
    assert!(!out.stderr.contains(password) && !out.stdout.contains(password), "{}", out.stderr);

    let ok = db_with_providers(&s.base_url(), ZNET_PASSWORD);
    for args in [["-vv", "provider", "check", "znet-main"], ["-vv", "provider", "check", "xstor"]] {
        let out = ok.cmd().args(args).run().ok();
        for secret in [ZNET_PASSWORD, XSTOR_TOKEN] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{secret} leaked:\n{}\n{}",
                out.stdout,
                out.stderr
            );
        }
    }
}

#[test]
fn provider_check_wrong_base_url_and_bad_token_are_explained() {
    let s = sim(instant());
    let db = db_with_providers(&format!("{}/site", s.base_url()), ZNET_PASSWORD);
    let out = db.cmd().args(["provider", "check", "znet-main"]).run().code(7);
    assert!(out.stderr.contains("base URL points at a web page"), "{}", out.stderr);

    let db = db_with_providers(&s.base_url(), ZNET_PASSWORD);
    db.client()
        .execute("UPDATE providers SET credentials = '{\"api_token\": \"nope-token\"}' WHERE name = 'xstor'", &[])
        .unwrap();
    let out = db.cmd().args(["provider", "check", "xstor"]).run().code(7);
    assert!(out.stderr.contains("Invalid api-token") && out.stderr.contains("api_token"), "{}", out.stderr);
    assert!(!out.stderr.contains("nope-token"), "{}", out.stderr);
}

#[test]
fn provider_check_unknown_and_ambiguous_names() {
    let s = sim(instant());
    let db = db_with_providers(&s.base_url(), ZNET_PASSWORD);
    let out = db.cmd().args(["provider", "check", "nobody"]).run().code(3);
    assert!(out.stderr.contains("provider list"), "{}", out.stderr);
    let out = db.cmd().args(["provider", "check", "shared-name"]).run().code(2);
    assert!(out.stderr.contains("alsham, beirut") && out.stderr.contains("--tenant"), "{}", out.stderr);
    db.cmd().args(["provider", "check", "shared-name", "--tenant", "beirut"]).run().ok();
    db.cmd().args(["provider", "check", "shared-name", "--tenant", "nowhere"]).run().code(3);
}

/// An x-stor batch whose orders have no order id yet is one request per order; together they
/// stay inside one request timeout (the lease was sized for one call), and what is not asked in
/// time is "not asked" (due again shortly, nothing counted), never a verdict. Before, each request had a whole timeout of its own: a
/// batch was seen "in flight 8s" under `--request-timeout 3s`.
#[test]
fn an_xstor_batch_check_takes_at_most_one_request_timeout() {
    let s = sim(SimSettings { latency: Duration::from_millis(120), ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    let keys: Vec<CheckKey> = (0..8).map(|i| by_ref(&uuid_ref(60 + i))).collect();
    let started = std::time::Instant::now();
    let out = x.check_many(&keys);
    let took = started.elapsed();
    // 8 requests of 120 ms each would take 960 ms; the request timeout is 300 ms.
    assert!(took < Duration::from_millis(550), "the batch took {took:?} under a 300 ms request timeout");
    assert_eq!(out.len(), 8);
    assert!(matches!(out[0].outcome, CheckOutcome::NotFound { .. }), "the first request is answered: {out:?}");
    assert!(matches!(out[7].outcome, CheckOutcome::NotAsked { .. }), "the last one was not asked in time: {out:?}");
}
