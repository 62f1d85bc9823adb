//! Schema migrations: numbered plain SQL files, each applied once, in order, in a transaction
//! under a transaction-scoped advisory lock, with a recorded checksum. Needs only ownership of
//! the database, never a superuser.

use crate::db::Client;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The migrations built into the binary, in order.
const BUILT_IN: &[(&str, &str)] = &[
    ("0001_schema.sql", include_str!("../../sql/0001_schema.sql")),
    ("0002_lifecycle_and_lanes.sql", include_str!("../../sql/0002_lifecycle_and_lanes.sql")),
    ("0003_webhooks.sql", include_str!("../../sql/0003_webhooks.sql")),
    ("0004_schedules_and_forwarding.sql", include_str!("../../sql/0004_schedules_and_forwarding.sql")),
    ("0005_lean_order_keys.sql", include_str!("../../sql/0005_lean_order_keys.sql")),
    ("0006_unread_order_indexes.sql", include_str!("../../sql/0006_unread_order_indexes.sql")),
    ("0007_one_holder_per_order.sql", include_str!("../../sql/0007_one_holder_per_order.sql")),
    ("0008_credential_references.sql", include_str!("../../sql/0008_credential_references.sql")),
    ("0009_webhook_endpoints_and_outcome_counts.sql", include_str!("../../sql/0009_webhook_endpoints_and_outcome_counts.sql")),
    ("0010_retired_setup_objects.sql", include_str!("../../sql/0010_retired_setup_objects.sql")),
    ("0015_webhook_secret_references.sql", include_str!("../../sql/0015_webhook_secret_references.sql")),
    ("0016_provider_health.sql", include_str!("../../sql/0016_provider_health.sql")),
    ("0017_provider_cost_rate_limit_open_kinds.sql", include_str!("../../sql/0017_provider_cost_rate_limit_open_kinds.sql")),
    ("0018_monthly_partitions.sql", include_str!("../../sql/0018_monthly_partitions.sql")),
    ("0019_hot_path_without_history.sql", include_str!("../../sql/0019_hot_path_without_history.sql")),
    ("0020_hourly_rollups.sql", include_str!("../../sql/0020_hourly_rollups.sql")),
    ("0021_tenant_currency_exchange_rates.sql", include_str!("../../sql/0021_tenant_currency_exchange_rates.sql")),
    ("0023_careful_placements.sql", include_str!("../../sql/0023_careful_placements.sql")),
    ("0024_last_cost_per_mapping.sql", include_str!("../../sql/0024_last_cost_per_mapping.sql")),
    ("0025_duration_histograms.sql", include_str!("../../sql/0025_duration_histograms.sql")),
    ("0026_five_minute_slices.sql", include_str!("../../sql/0026_five_minute_slices.sql")),
    ("0027_time_ordered_order_ids.sql", include_str!("../../sql/0027_time_ordered_order_ids.sql")),
    ("0028_placements_room_for_outcomes.sql", include_str!("../../sql/0028_placements_room_for_outcomes.sql")),
    ("0029_one_key_per_reference.sql", include_str!("../../sql/0029_one_key_per_reference.sql")),
    ("0030_reference_in_plpgsql.sql", include_str!("../../sql/0030_reference_in_plpgsql.sql")),
    ("0031_orders_live_and_done.sql", include_str!("../../sql/0031_orders_live_and_done.sql")),
    ("0032_placements_by_month.sql", include_str!("../../sql/0032_placements_by_month.sql")),
    ("0033_finished_orders_move_unchecked.sql", include_str!("../../sql/0033_finished_orders_move_unchecked.sql")),
    ("0034_wake_with_oldest_schedule.sql", include_str!("../../sql/0034_wake_with_oldest_schedule.sql")),
];

/// One key for every orderctl migrate run, whatever the database.
const MIGRATE_LOCK_KEY: i64 = 0x6f72_6465_7263_746c; // "orderctl"

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i32,
    pub name: String,
    pub sql: String,
    pub checksum: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationReport {
    pub version: i32,
    pub name: String,
    pub checksum: String,
    /// "applied", "pending" (dry run) or "already applied".
    pub state: String,
}

fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_name(name: &str) -> Result<i32> {
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || !name.ends_with(".sql") {
        return Err(Error::invalid(format!("migration file {name} is not named NNNN_description.sql")));
    }
    digits.parse().map_err(|_| Error::invalid(format!("migration file {name} has a version number that is too large")))
}

pub fn built_in() -> Vec<Migration> {
    BUILT_IN
        .iter()
        .map(|(name, sql)| Migration {
            version: parse_name(name).expect("built-in migration names are valid"),
            name: name.to_string(),
            sql: sql.to_string(),
            checksum: checksum(sql),
        })
        .collect()
}

pub fn from_dir(dir: &Path) -> Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::not_found(format!("cannot read migrations directory {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".sql") {
            continue;
        }
        let sql = std::fs::read_to_string(entry.path())?;
        out.push(Migration { version: parse_name(&name)?, checksum: checksum(&sql), name, sql });
    }
    out.sort_by_key(|m| m.version);
    for w in out.windows(2) {
        if w[0].version == w[1].version {
            return Err(Error::invalid(format!("migrations {} and {} have the same number", w[0].name, w[1].name)));
        }
    }
    Ok(out)
}

/// Apply every pending migration (or, with `dry_run`, list them). Safe to run concurrently: the
/// advisory lock makes the second run wait and then find nothing to do.
pub fn migrate(client: &mut Client, migrations: &[Migration], dry_run: bool) -> Result<Vec<MigrationReport>> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS orderctl_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )?;
    let applied: Vec<(i32, String, String)> = tx
        .query("SELECT version, name, checksum FROM orderctl_migrations ORDER BY version", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    for (version, name, sum) in &applied {
        match migrations.iter().find(|m| m.version == *version) {
            Some(m) if &m.checksum != sum => {
                return Err(Error::refused(format!(
                    "migration {name} was already applied but its file has changed since (checksum {} in the database, {} now)",
                    &sum[..12.min(sum.len())],
                    &m.checksum[..12]
                ))
                .with_hint(
                    "never edit an applied migration: restore the original file and put the change in a new numbered file",
                ));
            }
            Some(_) => {}
            None => {
                return Err(Error::refused(format!(
                    "the database has migration {name} applied, which this orderctl does not know"
                ))
                .with_hint("the database was migrated by a newer orderctl; use that version"));
            }
        }
    }

    let mut report = Vec::new();
    for m in migrations {
        if applied.iter().any(|(v, _, _)| *v == m.version) {
            report.push(MigrationReport {
                version: m.version,
                name: m.name.clone(),
                checksum: m.checksum.clone(),
                state: "already applied".into(),
            });
            continue;
        }
        if !dry_run {
            tx.batch_execute(&m.sql).map_err(|e| {
                let inner = crate::error::Error::from(e);
                Error::new(inner.kind, format!("migration {} failed: {}", m.name, inner.message))
                    .with_hint("nothing of it was applied; fix the SQL or the database and run migrate again")
            })?;
            tx.execute(
                "INSERT INTO orderctl_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &m.checksum],
            )?;
        }
        report.push(MigrationReport {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            state: if dry_run { "pending".into() } else { "applied".into() },
        });
    }
    if dry_run {
        tx.rollback()?;
    } else {
        tx.commit()?;
    }
    Ok(report)
}

/// Versions known to this binary but not applied; an error when the schema is missing entirely.
pub fn pending(client: &mut Client) -> Result<Vec<String>> {
    let exists: bool = client.query_one("SELECT to_regclass('orderctl_migrations') IS NOT NULL", &[])?.get(0);
    let applied: Vec<i32> = if exists {
        client.query("SELECT version FROM orderctl_migrations", &[])?.iter().map(|r| r.get(0)).collect()
    } else {
        vec![]
    };
    Ok(built_in().into_iter().filter(|m| !applied.contains(&m.version)).map(|m| m.name).collect())
}
