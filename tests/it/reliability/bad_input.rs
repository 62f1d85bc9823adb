//! Bad input at the command line and in setup files: a clear message, the documented exit
//! code, nothing written; text that is accepted is stored byte for byte.

use super::*;
use serde_json::json;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;
const INVALID: i32 = 4;
const REFUSED: i32 = 5;

/// Everything a command could have written, in one string: any change shows.
fn everything(db: &TestDb) -> String {
    db.client()
        .query_one(
            "SELECT concat_ws(' | ',
                (SELECT md5(coalesce(string_agg(o::text, ',' ORDER BY id), '')) FROM orders o),
                (SELECT md5(coalesce(string_agg(l::text, ',' ORDER BY id), '')) FROM ledger l),
                (SELECT count(*) FROM order_events), (SELECT count(*) FROM placements),
                (SELECT md5(coalesce(string_agg(u::text, ',' ORDER BY id), '')) FROM users u),
                (SELECT count(*) FROM tenants), (SELECT count(*) FROM providers), (SELECT count(*) FROM packages),
                (SELECT count(*) FROM code_items), (SELECT count(*) FROM periodic_runs))",
            &[],
        )
        .unwrap()
        .get(0)
}

struct Case {
    args: Vec<OsString>,
    stdin: Option<String>,
    code: i32,
    /// Words the message on stderr must contain.
    says: &'static [&'static str],
}

fn case<S: AsRef<std::ffi::OsStr>>(args: &[S], code: i32, says: &'static [&'static str]) -> Case {
    Case { args: args.iter().map(|a| a.as_ref().to_os_string()).collect(), stdin: None, code, says }
}

/// `create` for user `user` and player `player` in tenant alsham, with extra arguments.
fn create_args(user: &str, player: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--tenant", "alsham", "create", "--user", user, "--package", "jawaker", "--player", player];
    a.extend_from_slice(extra);
    a.into_iter().map(String::from).collect()
}

/// A setup file with every kind of problem apply looks for (one tenant, so validation reaches
/// each section).
fn broken_setup() -> serde_json::Value {
    json!({"tenants": [{"name": "t2",
      "users": [{"name": "halil", "balance": "ten", "overdraft_limit": "-5"}, {"name": "halil", "balance": "1"}],
      "providers": [{"name": "p1", "kind": "ftp", "base_url": "not a url", "credentials": {}},
                    {"name": "z", "kind": "znet", "base_url": "http://x", "credentials": {"kod": "a"}}],
      "code_groups": [{"name": "g", "codes": ["A", "A", ""]}],
      "packages": [{"name": "p", "product": "P", "price": "1,10", "routing": {"mode": "auto", "provider_type": "manual"}},
                   {"name": "q", "product": "Q", "price": "-1", "routing": {"mode": "auto", "provider_type": "external", "primary": "nope"}},
                   {"name": "r", "product": "R", "price": "12345678901234567890", "routing": {"mode": "sometimes", "provider_type": "codes"}}]}]})
}

#[test]
fn bad_input_gets_a_clear_message_its_exit_code_and_writes_nothing() {
    let sim = Sim::start(&[]);
    let db = crate::orders::setup(&sim);
    let order = crate::orders::create(&db, "jawaker", &[]);
    let n = order["number"].to_string();
    let long = "x".repeat(10_000);
    let create = |extra: &[&str]| create_args("halil", "p1", extra);

    let mut cases = vec![
        // Malformed order ids.
        case(&["inspect", "abc"], INVALID, &["'abc' is neither an order uuid nor an order number"]),
        case(&["inspect", "--", "-1"], INVALID, &["'-1' is neither"]),
        case(&["inspect", "0"], INVALID, &["'0' is neither"]),
        case(&["inspect", "99999999999999999999999"], INVALID, &["neither an order uuid nor an order number"]),
        case(&["inspect", "12345678-1234-1234-1234-12345678901"], INVALID, &["neither"]),
        case(&["inspect", "g2345678-1234-1234-1234-123456789012"], INVALID, &["neither"]),
        case(&["inspect", "1000; DROP TABLE orders"], INVALID, &["neither"]),
        case(&["reject", "'; DROP TABLE orders; --", "--reason", "x"], INVALID, &["neither"]),
        case(&["inspect", "424242"], NOT_FOUND, &["order number 424242 does not exist"]),
        case(&["approve", "00000000-0000-0000-0000-000000000000", "--pin", "X"], NOT_FOUND, &["does not exist"]),
        // Unknown names.
        case(&["--tenant", "nope", "list"], NOT_FOUND, &["tenant 'nope' does not exist"]),
        case(&["--tenant", "'; DROP TABLE tenants; --", "user", "list"], NOT_FOUND, &["does not exist"]),
        case(&create_args("nobody", "p1", &[]), NOT_FOUND, &["user 'nobody' does not exist in tenant alsham"]),
        case(
            &["--tenant", "alsham", "create", "--user", "halil", "--package", "nope", "--player", "1"],
            NOT_FOUND,
            &["package 'nope' does not exist in tenant alsham"],
        ),
        case(&["--tenant", "alsham", "provider", "check", "nope"], NOT_FOUND, &["no provider named 'nope'"]),
        case(&["dispatch", &n, "--provider", "nope"], NOT_FOUND, &["provider 'nope' does not exist"]),
        case(&["user", "list"], USAGE, &["needs a tenant"]),
        // Quantities.
        case(&(create(&["--quantity=-1"])), INVALID, &["--quantity -1 is out of range", "1 to 1000"]),
        case(&(create(&["--quantity", "0"])), INVALID, &["--quantity 0 is out of range"]),
        case(&(create(&["--quantity", "99999999999"])), INVALID, &["--quantity 99999999999 is out of range"]),
        case(&(create(&["--quantity", "99999999999999999999999999"])), INVALID, &["is not a whole number"]),
        case(&(create(&["--quantity", "1.5"])), INVALID, &["--quantity '1.5' is not a whole number"]),
        case(&(create(&["--quantity", "600"])), REFUSED, &["insufficient balance"]),
        // Durations and cron expressions.
        case(&(create(&["--first-check", "soon"])), USAGE, &["invalid value 'soon' for '--first-check"]),
        case(&["list", "--since", "yesterday"], USAGE, &["'--since"]),
        case(&["--request-timeout", "0s", "list"], INVALID, &["must be greater than 0"]),
        case(
            &["daemon", "--sweep-schedule", "nonsense"],
            INVALID,
            &["--sweep-schedule 'nonsense' has 1 field(s)", "seconds first"],
        ),
        case(&["daemon", "--sweep-schedule", "*/5 * * * *"], INVALID, &["has 5 field(s)"]),
        case(&["daemon", "--sweep-schedule", "0 61 * * * *"], INVALID, &["not a valid cron expression"]),
        case(&["daemon", "--lease", "1s", "--request-timeout", "5s"], INVALID, &["--lease"]),
        // Filters.
        case(&["--tenant", "alsham", "list", "--status", "weird"], INVALID, &["unknown status 'weird'"]),
        // Text that is too long, empty or not UTF-8.
        case(&create_args("halil", &long, &[]), INVALID, &["player id (--player) is 10000 characters long; at most 200"]),
        case(&(create(&["--extra", &long])), INVALID, &["--extra is 10000 characters long; at most 2000"]),
        case(&create_args("halil", " ", &[]), INVALID, &["player id (--player) is empty"]),
        case(&["reject", &n, "--reason", &long], INVALID, &["--reason is 10000 characters long"]),
        case(&["approve", &n, "--pin", &long], INVALID, &["--pin is 10000 characters long"]),
        case(&["approve", &n, "--pin", ""], INVALID, &["--pin is empty"]),
        // Setup files.
        Case {
            args: vec!["apply".into(), "-f".into(), "-".into()],
            stdin: Some("{\"tenants\": [".into()),
            code: INVALID,
            says: &["not valid JSON", "nothing was written"],
        },
        Case {
            args: vec!["apply".into(), "-f".into(), "-".into()],
            stdin: Some(json!({"tenants": [{"name": "x", "colour": 1}]}).to_string()),
            code: INVALID,
            says: &["unknown field `colour`"],
        },
        Case {
            args: vec!["apply".into(), "-f".into(), "-".into()],
            stdin: Some(json!({"tenants": [{"name": ""}]}).to_string()),
            code: INVALID,
            says: &["name is empty"],
        },
        Case {
            args: vec!["apply".into(), "-f".into(), "-".into()],
            stdin: Some(broken_setup().to_string()),
            code: INVALID,
            says: &[
                "balance 'ten' is not a decimal amount",
                "overdraft_limit '-5.00' is negative",
                "the name is used twice",
                "provider kind 'ftp' is unknown",
                "base_url 'not a url' is not an http(s) URL",
                "credentials.sifre is missing",
                "codes[1] repeats codes[0]",
                "codes[2] is empty",
                "price '1,10' is not a decimal amount",
                "routing mode is auto but provider_type is manual",
                "price '-1.00' is negative",
                "routing.primary names provider nope",
                "too large",
                "routing mode 'sometimes' is unknown",
                "has 14 problem(s); nothing was written",
            ],
        },
        case(&["apply", "-f", "/nonexistent/setup.json"], INVALID, &["cannot read setup file /nonexistent/setup.json"]),
    ];
    // NUL-free bytes that are not UTF-8.
    let mut not_utf8: Vec<OsString> = create(&[]).into_iter().map(OsString::from).collect();
    *not_utf8.last_mut().unwrap() = OsString::from_vec(vec![0xff, 0xfe, b'1', 0x80]);
    cases.push(Case { args: not_utf8, stdin: None, code: USAGE, says: &["invalid UTF-8"] });

    let before = everything(&db);
    for c in &cases {
        let mut cmd = db.cmd().args(&c.args);
        if let Some(input) = &c.stdin {
            cmd = cmd.stdin(input.clone());
        }
        let out = cmd.run();
        let shown: Vec<String> = c.args.iter().map(|a| a.to_string_lossy().chars().take(60).collect()).collect();
        assert_eq!(out.code, c.code, "{shown:?}: exit code\nstderr: {}", out.stderr);
        for words in c.says {
            assert!(out.stderr.contains(words), "{shown:?}: stderr should say {words:?}:\n{}", out.stderr);
        }
        assert!(!out.stderr.contains("panicked") && !out.stderr.contains("internal"), "{shown:?}: {}", out.stderr);
        assert!(out.stderr.len() < 4000, "{shown:?}: a clear message, not a wall of text ({} bytes)", out.stderr.len());
        assert_eq!(everything(&db), before, "{shown:?} wrote something");
    }
    // The database is intact after all that SQL in arguments.
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 1);
    assert_eq!(db.query_i64("SELECT count(*) FROM tenants"), 1);
}

#[test]
fn accepted_text_is_stored_verbatim() {
    let sim = Sim::start(&[]);
    let db = crate::orders::setup(&sim);
    let texts = [
        "O'Brien \"the\" ; player",
        "'; DROP TABLE orders; --",
        "1); DELETE FROM ledger; SELECT ('",
        "\\x00 \\\\ %s %n {} $1 ${PATH} `id`",
        "لاعب-١٢٣ 玩家 🎮 Ünal Şahin",
        "\u{1}\u{2}\u{1b}[31mred\u{7f}\ttab\nnewline\r\u{feff}\u{202e}",
        &"é".repeat(200),
    ];
    for (i, text) in texts.iter().enumerate() {
        let extra = format!("{text} / extra {i}");
        let o =
            db.cmd().args(CREATE_AS_HALIL).args(["--package", "jawaker", "--player", text, "--extra", &extra]).run().ok().json();
        let id: uuid::Uuid = o["id"].as_str().unwrap().parse().unwrap();
        let row = db.client().query_one("SELECT user_identifier, extra_field FROM orders WHERE id = $1", &[&id]).unwrap();
        assert_eq!(row.get::<_, String>(0), *text, "player id stored verbatim");
        assert_eq!(row.get::<_, String>(1), extra, "extra stored verbatim");
        assert_eq!(o["user_identifier"], *text, "and shown verbatim in JSON");
        // An operator's words are kept verbatim too.
        let n = o["number"].to_string();
        if i % 2 == 0 {
            db.cmd().args(["approve", &n, "--pin", text]).run().ok();
            let pin: String = db.client().query_one("SELECT pin_code FROM orders WHERE id = $1", &[&id]).unwrap().get(0);
            assert_eq!(pin, *text);
        } else {
            db.cmd().args(["reject", &n, "--reason", text]).run().ok();
            let msg: String = db.client().query_one("SELECT last_message FROM orders WHERE id = $1", &[&id]).unwrap().get(0);
            assert_eq!(msg, format!("rejected by an operator: {text}"));
        }
    }
    // 201 characters is one too many: refused, not cut.
    let out = db
        .cmd()
        .args(["--tenant", "alsham", "create", "--user", "halil", "--package", "jawaker", "--player", &"é".repeat(201)])
        .run()
        .code(INVALID);
    assert!(out.stderr.contains("201 characters long; at most 200"), "{}", out.stderr);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), texts.len() as i64);
    assert_money_conserved(&db);
}
