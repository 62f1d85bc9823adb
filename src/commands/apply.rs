//! `orderctl apply -f FILE`: declarative, idempotent setup of tenants, users, providers, code
//! stock, products, packages and routing. The file is validated as a whole first; any problem
//! means nothing is written. See `db::setup` for the write rules (and how declared balances
//! reach the ledger) and `domain::setup` for the format and its validation.
//!
//! With the global `--tenant T`, a file that declares any other tenant is refused.
//!
//! Output: a summary of what changed (stdout). Problems: one line each on stderr and exit 4;
//! with `--output json` the problems are a JSON array of `{path, message}` on stdout, followed
//! by the usual error object on stderr. Routing warnings (disabled provider, empty code stock)
//! go to stderr and, in JSON, into the summary's `warnings`.

use crate::cli::ApplyArgs;
use crate::db;
use crate::db::setup::{apply_text, ApplyOptions, ApplyOutcome, ApplySummary, Changes};
use crate::domain::setup::plan::{Action, Step};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use std::io::Read;

pub fn run(s: &Settings, a: &ApplyArgs) -> Result<()> {
    let (text, source) = read_file(&a.file)?;
    if let Some(only) = &s.tenant {
        // --tenant restricts every write; a file for other tenants is refused before any.
        if let Ok(names) = crate::domain::setup::tenant_names(&text) {
            if let Some(other) = names.iter().find(|n| n.as_str() != only.as_str()) {
                return Err(Error::invalid(format!(
                    "{source} declares tenant {other}, but --tenant {only} restricts apply to tenant {only}; nothing was written"
                ))
                .with_hint("apply the file without --tenant (and without ORDERCTL_TENANT), or keep only that tenant in it"));
            }
        }
        // Rates convert every tenant's costs: an operator's, not one tenant's, to declare.
        if crate::domain::setup::declares_exchange_rates(&text) {
            return Err(Error::invalid(format!(
                "{source} declares exchange_rates, which every tenant's costs are converted with, but --tenant {only} \
                 restricts apply to tenant {only}; nothing was written"
            ))
            .with_hint("apply the exchange rates without --tenant (and without ORDERCTL_TENANT)"));
        }
    }
    let mut client = db::connect(&s.database_url)?;
    let options = ApplyOptions { dry_run: a.dry_run, prune: a.prune, lock_wait: a.lock_wait.into() };
    match apply_text(&mut client, &text, options)? {
        ApplyOutcome::Invalid(problems) => {
            if s.json() {
                output::print_json(&problems);
            } else {
                for p in &problems {
                    eprintln!("{source}: {}", p.message);
                }
            }
            Err(Error::invalid(format!("{source} has {} problem(s); nothing was written", problems.len())).with_hint(
                "fix every problem listed, then apply again (`orderctl apply --dry-run -f FILE` checks a file without writing)",
            ))
        }
        ApplyOutcome::Applied(summary) => {
            for w in &summary.warnings {
                log::warn!("{}", w.message);
            }
            for w in &summary.credential_warnings {
                log::warn!("{w}");
            }
            for c in &summary.concurrent_changes {
                log::warn!("changed by another apply while this one waited for the lock: {c}");
            }
            if s.json() {
                output::print_json(&summary);
            } else {
                print_summary(&summary);
            }
            Ok(())
        }
    }
}

/// The file's text and how to name it in messages. `-` is standard input.
fn read_file(path: &str) -> Result<(String, String)> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            Error::invalid(format!("cannot read the setup file from standard input: {e}"))
                .with_hint("pipe a UTF-8 JSON document into `orderctl apply -f -`")
        })?;
        return Ok((text, "<stdin>".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("cannot read setup file {path}: {e}"))
            .with_hint("check the path (it must be a UTF-8 JSON file), or use -f - to read standard input")
    })?;
    Ok((text, path.to_string()))
}

fn print_summary(s: &ApplySummary) {
    let mut t = output::table(&["kind", "created", "updated", "unchanged", "changed names"]);
    let kinds: [(&str, &Changes); 8] = [
        ("tenants", &s.tenants),
        ("users", &s.users),
        ("providers", &s.providers),
        ("code groups", &s.code_groups),
        ("products", &s.products),
        ("packages", &s.packages),
        ("webhooks", &s.webhooks),
        ("exchange rates", &s.exchange_rates),
    ];
    for (kind, c) in kinds {
        let mut names: Vec<String> = c.created.iter().map(|n| format!("+{n}")).collect();
        names.extend(c.updated.iter().map(|n| format!("~{n}")));
        t.add_row(vec![
            kind.to_string(),
            c.created.len().to_string(),
            c.updated.len().to_string(),
            c.unchanged.len().to_string(),
            names.join(" "),
        ]);
    }
    println!("{t}");
    if s.codes_added > 0 {
        println!("stock codes added: {}", s.codes_added);
    }
    if !s.ledger.is_empty() {
        let mut l = output::table(&["tenant", "user", "ledger", "amount", "balance after"]);
        for p in &s.ledger {
            l.add_row(vec![
                p.tenant.clone(),
                p.user.clone(),
                p.kind.to_string(),
                format!("{:+.2}", p.amount),
                format!("{:.2}", p.balance),
            ]);
        }
        println!("{l}");
        println!("{}", s.balance_rule);
    }
    print_plan(s);
    println!("{}", verdict(s));
}

/// Every step of the plan, by tenant: `+` create, `~` change, `^` revive, `-` retire.
fn print_plan(s: &ApplySummary) {
    let mut heading: Option<&str> = None;
    for step in &s.plan.steps {
        // Exchange rates are of no tenant (their steps' tenant is empty): their own heading.
        if heading != Some(step.tenant.as_str()) {
            heading = Some(&step.tenant);
            println!(
                "{}",
                if step.tenant.is_empty() { "exchange rates:".to_string() } else { format!("tenant {}:", step.tenant) }
            );
        }
        let (mark, what) = match step.action {
            Action::Create => ("+", "create"),
            Action::Change => ("~", "change"),
            Action::Revive => ("^", "revive"),
            Action::Retire => ("-", "retire"),
        };
        println!("  {mark} {what} {}", step.label());
        if step.action != Action::Create {
            for c in &step.changes {
                if c.secret {
                    println!("      {}: (secret) changed", c.field);
                } else {
                    println!("      {}: {} -> {}", c.field, c.old, c.new);
                }
            }
        }
    }
    if !s.concurrent_changes.is_empty() {
        println!("changed by another apply while this one waited (the plan above already accounts for it):");
        for c in &s.concurrent_changes {
            println!("  {c}");
        }
    }
    if s.cancelled_deliveries > 0 {
        println!("pending webhook deliveries cancelled: {}", s.cancelled_deliveries);
    }
    for u in &s.plan.users_not_in_file {
        println!("user {u} is not in the file; users are never retired (balance and ledger stay)");
    }
}

/// The last line: what happened, and what the file leaves out. Never says the database matches
/// the file while it holds objects the file does not name.
fn verdict(s: &ApplySummary) -> String {
    let n = s.changes;
    let mut out = match (s.dry_run, n) {
        (true, 0) => "dry run: no changes".to_string(),
        (true, n) => format!("dry run: {n} change(s) would be made; nothing was written"),
        (false, 0) => "no changes".to_string(),
        (false, n) => format!("applied: {n} change(s)"),
    };
    let left: &[Step] = &s.plan.not_in_file;
    if left.is_empty() {
        if n == 0 {
            out.push_str(": the database already matches the file");
        }
    } else {
        let whose = |s: &Step| if s.tenant.is_empty() { String::new() } else { format!(" (tenant {})", s.tenant) };
        let names: Vec<String> = left.iter().map(|s| format!("{}{}", s.label(), whose(s))).collect();
        out.push_str(&format!(
            "\n{} object(s) not in the file: {}; run with --prune to retire them",
            left.len(),
            names.join(", ")
        ));
    }
    out
}

/// `orderctl export`: the stored setup of every tenant (or `--tenant`'s) in the file format.
pub fn export(s: &Settings) -> Result<()> {
    let mut client = db::connect(&s.database_url)?;
    let stored = crate::db::setup::export(&mut client, s.tenant.as_deref())?;
    // The file format is JSON whatever --output says.
    println!("{}", crate::domain::setup::export::render(&crate::domain::setup::export::document(&stored)));
    Ok(())
}
