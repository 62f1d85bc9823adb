//! Order state is one type from row to SQL: every state column's Rust enum matches its CHECK
//! constraint in the migrated database, no SQL or Rust outside the lifecycle spells a state, the
//! hot indexes `doctor` rebuilds are the migrated ones, and the stuck rule finds the same orders
//! in SQL as in the diagnosis.

use crate::support::*;
use orderctl::domain::lifecycle::states::{
    state_columns, Attention, CodeState, DeliveryState, ExternalStatus, OrderStatus, PlacementState, Reconciled, StateColumn,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Columns whose CHECK lists fixed values that are kinds, not states: no enum of the lifecycle.
const NOT_STATES: [(&str, &str); 5] = [
    ("providers", "kind"),
    ("packages", "provider_type"),
    ("packages", "routing_mode"),
    ("ledger", "kind"),
    ("webhook_deliveries", "event_type"),
];

/// The column and values of a `CHECK ((column = ANY (ARRAY['a'::text, ...])))` definition.
fn value_list(def: &str) -> Option<(String, BTreeSet<String>)> {
    let rest = def.strip_prefix("CHECK ((")?;
    let (column, rest) = rest.split_once(" = ANY (ARRAY[")?;
    let list = rest.strip_suffix("])))")?;
    let values = list.split(", ").map(|v| v.trim_end_matches("::text").trim_matches('\'').to_string()).collect();
    column.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then(|| (column.to_string(), values))
}

/// (table, column) → the values of every value-list CHECK constraint in the database.
fn value_checks(db: &TestDb) -> BTreeMap<(String, String), BTreeSet<String>> {
    let rows = db
        .client()
        .query(
            // A partition (sql/0018) carries its table's constraints: the table is compared.
            "SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c
               JOIN pg_class r ON r.oid = c.conrelid
              WHERE c.contype = 'c' AND c.connamespace = 'public'::regnamespace AND NOT r.relispartition",
            &[],
        )
        .unwrap();
    rows.iter()
        .filter_map(|r| {
            let (column, values) = value_list(&r.get::<_, String>(1))?;
            Some(((r.get(0), column), values))
        })
        .collect()
}

/// A state added in Rust and missed in the migration (or the other way round) fails here; so
/// does a new state column whose CHECK no enum of the lifecycle mirrors.
#[test]
fn every_state_column_matches_its_check_constraint_in_the_migrated_database() {
    let db = TestDb::new();
    let mut checks = value_checks(&db);
    for c in state_columns() {
        let found = checks.remove(&(c.table.to_string(), c.column.to_string()));
        let found = found.unwrap_or_else(|| panic!("{}.{} has no CHECK (... = ANY (ARRAY[...])) constraint", c.table, c.column));
        let rust: BTreeSet<String> = (c.values)().into_iter().map(String::from).collect();
        assert_eq!(
            rust, found,
            "{}.{}: the lifecycle's enum and the migrated CHECK constraint disagree (see `domain::lifecycle::states`, \"Adding a state\")",
            c.table, c.column
        );
    }
    for (table, column) in NOT_STATES {
        checks.remove(&(table.to_string(), column.to_string()));
    }
    assert!(
        checks.is_empty(),
        "state columns without an enum in `domain::lifecycle::states` (register them in `state_columns`): {checks:?}"
    );
}

/// The words a state column holds, as SQL literals.
fn state_literals() -> Vec<String> {
    fn of<T: StateColumn>() -> Vec<String> {
        T::ALL.iter().map(|v| v.sql().to_string()).collect()
    }
    let mut all = of::<OrderStatus>();
    all.extend(of::<ExternalStatus>());
    all.extend(of::<Attention>());
    all.extend(of::<PlacementState>());
    all.extend(of::<Reconciled>());
    all.extend(of::<DeliveryState>());
    all.extend(of::<CodeState>());
    all.sort();
    all.dedup();
    all
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Where a line spells a state: as an SQL literal (`'pending'`), or compared as a Rust string
/// (`status == "pending"`).
fn spelled_states(line: &str, sql: &[String], order_words: &[&str]) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return vec![];
    }
    let mut found: Vec<String> = sql.iter().filter(|l| code.contains(l.as_str())).cloned().collect();
    for w in order_words {
        let quoted = format!("\"{w}\"");
        for op in ["==", "!="] {
            if code.contains(&format!("{op} {quoted}")) || code.contains(&format!("{quoted} {op}")) {
                found.push(quoted.clone());
            }
        }
    }
    found
}

/// No state literal outside the lifecycle module (and the migrations in sql/): SQL names a state
/// through its enum's `sql()`, Rust compares enums.
#[test]
fn no_state_literal_outside_the_lifecycle_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lifecycle = root.join("src/domain/lifecycle");
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("examples"), &mut files);
    let sql = state_literals();
    let order_words: Vec<&str> =
        OrderStatus::ALL.iter().map(|s| s.as_str()).chain(ExternalStatus::ALL.iter().map(|s| s.as_str())).collect();
    let mut offences = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&lifecycle)) {
        for (n, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            for word in spelled_states(line, &sql, &order_words) {
                offences.push(format!("{}:{}: {word}", f.strip_prefix(root).unwrap().display(), n + 1));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "state literals outside src/domain/lifecycle (use the enum: `OrderStatus::Pending.sql()` in SQL, the enum in Rust):\n{}",
        offences.join("\n")
    );
    // The check itself sees what it looks for.
    assert_eq!(spelled_states("WHERE o.status = 'pending'", &sql, &order_words), vec!["'pending'"]);
    assert_eq!(spelled_states("if o.status != \"approved\" {", &sql, &order_words), vec!["\"approved\""]);
    assert!(spelled_states("// the 'pending' ones", &sql, &order_words).is_empty());
}

/// What `doctor` tells an operator to run for a missing hot index builds the migrated index.
#[test]
fn the_due_indexes_doctor_rebuilds_are_the_migrated_ones() {
    let db = TestDb::new();
    let mut c = db.client();
    let def = |c: &mut orderctl::db::Client, name: &str| -> String {
        c.query_one("SELECT pg_get_indexdef(to_regclass($1))", &[&name]).unwrap().get(0)
    };
    for (name, create) in orderctl::db::stats::due_indexes() {
        let migrated = def(&mut c, name);
        c.batch_execute(&format!("DROP INDEX {name}")).unwrap();
        c.batch_execute(&create).unwrap();
        assert_eq!(def(&mut c, name), migrated, "{create}");
    }
}

/// Order numbers of a listing, by whether the diagnosis calls each stuck.
fn numbers(rows: &Value, stuck: Option<bool>) -> BTreeSet<i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|o| stuck.is_none_or(|s| o["diagnosis"]["stuck"] == s))
        .map(|o| o["number"].as_i64().unwrap())
        .collect()
}

/// The one stuck rule: `list --stuck` (SQL) finds exactly the orders whose diagnosis (Rust) says
/// stuck, over an order of every reason and orders that look alike but are not stuck.
#[test]
fn the_stuck_sql_and_the_diagnosis_agree_on_every_reason() {
    let db = TestDb::new();
    db.apply(&standard_setup("http://127.0.0.1:9"));
    insert_orders(&db, "pubg-60", 9);
    insert_orders(&db, "jawaker", 1);
    let first = db.query_i64("SELECT min(number) FROM orders");
    let c = &mut db.client();
    let mut shape = |k: i64, set: &str| {
        c.batch_execute(&format!(
            "UPDATE orders o SET {set} FROM providers p WHERE p.name = 'znet-main' AND o.number = {first} + {k}"
        ))
        .unwrap();
    };
    // Order k is forwarded to order `to` (both sides of the link, in one transaction).
    let forward = |c: &mut orderctl::db::Client, k: i64, to: i64| {
        c.batch_execute(&format!(
            "UPDATE orders SET forwarded_from = (SELECT id FROM orders WHERE number = {first} + {k}) WHERE number = {first} + {to};
             UPDATE orders SET forwarded_to = (SELECT id FROM orders WHERE number = {first} + {to}), external_status = 'sent',
                               next_check_at = NULL
              WHERE number = {first} + {k};"
        ))
        .unwrap();
    };
    // Stuck: flagged; held with nothing scheduled; overdue; lost (a lane, nothing scheduled);
    // forwarded to the flagged order.
    shape(0, "attention = 'given_up', next_check_at = NULL");
    shape(1, "external_status = 'sent', provider_id = p.id, provider_referans = 'r1', lane = p.id, next_check_at = NULL");
    shape(2, "next_check_at = now() - interval '1 hour'");
    shape(3, "lane = p.id, next_check_at = NULL");
    // Not stuck: with the provider and scheduled; approved; due now; forwarded to a moving order;
    // manual routing waiting for an operator.
    shape(5, "external_status = 'sent', provider_id = p.id, provider_referans = 'r5', lane = p.id, next_check_at = now() + interval '1 minute'");
    shape(6, "status = 'approved', external_status = 'done', next_check_at = NULL, pin_code = 'P'");
    shape(7, "next_check_at = now()");
    shape(9, "next_check_at = NULL");
    forward(c, 4, 0);
    forward(c, 8, 5);
    let all = db.cmd().args(["--output", "json", "list", "--limit", "100"]).run().ok().json();
    let sql = db.cmd().args(["--output", "json", "list", "--stuck", "--limit", "100"]).run().ok().json();
    let expected: BTreeSet<i64> = [0, 1, 2, 3, 4].into_iter().map(|n| first + n).collect();
    assert_eq!(numbers(&all, Some(true)), expected, "the diagnosis: {all}");
    assert_eq!(numbers(&sql, None), expected, "the stuck SQL: {sql}");
}
