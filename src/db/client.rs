//! The connection every orderctl statement goes through, made safe for connection poolers.
//!
//! rust-postgres's `query`/`execute` prepare a *named* statement (`s0`, `s1`, ...) in one round
//! trip and run it in another. Behind a pooler in transaction mode (pgbouncer, the poolers of
//! managed services) the two round trips may reach different server connections: the name is
//! missing there, or already taken by another process. So every statement here is *unnamed*
//! and runs in one round trip (`query_typed`: parse, bind, execute, sync), its parameter types
//! taken from the Rust types of the values ([`Param`]).
//!
//! No session state either: a plain `SET` stays on the server connection and reaches the next
//! client of the pool. Each transaction sets its own limits with `SET LOCAL`, in the same round
//! trip as its `BEGIN`. A statement outside a transaction gets the role's or database's
//! defaults (the README's "Deploying" section shows `ALTER ROLE ... SET` for them).
//!
//! Call sites keep rust-postgres's names and shapes: `client.query(sql, &[&a, &b])`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postgres::types::{ToSql, Type};
use postgres::{Error, Row};
use rust_decimal::Decimal;
use uuid::Uuid;

/// The limits of every orderctl transaction: a forgotten open transaction must not hold back
/// vacuum (the bloat that kills job queues), no statement may hang forever, and no JIT (a batch
/// statement on a young table can look costly enough to compile, and compiling takes longer
/// than running it).
const TRANSACTION_LIMITS: &str = "SET LOCAL idle_in_transaction_session_timeout = '60s'; \
     SET LOCAL statement_timeout = '30s'; SET LOCAL lock_timeout = '10s'; SET LOCAL jit = off";

/// Every setting orderctl changes, and only per transaction (the pooler tests read them back
/// on a fresh connection of the pool to prove nothing stayed behind).
pub const SETTINGS_CHANGED: &[&str] = &["idle_in_transaction_session_timeout", "statement_timeout", "lock_timeout", "jit"];

/// The Postgres type of a Rust value, for statements that carry their parameter types.
pub trait PgType {
    const TYPE: Type;
    /// The type of an array of these.
    const ARRAY: Type;
}

macro_rules! pg_types {
    ($($t:ty => $one:ident, $many:ident;)*) => {
        $(impl PgType for $t {
            const TYPE: Type = Type::$one;
            const ARRAY: Type = Type::$many;
        })*
    };
}

pg_types! {
    bool => BOOL, BOOL_ARRAY;
    i16 => INT2, INT2_ARRAY;
    i32 => INT4, INT4_ARRAY;
    i64 => INT8, INT8_ARRAY;
    f32 => FLOAT4, FLOAT4_ARRAY;
    f64 => FLOAT8, FLOAT8_ARRAY;
    String => TEXT, TEXT_ARRAY;
    str => TEXT, TEXT_ARRAY;
    Uuid => UUID, UUID_ARRAY;
    Decimal => NUMERIC, NUMERIC_ARRAY;
    DateTime<Utc> => TIMESTAMPTZ, TIMESTAMPTZ_ARRAY;
    NaiveDateTime => TIMESTAMP, TIMESTAMP_ARRAY;
    NaiveDate => DATE, DATE_ARRAY;
    serde_json::Value => JSONB, JSONB_ARRAY;
}

impl<T: PgType + ?Sized> PgType for &T {
    const TYPE: Type = T::TYPE;
    const ARRAY: Type = T::ARRAY;
}

impl<T: PgType> PgType for Option<T> {
    const TYPE: Type = T::TYPE;
    const ARRAY: Type = T::ARRAY;
}

impl<T: PgType> PgType for Vec<T> {
    const TYPE: Type = T::ARRAY;
    const ARRAY: Type = Type::UNKNOWN;
}

impl<T: PgType> PgType for [T] {
    const TYPE: Type = T::ARRAY;
    const ARRAY: Type = Type::UNKNOWN;
}

/// A statement parameter: a value and its Postgres type.
pub trait Param: ToSql + Sync {
    fn pg_type(&self) -> Type;
    fn as_sql(&self) -> &(dyn ToSql + Sync);
}

impl<T: ToSql + Sync + PgType> Param for T {
    fn pg_type(&self) -> Type {
        T::TYPE
    }
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        self
    }
}

fn typed<'a>(params: &'a [&'a dyn Param]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (p.as_sql(), p.pg_type())).collect()
}

/// What both a connection and a transaction offer (rust-postgres's `GenericClient`, unnamed).
pub trait GenericClient {
    fn raw(&mut self) -> &mut postgres::Client;

    fn query(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, Error> {
        self.raw().query_typed(sql, &typed(params))
    }
    fn query_one(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Row, Error> {
        self.raw().query_typed_one(sql, &typed(params))
    }
    fn query_opt(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, Error> {
        self.raw().query_typed_opt(sql, &typed(params))
    }
    /// Rows affected.
    fn execute(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, Error> {
        self.raw().execute_typed(sql, &typed(params))
    }
    /// Statements without parameters, in the simple protocol (also several at once).
    fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        self.raw().batch_execute(sql)
    }
    /// A transaction, or a savepoint inside one.
    fn transaction(&mut self) -> Result<Transaction<'_>, Error>;
}

/// The trait's methods as inherent ones too, so call sites need no import (as with
/// rust-postgres's own `Client` and `Transaction`).
macro_rules! inherent_statements {
    ($t:ty) => {
        impl $t {
            pub fn query(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, Error> {
                GenericClient::query(self, sql, params)
            }
            pub fn query_one(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Row, Error> {
                GenericClient::query_one(self, sql, params)
            }
            pub fn query_opt(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, Error> {
                GenericClient::query_opt(self, sql, params)
            }
            pub fn execute(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, Error> {
                GenericClient::execute(self, sql, params)
            }
            pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
                GenericClient::batch_execute(self, sql)
            }
            pub fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
                GenericClient::transaction(self)
            }
        }
    };
}

inherent_statements!(Client);
inherent_statements!(Transaction<'_>);

/// One connection to the database.
pub struct Client {
    inner: postgres::Client,
    encryption: Option<super::tls::Encryption>,
}

impl Client {
    pub fn new(inner: postgres::Client, encryption: Option<super::tls::Encryption>) -> Client {
        Client { inner, encryption }
    }
    /// How this connection is encrypted (None: plain text), as its handshake went.
    pub fn encryption(&self) -> Option<&super::tls::Encryption> {
        self.encryption.as_ref()
    }
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    /// LISTEN's notifications (a session of its own: never through a transaction pooler).
    pub fn notifications(&mut self) -> postgres::Notifications<'_> {
        self.inner.notifications()
    }
}

impl GenericClient for Client {
    fn raw(&mut self) -> &mut postgres::Client {
        &mut self.inner
    }
    fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        self.inner.batch_execute(&format!("BEGIN; {TRANSACTION_LIMITS}"))?;
        Ok(Transaction { client: &mut self.inner, savepoint: None, depth: 0, done: false })
    }
}

/// A transaction (or a savepoint in one). Rolled back when dropped without `commit`.
pub struct Transaction<'a> {
    client: &'a mut postgres::Client,
    savepoint: Option<String>,
    /// 0 for the transaction, n for the nth savepoint inside it.
    depth: usize,
    done: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<(), Error> {
        self.done = true;
        match &self.savepoint {
            None => self.client.batch_execute("COMMIT"),
            Some(name) => self.client.batch_execute(&format!("RELEASE SAVEPOINT {name}")),
        }
    }
    pub fn rollback(mut self) -> Result<(), Error> {
        self.done = true;
        self.client.batch_execute(&self.undo())
    }
    /// A named savepoint (the name is SQL: an identifier of the caller's, never input).
    pub fn savepoint(&mut self, name: &str) -> Result<Transaction<'_>, Error> {
        self.client.batch_execute(&format!("SAVEPOINT {name}"))?;
        Ok(Transaction { client: &mut *self.client, savepoint: Some(name.to_string()), depth: self.depth + 1, done: false })
    }
    fn undo(&self) -> String {
        match &self.savepoint {
            None => "ROLLBACK".to_string(),
            Some(name) => format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
        }
    }
}

impl GenericClient for Transaction<'_> {
    fn raw(&mut self) -> &mut postgres::Client {
        self.client
    }
    fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let name = format!("orderctl_sp{}", self.depth + 1);
        self.savepoint(&name)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done && !self.client.is_closed() {
            // A lost connection rolls back by itself; any other failure ends the session's
            // transaction when the connection is next used or closed.
            let _ = self.client.batch_execute(&self.undo());
        }
    }
}
