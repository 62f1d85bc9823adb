//! Writing a setup file (`orderctl apply`): validate the whole file against what the database
//! holds, then write all of it in one transaction, or nothing.
//!
//! Every write is an upsert by (tenant, name) that first compares: a row that already matches
//! the file is not touched, so applying the same file twice changes nothing and reports zero
//! changes. Code stock only grows (missing codes are added; codes are never removed and their
//! state is never reset). A package's mappings are replaced by the file's.
//!
//! Balances and the ledger (the rule `apply` prints too, see [`BALANCE_RULE`]):
//! - a user's first apply credits the declared balance through the ledger as an
//!   `opening_balance` row and remembers it in `users.declared_balance`;
//! - a later apply that declares the same balance changes nothing, whatever orders have spent
//!   since: a balance is never reset;
//! - a different declared balance posts the difference (new − previously declared) as an
//!   `adjustment` row, moves `balance` by that difference and remembers the new declaration.
//!   An adjustment that would take the balance below −overdraft_limit is refused.
//!
//! Removals, the plan and concurrency:
//! - the plan (`domain::setup::plan`) is computed from the file and what is stored
//!   (`stored`) before anything is written; objects of the file's tenants that it no longer
//!   names are retired with `--prune` (`retire`), and only named without it;
//! - concurrent applies are serialised by a transaction-scoped advisory lock, waited for at most
//!   `lock_wait`; the plan is made after the lock, from what the previous apply left, and what
//!   that apply changed while this one waited is reported (`concurrent_changes`).

mod retire;
pub mod stored;
mod write;

use crate::db::routing::live_routing_views;
use crate::db::{Client, GenericClient, Transaction};
use crate::domain::routing::check_routing;
use crate::domain::setup::plan::{self, Plan, StoredSetup};
use crate::domain::setup::{self, Existing, Setup, SetupProblem};
use crate::error::{Error, Result};
use crate::provider::ProviderKind;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How a declared balance reaches the ledger, in one sentence for `apply`'s output.
pub const BALANCE_RULE: &str = "balances: a user's first apply credits the declared balance as an opening_balance \
     ledger row; re-applying the same declared balance changes nothing (orders may have spent since); a different \
     declared balance posts the difference as an adjustment row";

/// One key for every `apply`, so two runs never interleave their compare-then-write.
const APPLY_LOCK_KEY: i64 = 0x6f72_6465_7261_7070; // "orderapp"

/// What `apply` did, or would do with `--dry-run`.
#[derive(Debug, Default, Serialize)]
pub struct ApplySummary {
    pub dry_run: bool,
    pub prune: bool,
    /// The plan's steps (creates, changes, revivals, retirements). 0 with nothing in
    /// `plan.not_in_file` means the database already matched the file.
    pub changes: usize,
    /// Every step with the fields it changes (secrets masked), and what the file no longer names.
    pub plan: Plan,
    /// What another apply changed in these tenants while this one waited for the lock.
    pub concurrent_changes: Vec<String>,
    /// Pending deliveries of retired webhooks, cancelled.
    pub cancelled_deliveries: u64,
    pub tenants: Changes,
    pub users: Changes,
    pub providers: Changes,
    pub code_groups: Changes,
    pub products: Changes,
    pub packages: Changes,
    /// Webhooks by `tenant/url` (their secrets are never shown).
    pub webhooks: Changes,
    /// Exchange rates by pair ("USD/TRY").
    pub exchange_rates: Changes,
    /// Stock codes added to code groups.
    pub codes_added: u64,
    /// Balance movements posted to the ledger.
    pub ledger: Vec<BalancePosting>,
    /// Routing problems of the applied tenants that do not block saving (disabled provider,
    /// empty code stock, or anything planted by other means): `routing check` reports them too.
    pub warnings: Vec<RoutingWarning>,
    /// Providers whose credentials are written into the file as plain values (they work; a
    /// reference to an environment variable or file keeps them out of the file and database).
    pub credential_warnings: Vec<String>,
    pub balance_rule: &'static str,
}

/// Names (`tenant/name`, or the tenant's own name) by what happened to them.
#[derive(Debug, Default, Serialize)]
pub struct Changes {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
}

impl Changes {
    fn record(&mut self, change: Change, name: String) {
        match change {
            Change::Created => self.created.push(name),
            Change::Updated => self.updated.push(name),
            Change::Unchanged => self.unchanged.push(name),
        }
    }
    pub fn changed(&self) -> usize {
        self.created.len() + self.updated.len()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BalancePosting {
    pub tenant: String,
    pub user: String,
    /// `opening_balance` or `adjustment`.
    pub kind: &'static str,
    pub amount: Decimal,
    /// The user's balance after the posting.
    pub balance: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutingWarning {
    pub tenant: String,
    pub package: String,
    /// `RoutingProblem::code`.
    pub code: &'static str,
    pub message: String,
}

/// How to apply: `--dry-run`, `--prune`, `--lock-wait`.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub prune: bool,
    pub lock_wait: Duration,
}

impl ApplyOptions {
    /// Write, no pruning, the default lock wait (the demo's and tests' setups).
    pub const WRITE: ApplyOptions = ApplyOptions { dry_run: false, prune: false, lock_wait: Duration::from_secs(120) };
}

pub enum ApplyOutcome {
    /// The file has problems; nothing was written.
    Invalid(Vec<SetupProblem>),
    /// Written (or, for a dry run, rolled back).
    Applied(Box<ApplySummary>),
}

/// Validate a setup file, plan it and write it in one transaction (rolled back when `dry_run`).
pub fn apply_text(client: &mut Client, text: &str, options: ApplyOptions) -> Result<ApplyOutcome> {
    let (names, declared) = match (setup::referenced_tenants(text), setup::tenant_names(text)) {
        (Ok(names), Ok(declared)) => (names, declared),
        (Err(problems), _) | (_, Err(problems)) => return Ok(ApplyOutcome::Invalid(problems)),
    };
    let mut tx = client.transaction()?;
    // Read before waiting: what changes meanwhile was another apply's doing.
    let before = stored::load(&mut tx, &declared, &BTreeMap::new())?;
    lock(&mut tx, options.lock_wait)?;
    let (setup, stored, credential_warnings) = match read(&mut tx, text, &names, &declared)? {
        Ok(read) => read,
        Err(problems) => return Ok(ApplyOutcome::Invalid(problems)),
    };
    let plan = plan::plan(&setup, &stored, options.prune);
    let conflicts = plan::conflicts(&setup, &stored, options.prune);
    if !conflicts.is_empty() {
        return Err(Error::refused(format!(
            "the plan leaves routing pointing at retired objects; nothing was written: {}",
            conflicts.join("; ")
        ))
        .with_hint("change the file as each sentence says, then `orderctl apply --dry-run` it again"));
    }
    retire::revive(&mut tx, &plan)?;
    let mut summary = write::write(&mut tx, &setup)?;
    summary.cancelled_deliveries = retire::retire(&mut tx, &plan)?;
    summary.warnings = routing_warnings(&mut tx, &setup)?;
    summary.credential_warnings = credential_warnings;
    summary.concurrent_changes = plan::drift(&before, &stored);
    summary.changes = plan.changes();
    summary.plan = plan;
    summary.dry_run = options.dry_run;
    summary.prune = options.prune;
    if options.dry_run {
        tx.rollback()?;
    } else {
        tx.commit()?;
    }
    Ok(ApplyOutcome::Applied(Box::new(summary)))
}

/// The file, validated against the database, with `{"stored": true}` secrets filled in; what is
/// stored for its tenants; and the file's plain credentials (warnings). Or the file's problems.
#[allow(clippy::type_complexity)]
fn read(
    tx: &mut Transaction,
    text: &str,
    names: &[String],
    declared: &[String],
) -> Result<Result<(Setup, StoredSetup, Vec<String>), Vec<SetupProblem>>> {
    let existing = load_existing(tx, names)?;
    let mut setup = match setup::validate(text, &existing) {
        Ok(setup) => setup,
        Err(problems) => return Ok(Err(problems)),
    };
    // Before `{"stored": true}` is filled in: those are not plain values in the file.
    let credential_warnings = plain_credentials(&setup);
    let stored = stored::load(tx, declared, &file_codes(&setup))?;
    let mut problems = keep_stored_secrets(&mut setup, &stored);
    if problems.is_empty() {
        problems = unresolved_references(&setup);
    }
    Ok(if problems.is_empty() { Ok((setup, stored, credential_warnings)) } else { Err(problems) })
}

/// The stored setup of one tenant, or of every tenant, for `export`.
pub fn export(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<StoredSetup> {
    let names = match tenant {
        Some(t) => vec![t.to_string()],
        None => stored::tenant_names(client)?,
    };
    let out = stored::load(client, &names, &BTreeMap::new())?;
    if let (Some(t), true) = (tenant, out.tenants.is_empty()) {
        return Err(Error::not_found(format!("tenant {t} does not exist")).with_hint("list tenants with `orderctl tenant list`"));
    }
    Ok(out)
}

/// Take the apply lock, waiting at most `wait` for another apply to finish. The wait is set
/// for this transaction only and put back after (pooler-safe: nothing outlives it).
fn lock(tx: &mut Transaction, wait: Duration) -> Result<()> {
    let previous: String = tx.query_one("SELECT current_setting('lock_timeout')", &[])?.get(0);
    let ms = format!("{}ms", wait.as_millis().clamp(1, i32::MAX as u128));
    tx.execute("SELECT set_config('lock_timeout', $1, true)", &[&ms])?;
    match tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK_KEY]).map_err(Error::from) {
        Err(e) if e.sqlstate.as_deref() == Some("55P03") => Err(Error::refused(format!(
            "another orderctl apply held the setup lock for longer than --lock-wait {}; nothing was written",
            humantime::format_duration(wait)
        ))
        .with_hint("wait for the other apply (another CI job?) to finish and run this one again, or give a longer --lock-wait")),
        other => {
            other?;
            tx.execute("SELECT set_config('lock_timeout', $1, true)", &[&previous])?;
            Ok(())
        }
    }
}

/// The codes each code group of the file names, to find which are stored.
fn file_codes(setup: &Setup) -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for t in &setup.tenants {
        for g in &t.code_groups {
            out.insert((t.name.clone(), g.name.clone()), g.codes.clone());
        }
    }
    out
}

/// `{"stored": true}` in the file: the secret the database holds for that object and field.
/// A problem where it holds none (a new object, or a field stored as a reference).
fn keep_stored_secrets(setup: &mut Setup, stored: &StoredSetup) -> Vec<SetupProblem> {
    let mut problems = Vec::new();
    for (ti, t) in setup.tenants.iter_mut().enumerate() {
        let s = stored.tenants.iter().find(|s| s.setup.name == t.name).map(|s| &s.setup);
        for (pi, p) in t.providers.iter_mut().enumerate() {
            let old = s.and_then(|s| s.providers.iter().find(|o| o.name == p.name)).map(|o| &o.credentials);
            let serde_json::Value::Object(fields) = &mut p.credentials else { continue };
            for (field, v) in fields.iter_mut() {
                if !setup::fields::is_stored_marker(v) {
                    continue;
                }
                match old.and_then(|o| o.get(field)).filter(|o| o.is_string()) {
                    Some(kept) => *v = kept.clone(),
                    None => problems.push(SetupProblem {
                        path: format!("tenants[{ti}].providers[{pi}].credentials.{field}"),
                        message: format!(
                            "tenant {}, provider {}: credentials.{field} is {{\"stored\": true}}, but the database holds no \
                             value for it; write the value or a reference ({{\"env\": ...}} or {{\"file\": ...}})",
                            t.name, p.name
                        ),
                    }),
                }
            }
        }
        for (wi, w) in t.webhooks.iter_mut().enumerate() {
            if w.secret.is_some() {
                continue;
            }
            w.secret = s.and_then(|s| s.webhooks.iter().find(|o| o.url == w.url)).and_then(|o| o.secret.clone());
            if w.secret.is_none() {
                problems.push(SetupProblem {
                    path: format!("tenants[{ti}].webhooks[{wi}].secret"),
                    message: format!(
                        "tenant {}, webhook {}: secret is {{\"stored\": true}}, but the webhook is new; write its secret",
                        t.name, w.url
                    ),
                });
            }
        }
    }
    problems
}

/// What the named tenants already have (those the file declares and those it forwards to), and
/// the forwarding of the whole database.
fn load_existing(tx: &mut Transaction, tenants: &[String]) -> Result<Existing> {
    // The kinds the file may name: the provider modules', passed to the pure validation.
    let mut existing = Existing { kinds: crate::provider::kind::setup_rules(), ..Existing::default() };
    for r in tx.query("SELECT name FROM tenants WHERE name = ANY($1)", &[&tenants])? {
        existing.tenants.insert(r.get(0));
    }
    let rows = tx.query(
        "SELECT t.name, p.name FROM packages p JOIN tenants t ON t.id = p.tenant_id WHERE t.name = ANY($1)",
        &[&tenants],
    )?;
    for r in rows {
        existing.packages.entry(r.get(0)).or_default().insert(r.get(1));
    }
    let rows =
        tx.query("SELECT t.name, u.name FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = ANY($1)", &[&tenants])?;
    for r in rows {
        existing.users.entry(r.get(0)).or_default().insert(r.get(1));
    }
    existing.forwarding = crate::db::routing::forwarding(tx)?;
    let rows = tx.query(
        "SELECT t.name, p.name, p.kind FROM providers p JOIN tenants t ON t.id = p.tenant_id WHERE t.name = ANY($1)",
        &[&tenants],
    )?;
    for r in rows {
        // The kind column is CHECKed to known words; anything else is a damaged row.
        let kind = ProviderKind::parse(r.get(2)).map_err(Error::internal)?;
        existing.providers.entry(r.get(0)).or_default().insert(r.get(1), kind.setup_rules());
    }
    let rows = tx.query(
        "SELECT t.name, g.name FROM code_groups g JOIN tenants t ON t.id = g.tenant_id WHERE t.name = ANY($1)",
        &[&tenants],
    )?;
    for r in rows {
        existing.code_groups.entry(r.get(0)).or_default().insert(r.get(1));
    }
    Ok(existing)
}

/// References that do not resolve on this machine, named (never a value): a setup that cannot
/// work here is not saved.
fn unresolved_references(setup: &Setup) -> Vec<crate::domain::setup::SetupProblem> {
    let mut out = Vec::new();
    for (ti, t) in setup.tenants.iter().enumerate() {
        for (pi, p) in t.providers.iter().enumerate() {
            if let Err(why) = crate::secret::resolve(&p.credentials) {
                out.push(crate::domain::setup::SetupProblem {
                    path: format!("tenants[{ti}].providers[{pi}].credentials"),
                    message: format!(
                        "tenant {}, provider {}: {why} on this machine; provide it here (and where the daemon runs), or correct the reference",
                        t.name, p.name
                    ),
                });
            }
        }
        for (wi, w) in t.webhooks.iter().enumerate() {
            // `None` is `{"stored": true}` for a webhook the database lacks: refused elsewhere.
            let Some(secret) = &w.secret else { continue };
            if let Err(why) = crate::secret::resolve_value(secret) {
                out.push(crate::domain::setup::SetupProblem {
                    path: format!("tenants[{ti}].webhooks[{wi}].secret"),
                    message: format!(
                        "tenant {}, webhook {}: secret: {why} on this machine; provide it here (and where the daemon runs), or correct the reference",
                        t.name, w.url
                    ),
                });
            }
        }
    }
    out
}

fn plain_credentials(setup: &Setup) -> Vec<String> {
    let mut out = Vec::new();
    for t in &setup.tenants {
        for p in &t.providers {
            let plain = crate::secret::plain_fields(&p.credentials);
            if !plain.is_empty() {
                out.push(format!(
                    "tenant {}, provider {}: credentials.{} written as plain value(s) into the file and the database; \
                     use {{\"env\": \"VARIABLE\"}} or {{\"file\": \"/path\"}} references",
                    t.name,
                    p.name,
                    plain.join(", credentials.")
                ));
            }
        }
        for w in t.webhooks.iter().filter(|w| w.secret.as_ref().is_some_and(|s| s.is_string())) {
            out.push(format!(
                "tenant {}, webhook {}: secret written as a plain value into the file and the database; \
                 use an {{\"env\": \"VARIABLE\"}} or {{\"file\": \"/path\"}} reference",
                t.name, w.url
            ));
        }
    }
    out
}

/// Every routing finding of the applied tenants after the write. Validation already refused
/// contradictions in the file, so these are the states of the moment `routing check` reports.
fn routing_warnings(tx: &mut Transaction, setup: &Setup) -> Result<Vec<RoutingWarning>> {
    let mut warnings = Vec::new();
    for t in &setup.tenants {
        for (_, view) in live_routing_views(tx, Some(&t.name))? {
            for problem in check_routing(&view) {
                warnings.push(RoutingWarning {
                    tenant: view.tenant.clone(),
                    package: view.package.clone(),
                    code: problem.code(),
                    message: problem.sentence(&view.tenant, &view.package),
                });
            }
        }
    }
    Ok(warnings)
}
