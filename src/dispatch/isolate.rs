//! One order never stalls the others: a batch (routing, a claim) runs behind a savepoint, and
//! when it fails with an error that one order's values or configuration may cause, it runs again
//! one order at a time, each behind its own savepoint. Every order whose own run fails is
//! flagged (`write_refused`, with the reason `inspect` and `list --stuck` show); the rest of the
//! batch goes on. Errors of the database itself ([`concerns_one_order`] is false) still fail the
//! batch: retrying it later is right for every order.

use crate::db::claims::DueRow;
use crate::db::transitions::{self, refused_write, Write};
use crate::db::GenericClient;
use crate::error::{Error, ErrorKind, Result};

/// What a batch produced, merged order by order.
pub trait Batch: Default {
    fn merge(&mut self, other: Self);
    /// The flag written for an order whose own run failed.
    fn flagged(&mut self, w: Write);
}

impl Batch for Vec<Write> {
    fn merge(&mut self, other: Self) {
        self.extend(other);
    }
    fn flagged(&mut self, w: Write) {
        self.push(w);
    }
}

/// True when the error may be one order's: a value the database cannot store (class 22), a
/// constraint it violates (class 23), or a problem orderctl itself found with it (routing that
/// cannot be followed: no SQLSTATE). Anything else the database says (a lost connection, a
/// deadlock, a cancelled statement, a missing schema, a trigger refusing all work) is the
/// database's: the whole batch is retried later.
pub fn concerns_one_order(e: &Error) -> bool {
    match e.sqlstate.as_deref() {
        Some(code) => code.starts_with("22") || code.starts_with("23"),
        None => !matches!(e.kind, ErrorKind::DatabaseUnavailable),
    }
}

/// Run `run` over `rows` as one batch, or order by order when the batch fails because of one.
pub fn per_order<T: Batch>(
    tx: &mut impl GenericClient,
    rows: Vec<DueRow>,
    what: &str,
    mut run: impl FnMut(&mut crate::db::Transaction<'_>, Vec<DueRow>) -> Result<T>,
) -> Result<T> {
    let first = {
        let mut sp = tx.transaction()?;
        match run(&mut sp, rows.clone()) {
            Ok(out) => {
                sp.commit()?;
                return Ok(out);
            }
            Err(e) if concerns_one_order(&e) && rows.len() > 1 => e,
            Err(e) if concerns_one_order(&e) => {
                sp.rollback()?;
                let mut out = T::default();
                flag(tx, &rows[0], what, &e, &mut out)?;
                return Ok(out);
            }
            Err(e) => return Err(e),
        }
    };
    log::warn!("{what}: a batch of {} order(s) failed ({}); running it order by order", rows.len(), first.message);
    let mut out = T::default();
    for row in rows {
        let mut sp = tx.transaction()?;
        match run(&mut sp, vec![row.clone()]) {
            Ok(one) => {
                sp.commit()?;
                out.merge(one);
            }
            Err(e) if concerns_one_order(&e) => {
                sp.rollback()?;
                flag(tx, &row, what, &e, &mut out)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn flag<T: Batch>(tx: &mut impl GenericClient, row: &DueRow, what: &str, e: &Error, out: &mut T) -> Result<()> {
    log::error!("order {}: {what} failed for this order ({}); flagged for an operator", row.number, e.message);
    let w = refused_write(row.id, Some(row.lease), &format!("{what}: {}", e.message));
    transitions::apply(tx, std::slice::from_ref(&w))?;
    out.flagged(w);
    Ok(())
}
