//! The providers work is done for, loaded from their rows and kept for a few seconds: one
//! adapter (one HTTP agent with its connection pool) per provider per process, rebuilt only
//! when its configuration changes, so a changed switch, URL, credential or check schedule is
//! picked up quickly.

use super::LaneProvider;
use crate::db;
use crate::db::GenericClient;
use crate::domain::backoff::{merge, BackoffPolicy};
use crate::error::Result;
use crate::provider::HttpSettings;
use crate::provider::{self, Provider, ProviderConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a loaded provider is used before its row is read again.
const FRESH_FOR: Duration = Duration::from_secs(5);

struct Entry {
    loaded: Instant,
    /// What the adapter was built from (kind, base URL, credentials), to rebuild on change only.
    built_from: String,
    provider: LaneProvider,
}

#[derive(Clone)]
pub struct Providers {
    http: HttpSettings,
    policy: BackoffPolicy,
    entries: Arc<Mutex<HashMap<i64, Entry>>>,
}

impl Providers {
    /// `policy`: the global check schedule; each provider's own schedule (its row) is merged over it.
    pub fn new(http: HttpSettings, policy: BackoffPolicy) -> Providers {
        Providers { http, policy, entries: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Read every provider again at its next use (a reload): credentials resolved anew, an
    /// adapter rebuilt where they changed.
    pub fn forget(&self) {
        for e in self.entries.lock().unwrap().values_mut() {
            e.loaded -= FRESH_FOR;
        }
    }

    pub fn http(&self) -> HttpSettings {
        self.http
    }

    /// The provider with this id, read again when older than a few seconds.
    pub fn get(&self, client: &mut impl GenericClient, id: i64) -> Result<LaneProvider> {
        if let Some(e) = self.entries.lock().unwrap().get(&id) {
            if e.loaded.elapsed() < FRESH_FOR {
                return Ok(e.provider.clone());
            }
        }
        let (enabled, config, schedule, tenant) = db::providers::load_provider_config_by_id(client, id, self.http)?;
        let reconcile_for = db::providers::reconcile_for(client, id)?;
        let fingerprint = format!("{}\u{0}{}\u{0}{}", config.kind, config.base_url, config.credentials);
        let mut entries = self.entries.lock().unwrap();
        let adapter = match entries.get(&id) {
            Some(e) if e.built_from == fingerprint => e.provider.adapter.clone(),
            _ => build(config.clone()),
        };
        let policy = merge(&self.policy, &schedule).policy;
        let provider =
            LaneProvider { id, tenant, name: config.name.clone(), kind: config.kind, enabled, adapter, policy, reconcile_for };
        entries.insert(id, Entry { loaded: Instant::now(), built_from: fingerprint, provider: provider.clone() });
        Ok(provider)
    }
}

fn build(config: ProviderConfig) -> std::result::Result<Arc<dyn Provider>, String> {
    provider::build(config).map(Arc::from).map_err(|e| match e.hint {
        Some(h) => format!("{} ({h})", e.message),
        None => e.message,
    })
}
