//! Reading a state column from a row, by name. A value this build does not know (a newer
//! orderctl wrote it, or someone edited the row by hand) is an error naming the column and the
//! value, never a silent default.

use crate::domain::lifecycle::states::StateColumn;
use crate::error::{Error, Result};

/// The state in `column` (a name in the statement's select list).
pub fn state<T: StateColumn>(row: &postgres::Row, column: &str) -> Result<T> {
    let text: String = row.try_get(column).map_err(|e| unreadable(column, e))?;
    parse(column, &text)
}

/// The state in a nullable `column`; NULL is `None`.
pub fn state_opt<T: StateColumn>(row: &postgres::Row, column: &str) -> Result<Option<T>> {
    let text: Option<String> = row.try_get(column).map_err(|e| unreadable(column, e))?;
    text.map(|t| parse(column, &t)).transpose()
}

fn parse<T: StateColumn>(column: &str, text: &str) -> Result<T> {
    T::from_name(text).map_err(|e| {
        Error::internal(format!("column {column} of {} holds a value this orderctl does not know: {e}", T::COLUMN))
            .with_hint("the database was written by another version of orderctl: upgrade this orderctl to the version that migrated it (`orderctl migrate --dry-run` lists what this one knows)")
    })
}

fn unreadable(column: &str, e: postgres::Error) -> Error {
    Error::internal(format!("cannot read column {column}: {}", crate::error::short_message(&e)))
}
