//! `orderctl provider check NAME`: call a provider's balance and catalogue and print them, or
//! explain in an operator's words why the provider cannot be used.

use crate::cli::ProviderCheckArgs;
use crate::db;
use crate::error::{Error, Result};
use crate::output;
use crate::provider::{self, http::mask_url, ProviderConfig, ProviderError};
use crate::settings::Settings;
use serde_json::json;

pub fn run(s: &Settings, a: &ProviderCheckArgs) -> Result<()> {
    let mut client = db::connect(&s.database_url)?;
    let (id, enabled, config) = db::providers::load_provider_config(&mut client, s.tenant.as_deref(), &a.name, s.http)?;
    // The database is not needed while waiting for the provider.
    drop(client);
    let shown_url = mask_url(&config.base_url, &config.secrets());
    if !enabled {
        log::warn!("provider {} is disabled; checking it anyway", config.name);
    }
    let adapter = provider::build(config.clone())?;
    let balance = adapter.balance().map_err(|e| explain(&config, &shown_url, "balance", e))?;
    remember_balance(s, id, &config.name, &balance.balance);
    let catalogue = adapter.catalogue().map_err(|e| explain(&config, &shown_url, "catalogue", e))?;
    // Kept for `routing check` and `doctor`, which hold package prices against it.
    db::money::record_catalogue(&mut db::connect(&s.database_url)?, id, config.kind, &catalogue)?;

    if s.json() {
        output::print_json(&json!({
            "provider": config.name,
            "kind": config.kind,
            "base_url": shown_url,
            "enabled": enabled,
            "balance": balance,
            "catalogue": catalogue,
        }));
        return Ok(());
    }
    let mut summary = output::table(&["provider", "kind", "base URL", "enabled", "balance", "debt", "account"]);
    let amount = match &balance.currency {
        Some(c) => format!("{} {c}", balance.balance),
        None => balance.balance.clone(),
    };
    summary.add_row(vec![
        config.name.clone(),
        config.kind.to_string(),
        shown_url,
        if enabled { "yes" } else { "no" }.to_string(),
        amount,
        balance.debt.clone().unwrap_or_default(),
        balance.account.clone().unwrap_or_default(),
    ]);
    println!("{summary}");
    let mut items = output::table(&["id", "name", "price", "detail", "available"]);
    for i in &catalogue {
        items.add_row(vec![
            i.id.clone(),
            i.name.clone(),
            i.price.clone(),
            i.detail.clone(),
            if i.available { "yes" } else { "no" }.to_string(),
        ]);
    }
    println!("{items}");
    println!("{} catalogue item(s)", catalogue.len());
    Ok(())
}

/// The failure as an exit-7 error with what to do next.
pub(super) fn explain(config: &ProviderConfig, shown_url: &str, call: &str, e: ProviderError) -> Error {
    let message = format!("provider {} ({} at {shown_url}): the {call} call failed: {e}", config.name, config.kind);
    let hint = match (&e, config.kind) {
        (ProviderError::Auth(_), _) => config.kind.spec().auth_hint,
        (ProviderError::WrongBaseUrl(_), _) => config.kind.spec().base_url_hint,
        (ProviderError::Unreachable(_), _) => "check base_url and the network from this machine, then try again",
        (ProviderError::Garbage(_), _) => "check that base_url points at the provider's API, not a proxy or another site",
        (ProviderError::Refused(_), _) => "read the provider's message above; it comes from the provider itself",
    };
    Error::provider(message).with_hint(hint)
}

/// The balance call's answer is the provider's known balance from now on (dealer data).
fn remember_balance(s: &Settings, id: i64, name: &str, balance: &str) {
    let Ok(amount) = balance.trim().parse::<rust_decimal::Decimal>() else { return };
    let done = db::connect(&s.database_url).and_then(|mut c| {
        let (settings, cushion) = db::provider_health::settings_and_cushion(&mut c, id)?;
        db::provider_health::record_balance(&mut c, id, name, amount, &settings, cushion)
    });
    if let Err(e) = done {
        log::warn!("the balance of {name} was not recorded: {}", e.message);
    }
}
