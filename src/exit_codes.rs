//! Exit codes, named once. Scripts branch on these; they are documented in the README and in
//! every man page's EXIT STATUS section, so never renumber one.

/// Everything worked.
pub const SUCCESS: i32 = 0;
/// A bug or an unexpected failure inside orderctl.
pub const INTERNAL: i32 = 1;
/// The command line itself is wrong (unknown flag, missing argument, bad value syntax).
pub const USAGE: i32 = 2;
/// A named thing (order, tenant, user, package, provider) does not exist (in this tenant).
pub const NOT_FOUND: i32 = 3;
/// Input data is invalid (a setup file, an amount, a quantity, a player id...). Nothing was written.
pub const INVALID_INPUT: i32 = 4;
/// The request is valid but the current state refuses it (insufficient balance, order already
/// finished, package disabled, migration checksum changed). Nothing was written.
pub const REFUSED: i32 = 5;
/// The database cannot be reached or stopped answering.
pub const DATABASE_UNAVAILABLE: i32 = 6;
/// A provider cannot be reached, refused our credentials, or answered nonsense.
pub const PROVIDER_UNAVAILABLE: i32 = 7;
/// A check ran and found something that needs an operator (routing check, doctor, stuck orders).
pub const NEEDS_ACTION: i32 = 8;
/// `poll --wait` ran out of time before the order reached a final state.
pub const TIMED_OUT: i32 = 9;

/// (code, name, meaning) for help texts and man pages.
pub const TABLE: &[(i32, &str, &str)] = &[
    (SUCCESS, "success", "the command did what was asked"),
    (INTERNAL, "internal", "unexpected failure inside orderctl (a bug: please report it)"),
    (USAGE, "usage", "the command line is wrong: unknown flag, missing argument, bad value"),
    (NOT_FOUND, "not-found", "an order, tenant, user, package or provider does not exist (in this tenant)"),
    (INVALID_INPUT, "invalid-input", "input data is invalid; nothing was written"),
    (
        REFUSED,
        "refused",
        "the current state refuses the request (insufficient balance, finished order, changed migration); nothing was written",
    ),
    (DATABASE_UNAVAILABLE, "database-unavailable", "the database cannot be reached or stopped answering"),
    (PROVIDER_UNAVAILABLE, "provider-unavailable", "a provider cannot be reached, refused the credentials or answered garbage"),
    (NEEDS_ACTION, "needs-action", "a check found problems that need an operator (routing check, doctor, list --stuck)"),
    (TIMED_OUT, "timed-out", "poll --wait ran out of time before the order was final"),
];
