//! Provider rows (temporary minimal version; replaced by the providers branch).
use crate::error::{Error, Result};
use crate::provider::{ProviderConfig, ProviderKind};
use crate::settings::HttpSettings;
use postgres::GenericClient;

pub fn load_provider_config_by_id(client: &mut impl GenericClient, id: i64, http: HttpSettings) -> Result<ProviderConfig> {
    let r = client
        .query_opt("SELECT name, kind, base_url, credentials FROM providers WHERE id = $1", &[&id])?
        .ok_or_else(|| Error::not_found(format!("provider {id} does not exist")))?;
    let kind: String = r.get(1);
    Ok(ProviderConfig {
        name: r.get(0),
        kind: ProviderKind::parse(&kind).map_err(Error::internal)?,
        base_url: r.get(2),
        credentials: r.get(3),
        http,
    })
}
