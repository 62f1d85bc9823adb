//! `orderctl partitions` (list the monthly partitions of order_events, orders_done and
//! placements, create missing ones ahead) and `orderctl archive --before YYYY-MM --to FILE` (write the finished
//! orders of earlier months with their events, placements and webhook deliveries to a file,
//! fsync it, then remove them).
//!
//! Archive order of work, each step safe to stop after: refuse when an order of those months is
//! open (nothing written); write every row, in one snapshot, to the file and fsync it and its
//! directory; remove the orders' deliveries and keys in batches of 500, each its own short
//! transaction (the daemon keeps claiming: finished orders are never claimed); drop the months'
//! partitions of events, finished orders and placements (a lock on their parents of at most
//! 60 ms, which the order claims never take). A run that stopped part way says how far it got; running it
//! again (with a new file) writes the rows still there and finishes the removal. Ledger rows are
//! never touched: balances stay as they are.

use crate::cli::{ArchiveArgs, PartitionsArgs};
use crate::db::{self, partitions, Client};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use chrono::{Datelike, NaiveDate, Utc};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Partitions hold every tenant's orders: a command limited to one tenant may not see or drop them.
fn refuse_tenant(s: &Settings, command: &str) -> Result<()> {
    match &s.tenant {
        None => Ok(()),
        Some(_) => Err(Error::usage(format!("`orderctl {command}` works on every tenant's orders at once, not on one tenant's"))
            .with_hint("run it without --tenant (and without ORDERCTL_TENANT), as the operator of the whole database")),
    }
}

pub fn list(s: &Settings, a: &PartitionsArgs) -> Result<()> {
    refuse_tenant(s, "partitions")?;
    let mut client = db::connect(&s.database_url)?;
    let created = partitions::ensure_ahead(&mut client, a.ahead)?;
    for name in &created {
        log::info!("created partition {name}");
    }
    let parts = partitions::list(&mut client)?;
    if s.json() {
        output::print_json(&serde_json::json!({ "created": created, "partitions": parts }));
        return Ok(());
    }
    let mut t = output::table(&["month", "table", "partition", "rows", "orders", "open orders"]);
    for p in &parts {
        t.add_row(vec![
            p.month.clone(),
            p.table.clone(),
            p.name.clone(),
            p.rows.to_string(),
            p.orders.to_string(),
            p.open_orders.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// What an archive run did.
#[derive(Debug, Default, Serialize)]
struct Archived {
    file: String,
    months: Vec<String>,
    orders: u64,
    order_events: u64,
    placements: u64,
    webhook_deliveries: u64,
    bytes: u64,
    /// Orders removed from the database by this run (the rest of the file's orders were removed
    /// by an earlier run that stopped part way).
    removed_orders: u64,
    dropped_partitions: Vec<String>,
}

pub fn archive(s: &Settings, a: &ArchiveArgs) -> Result<()> {
    refuse_tenant(s, "archive")?;
    let before = partitions::parse_month(&a.before)?;
    let now = Utc::now().date_naive();
    let this_month = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or(now);
    if before > this_month {
        return Err(Error::invalid(format!(
            "--before {} would archive the current month ({}), whose orders are still being written",
            a.before,
            partitions::month_label(this_month)
        ))
        .with_hint(format!("archive months before this one at the latest: --before {}", partitions::month_label(this_month))));
    }
    if a.to.exists() {
        return Err(Error::refused(format!("{} exists already; an archive never overwrites a file", a.to.display()))
            .with_hint("choose a new file name"));
    }
    let mut client = db::connect(&s.database_url)?;
    let months = partitions::months_before(&mut client, before)?;
    refuse_open(&mut client, before, &a.before)?;
    let mut done = Archived {
        file: a.to.display().to_string(),
        months: months.iter().map(|m| partitions::month_label(*m)).collect(),
        ..Default::default()
    };
    if !months.is_empty() {
        if let Err(e) = write_file(&mut client, before, &a.to, &mut done) {
            let _ = std::fs::remove_file(&a.to);
            return Err(e);
        }
        remove_orders(&mut client, before, &mut done)?;
        // An order reopened during the run was skipped: its month's events must stay.
        if let Some((n, m)) = partitions::first_order_before(&mut client, before)? {
            return Err(Error::refused(format!(
                "order {n} ({m}) was reopened during the archive; it and its month's events stay in the database"
            ))
            .with_hint(format!(
                "{} holds every row; run the archive again (with a new file) once it is finished",
                a.to.display()
            )));
        }
        done.dropped_partitions = partitions::drop_months(&mut client, before, &months)?;
    }
    report(s, &done);
    Ok(())
}

/// Refuses (exit 5) while an order created before `before` is open.
fn refuse_open(client: &mut Client, before: NaiveDate, label: &str) -> Result<()> {
    let open = partitions::open_orders_before(client, before)?;
    if open.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = open.iter().map(|(n, m)| format!("{n} ({m})")).collect();
    Err(Error::refused(format!("months before {label} still hold open orders: {}; nothing was archived", list.join(", ")))
        .with_hint("finish them first (`orderctl inspect N` says how), or archive an earlier month"))
}

/// Removes the archived orders batch by batch; a batch that cannot get its locks in time stops
/// the run with how far it got (what is removed is in the file; a re-run resumes).
fn remove_orders(client: &mut Client, before: NaiveDate, done: &mut Archived) -> Result<()> {
    loop {
        match partitions::remove_batch(client, before) {
            Ok(0) => return Ok(()),
            Ok(n) => done.removed_orders += n,
            Err(e) => {
                return Err(Error::refused(format!(
                    "the archive stopped after removing {} of the {} orders written to {}: {}",
                    done.removed_orders, done.orders, done.file, e.message
                ))
                .with_hint(format!(
                    "{} is complete and kept; run `orderctl archive --before` again with a new file to remove the rest",
                    done.file
                )))
            }
        }
    }
}

/// Every row as JSON lines from one snapshot, then fsync of the file and its directory.
fn write_file(client: &mut Client, before: NaiveDate, path: &Path, done: &mut Archived) -> Result<()> {
    let io = |e: std::io::Error| Error::internal(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    let mut tx = client.transaction()?;
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    for table in partitions::TABLES {
        let n = partitions::read_rows(&mut tx, table, before, |month, row| {
            writeln!(out, "{{\"table\":\"{table}\",\"month\":\"{month}\",\"row\":{row}}}").map_err(io)
        })?;
        match table {
            "orders" => done.orders += n,
            "order_events" => done.order_events += n,
            "placements" => done.placements += n,
            _ => done.webhook_deliveries += n,
        }
    }
    tx.commit()?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    done.bytes = file.metadata().map_err(io)?.len();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

fn report(s: &Settings, done: &Archived) {
    if s.json() {
        output::print_json(done);
        return;
    }
    if done.months.is_empty() {
        println!("nothing to archive: no orders or event partitions before the month given");
        return;
    }
    let mut t = output::table(&["months", "orders", "events", "placements", "webhook deliveries", "file", "bytes"]);
    t.add_row(vec![
        done.months.join(", "),
        done.orders.to_string(),
        done.order_events.to_string(),
        done.placements.to_string(),
        done.webhook_deliveries.to_string(),
        done.file.clone(),
        done.bytes.to_string(),
    ]);
    println!("{t}");
}
