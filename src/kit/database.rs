//! A database made for one run (a test, a benchmark run, the demo) and dropped after it.

use crate::db;
use crate::error::{Error, Result};
use std::time::Duration;

/// A database on a server, dropped (with any sessions still on it) when this goes out of
/// scope, unless kept.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
    admin_url: String,
    pub keep: bool,
}

/// `admin_url` with another database.
pub fn url_for(admin_url: &str, db: &str) -> Result<String> {
    let mut u = url::Url::parse(admin_url).map_err(|e| {
        Error::invalid(format!("the database URL is not a URL ({e}); a database of its own needs one"))
            .with_hint("write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE")
    })?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

impl ScratchDb {
    /// Create `name` on the server of `admin_url` (a copy of `template` if given), replacing
    /// one left behind by an earlier run. A template in use for a moment by another copy is
    /// waited for.
    pub fn create(admin_url: &str, name: &str, template: Option<&str>) -> Result<ScratchDb> {
        let url = url_for(admin_url, name)?;
        let mut admin = db::connect(admin_url)?;
        let from = template.map(|t| format!(" TEMPLATE {t}")).unwrap_or_default();
        // Two statements: DROP/CREATE DATABASE cannot share an implicit transaction.
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        let mut tries = 0;
        loop {
            match admin.batch_execute(&format!("CREATE DATABASE {name}{from}")) {
                Ok(()) => break,
                Err(e) if tries < 100 && e.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    let inner = Error::from(e);
                    return Err(Error::new(inner.kind, format!("cannot create the database {name}: {}", inner.message)));
                }
            }
        }
        Ok(ScratchDb { name: name.to_string(), url, admin_url: admin_url.to_string(), keep: false })
    }

    pub fn connect(&self) -> Result<db::Client> {
        db::connect(&self.url)
    }

    /// Drop it now; an error says why it stays.
    pub fn drop_now(&mut self) -> Result<()> {
        self.keep = true;
        let mut admin = db::connect(&self.admin_url)?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))?;
        Ok(())
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.drop_now();
        }
    }
}
