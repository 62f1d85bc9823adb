//! `orderctl migrate`: each file once, in order, safe when concurrent, refuses changed files.

use crate::support::*;

#[test]
fn migrate_twice_applies_each_file_once() {
    let db = TestDb::empty();
    let first = db.cmd().args(["migrate", "--output", "json"]).run().ok().json();
    assert_eq!(first[0]["state"], "applied");
    let second = db.cmd().args(["migrate", "--output", "json"]).run().ok().json();
    assert_eq!(second[0]["state"], "already applied");
    assert_eq!(db.query_i64("SELECT count(*) FROM orderctl_migrations"), first.as_array().unwrap().len() as i64);
}

#[test]
fn dry_run_lists_pending_files_and_changes_nothing() {
    let db = TestDb::empty();
    let out = db.cmd().args(["migrate", "--dry-run", "--output", "json"]).run().ok().json();
    assert_eq!(out[0]["state"], "pending");
    assert_eq!(out[0]["name"], "0001_schema.sql");
    assert_eq!(db.query_i64("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'"), 0);
}

#[test]
fn concurrent_migrate_runs_are_safe() {
    let db = TestDb::empty();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || Cmd::new().env("DATABASE_URL", &url).args(["migrate"]).run())
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(db.query_i64("SELECT count(*) FROM orderctl_migrations"), orderctl::db::migrate::built_in().len() as i64);
}

#[test]
fn a_changed_applied_file_is_refused() {
    let db = TestDb::empty();
    let dir = tempfile::tempdir().unwrap();
    let original = include_str!("../../sql/0001_schema.sql");
    std::fs::write(dir.path().join("0001_schema.sql"), original).unwrap();
    db.cmd().args(["migrate", "--dir"]).arg(dir.path()).run().ok();
    std::fs::write(dir.path().join("0001_schema.sql"), format!("{original}\n-- edited\n")).unwrap();
    let out = db.cmd().args(["migrate", "--dir"]).arg(dir.path()).run().code(5);
    assert!(out.stderr.contains("0001_schema.sql was already applied but its file has changed"), "{}", out.stderr);
    assert!(out.stderr.contains("new numbered file"), "{}", out.stderr);
}

#[test]
fn a_new_file_is_applied_after_the_old_ones() {
    let db = TestDb::empty();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_schema.sql"), include_str!("../../sql/0001_schema.sql")).unwrap();
    db.cmd().args(["migrate", "--dir"]).arg(dir.path()).run().ok();
    std::fs::write(dir.path().join("0002_more.sql"), "ALTER TABLE orders ADD COLUMN note text;").unwrap();
    let out = db.cmd().args(["migrate", "--output", "json", "--dir"]).arg(dir.path()).run().ok().json();
    assert_eq!(out[1]["state"], "applied");
    assert_eq!(
        db.query_i64("SELECT count(*) FROM information_schema.columns WHERE table_name='orders' AND column_name='note'"),
        1
    );
}

#[test]
fn migrate_works_as_an_ordinary_database_owner() {
    let db = TestDb::empty();
    let mut admin = admin();
    let role = format!("{}_owner", db.name);
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"))
        .unwrap();
    admin.batch_execute(&format!("ALTER DATABASE {} OWNER TO {role}", db.name)).unwrap();
    {
        let mut c = db.client();
        c.batch_execute(&format!("ALTER SCHEMA public OWNER TO {role}")).unwrap();
    }
    let mut u = url::Url::parse(&db.url).unwrap();
    u.set_username(&role).unwrap();
    Cmd::new().env("DATABASE_URL", u.as_str()).args(["migrate"]).run().ok();
    assert_eq!(db.query_i64("SELECT count(*) FROM orderctl_migrations"), orderctl::db::migrate::built_in().len() as i64);
    drop(db);
    admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
}

#[test]
fn a_dead_database_is_reported_with_its_exit_code_and_no_password() {
    let out =
        Cmd::new().env("DATABASE_URL", "postgres://orderctl:hunter2-db-pass@127.0.0.1:1/nowhere").args(["migrate"]).run().code(6);
    assert!(out.stderr.contains("cannot connect to the database"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2-db-pass"), "{}", out.stderr);
}

/// Migration 0015 (webhook secrets may be references): a database migrated before it keeps
/// every secret's value (now a JSON string), the rotation's previous one too; afterwards only a
/// non-empty string or one `env`/`file` reference is accepted.
#[test]
fn webhook_secrets_written_before_0015_keep_their_values() {
    let db = TestDb::migrated_before("0015");
    db.client()
        .batch_execute(
            "INSERT INTO tenants (name) VALUES ('t');
             INSERT INTO webhooks (tenant_id, url, secret, events, previous_secret, previous_secret_until)
             SELECT id, 'https://shop.example/h', 'whsec-old-plain', ARRAY['order.approved'], 'whsec-older', now() + interval '1h'
               FROM tenants",
        )
        .unwrap();
    db.cmd().args(["migrate"]).run().ok();
    let mut c = db.client();
    let r = c.query_one("SELECT secret #>> '{}', previous_secret #>> '{}', jsonb_typeof(secret) FROM webhooks", &[]).unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2)),
        ("whsec-old-plain".into(), "whsec-older".into(), "string".into())
    );
    c.execute(r#"UPDATE webhooks SET secret = '{"file": "/run/credentials/x/whsec"}'"#, &[]).unwrap();
    for bad in [r#""""#, r#"{"env": ""}"#, r#"{"env": "A", "file": "/b"}"#, "42"] {
        let e = c.execute(&format!("UPDATE webhooks SET secret = '{bad}'"), &[]).unwrap_err();
        assert_eq!(e.as_db_error().and_then(|d| d.constraint()), Some("webhooks_secret_well_formed"), "{bad}: {e:?}");
    }
}

/// Migration 0029: a ledger row names its tenant and its user by one key, so a user of another
/// tenant is refused (each tenant's balances are its own users'), and an order's tenant is
/// checked through its user. A database migrated before it that holds such a ledger row is
/// refused with nothing changed, and migrates once the row is fixed, every row kept.
#[test]
fn from_0029_a_ledger_row_belongs_to_its_users_tenant() {
    let db = TestDb::migrated_before("0029");
    let mut c = db.client();
    c.batch_execute(
        "INSERT INTO tenants (name) VALUES ('a'), ('b');
         INSERT INTO users (tenant_id, name) SELECT id, 'u-' || name FROM tenants;
         INSERT INTO ledger (tenant_id, user_id, kind, amount)
         SELECT u.tenant_id, u.id, 'adjustment', 5 FROM users u;
         INSERT INTO ledger (tenant_id, user_id, kind, amount, note)
         SELECT t.id, u.id, 'adjustment', 1, 'crossed' FROM tenants t JOIN users u ON u.tenant_id <> t.id WHERE t.name = 'a';",
    )
    .unwrap();
    let out = db.cmd().args(["migrate"]).run();
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("ledger_tenant_id_user_id_fkey"), "{}", out.stderr);
    let kept = |c: &mut orderctl::db::Client| -> i64 {
        c.query_one("SELECT count(*) FROM pg_constraint WHERE conname = 'orders_tenant_id_fkey'", &[]).unwrap().get(0)
    };
    assert_eq!(kept(&mut c), 1, "a refused migration changes nothing");
    c.batch_execute("UPDATE ledger l SET tenant_id = u.tenant_id FROM users u WHERE u.id = l.user_id AND l.note = 'crossed'")
        .unwrap();
    db.cmd().args(["migrate"]).run().ok();
    assert_eq!(kept(&mut c), 0);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger"), 3, "every ledger row kept");
    let e = c
        .batch_execute(
            "INSERT INTO ledger (tenant_id, user_id, kind, amount)
             SELECT t.id, u.id, 'adjustment', 1 FROM tenants t JOIN users u ON u.tenant_id <> t.id WHERE t.name = 'b'",
        )
        .unwrap_err();
    assert_eq!(e.as_db_error().and_then(|d| d.constraint()), Some("ledger_tenant_id_user_id_fkey"), "{e:?}");
}
