//! `orderctl partitions` (list the monthly partitions, create missing ones ahead) and
//! `orderctl archive --before YYYY-MM --to FILE` (write the finished orders of earlier months
//! with their events and placements to a file, fsync it, then drop those months).
//!
//! Archive order of work, each step safe to stop after: refuse when an order of those months is
//! open (nothing written); detach the months (catalogue only, under a short lock timeout, so the
//! daemon keeps claiming); write every row of the detached tables to the file and fsync it and
//! its directory; drop the detached tables. A run that stopped after the detach finds those
//! tables again and archives them with the rest; a file that cannot be written attaches them
//! again. Ledger rows are never touched: balances stay as they are.

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
    let mut t = output::table(&["month", "table", "partition", "rows", "open orders"]);
    for p in &parts {
        let open = p.open_orders.map(|n| n.to_string()).unwrap_or_default();
        t.add_row(vec![p.month.clone(), p.table.clone(), p.name.clone(), p.rows.to_string(), open]);
    }
    println!("{t}");
    Ok(())
}

/// What an archive run did, per month and table.
#[derive(Debug, Serialize)]
struct Archived {
    file: String,
    months: Vec<String>,
    orders: u64,
    order_events: u64,
    placements: u64,
    bytes: u64,
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
    let open = partitions::open_orders_before(&mut client, &months)?;
    if !open.is_empty() {
        let list: Vec<String> = open.iter().map(|(n, m)| format!("{n} ({m})")).collect();
        return Err(Error::refused(format!(
            "months before {} still hold open orders: {}; nothing was archived",
            a.before,
            list.join(", ")
        ))
        .with_hint("finish them first (`orderctl inspect N` says how), or archive an earlier month"));
    }
    let mut done = Archived {
        file: a.to.display().to_string(),
        months: months.iter().map(|m| partitions::month_label(*m)).collect(),
        orders: 0,
        order_events: 0,
        placements: 0,
        bytes: 0,
    };
    if !months.is_empty() {
        partitions::detach(&mut client, &months)?;
        // A detached table is no longer written by anyone: what is read now is what is dropped.
        if let Err(e) =
            check_still_finished(&mut client, &months).and_then(|_| write_file(&mut client, &months, &a.to, &mut done))
        {
            let _ = std::fs::remove_file(&a.to);
            partitions::reattach(&mut client, &months)?;
            return Err(e);
        }
        partitions::drop_detached(&mut client, &months)?;
    }
    report(s, &done);
    Ok(())
}

/// An order of a detached month that became open between the check and the detach (an
/// operator's command on it): the months go back and nothing is archived.
fn check_still_finished(client: &mut Client, months: &[NaiveDate]) -> Result<()> {
    let open = partitions::open_orders_before(client, months)?;
    match open.first() {
        None => Ok(()),
        Some((n, m)) => Err(Error::refused(format!("order {n} ({m}) was reopened during the archive; nothing was archived"))
            .with_hint("run the archive again once it is finished")),
    }
}

/// Every row of the detached months as JSON lines, then fsync of the file and its directory.
fn write_file(client: &mut Client, months: &[NaiveDate], path: &Path, done: &mut Archived) -> Result<()> {
    let io = |e: std::io::Error| Error::internal(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    for m in months {
        let month = partitions::month_label(*m);
        for table in partitions::TABLES {
            let n = partitions::read_rows(client, table, *m, |row| {
                writeln!(out, "{{\"table\":\"{table}\",\"month\":\"{month}\",\"row\":{row}}}").map_err(io)
            })?;
            match table {
                "orders" => done.orders += n,
                "order_events" => done.order_events += n,
                _ => done.placements += n,
            }
        }
    }
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
        println!("nothing to archive: no month before the one given has partitions");
        return;
    }
    let mut t = output::table(&["months", "orders", "events", "placements", "file", "bytes"]);
    t.add_row(vec![
        done.months.join(", "),
        done.orders.to_string(),
        done.order_events.to_string(),
        done.placements.to_string(),
        done.file.clone(),
        done.bytes.to_string(),
    ]);
    println!("{t}");
}
