//! A TLS-only private cluster with certificates made here (a CA, a server certificate for
//! `localhost`, a client certificate): every sslmode means what it means to libpq, each
//! misconfiguration is one clear line naming the setting (exit 4), and every connection of a
//! command and of a daemon is encrypted (pg_stat_ssl).

use super::*;
use crate::reliability::{daemon, DaemonLog};
use orderctl::kit::cluster::{ClusterOptions, PrivateCluster};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, names: &[&str], cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    (p.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
}

/// The cluster (TLS only: no hostnossl line, so plain text is refused; `certuser` only with
/// a client certificate) and the client's files.
fn tls_cluster() -> Option<(PrivateCluster, Pki)> {
    let ca_cert = ca("orderctl test CA");
    let other_ca = ca("someone else's CA");
    let (server_cert, server_key) = leaf(&ca_cert, &["localhost"], "localhost");
    let (client_cert, client_key) = leaf(&ca_cert, &[], "certuser");
    let pki = Pki { dir: tempfile::tempdir().unwrap() };
    for (name, content) in [
        ("ca.pem", ca_cert.pem()),
        ("other-ca.pem", other_ca.pem()),
        ("client.pem", client_cert),
        ("client.key", client_key.clone()),
        ("open.key", client_key),
    ] {
        std::fs::write(pki.path(name), content).unwrap();
        std::fs::set_permissions(pki.path(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::set_permissions(pki.path("open.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let opts = ClusterOptions {
        settings: vec![
            "ssl=on".into(),
            "ssl_cert_file=server.pem".into(),
            "ssl_key_file=server.key".into(),
            "ssl_ca_file=ca.pem".into(),
        ],
        hba: Some("local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n".into()),
        files: vec![
            ("server.pem".into(), server_cert.into_bytes()),
            ("server.key".into(), server_key.into_bytes()),
            ("ca.pem".into(), ca_cert.pem().into_bytes()),
        ],
        ..Default::default()
    };
    Some((private_cluster(opts)?, pki))
}

fn url(cluster: &PrivateCluster, host: &str, user: &str, query: &str) -> String {
    format!("postgres://{user}@{host}:{}/postgres?{query}", cluster.port)
}

#[test]
fn every_sslmode_means_what_it_means_to_libpq_and_each_mistake_is_one_line_naming_the_setting() {
    let Some((cluster, pki)) = tls_cluster() else { return };
    let ca = pki.path("ca.pem");
    let stats = |u: &str| Cmd::new().env("DATABASE_URL", u).args(["doctor"]).run();
    let connected = |u: &str| {
        let out = stats(u);
        assert!(out.stdout.contains("reachable at"), "{u}:\n{}{}", out.stdout, out.stderr);
        out.stdout
    };
    // Encrypted whenever it connects; verified as the mode says.
    assert!(
        connected(&url(&cluster, "127.0.0.1", "postgres", "")).contains("TLSv1.3 (verified: nothing"),
        "prefer is the default"
    );
    assert!(connected(&url(&cluster, "127.0.0.1", "postgres", "sslmode=require")).contains("verified: nothing"));
    let with_root = connected(&url(&cluster, "127.0.0.1", "postgres", &format!("sslmode=require&sslrootcert={ca}")));
    assert!(with_root.contains("verified: chain;"), "require with a root certificate checks the chain:\n{with_root}");
    assert!(connected(&url(&cluster, "127.0.0.1", "postgres", &format!("sslmode=verify-ca&sslrootcert={ca}")))
        .contains("verified: chain;"));
    let full = connected(&url(&cluster, "localhost", "postgres", &format!("sslmode=verify-full&sslrootcert={ca}")));
    assert!(full.contains("TLSv1.3 (server certificate verified: chain and host name)"), "{full}");
    // The same through the PG* variables, as libpq reads them.
    let out = Cmd::new()
        .env("DATABASE_URL", url(&cluster, "localhost", "postgres", ""))
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &ca)
        .args(["doctor"])
        .run();
    assert!(out.stdout.contains("chain and host name"), "{}{}", out.stdout, out.stderr);

    // Each mistake: exit 4, one line naming the setting, no retry.
    let refused = |u: &str, says: &str| {
        let out = Cmd::new().env("DATABASE_URL", u).args(["stats"]).run().code(4);
        let first = out.stderr.lines().next().unwrap_or_default().to_string();
        assert!(first.contains(says), "{u}: expected '{says}' in:\n{}", out.stderr);
    };
    refused(&url(&cluster, "127.0.0.1", "postgres", "sslmode=disable"), "sslmode=disable");
    refused(
        &url(&cluster, "127.0.0.1", "postgres", &format!("sslmode=verify-full&sslrootcert={ca}")),
        "not valid for host '127.0.0.1'",
    );
    refused(
        &url(&cluster, "localhost", "postgres", &format!("sslmode=verify-full&sslrootcert={}", pki.path("other-ca.pem"))),
        "sslrootcert",
    );
    refused(&url(&cluster, "localhost", "postgres", "sslmode=verify-full"), "sslrootcert");
    refused(
        &url(&cluster, "localhost", "postgres", "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
        "sslrootcert: cannot read",
    );
    refused(&url(&cluster, "localhost", "postgres", "sslmode=require&sslpassword=x"), "'sslpassword'");
    let open_key = format!("sslmode=require&sslcert={}&sslkey={}", pki.path("client.pem"), pki.path("open.key"));
    refused(&url(&cluster, "localhost", "certuser", &open_key), "sslkey");

    // A client certificate: accepted where the server asks for one, and required there.
    let mut admin = orderctl::db::connect(&url(&cluster, "localhost", "postgres", "sslmode=require")).unwrap();
    admin.batch_execute("CREATE ROLE certuser LOGIN").unwrap();
    let with_cert =
        format!("sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}", pki.path("client.pem"), pki.path("client.key"));
    assert!(connected(&url(&cluster, "localhost", "certuser", &with_cert)).contains("chain and host name"));
    let out = stats(&url(&cluster, "localhost", "certuser", &format!("sslmode=verify-full&sslrootcert={ca}")));
    assert!(!out.stdout.contains("reachable at"), "without its certificate certuser is refused:\n{}", out.stdout);

    // A server without TLS under require: refused, not plain text. (pgbouncer here offers none.)
    if let Some(bouncer) = pgbouncer("session") {
        refused(&bouncer.url_for(&format!("{}?sslmode=require", admin_url())), "does not offer TLS");
    }
}

#[test]
fn a_command_and_every_daemon_lane_talk_to_postgres_encrypted() {
    let Some((cluster, pki)) = tls_cluster() else { return };
    let tls = format!("sslmode=verify-full&sslrootcert={}", pki.path("ca.pem"));
    let db = TestDb::migrated_on(&url(&cluster, "localhost", "postgres", &tls));
    let sim = Sim::start(&["--complete-after", "200ms"]);
    db.apply(&standard_setup(&sim.base_url));
    let log = DaemonLog::new();
    // The daemon's connections by a name of their own (the test's client is not counted).
    let d = daemon(&with_application_name(&db.url, "tls-daemon"), log.path(), &[]);
    insert_orders(&db, "pubg-60", 20);
    insert_orders(&db, "freefire-100", 20);
    wait_until("all 40 final over TLS", Duration::from_secs(60), || open_orders(&db) == 0);
    // Routing lane, webhook lane, two provider lanes, the listener, the supervisor: each its own
    // connection, all encrypted.
    let mut c = db.client();
    let sql = "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'tls-daemon'";
    let r = c.query_one(sql, &[]).unwrap();
    let (encrypted, plain): (i64, i64) = (r.get(0), r.get(1));
    assert!(encrypted >= 6, "every lane's connection is encrypted ({encrypted} of the daemon's seen)");
    assert_eq!(plain, 0, "no daemon connection in plain text");
    // And a command's own connection.
    let r = c.query_one("SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()", &[]).unwrap();
    assert!(r.get::<_, bool>(0), "a command's connection is encrypted");
    assert_eq!(d.terminate(), 0);
}
