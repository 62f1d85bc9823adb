//! One adapter (and so one HTTP agent with its connection pool) per provider per process,
//! built on first use and shared by every thread.

use crate::db;
use crate::error::Result;
use crate::provider::{self, Provider};
use crate::settings::HttpSettings;
use postgres::GenericClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct ProviderCache {
    http: HttpSettings,
    adapters: Arc<Mutex<HashMap<i64, Arc<dyn Provider>>>>,
}

impl ProviderCache {
    pub fn new(http: HttpSettings) -> ProviderCache {
        ProviderCache { http, adapters: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// The adapter for a provider id, loading its row the first time.
    pub fn get(&self, client: &mut impl GenericClient, provider_id: i64) -> Result<Arc<dyn Provider>> {
        if let Some(p) = self.adapters.lock().unwrap().get(&provider_id) {
            return Ok(p.clone());
        }
        let config = db::providers::load_provider_config_by_id(client, provider_id, self.http)?;
        let adapter: Arc<dyn Provider> = Arc::from(provider::build(config)?);
        self.adapters.lock().unwrap().insert(provider_id, adapter.clone());
        Ok(adapter)
    }

    /// Forget adapters so changed credentials or URLs are picked up (the daemon does this
    /// now and then).
    pub fn clear(&self) {
        self.adapters.lock().unwrap().clear();
    }
}
