//! Provider adapters against the built-in simulator over real HTTP on 127.0.0.1, every fault,
//! and `orderctl provider check`.

use crate::support::*;
use orderctl::provider::{
    self, CheckOutcome, PlacementOutcome, PlacementRequest, Provider, ProviderConfig, ProviderError, ProviderKind,
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
        kind: ProviderKind::Znet,
        base_url: base.to_string(),
        credentials: json!({"kod": "bayi1", "sifre": sifre}),
        http: http(Duration::from_millis(300)),
    })
    .unwrap()
}

fn xstor_at(base: &str, token: &str) -> Box<dyn Provider> {
    provider::build(ProviderConfig {
        name: "xstor".into(),
        kind: ProviderKind::Xstor,
        base_url: base.to_string(),
        credentials: json!({"api_token": token}),
        http: http(Duration::from_millis(300)),
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

fn accepted(o: &PlacementOutcome) -> bool {
    matches!(o, PlacementOutcome::Accepted { .. })
}

fn ambiguous(o: &PlacementOutcome) -> bool {
    matches!(o, PlacementOutcome::Ambiguous { .. })
}

fn pin_of(seed: u64, reference: &str) -> String {
    order_fate(seed, reference, 0.0, Duration::ZERO, Duration::ZERO).pin
}

#[test]
fn znet_places_and_checks_until_approved_with_the_predicted_pin() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let o = z.place(&znet_order("zr-1"));
    assert!(accepted(&o), "{o:?}");
    assert_eq!(z.check("zr-1"), CheckOutcome::Approved { pin: Some(pin_of(1, "zr-1")), message: "Onaylandı".into() });
    let st = s.stats();
    assert_eq!((st["orders_placed"].as_u64(), st["placement_calls"].as_u64()), (Some(1), Some(1)));
    assert_eq!(st["status_checks_by_order"]["zr-1"], 1);
    assert_eq!(st["orders"][0]["provider"], "znet");
}

#[test]
fn znet_waiting_and_cancelled_orders() {
    let s = sim(SimSettings { complete_after: Duration::from_secs(3600), ..instant() });
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    assert!(accepted(&z.place(&znet_order("wait-1"))));
    assert_eq!(z.check("wait-1"), CheckOutcome::Waiting { message: "Beklemede".into() });

    s.configure(&json!({"complete_after": 0, "cancel_share": 1.0})).unwrap();
    assert!(accepted(&z.place(&znet_order("cancel-1"))));
    assert_eq!(z.check("cancel-1"), CheckOutcome::Cancelled { message: "İptal edildi".into() });
    assert_eq!(s.stats()["orders"][1]["outcome"], "cancelled");
}

#[test]
fn znet_unknown_reference_is_not_found_and_unknown_denomination_is_rejected() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    assert!(matches!(z.check("never-placed"), CheckOutcome::NotFound { .. }));
    let o = z.place(&PlacementRequest { mapping: json!({"oyun": "7001", "kupur": "61"}), ..znet_order("bad-kupur") });
    assert_eq!(o, PlacementOutcome::Rejected { message: "Kupur Bilgisi Bulunamadı".into() });
    assert_eq!(s.stats()["orders_placed"], 0);
}

#[test]
fn znet_quantity_above_one_is_rejected_without_a_call() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let o = z.place(&PlacementRequest { quantity: 3, ..znet_order("q-3") });
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
    let o = z.place(&znet_order("html-1"));
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
    assert!(ambiguous(&z.place(&znet_order("auth-1"))));
    assert!(matches!(z.check("auth-1"), CheckOutcome::NoNews { .. }));
    assert_eq!(s.stats()["orders_placed"], 0);
}

#[test]
fn znet_faults_are_ambiguous_at_placement_and_reconcile_by_reference() {
    let s = sim(SimSettings { hang: Duration::from_secs(2), ..instant() });
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);

    s.configure(&json!({"error_share": 1.0})).unwrap();
    assert!(ambiguous(&z.place(&znet_order("f-500"))));
    assert!(matches!(z.check("f-500"), CheckOutcome::NoNews { .. }));

    s.configure(&json!({"error_share": 0, "empty_share": 1.0})).unwrap();
    assert!(ambiguous(&z.place(&znet_order("f-empty"))));

    s.configure(&json!({"empty_share": 0, "garbage_share": 1.0})).unwrap();
    assert!(ambiguous(&z.place(&znet_order("f-garbage"))));
    assert!(matches!(z.check("f-garbage"), CheckOutcome::NoNews { .. }));

    s.configure(&json!({"garbage_share": 0, "hang_share": 1.0})).unwrap();
    let o = z.place(&znet_order("f-hang"));
    assert!(matches!(&o, PlacementOutcome::Ambiguous { reason } if reason.contains("timeout")), "{o:?}");

    // Reconciliation: the same reference tells which placements exist. 500 and empty were not
    // recorded; garbage and hang were.
    s.configure(&json!({"hang_share": 0})).unwrap();
    assert!(matches!(z.check("f-500"), CheckOutcome::NotFound { .. }));
    assert!(matches!(z.check("f-empty"), CheckOutcome::NotFound { .. }));
    assert!(matches!(z.check("f-garbage"), CheckOutcome::Approved { .. }));
    assert!(matches!(z.check("f-hang"), CheckOutcome::Approved { .. }));
    let st = s.stats();
    assert_eq!(st["orders_placed"], 2);
    assert_eq!(st["faults_injected"], 6);
}

#[test]
fn double_placement_is_counted_and_rejected_for_both_protocols() {
    let s = sim(instant());
    let z = znet_at(&s.base_url(), ZNET_PASSWORD);
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    assert!(accepted(&z.place(&znet_order("dup-1"))));
    assert_eq!(z.place(&znet_order("dup-1")), PlacementOutcome::Rejected { message: "Referans daha önce kullanılmış".into() });
    assert!(accepted(&x.place(&xstor_order("dup-2"))));
    let o = x.place(&xstor_order("dup-2"));
    assert!(
        matches!(&o, PlacementOutcome::Rejected { message } if message.contains("114") && message.contains("already used")),
        "{o:?}"
    );
    let st = s.stats();
    assert_eq!((st["double_placements"].as_u64(), st["orders_placed"].as_u64()), (Some(2), Some(2)));
}

#[test]
fn xstor_places_with_an_early_pin_and_checks_by_reference() {
    let s = sim(instant());
    let x = xstor_at(&format!("{}/", s.base_url()), XSTOR_TOKEN);
    let o = x.place(&xstor_order("xr-1"));
    let pin = pin_of(1, "xr-1");
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
    assert!(matches!(x.check("xr-1"), CheckOutcome::Approved { pin: Some(p), .. } if p == pin));
    assert!(matches!(x.check("xr-unknown"), CheckOutcome::NotFound { .. }));
    assert_eq!(x.balance().unwrap().account.as_deref(), Some("simulator@x-stor.test"));
    assert_eq!(x.catalogue().unwrap().iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["501", "502", "503"]);
}

#[test]
fn xstor_waiting_and_cancelled_orders() {
    let s = sim(SimSettings { complete_after: Duration::from_secs(3600), ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    assert!(matches!(x.place(&xstor_order("xw-1")), PlacementOutcome::Accepted { early: None, .. }));
    assert!(matches!(x.check("xw-1"), CheckOutcome::Waiting { .. }));
    s.configure(&json!({"complete_after": "0s", "cancel_share": 1.0})).unwrap();
    assert!(accepted(&x.place(&xstor_order("xc-1"))));
    assert!(matches!(x.check("xc-1"), CheckOutcome::Cancelled { .. }));
}

#[test]
fn xstor_batch_checks_150_orders_in_one_request() {
    let s = sim(SimSettings { cancel_share: 0.3, ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    let refs: Vec<String> = (0..150).map(|i| format!("{:08x}-0000-4000-8000-{:012x}", i, i)).collect();
    for r in &refs {
        assert!(accepted(&x.place(&xstor_order(r))), "{r}");
    }
    let mut asked = refs.clone();
    asked.push("not-placed".to_string());
    let before = s.stats()["status_calls"].as_u64().unwrap();
    let out = x.check_many(&asked);
    assert_eq!(s.stats()["status_calls"].as_u64().unwrap() - before, 1, "one request for 151 references");
    assert_eq!(out.len(), 151);
    for (r, o) in refs.iter().zip(&out) {
        let fate = order_fate(1, r, 0.3, Duration::ZERO, Duration::ZERO);
        match o {
            CheckOutcome::Approved { pin, .. } => assert!(!fate.cancelled && pin.as_deref() == Some(fate.pin.as_str()), "{r}"),
            CheckOutcome::Cancelled { .. } => assert!(fate.cancelled, "{r}"),
            other => panic!("{r}: {other:?}"),
        }
    }
    assert!(matches!(out[150], CheckOutcome::NotFound { .. }));
    assert!(x.batch_limit() >= 150);
}

#[test]
fn xstor_bad_token_unknown_product_and_wrong_base_url() {
    let s = sim(instant());
    let bad = xstor_at(&s.base_url(), "wrong-token");
    let o = bad.place(&xstor_order("bt-1"));
    assert!(
        matches!(&o, PlacementOutcome::Rejected { message } if message.contains("121 token error: check the provider's api_token")),
        "{o:?}"
    );
    assert!(matches!(bad.balance(), Err(ProviderError::Auth(_))));
    assert!(bad.check_many(&["a".into(), "b".into()]).iter().all(|o| matches!(o, CheckOutcome::NoNews { .. })));

    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    let o = x.place(&PlacementRequest { mapping: json!({"product_id": 999}), ..xstor_order("np-1") });
    assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("109")), "{o:?}");

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
    let s = sim(SimSettings { hang: Duration::from_secs(2), ..instant() });
    let x = xstor_at(&s.base_url(), XSTOR_TOKEN);
    for (i, fault) in ["error_share", "garbage_share", "empty_share", "hang_share"].iter().enumerate() {
        s.configure(&one(fault, 1.0)).unwrap();
        let reference = format!("xf-{i}");
        let o = x.place(&xstor_order(&reference));
        assert!(ambiguous(&o), "{fault}: {o:?}");
        let checks = x.check_many(&[reference.clone(), "other".into()]);
        assert!(checks.iter().all(|c| matches!(c, CheckOutcome::NoNews { .. })), "{fault}: {checks:?}");
        assert!(x.balance().is_err(), "{fault}");
        s.configure(&one(fault, 0.0)).unwrap();
    }
    // Garbage and hang were recorded by the provider, 500 and empty were not.
    let out = x.check_many(&(0..4).map(|i| format!("xf-{i}")).collect::<Vec<_>>());
    assert!(matches!(out[0], CheckOutcome::NotFound { .. }), "{out:?}");
    assert!(matches!(out[1], CheckOutcome::Approved { .. }), "{out:?}");
    assert!(matches!(out[2], CheckOutcome::NotFound { .. }), "{out:?}");
    assert!(matches!(out[3], CheckOutcome::Approved { .. }), "{out:?}");
}

#[test]
fn connection_refused_is_ambiguous_and_no_news() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let z = znet_at(&format!("http://127.0.0.1:{port}"), ZNET_PASSWORD);
    assert!(matches!(z.place(&znet_order("cr-1")), PlacementOutcome::Ambiguous { .. }));
    assert!(matches!(z.check("cr-1"), CheckOutcome::NoNews { .. }));
    assert!(matches!(z.balance(), Err(ProviderError::Unreachable(_))));
}

#[test]
fn simulator_process_announces_its_address_and_takes_config_at_run_time() {
    let s = Sim::start(&["--complete-after", "0s", "--seed", "9", "--znet-login", "bayi1:pw"]);
    let z = znet_at(&s.base_url, "pw");
    assert!(accepted(&z.place(&znet_order("p-1"))));
    assert_eq!(z.check("p-1"), CheckOutcome::Approved { pin: Some(pin_of(9, "p-1")), message: "Onaylandı".into() });
    s.configure(json!({"error_share": 1.0}));
    assert!(ambiguous(&z.place(&znet_order("p-2"))));
    s.configure(json!({"error_share": 0}));
    let st = s.stats();
    assert_eq!(
        (st["orders_placed"].as_u64(), st["placement_calls"].as_u64(), st["faults_injected"].as_u64()),
        (Some(1), Some(2), Some(1))
    );
    assert_eq!(st["orders"][0]["pin"], pin_of(9, "p-1"));
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
                    assert!(accepted(&z.place(&znet_order(&format!("perf-{t}-{i}")))));
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
    assert!(out.stderr.contains("121 token error"), "{}", out.stderr);
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
