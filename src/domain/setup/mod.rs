//! The declarative setup file read by `orderctl apply`: its format and its validation into a
//! ready-to-write [`Setup`]. Pure: the little it must know about the database (which providers
//! and code groups a tenant already has) comes in as [`Existing`].
//!
//! Validation never stops at the first problem: it collects every one, each with where it is
//! (`path`, like `tenants[0].users[1].balance`) and a sentence that names the tenant and the
//! thing and says how to fix it. Routing contradictions use [`RoutingProblem::sentence`], so
//! `apply` and `routing check` word them identically.
//!
//! Credentials are secret: no message here ever quotes a credential value, and the structural
//! parts of the file that hold them are checked by hand instead of by serde (whose messages
//! quote the offending value).

pub mod export;
pub mod fields;
pub mod plan;

use crate::domain::backoff::ScheduleOverride;
use crate::domain::money::{parse_amount, parse_rate, CurrencyPair};
use crate::domain::routing::{
    check_routing, forwarding_cycles, is_contradiction, Forwarding, ProviderType, RoutedProvider, RoutingMode, RoutingProblem,
    RoutingView, UpstreamRoute,
};
use crate::domain::webhook::EventType;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// One problem in a setup file: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupProblem {
    /// Where in the file, like `tenants[0].packages[2].routing` (empty for the file as a whole).
    pub path: String,
    /// "tenant T, package P: what is wrong; how to fix it".
    pub message: String,
}

/// What validating a setup must know of one provider kind. The kinds are declared by the
/// provider modules (`provider::kind`); whoever validates passes them in ([`Existing::kinds`]),
/// so this module names no kind and depends on no provider code. A kind not among them is
/// refused: there is no default kind.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KindRules {
    /// The word in setup files and in `providers.kind`.
    pub name: &'static str,
    /// The credential fields this kind needs, all secret.
    pub credential_fields: &'static [&'static str],
    /// The mapping fields a package needs for this kind.
    pub required_mapping_fields: &'static [&'static str],
}

impl KindRules {
    pub fn as_str(self) -> &'static str {
        self.name
    }
    fn credential_fields(self) -> &'static [&'static str] {
        self.credential_fields
    }
    fn required_mapping_fields(self) -> &'static [&'static str] {
        self.required_mapping_fields
    }
}

impl fmt::Display for KindRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Debug for KindRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The kinds the unit tests validate against, as the provider modules declare them (a test in
/// `provider::kind` holds the two lists equal).
#[cfg(test)]
pub(crate) const TEST_KINDS: [KindRules; 2] = [
    KindRules { name: "znet", credential_fields: &["kod", "sifre"], required_mapping_fields: &["oyun", "kupur"] },
    KindRules { name: "xstor", credential_fields: &["api_token"], required_mapping_fields: &["product_id"] },
];

#[cfg(test)]
impl Existing {
    /// Nothing stored, and the kinds of [`TEST_KINDS`].
    pub(crate) fn with_test_kinds() -> Existing {
        Existing { kinds: TEST_KINDS.to_vec(), ..Existing::default() }
    }
}

/// The kind named `s` among `kinds`, or why not (naming the known ones).
fn parse_kind(kinds: &[KindRules], s: &str) -> Result<KindRules, String> {
    kinds.iter().find(|k| k.name == s).copied().ok_or_else(|| {
        let known: Vec<&str> = kinds.iter().map(|k| k.name).collect();
        format!("provider kind '{s}' is unknown; use {}", known.join(" or "))
    })
}

/// What the database already holds for the tenants the file names (declares, or forwards to).
/// Routing and mappings may point at providers, code groups, packages and users that are not
/// repeated in the file.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    /// The provider kinds orderctl speaks (`provider::kind::setup_rules`).
    pub kinds: Vec<KindRules>,
    /// Which of those tenants exist.
    pub tenants: BTreeSet<String>,
    /// tenant → provider name → kind.
    pub providers: BTreeMap<String, BTreeMap<String, KindRules>>,
    /// tenant → code group names.
    pub code_groups: BTreeMap<String, BTreeSet<String>>,
    /// tenant → package names.
    pub packages: BTreeMap<String, BTreeSet<String>>,
    /// tenant → user names.
    pub users: BTreeMap<String, BTreeSet<String>>,
    /// The forwarding of every package of the whole database (cycles are judged on all of it).
    pub forwarding: Forwarding,
}

/// A valid setup file, every value parsed and every reference checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub tenants: Vec<TenantSetup>,
    /// The file's top-level `exchange_rates`; `None` when the file has none (it then says
    /// nothing about rates: they are neither compared nor retired).
    pub exchange_rates: Option<ExchangeRates>,
}

/// Declared exchange rates: one unit of `pair.from` is worth `rate` units of `pair.to`.
pub type ExchangeRates = BTreeMap<CurrencyPair, Decimal>;

/// A tenant's currency when the file names none: not named. Its providers that name no currency
/// of their own charge in the same (unnamed) money, which is how setups without currencies
/// worked before; a provider that names one is reported unconverted until the tenant names its
/// own and a rate is declared.
pub const DEFAULT_TENANT_CURRENCY: Option<&str> = None;

#[derive(Debug, Clone, PartialEq)]
pub struct TenantSetup {
    pub name: String,
    /// The money the tenant sells in (package prices, balances): `currency`, when named (see
    /// [`DEFAULT_TENANT_CURRENCY`]).
    pub currency: Option<String>,
    pub users: Vec<UserSetup>,
    pub providers: Vec<ProviderSetup>,
    pub code_groups: Vec<CodeGroupSetup>,
    pub packages: Vec<PackageSetup>,
    pub webhooks: Vec<WebhookSetup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserSetup {
    pub name: String,
    pub email: String,
    /// The declared balance (see `db::setup` for how it reaches the ledger).
    pub balance: Decimal,
    pub overdraft_limit: Decimal,
}

#[derive(Clone, PartialEq)]
pub struct ProviderSetup {
    pub name: String,
    pub kind: KindRules,
    pub base_url: String,
    /// Secret: an object of field name → non-empty string or a reference (`secret`). Never printed.
    pub credentials: Value,
    pub enabled: bool,
    pub max_in_flight: i32,
    /// The provider's own check schedule (empty: the global one).
    pub schedule: ScheduleOverride,
    /// How long after a placement of unknown outcome this provider may still record it
    /// (`reconcile_for`; [`DEFAULT_RECONCILE_FOR`] when the file says nothing).
    pub reconcile_for: Duration,
    /// The currency the provider charges in (`currency`), when the file names one.
    pub currency: Option<String>,
    /// Most calls to this provider from every process together (`rate_limit`), when limited.
    pub rate_limit: Option<crate::domain::pace::RateLimit>,
    /// `low_balance`, `hold_for`, `breaker` and `probe_every` (defaults where the file says nothing).
    pub health: crate::domain::provider_health::HealthSettings,
}

/// A provider's reconcile window when the setup file names none.
pub const DEFAULT_RECONCILE_FOR: Duration = Duration::from_secs(600);
/// The bounds `reconcile_for` must keep (the column's CHECK holds them too).
const RECONCILE_FOR_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30 * 24 * 3600));

impl fmt::Debug for ProviderSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSetup")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("credentials", &"***")
            .field("enabled", &self.enabled)
            .field("max_in_flight", &self.max_in_flight)
            .field("schedule", &self.schedule)
            .field("reconcile_for", &self.reconcile_for)
            .field("currency", &self.currency)
            .field("rate_limit", &self.rate_limit)
            .field("health", &self.health)
            .finish()
    }
}

/// A webhook of the tenant, named by its URL (unique within the tenant).
#[derive(Clone, PartialEq)]
pub struct WebhookSetup {
    pub url: String,
    /// Secret: the key every request is signed with, a non-empty string or a reference
    /// (`crate::secret`), stored as given. Never printed. `None`: the file says
    /// `{"stored": true}` (keep the stored one; `db::setup` fills it in before planning).
    pub secret: Option<Value>,
    /// The event types it receives (all when the file names none).
    pub events: Vec<EventType>,
    pub enabled: bool,
    /// How its deliveries go (issue 22): address rules and retry horizon.
    pub delivery: WebhookDelivery,
}

/// A webhook's address rules (`domain::endpoint`) and its own retry horizon (None: the
/// process's `--webhook-retry-horizon`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub access: crate::domain::endpoint::Access,
    pub retry_horizon: Option<Duration>,
}

impl fmt::Debug for WebhookSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSetup")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .field("delivery", &self.delivery)
            .finish()
    }
}

#[derive(Clone, PartialEq)]
pub struct CodeGroupSetup {
    pub name: String,
    /// Stock PINs to add when missing. Never printed.
    pub codes: Vec<String>,
}

impl fmt::Debug for CodeGroupSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeGroupSetup").field("name", &self.name).field("codes", &self.codes.len()).finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackageSetup {
    pub name: String,
    pub product: String,
    pub price: Decimal,
    pub enabled: bool,
    pub mode: RoutingMode,
    pub provider_type: ProviderType,
    pub primary: Option<String>,
    pub fallback: Option<String>,
    pub code_group: Option<String>,
    /// Internal routing: where its orders are forwarded.
    pub upstream: Option<UpstreamSetup>,
    /// provider name → the provider's parameters for this package. Replaces what is stored.
    pub mappings: BTreeMap<String, Value>,
}

/// `routing.upstream`: a package of another tenant, and the user of that tenant who pays for
/// the forwarded orders (its balance and overdraft apply there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSetup {
    pub tenant: String,
    pub package: String,
    pub account: String,
}

/// Default `max_in_flight` of a provider.
pub const DEFAULT_MAX_IN_FLIGHT: i32 = 16;

// ---------------------------------------------------------------------------------------------
// The file format. Each element is decoded on its own so one bad entry does not hide the others.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    tenants: Vec<Value>,
    #[serde(default)]
    exchange_rates: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantDoc {
    name: String,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    users: Vec<Value>,
    #[serde(default)]
    providers: Vec<Value>,
    #[serde(default)]
    code_groups: Vec<Value>,
    #[serde(default)]
    packages: Vec<Value>,
    #[serde(default)]
    webhooks: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDoc {
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    balance: Option<Value>,
    #[serde(default)]
    overdraft_limit: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderDoc {
    name: String,
    kind: String,
    base_url: String,
    // A Value, checked by hand: serde's type errors would quote the secret.
    #[serde(default)]
    credentials: Value,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    max_in_flight: Option<i64>,
    #[serde(default)]
    schedule: Option<Value>,
    #[serde(default)]
    reconcile_for: Option<Value>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    rate_limit: Option<String>,
    low_balance: Option<Value>,
    #[serde(default)]
    hold_for: Option<Value>,
    #[serde(default)]
    breaker: Option<Value>,
    #[serde(default)]
    probe_every: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleDoc {
    // Values, read by hand: each names what is wrong with it in words.
    #[serde(default)]
    first_check: Option<Value>,
    #[serde(default)]
    backoff_base: Option<Value>,
    #[serde(default)]
    backoff_max: Option<Value>,
    #[serde(default)]
    max_checks: Option<Value>,
    #[serde(default)]
    give_up_after: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookDoc {
    url: String,
    // A Value, checked by hand: serde's type errors would quote the secret.
    #[serde(default)]
    secret: Value,
    #[serde(default)]
    events: Option<Value>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    allow_private_network: bool,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    retry_horizon: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeGroupDoc {
    name: String,
    // Values, checked by hand: a type error would quote the PIN.
    #[serde(default)]
    codes: Vec<Value>,
    /// Written by `export` (counts by state); informational, `apply` ignores it.
    #[serde(default)]
    #[allow(dead_code)]
    stock: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageDoc {
    name: String,
    #[serde(default)]
    product: String,
    price: Value,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    routing: Option<Value>,
    #[serde(default)]
    mappings: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingDoc {
    mode: String,
    provider_type: String,
    #[serde(default)]
    primary: Option<String>,
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    code_group: Option<String>,
    #[serde(default)]
    upstream: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamDoc {
    tenant: String,
    package: String,
    account: String,
}

/// A part of the file decoded on its own, with the fields it may have.
trait Element: serde::de::DeserializeOwned {
    const WHAT: &'static str;
    const FIELDS: &'static [&'static str];
}

impl Element for TenantDoc {
    const WHAT: &'static str = "a tenant";
    const FIELDS: &'static [&'static str] = &["name", "currency", "users", "providers", "code_groups", "packages", "webhooks"];
}
impl Element for WebhookDoc {
    const WHAT: &'static str = "a webhook";
    const FIELDS: &'static [&'static str] =
        &["url", "secret", "events", "enabled", "allow_private_network", "allow_http", "retry_horizon"];
}
impl Element for UserDoc {
    const WHAT: &'static str = "a user";
    const FIELDS: &'static [&'static str] = &["name", "email", "balance", "overdraft_limit"];
}
impl Element for ProviderDoc {
    const WHAT: &'static str = "a provider";
    const FIELDS: &'static [&'static str] = &[
        "name",
        "kind",
        "base_url",
        "credentials",
        "enabled",
        "max_in_flight",
        "schedule",
        "reconcile_for",
        "currency",
        "rate_limit",
        "low_balance",
        "hold_for",
        "breaker",
        "probe_every",
    ];
}
impl Element for ScheduleDoc {
    const WHAT: &'static str = "a schedule";
    const FIELDS: &'static [&'static str] = &["first_check", "backoff_base", "backoff_max", "max_checks", "give_up_after"];
}
impl Element for CodeGroupDoc {
    const WHAT: &'static str = "a code group";
    const FIELDS: &'static [&'static str] = &["name", "codes", "stock"];
}
impl Element for PackageDoc {
    const WHAT: &'static str = "a package";
    const FIELDS: &'static [&'static str] = &["name", "product", "price", "enabled", "routing", "mappings"];
}
impl Element for RoutingDoc {
    const WHAT: &'static str = "routing";
    const FIELDS: &'static [&'static str] = &["mode", "provider_type", "primary", "fallback", "code_group", "upstream"];
}
impl Element for UpstreamDoc {
    const WHAT: &'static str = "routing.upstream";
    const FIELDS: &'static [&'static str] = &["tenant", "package", "account"];
}

fn yes() -> bool {
    true
}

const FORMAT_HINT: &str = "compare with the format shown by `orderctl apply --help`";

// ---------------------------------------------------------------------------------------------

/// Where a problem is: a JSON path and the words an operator reads ("tenant alsham, user halil").
#[derive(Clone)]
struct Place {
    path: String,
    words: String,
}

impl Place {
    fn child(&self, path: &str, words: String) -> Place {
        Place { path: format!("{}.{path}", self.path), words }
    }
    fn field(&self, field: &str) -> Place {
        Place { path: format!("{}.{field}", self.path), words: self.words.clone() }
    }
}

#[derive(Default)]
struct Problems(Vec<SetupProblem>);

impl Problems {
    fn add(&mut self, at: &Place, message: impl fmt::Display) {
        self.0.push(SetupProblem { path: at.path.clone(), message: format!("{}: {message}", at.words) });
    }
}

/// Parse and validate a setup file. `existing` says what the database holds for the tenants the
/// file names (see [`referenced_tenants`]). Returns the setup, or every problem found.
pub fn validate(text: &str, existing: &Existing) -> Result<Setup, Vec<SetupProblem>> {
    let doc = parse_document(text)?;
    let mut problems = Problems::default();
    let root = Place { path: "tenants".into(), words: String::new() };
    let mut tenants = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let universe = Universe { existing, file: declared_names(&doc) };
    let mut upstream_places = BTreeMap::new();
    for (i, value) in doc.tenants.iter().enumerate() {
        let at = Place { path: format!("{}[{i}]", root.path), words: format!("tenants[{i}]") };
        let Some(t) = decode::<TenantDoc>(value, &at, &mut problems) else { continue };
        let name = t.name.trim().to_string();
        if name.is_empty() {
            problems.add(&at.field("name"), "name is empty; give every tenant a name");
            continue;
        }
        let at = Place { path: at.path, words: format!("tenant {name}") };
        if let Some(first) = seen.insert(name.clone(), i) {
            problems
                .add(&at, format!("the tenant is declared twice (tenants[{first}] and tenants[{i}]); merge them into one entry"));
            continue;
        }
        if let Some(t) = validate_tenant(&name, &t, &at, &universe, &mut upstream_places, &mut problems) {
            tenants.push(t);
        }
    }
    let exchange_rates = doc.exchange_rates.as_ref().map(|v| validate_exchange_rates(v, &mut problems));
    if problems.0.is_empty() {
        refuse_cycles(&tenants, existing, &upstream_places, &mut problems);
    }
    if problems.0.is_empty() {
        Ok(Setup { tenants, exchange_rates })
    } else {
        Err(problems.0)
    }
}

/// `exchange_rates`: an object of "FROM/TO" → rate as a string ({"USD/TRY": "34.10"}). A rate
/// is a string like an amount, so it is read exactly (a JSON number would pass through a float).
fn validate_exchange_rates(v: &Value, problems: &mut Problems) -> ExchangeRates {
    let at = Place { path: "exchange_rates".into(), words: "exchange_rates".into() };
    let mut out = ExchangeRates::new();
    let Value::Object(m) = v else {
        problems.add(&at, "must be an object of currency pairs and rates, like {\"USD/TRY\": \"34.10\"}");
        return out;
    };
    for (key, rate) in m {
        let at = at.child(key, format!("exchange rate {key}"));
        let pair = CurrencyPair::parse(key).map_err(|e| problems.add(&at, e)).ok();
        let rate = match rate.as_str() {
            Some(r) => parse_rate(r).map_err(|e| problems.add(&at, e)).ok(),
            None => {
                problems.add(&at, format!("rate {rate} must be a string, like \"34.10\" (exact; a JSON number is not)"));
                None
            }
        };
        if let (Some(pair), Some(rate)) = (pair, rate) {
            // "USD/TRY" and " USD/TRY" are one pair: the second would silently win.
            if out.insert(pair.clone(), rate).is_some() {
                problems.add(&at, format!("{pair} is declared twice; keep one"));
            }
        }
    }
    out
}

/// Whether a file has a top-level `exchange_rates` (false when it is not readable at all).
pub fn declares_exchange_rates(text: &str) -> bool {
    parse_document(text).is_ok_and(|d| d.exchange_rates.is_some())
}

/// The tenant names a file declares. Returns the parse problems when the file is not even
/// structurally readable.
pub fn tenant_names(text: &str) -> Result<Vec<String>, Vec<SetupProblem>> {
    let doc = parse_document(text)?;
    Ok(doc
        .tenants
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect())
}

/// The tenants a file declares and the ones its routing forwards to, so the caller can load
/// [`Existing`] before [`validate`].
pub fn referenced_tenants(text: &str) -> Result<Vec<String>, Vec<SetupProblem>> {
    let doc = parse_document(text)?;
    let declared = doc.tenants.iter().filter_map(|t| t.get("name").and_then(Value::as_str));
    let forwarded_to = doc
        .tenants
        .iter()
        .filter_map(|t| t.get("packages").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.pointer("/routing/upstream/tenant").and_then(Value::as_str));
    let names: BTreeSet<String> = declared.chain(forwarded_to).map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    Ok(names.into_iter().collect())
}

/// What routing may forward to: the tenants, packages and users of the file and of the database.
struct Universe<'a> {
    existing: &'a Existing,
    /// tenant → (package names, user names) as the file declares them, valid or not (a bad entry
    /// is reported once, where it is, not again by every package that forwards to it).
    file: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
}

impl Universe<'_> {
    fn has_tenant(&self, tenant: &str) -> bool {
        self.file.contains_key(tenant) || self.existing.tenants.contains(tenant)
    }
    fn has_package(&self, tenant: &str, package: &str) -> bool {
        self.file.get(tenant).is_some_and(|(p, _)| p.contains(package))
            || self.existing.packages.get(tenant).is_some_and(|p| p.contains(package))
    }
    fn has_user(&self, tenant: &str, user: &str) -> bool {
        self.file.get(tenant).is_some_and(|(_, u)| u.contains(user))
            || self.existing.users.get(tenant).is_some_and(|u| u.contains(user))
    }
}

/// The package and user names each tenant of the file declares.
fn declared_names(doc: &FileDoc) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let names = |t: &Value, list: &str| -> BTreeSet<String> {
        t.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("name").and_then(Value::as_str))
            .map(|n| n.trim().to_string())
            .collect()
    };
    doc.tenants
        .iter()
        .filter_map(|t| {
            let name = t.get("name").and_then(Value::as_str)?.trim().to_string();
            Some((name, (names(t, "packages"), names(t, "users"))))
        })
        .collect()
}

/// Forwarding cycles of the database as the file leaves it (the file's routing replaces what is
/// stored for its packages), reported at the file's packages that take part.
fn refuse_cycles(
    tenants: &[TenantSetup],
    existing: &Existing,
    places: &BTreeMap<(String, String), Place>,
    problems: &mut Problems,
) {
    let mut forwarding = existing.forwarding.clone();
    for t in tenants {
        for p in &t.packages {
            let key = (t.name.clone(), p.name.clone());
            match &p.upstream {
                Some(u) => forwarding.insert(key, (u.tenant.clone(), u.package.clone())),
                None => forwarding.remove(&key),
            };
        }
    }
    // Reported once at each package of the file on a chain (the one that closes it may be any of
    // them), with the chain that starts there when there is one.
    let cycles = forwarding_cycles(&forwarding);
    let mut reported = BTreeSet::new();
    let own = cycles.iter().map(|c| (c, &c.chain[..1]));
    let passing = cycles.iter().map(|c| (c, &c.chain[1..]));
    for (cycle, packages) in own.chain(passing) {
        for (tenant, package) in packages {
            let Some(at) = places.get(&(tenant.clone(), package.clone())) else { continue };
            if reported.insert(at.path.clone()) {
                problems.0.push(SetupProblem { path: at.path.clone(), message: cycle.problem.sentence(tenant, package) });
            }
        }
    }
}

fn parse_document(text: &str) -> Result<FileDoc, Vec<SetupProblem>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let what = e.to_string();
        let what = what.strip_suffix(&suffix).unwrap_or(&what).to_string();
        vec![SetupProblem {
            path: String::new(),
            message: format!(
                "line {}, column {}: the file is not valid JSON ({what}); fix the syntax there",
                e.line(),
                e.column()
            ),
        }]
    })?;
    serde_json::from_value::<FileDoc>(value).map_err(|e| {
        vec![SetupProblem {
            path: String::new(),
            message: format!("the file must be an object {{\"tenants\": [...]}}, but {e}; {FORMAT_HINT}"),
        }]
    })
}

/// Decode one element; a structural problem (unknown field, missing field, wrong type) is
/// reported at its place. Elements that hold secrets decode them as plain JSON values, so
/// serde's message never quotes one.
fn decode<T: Element>(value: &Value, at: &Place, problems: &mut Problems) -> Option<T> {
    // Unknown fields (typos, mostly) are reported one by one and set aside, so the element's
    // other problems are still found.
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        let unknown: Vec<String> = map.keys().filter(|k| !T::FIELDS.contains(&k.as_str())).cloned().collect();
        for field in unknown {
            map.remove(&field);
            problems.add(
                &at.field(&field),
                format!("unknown field `{field}` in {}; its fields are {}, correct or remove it", T::WHAT, T::FIELDS.join(", ")),
            );
        }
    }
    match serde_json::from_value::<T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.add(at, format!("{e}; {FORMAT_HINT}"));
            None
        }
    }
}

/// A name of a thing inside a tenant: non-empty and unique among its kind.
fn check_name(
    name: &str,
    kind: &str,
    list: &str,
    i: usize,
    tenant_at: &Place,
    seen: &mut BTreeMap<String, usize>,
    problems: &mut Problems,
) -> Option<(String, Place)> {
    let name = name.trim().to_string();
    let element = Place { path: format!("{}.{list}[{i}]", tenant_at.path), words: tenant_at.words.clone() };
    if name.is_empty() {
        let at = Place { path: format!("{}.name", element.path), words: format!("{}, {list}[{i}]", tenant_at.words) };
        problems.add(&at, format!("name is empty; give every {kind} a name"));
        return None;
    }
    let at = Place { path: element.path, words: format!("{}, {kind} {name}", tenant_at.words) };
    if let Some(first) = seen.insert(name.clone(), i) {
        problems.add(
            &at,
            format!(
                "the name is used twice ({list}[{first}] and {list}[{i}]); names are unique within a tenant, rename or merge one"
            ),
        );
        return None;
    }
    Some((name, at))
}

/// The place of an element, named if it has a name, for structural problems.
fn element_place(value: &Value, list: &str, i: usize, tenant_at: &Place) -> Place {
    let words = match value.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{}, {list}[{i}] ({n})", tenant_at.words),
        None => format!("{}, {list}[{i}]", tenant_at.words),
    };
    tenant_at.child(&format!("{list}[{i}]"), words)
}

fn validate_tenant(
    tenant: &str,
    t: &TenantDoc,
    at: &Place,
    universe: &Universe,
    upstream_places: &mut BTreeMap<(String, String), Place>,
    problems: &mut Problems,
) -> Option<TenantSetup> {
    let existing = universe.existing;
    let before = problems.0.len();

    let mut users = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, v) in t.users.iter().enumerate() {
        let Some(u) = decode::<UserDoc>(v, &element_place(v, "users", i, at), problems) else { continue };
        let Some((name, uat)) = check_name(&u.name, "user", "users", i, at, &mut seen, problems) else { continue };
        let balance = amount(u.balance.as_ref(), "balance", &uat, problems);
        if let Some(b) = balance {
            if b.is_sign_negative() && !b.is_zero() {
                problems.add(
                    &uat.field("balance"),
                    format!("balance '{b}' is negative; declare 0 or more (spending below zero is what overdraft_limit allows)"),
                );
            }
        }
        let overdraft = non_negative(u.overdraft_limit.as_ref(), "overdraft_limit", &uat, problems);
        if let (Some(balance), Some(overdraft_limit)) = (balance, overdraft) {
            users.push(UserSetup { name, email: u.email.trim().to_string(), balance, overdraft_limit });
        }
    }

    let mut providers = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, v) in t.providers.iter().enumerate() {
        let Some(p) = decode::<ProviderDoc>(v, &element_place(v, "providers", i, at), problems) else { continue };
        let Some((name, pat)) = check_name(&p.name, "provider", "providers", i, at, &mut seen, problems) else { continue };
        if let Some(p) = validate_provider(name, p, &existing.kinds, &pat, problems) {
            providers.push(p);
        }
    }

    let mut code_groups = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, v) in t.code_groups.iter().enumerate() {
        let Some(g) = decode::<CodeGroupDoc>(v, &element_place(v, "code_groups", i, at), problems) else { continue };
        let Some((name, gat)) = check_name(&g.name, "code group", "code_groups", i, at, &mut seen, problems) else { continue };
        let codes = validate_codes(&g.codes, &gat, problems);
        code_groups.push(CodeGroupSetup { name, codes });
    }

    // What routing and mappings may point at: the file's providers and groups, then the database's.
    let mut known_providers: BTreeMap<String, KindRules> = existing.providers.get(tenant).cloned().unwrap_or_default();
    let mut file_provider_names = BTreeMap::new();
    // Names of providers that failed validation still count as declared, so a bad credential
    // is not reported a second time as "unknown provider" by every package that uses it.
    for v in &t.providers {
        if let Some(name) = v.get("name").and_then(Value::as_str).map(str::trim) {
            let kind = v.get("kind").and_then(Value::as_str).and_then(|k| parse_kind(&existing.kinds, k.trim()).ok());
            file_provider_names.insert(name.to_string(), kind);
        }
    }
    for p in &providers {
        known_providers.insert(p.name.clone(), p.kind);
    }
    let mut known_groups: BTreeSet<String> = existing.code_groups.get(tenant).cloned().unwrap_or_default();
    for v in &t.code_groups {
        if let Some(name) = v.get("name").and_then(Value::as_str).map(str::trim) {
            known_groups.insert(name.to_string());
        }
    }
    let refs =
        References { tenant, providers: &known_providers, declared: &file_provider_names, groups: &known_groups, universe };

    let mut packages = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, v) in t.packages.iter().enumerate() {
        let Some(p) = decode::<PackageDoc>(v, &element_place(v, "packages", i, at), problems) else { continue };
        let Some((name, pat)) = check_name(&p.name, "package", "packages", i, at, &mut seen, problems) else { continue };
        if let Some(p) = validate_package(name, p, &pat, &refs, problems) {
            if p.upstream.is_some() {
                upstream_places.insert((tenant.to_string(), p.name.clone()), pat.field("routing.upstream"));
            }
            packages.push(p);
        }
    }

    let webhooks = validate_webhooks(&t.webhooks, at, problems);
    let currency = t.currency.as_deref().map_or(DEFAULT_TENANT_CURRENCY.map(str::to_string), |c| {
        crate::domain::pace::parse_currency(c).map_err(|m| problems.add(&at.field("currency"), m)).ok()
    });

    (problems.0.len() == before).then(|| TenantSetup {
        name: tenant.to_string(),
        currency,
        users,
        providers,
        code_groups,
        packages,
        webhooks,
    })
}

fn validate_webhooks(values: &[Value], tenant_at: &Place, problems: &mut Problems) -> Vec<WebhookSetup> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        let at = tenant_at.child(&format!("webhooks[{i}]"), format!("{}, webhooks[{i}]", tenant_at.words));
        let Some(w) = decode::<WebhookDoc>(v, &at, problems) else { continue };
        if let Some(first) = seen.insert(w.url.trim().to_string(), i) {
            let message = format!("the url is declared twice (webhooks[{first}] and webhooks[{i}]); merge them into one entry");
            problems.add(&at.field("url"), message);
            continue;
        }
        out.extend(validate_webhook(w, &at, problems));
    }
    out
}

fn validate_webhook(w: WebhookDoc, at: &Place, problems: &mut Problems) -> Option<WebhookSetup> {
    let before = problems.0.len();
    let url = w.url.trim().to_string();
    let delivery = webhook_delivery(&w, at, problems);
    match url::Url::parse(&url) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            // Not quoted: it carries a secret.
            problems.add(&at.field("url"), "url carries a user or password; the secret field is how a shop checks requests");
        }
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            if let Err(why) = crate::domain::endpoint::url_allowed(&u, delivery.access) {
                problems.add(&at.field("url"), format!("url '{url}': {why}"));
            }
        }
        _ => problems
            .add(&at.field("url"), format!("url '{url}' is not an http(s) URL; write it like https://shop.example/hooks/orders")),
    }
    // The secret is never quoted, whatever is wrong with it.
    let secret = match &w.secret {
        Value::String(s) if !s.trim().is_empty() => Some(Some(w.secret.clone())),
        v if crate::secret::reference(v).is_some() => Some(Some(v.clone())),
        v if fields::is_stored_marker(v) => Some(None),
        Value::Null => {
            problems
                .add(&at.field("secret"), "secret is missing; give every webhook a secret that the shop checks signatures with");
            None
        }
        _ => {
            problems.add(
                &at.field("secret"),
                "secret must be a non-empty string, a reference ({\"env\": \"VARIABLE\"} or {\"file\": \"/path\"}), or {\"stored\": true} to keep the stored one",
            );
            None
        }
    };
    let events = webhook_events(w.events.as_ref(), &at.field("events"), problems);
    (problems.0.len() == before).then(|| WebhookSetup {
        url,
        secret: secret.expect("checked above"),
        events: events.expect("checked above"),
        enabled: w.enabled,
        delivery,
    })
}

/// A webhook's delivery fields: `allow_private_network`, `allow_http`, `retry_horizon`.
fn webhook_delivery(w: &WebhookDoc, at: &Place, problems: &mut Problems) -> WebhookDelivery {
    let access = crate::domain::endpoint::Access { allow_private_network: w.allow_private_network, allow_http: w.allow_http };
    let retry_horizon = match &w.retry_horizon {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.trim().parse::<humantime::Duration>() {
            Ok(d) if !Duration::from(d).is_zero() => Some(d.into()),
            _ => {
                problems.add(
                    &at.field("retry_horizon"),
                    format!("retry_horizon '{s}' is not a duration above 0; write it like \"3d\" or \"12h\""),
                );
                None
            }
        },
        Some(other) => {
            problems.add(&at.field("retry_horizon"), format!("retry_horizon is {other}; write it as a string like \"3d\""));
            None
        }
    };
    WebhookDelivery { access, retry_horizon }
}

/// The event names of a webhook; absent means all of them.
fn webhook_events(v: Option<&Value>, at: &Place, problems: &mut Problems) -> Option<Vec<EventType>> {
    let list = match v {
        None | Some(Value::Null) => return Some(EventType::ALL.to_vec()),
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => {
            problems.add(at, format!("events is empty; list some of {} or leave the field out for all", EventType::names()));
            return None;
        }
        Some(_) => {
            problems.add(at, format!("events must be a list of event names, some of {}", EventType::names()));
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let at = &Place { path: format!("{}[{i}]", at.path), words: at.words.clone() };
        match e.as_str().map(str::trim).and_then(EventType::parse) {
            Some(kind) if !out.contains(&kind) => out.push(kind),
            Some(kind) => problems.add(at, format!("events[{i}] repeats {kind}; remove the duplicate")),
            None => problems
                .add(at, format!("events[{i}] ({e}) is not an event orderctl sends; the events are {}", EventType::names())),
        }
    }
    (out.len() == list.len()).then_some(out)
}

/// An amount written as a decimal string. Absent means 0.
fn amount(v: Option<&Value>, what: &str, at: &Place, problems: &mut Problems) -> Option<Decimal> {
    match v {
        None | Some(Value::Null) => Some(Decimal::new(0, 2)),
        Some(Value::String(s)) => match parse_amount(s, what) {
            Ok(mut d) => {
                // Always two places, as the database stores it: "100" and "100.00" are one amount.
                d.rescale(2);
                Some(d)
            }
            Err(m) => {
                problems.add(&at.field(what), m);
                None
            }
        },
        Some(Value::Number(n)) => {
            problems.add(
                &at.field(what),
                format!("{what} is the JSON number {n}; write amounts as decimal strings like \"{n}\" (numbers can lose cents)"),
            );
            None
        }
        Some(_) => {
            problems.add(&at.field(what), format!("{what} must be a decimal string like \"100.00\""));
            None
        }
    }
}

fn non_negative(v: Option<&Value>, what: &str, at: &Place, problems: &mut Problems) -> Option<Decimal> {
    let d = amount(v, what, at, problems)?;
    if d < Decimal::ZERO {
        problems.add(&at.field(what), format!("{what} '{d}' is negative; write 0 or a positive amount"));
        return None;
    }
    Some(d)
}

fn validate_provider(
    name: String,
    p: ProviderDoc,
    kinds: &[KindRules],
    at: &Place,
    problems: &mut Problems,
) -> Option<ProviderSetup> {
    let before = problems.0.len();
    let kind = match parse_kind(kinds, p.kind.trim()) {
        Ok(k) => Some(k),
        Err(m) => {
            problems.add(&at.field("kind"), m);
            None
        }
    };
    let base_url = p.base_url.trim().to_string();
    match url::Url::parse(&base_url) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            // Not quoted: it carries a secret.
            problems.add(&at.field("base_url"), "base_url carries a user or password; put secrets in credentials instead");
        }
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
        _ => problems.add(
            &at.field("base_url"),
            format!("base_url '{base_url}' is not an http(s) URL; write it like http://127.0.0.1:18080"),
        ),
    }
    let max_in_flight = match p.max_in_flight {
        None => DEFAULT_MAX_IN_FLIGHT,
        Some(n) if (1..=10_000).contains(&n) => n as i32,
        Some(n) => {
            problems
                .add(&at.field("max_in_flight"), format!("max_in_flight is {n}; write a number from 1 to 10000 (default 16)"));
            0
        }
    };
    if let Some(kind) = kind {
        check_credentials(&p.credentials, kind, &at.field("credentials"), problems);
    }
    let schedule = match &p.schedule {
        None | Some(Value::Null) => ScheduleOverride::default(),
        Some(v) => validate_schedule(v, &at.field("schedule"), problems).unwrap_or_default(),
    };
    let reconcile_for = validate_reconcile_for(p.reconcile_for.as_ref(), &at.field("reconcile_for"), problems);
    let currency = p
        .currency
        .as_deref()
        .and_then(|c| crate::domain::pace::parse_currency(c).map_err(|m| problems.add(&at.field("currency"), m)).ok());
    let rate_limit = p
        .rate_limit
        .as_deref()
        .and_then(|r| crate::domain::pace::RateLimit::parse(r).map_err(|m| problems.add(&at.field("rate_limit"), m)).ok());
    let health = validate_health(&p, at, problems);
    (problems.0.len() == before).then(|| ProviderSetup {
        name,
        kind: kind.expect("checked above"),
        base_url,
        credentials: p.credentials,
        enabled: p.enabled,
        max_in_flight,
        schedule,
        reconcile_for,
        currency,
        rate_limit,
        health,
    })
}

/// A provider's health settings: `low_balance` an amount, `hold_for` and `probe_every`
/// durations, `breaker` `{"failures": N, "cool_down": "30s"}`.
fn validate_health(p: &ProviderDoc, at: &Place, problems: &mut Problems) -> crate::domain::provider_health::HealthSettings {
    let mut h = crate::domain::provider_health::HealthSettings::default();
    let dur = |v: Option<&Value>, name: &str, default: Duration, problems: &mut Problems| -> Duration {
        match v {
            None | Some(Value::Null) => default,
            Some(Value::String(s)) => match s.trim().parse::<humantime::Duration>() {
                Ok(d)
                    if Duration::from(d) >= Duration::from_millis(100)
                        && Duration::from(d) <= Duration::from_secs(30 * 24 * 3600) =>
                {
                    d.into()
                }
                _ => {
                    problems.add(
                        &at.field(name),
                        format!("{name} '{s}' is not a duration from 100ms to 30 days; write it like \"30m\""),
                    );
                    default
                }
            },
            Some(other) => {
                problems.add(&at.field(name), format!("{name} is {other}; write a duration as a string like \"30m\""));
                default
            }
        }
    };
    h.low_balance = match &p.low_balance {
        None | Some(Value::Null) => None,
        v => amount(v.as_ref(), "low_balance", at, problems),
    };
    h.hold_for = dur(p.hold_for.as_ref(), "hold_for", h.hold_for, problems);
    h.probe_every = dur(p.probe_every.as_ref(), "probe_every", h.probe_every, problems);
    match &p.breaker {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for k in m.keys().filter(|k| !["failures", "cool_down"].contains(&k.as_str())) {
                problems.add(&at.field("breaker"), format!("breaker has no field '{k}'; use failures and cool_down"));
            }
            match m.get("failures") {
                None => {}
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=1000).contains(&n) => h.breaker_failures = n as u32,
                    _ => problems
                        .add(&at.field("breaker"), format!("breaker.failures is {v}; write a number from 1 to 1000 (default 5)")),
                },
            }
            h.breaker_cool_down = dur(m.get("cool_down"), "breaker", h.breaker_cool_down, problems);
        }
        Some(other) => {
            problems.add(&at.field("breaker"), format!("breaker is {other}; write {{\"failures\": 5, \"cool_down\": \"30s\"}}"))
        }
    }
    h
}

/// A provider's `reconcile_for`: a duration string within bounds ("10m" by default).
fn validate_reconcile_for(v: Option<&Value>, at: &Place, problems: &mut Problems) -> Duration {
    let (low, high) = RECONCILE_FOR_BOUNDS;
    let d = match v {
        None | Some(Value::Null) => return DEFAULT_RECONCILE_FOR,
        Some(Value::String(s)) => match s.trim().parse::<humantime::Duration>() {
            Ok(d) => Duration::from(d),
            Err(e) => {
                problems.add(at, format!("reconcile_for '{s}' is not a duration ({e}); write it like \"10m\""));
                return DEFAULT_RECONCILE_FOR;
            }
        },
        Some(other) => {
            problems.add(at, format!("reconcile_for is {other}; write a duration as a string like \"10m\""));
            return DEFAULT_RECONCILE_FOR;
        }
    };
    if d < low || d > high {
        problems.add(at, format!("reconcile_for is {}; it must be between 1s and 30 days", humantime::format_duration(d)));
    }
    d
}

/// A provider's `schedule`: durations as strings ("5s", "2m", "6h"), `max_checks` a number,
/// each within bounds, `first_check` at most `give_up_after`, `backoff_max` at least `backoff_base`.
fn validate_schedule(v: &Value, at: &Place, problems: &mut Problems) -> Option<ScheduleOverride> {
    let before = problems.0.len();
    let doc = decode::<ScheduleDoc>(v, at, problems)?;
    let duration = |field: &str, v: &Option<Value>, problems: &mut Problems| -> Option<Duration> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.trim().parse::<humantime::Duration>() {
                Ok(d) => Some(d.into()),
                Err(e) => {
                    problems.add(
                        &at.field(field),
                        format!("schedule.{field} '{s}' is not a duration ({e}); write it like \"5s\", \"2m\" or \"6h\""),
                    );
                    None
                }
            },
            Some(other) => {
                problems.add(
                    &at.field(field),
                    format!("schedule.{field} is {other}; write durations as strings like \"5s\", \"2m\" or \"6h\""),
                );
                None
            }
        }
    };
    let schedule = ScheduleOverride {
        first_check: duration("first_check", &doc.first_check, problems),
        backoff_base: duration("backoff_base", &doc.backoff_base, problems),
        backoff_max: duration("backoff_max", &doc.backoff_max, problems),
        max_checks: match &doc.max_checks {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => n.as_u64().map(|n| n as u32),
            Some(other) => {
                problems.add(&at.field("max_checks"), format!("schedule.max_checks is {other}; write a whole number like 30"));
                None
            }
        },
        give_up_after: duration("give_up_after", &doc.give_up_after, problems),
    };
    for (field, message) in schedule.problems() {
        problems.add(&at.field(field), format!("schedule.{message}"));
    }
    (problems.0.len() == before).then_some(schedule)
}

fn check_credentials(credentials: &Value, kind: KindRules, at: &Place, problems: &mut Problems) {
    let needed = kind.credential_fields();
    let example: Vec<String> = needed.iter().map(|f| format!("\"{f}\": \"...\"")).collect();
    let Value::Object(map) = credentials else {
        problems.add(at, format!("credentials must be an object of strings; {kind} providers need {{{}}}", example.join(", ")));
        return;
    };
    for field in needed {
        match map.get(*field) {
            None => problems
                .add(&at.field(field), format!("credentials.{field} is missing; {kind} providers need {}", needed.join(" and "))),
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(v) if crate::secret::reference(v).is_some() || fields::is_stored_marker(v) => {}
            Some(_) => problems.add(
                &at.field(field),
                format!("credentials.{field} must be a non-empty string or a reference: {{\"env\": \"VARIABLE\"}}, {{\"file\": \"/path\"}} or {{\"stored\": true}} (keep the stored value)"),
            ),
        }
    }
    for field in map.keys() {
        if !needed.contains(&field.as_str()) {
            problems.add(
                &at.field(field),
                format!(
                    "credentials.{field} is not used by {kind} providers (they use {}); remove it or correct its name",
                    needed.join(", ")
                ),
            );
        }
    }
}

fn validate_codes(codes: &[Value], at: &Place, problems: &mut Problems) -> Vec<String> {
    let mut out = Vec::with_capacity(codes.len());
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, v) in codes.iter().enumerate() {
        // Codes are goods: messages name their position, never their value.
        match v.as_str().map(str::trim) {
            Some(c) if !c.is_empty() => {
                if let Some(first) = seen.insert(c, i) {
                    problems.add(
                        &at.field(&format!("codes[{i}]")),
                        format!("codes[{i}] repeats codes[{first}]; remove the duplicate"),
                    );
                } else {
                    out.push(c.to_string());
                }
            }
            Some(_) => problems.add(&at.field(&format!("codes[{i}]")), format!("codes[{i}] is empty; remove it or fill it in")),
            None => {
                problems.add(&at.field(&format!("codes[{i}]")), format!("codes[{i}] is not a string; write every code in quotes"))
            }
        }
    }
    out
}

/// What a tenant's routing and mappings may point at.
struct References<'a> {
    tenant: &'a str,
    /// Valid providers of the file and the database, with their kind.
    providers: &'a BTreeMap<String, KindRules>,
    /// Every provider name the file declares, valid or not, with its kind when readable.
    declared: &'a BTreeMap<String, Option<KindRules>>,
    groups: &'a BTreeSet<String>,
    /// Tenants, packages and users an internal routing may forward to.
    universe: &'a Universe<'a>,
}

impl References<'_> {
    fn has_provider(&self, name: &str) -> bool {
        self.providers.contains_key(name) || self.declared.contains_key(name)
    }
    fn kind(&self, name: &str) -> Option<KindRules> {
        self.providers.get(name).copied().or_else(|| self.declared.get(name).copied().flatten())
    }
    fn provider_list(&self) -> String {
        let names: BTreeSet<&String> = self.providers.keys().chain(self.declared.keys()).collect();
        if names.is_empty() {
            "it has none".into()
        } else {
            format!("it has {}", names.into_iter().map(String::as_str).collect::<Vec<_>>().join(", "))
        }
    }
}

fn validate_package(name: String, p: PackageDoc, at: &Place, refs: &References, problems: &mut Problems) -> Option<PackageSetup> {
    let before = problems.0.len();
    let product = p.product.trim().to_string();
    if product.is_empty() {
        problems.add(&at.field("product"), "product is empty; name the product this package belongs to, like \"PUBG Mobile\"");
    }
    let price = match &p.price {
        Value::Null => {
            problems.add(&at.field("price"), "price is missing; write it like \"1.10\"");
            None
        }
        v => non_negative(Some(v), "price", at, problems),
    };

    let rat = at.field("routing");
    let routing = match &p.routing {
        None | Some(Value::Null) => RoutingDoc {
            mode: "manual".into(),
            provider_type: "manual".into(),
            primary: None,
            fallback: None,
            code_group: None,
            upstream: None,
        },
        Some(v) => decode::<RoutingDoc>(v, &rat, problems)?,
    };
    let mode = routing.mode.trim().parse::<RoutingMode>().map_err(|m| problems.add(&rat.field("mode"), m)).ok();
    let provider_type =
        routing.provider_type.trim().parse::<ProviderType>().map_err(|m| problems.add(&rat.field("provider_type"), m)).ok();
    let clean = |o: Option<String>| o.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let targets = RoutingTargets {
        primary: clean(routing.primary),
        fallback: clean(routing.fallback),
        code_group: clean(routing.code_group),
        upstream_given: routing.upstream.as_ref().is_some_and(|v| !v.is_null()),
    };
    targets.check_names(&rat, refs, problems);
    let upstream = match &routing.upstream {
        None | Some(Value::Null) => None,
        Some(v) => validate_upstream(v, &rat.field("upstream"), refs, problems),
    };
    if let Some(pt) = provider_type {
        targets.check_provider_type(pt, &rat, problems);
    }
    let mappings = validate_mappings(&p.mappings, at, refs, problems);
    if let (Some(mode), Some(provider_type)) = (mode, provider_type) {
        let route = Route { package: &name, mode, provider_type, targets: &targets, upstream: upstream.as_ref() };
        route.refuse_contradictions(&p.mappings, &rat, refs, problems);
    }

    (problems.0.len() == before).then(|| PackageSetup {
        name,
        product,
        price: price.expect("checked above"),
        enabled: p.enabled,
        mode: mode.expect("checked above"),
        provider_type: provider_type.expect("checked above"),
        primary: targets.primary,
        fallback: targets.fallback,
        code_group: targets.code_group,
        upstream,
        mappings,
    })
}

/// What a package's routing points at, trimmed (empty names are none).
struct RoutingTargets {
    primary: Option<String>,
    fallback: Option<String>,
    code_group: Option<String>,
    upstream_given: bool,
}

impl RoutingTargets {
    /// Every provider and code group named exists in the tenant.
    fn check_names(&self, rat: &Place, refs: &References, problems: &mut Problems) {
        for (field, provider) in [("primary", &self.primary), ("fallback", &self.fallback)] {
            if let Some(provider) = provider {
                if !refs.has_provider(provider) {
                    problems.add(
                        &rat.field(field),
                        format!(
                            "routing.{field} names provider {provider}, which tenant {} does not have ({}); add it to providers or correct the name",
                            refs.tenant,
                            refs.provider_list()
                        ),
                    );
                }
            }
        }
        if let Some(group) = &self.code_group {
            if !refs.groups.contains(group) {
                problems.add(
                    &rat.field("code_group"),
                    format!(
                        "routing.code_group names code group {group}, which tenant {} does not have; add it to code_groups or correct the name",
                        refs.tenant
                    ),
                );
            }
        }
    }

    /// An upstream only for internal routing, and internal routing with nothing but it.
    fn check_provider_type(&self, pt: ProviderType, rat: &Place, problems: &mut Problems) {
        let internal = pt == ProviderType::Internal;
        if !internal && self.upstream_given {
            problems.add(
                &rat.field("upstream"),
                format!("routing.upstream is only for provider_type internal (this one is {pt}); remove it or set provider_type internal"),
            );
        }
        if internal {
            for (field, value) in [("primary", &self.primary), ("fallback", &self.fallback), ("code_group", &self.code_group)] {
                if value.is_some() {
                    problems.add(
                        &rat.field(field),
                        format!("provider_type internal forwards every order to routing.upstream; remove routing.{field}"),
                    );
                }
            }
        }
    }
}

/// A package's `mappings`: one per provider of the tenant, each with the fields its kind needs.
fn validate_mappings(
    docs: &Map<String, Value>,
    at: &Place,
    refs: &References,
    problems: &mut Problems,
) -> BTreeMap<String, Value> {
    let mut mappings = BTreeMap::new();
    for (provider, params) in docs {
        let mat = at.field(&format!("mappings.{provider}"));
        if !refs.has_provider(provider) {
            problems.add(
                &mat,
                format!(
                    "mappings.{provider} is for provider {provider}, which tenant {} does not have ({}); add the provider or remove the mapping",
                    refs.tenant,
                    refs.provider_list()
                ),
            );
            continue;
        }
        // A provider whose kind is unreadable has no fields to check against (its kind is reported).
        let Some(kind) = refs.kind(provider) else { continue };
        let needed = kind.required_mapping_fields();
        let Value::Object(fields) = params else {
            let example: Vec<String> = needed.iter().map(|f| format!("\"{f}\": \"...\"")).collect();
            problems.add(&mat, format!("mappings.{provider} must be an object like {{{}}}", example.join(", ")));
            continue;
        };
        for field in needed {
            let ok = match fields.get(*field) {
                Some(Value::String(s)) => !s.trim().is_empty(),
                Some(Value::Number(_)) => true,
                _ => false,
            };
            if !ok {
                problems.add(
                    &mat.field(field),
                    format!("mappings.{provider}.{field} is missing or empty; {kind} mappings need {}", needed.join(" and ")),
                );
            }
        }
        // The product delivers PINs: an approval without one is flagged, never approved.
        if fields.get("delivers_pin").is_some_and(|v| !v.is_boolean()) {
            problems.add(&mat.field("delivers_pin"), format!("mappings.{provider}.delivers_pin must be true or false"));
        }
        mappings.insert(provider.clone(), params.clone());
    }
    mappings
}

/// A package's routing as read from the file, for the checks `routing check` makes.
struct Route<'a> {
    package: &'a str,
    mode: RoutingMode,
    provider_type: ProviderType,
    targets: &'a RoutingTargets,
    upstream: Option<&'a UpstreamSetup>,
}

impl Route<'_> {
    /// Contradictions and a routed provider without a mapping are refused; a disabled provider
    /// or an empty code group is a state of the moment, reported as a warning after the write.
    fn refuse_contradictions(&self, mappings: &Map<String, Value>, rat: &Place, refs: &References, problems: &mut Problems) {
        let routed = |name: &Option<String>| {
            name.as_ref().map(|n| RoutedProvider { name: n.clone(), enabled: true, has_mapping: mappings.contains_key(n) })
        };
        let view = RoutingView {
            tenant: refs.tenant.to_string(),
            package: self.package.to_string(),
            mode: self.mode,
            provider_type: self.provider_type,
            primary: routed(&self.targets.primary),
            fallback: routed(&self.targets.fallback),
            code_group: self.targets.code_group.clone().map(|g| (g, 1)),
            upstream: self.upstream.map(|u| UpstreamRoute {
                tenant: u.tenant.clone(),
                package: u.package.clone(),
                account: u.account.clone(),
                package_enabled: true,
            }),
        };
        for problem in check_routing(&view) {
            let refused = match &problem {
                RoutingProblem::MissingMapping { provider } => refs.has_provider(provider),
                // An upstream that was given but is wrong is reported where it is wrong.
                RoutingProblem::InternalWithoutUpstream => !self.targets.upstream_given,
                p => is_contradiction(p),
            };
            if refused {
                problems.0.push(SetupProblem { path: rat.path.clone(), message: problem.sentence(refs.tenant, self.package) });
            }
        }
    }
}

/// `routing.upstream`: another tenant, one of its packages and one of its users, each existing
/// in the file or the database.
fn validate_upstream(v: &Value, at: &Place, refs: &References, problems: &mut Problems) -> Option<UpstreamSetup> {
    let before = problems.0.len();
    let doc = decode::<UpstreamDoc>(v, at, problems)?;
    let (tenant, package, account) = (doc.tenant.trim(), doc.package.trim(), doc.account.trim());
    if tenant == refs.tenant {
        problems.add(
            &at.field("tenant"),
            format!(
                "routing.upstream.tenant is tenant {tenant} itself; forwarding goes to another tenant (within a tenant, route \
                 with provider_type external, codes or manual)"
            ),
        );
    } else if !refs.universe.has_tenant(tenant) {
        problems.add(
            &at.field("tenant"),
            format!(
                "routing.upstream.tenant names tenant '{tenant}', which does not exist; add it to the file or correct the name"
            ),
        );
    } else {
        if !refs.universe.has_package(tenant, package) {
            problems.add(
                &at.field("package"),
                format!(
                    "routing.upstream.package names package '{package}', which tenant {tenant} does not have; add it to tenant \
                     {tenant} or correct the name"
                ),
            );
        }
        if !refs.universe.has_user(tenant, account) {
            problems.add(
                &at.field("account"),
                format!(
                    "routing.upstream.account names user '{account}', which tenant {tenant} does not have; the account is the \
                     user of {tenant} that pays for forwarded orders: add it to tenant {tenant}'s users or correct the name"
                ),
            );
        }
    }
    (problems.0.len() == before).then(|| UpstreamSetup {
        tenant: tenant.to_string(),
        package: package.to_string(),
        account: account.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Value {
        json!({"tenants": [{
            "name": "alsham",
            "users": [{"name": "halil", "email": "halil@example.com", "balance": "100.00", "overdraft_limit": "0"}],
            "providers": [
                {"name": "znet-main", "kind": "znet", "base_url": "http://127.0.0.1:18080", "credentials": {"kod": "bayi1", "sifre": "s3cret"}},
                {"name": "xstor", "kind": "xstor", "base_url": "http://127.0.0.1:18080", "credentials": {"api_token": "tok-123"}, "enabled": true}
            ],
            "code_groups": [{"name": "itunes-10", "codes": ["AAAA-1111", "BBBB-2222"]}],
            "packages": [
                {"name": "pubg-60", "product": "PUBG Mobile", "price": "1.10",
                 "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-main", "fallback": "xstor"},
                 "mappings": {"znet-main": {"oyun": "7001", "kupur": "60"}, "xstor": {"product_id": "501", "player_param": "playerId"}}},
                {"name": "itunes-10", "product": "iTunes", "price": "10.00",
                 "routing": {"mode": "auto", "provider_type": "codes", "code_group": "itunes-10"}},
                {"name": "jawaker", "product": "Jawaker", "price": "2.00", "routing": {"mode": "manual", "provider_type": "manual"}}
            ]
        }]})
    }

    fn problems_of(doc: &Value) -> Vec<SetupProblem> {
        validate(&doc.to_string(), &Existing::with_test_kinds()).expect_err("the document is invalid")
    }

    #[test]
    fn the_issue_example_is_valid() {
        let setup = validate(&example().to_string(), &Existing::with_test_kinds()).unwrap();
        let t = &setup.tenants[0];
        assert_eq!((t.users.len(), t.providers.len(), t.code_groups.len(), t.packages.len()), (1, 2, 1, 3));
        assert_eq!(t.users[0].balance, Decimal::new(10000, 2));
        assert_eq!(t.providers[0].max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(t.packages[0].fallback.as_deref(), Some("xstor"));
    }

    #[test]
    fn the_incident_routing_is_refused_with_the_routing_check_sentence() {
        let mut doc = example();
        doc["tenants"][0]["packages"][2]["routing"]["mode"] = json!("auto");
        let problems = problems_of(&doc);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "tenants[0].packages[2].routing");
        assert_eq!(
            problems[0].message,
            RoutingProblem::AutoWithManualProviderType { has_primary: false }.sentence("alsham", "jawaker")
        );
    }

    #[test]
    fn every_problem_is_collected_not_only_the_first() {
        let mut doc = example();
        doc["tenants"][0]["users"][0]["balance"] = json!("abc");
        doc["tenants"][0]["providers"][0]["kind"] = json!("zent");
        doc["tenants"][0]["packages"][1]["price"] = json!("-1");
        let messages: Vec<String> = problems_of(&doc).into_iter().map(|p| p.message).collect();
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(messages[0].starts_with("tenant alsham, user halil: balance 'abc' is not a decimal amount"));
        assert!(messages[1].starts_with("tenant alsham, provider znet-main: provider kind 'zent' is unknown"));
        assert!(messages[2].starts_with("tenant alsham, package itunes-10: price '-1.00' is negative"), "{messages:#?}");
    }

    #[test]
    fn no_message_quotes_a_secret() {
        let mut doc = example();
        doc["tenants"][0]["providers"][0]["credentials"] = json!("s3cret-as-a-string");
        doc["tenants"][0]["providers"][1]["credentials"] = json!({"api_token": 12345678, "apitoken": "tok-typo-secret"});
        doc["tenants"][0]["code_groups"][0]["codes"] = json!(["PIN-SECRET-1", "PIN-SECRET-1", 99887766]);
        let all = format!("{:?}", problems_of(&doc));
        for secret in ["s3cret-as-a-string", "12345678", "tok-typo-secret", "PIN-SECRET-1", "99887766"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        assert!(all.contains("credentials.apitoken is not used by xstor providers"), "{all}");
        assert!(all.contains("codes[1] repeats codes[0]"), "{all}");
    }

    #[test]
    fn webhooks_are_validated_with_their_places_and_never_quote_a_secret() {
        let mut doc = example();
        doc["tenants"][0]["webhooks"] = json!([
            {"url": "https://shop.example/hooks", "secret": "whsec-ok"},
            {"url": "https://shop.example/only", "secret": "whsec-ok2", "events": ["order.approved"], "enabled": false},
        ]);
        let setup = validate(&doc.to_string(), &Existing::with_test_kinds()).unwrap();
        let hooks = &setup.tenants[0].webhooks;
        assert_eq!(hooks[0].events, EventType::ALL.to_vec(), "all events by default");
        assert_eq!((hooks[1].events.clone(), hooks[1].enabled), (vec![EventType::Approved], false));
        assert!(!format!("{hooks:?}").contains("whsec-ok"), "Debug masks the secret");

        doc["tenants"][0]["webhooks"] = json!([
            {"url": "ftp://shop.example/hooks", "secret": "whsec-SECRET-1", "events": ["order.created", "order.approved", "order.approved"]},
            {"url": "https://shop.example/b", "secret": 12345678},
            {"url": "https://user:pw-SECRET-2@shop.example/c", "secret": ""},
            {"url": "https://shop.example/d", "secret": "whsec-SECRET-3", "events": []},
            {"url": "https://shop.example/d", "secret": "whsec-SECRET-3", "sekret": "whsec-SECRET-4"}
        ]);
        let problems = problems_of(&doc);
        let text = format!("{problems:?}");
        for secret in ["whsec-SECRET-1", "12345678", "pw-SECRET-2", "whsec-SECRET-3", "whsec-SECRET-4"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let at = |path: &str| {
            problems
                .iter()
                .find(|p| p.path == path)
                .map(|p| p.message.clone())
                .unwrap_or_else(|| panic!("no problem at {path}: {problems:#?}"))
        };
        assert!(at("tenants[0].webhooks[0].url").contains("is not an http(s) URL"));
        assert!(
            at("tenants[0].webhooks[0].events[0]").contains("order.created")
                && at("tenants[0].webhooks[0].events[0]").contains("order.needs_action")
        );
        assert!(at("tenants[0].webhooks[0].events[2]").contains("repeats order.approved"));
        assert!(at("tenants[0].webhooks[1].secret").contains("non-empty string"));
        assert!(at("tenants[0].webhooks[2].url").contains("user or password"));
        assert!(at("tenants[0].webhooks[2].secret").contains("non-empty string"));
        assert!(at("tenants[0].webhooks[3].events").contains("events is empty"));
        assert!(at("tenants[0].webhooks[4].sekret").contains("unknown field `sekret`"));
        assert!(at("tenants[0].webhooks[4].url").contains("declared twice"));
        assert!(problems.iter().all(|p| p.message.starts_with("tenant alsham, webhooks[")), "{problems:#?}");
    }

    #[test]
    fn routing_may_point_at_what_the_database_already_has() {
        let doc = json!({"tenants": [{"name": "alsham", "packages": [
            {"name": "p", "product": "P", "price": "1", "routing": {"mode": "auto", "provider_type": "external", "primary": "old"},
             "mappings": {"old": {"oyun": "1", "kupur": "2"}}}]}]});
        assert!(validate(&doc.to_string(), &Existing::with_test_kinds()).is_err());
        let mut existing = Existing::with_test_kinds();
        existing.providers.entry("alsham".into()).or_default().insert("old".into(), TEST_KINDS[0]);
        assert!(validate(&doc.to_string(), &existing).is_ok());
    }

    #[test]
    fn a_provider_schedule_is_read_and_every_problem_is_named_by_its_path() {
        let mut doc = example();
        doc["tenants"][0]["providers"][1]["schedule"] =
            json!({"first_check": "5s", "backoff_base": "5s", "backoff_max": "2m", "max_checks": 30, "give_up_after": "6h"});
        let setup = validate(&doc.to_string(), &Existing::with_test_kinds()).unwrap();
        let schedule = setup.tenants[0].providers[1].schedule;
        assert_eq!((schedule.first_check, schedule.max_checks), (Some(Duration::from_secs(5)), Some(30)));
        assert!(setup.tenants[0].providers[0].schedule.is_empty());
        doc["tenants"][0]["providers"][1]["schedule"] = json!({"first_check": "2h", "backoff_base": "soon", "backoff_max": 120,
            "max_checks": -1, "give_up_after": "1h", "every": "5s"});
        let problems = problems_of(&doc);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        let at = "tenants[0].providers[1].schedule";
        assert_eq!(
            paths,
            [
                format!("{at}.every"),
                format!("{at}.backoff_base"),
                format!("{at}.backoff_max"),
                format!("{at}.max_checks"),
                format!("{at}.first_check")
            ],
            "{problems:#?}"
        );
        assert!(problems[4].message.contains("first_check (2h) is longer than give_up_after (1h)"), "{problems:#?}");
        assert!(problems[1].message.starts_with("tenant alsham, provider xstor: schedule.backoff_base 'soon' is not a duration"));
    }

    fn forwarding(upstream: Value) -> Value {
        json!({"tenants": [
            {"name": "alsham", "packages": [{"name": "pubg-60", "product": "PUBG", "price": "1.10",
                "routing": {"mode": "auto", "provider_type": "internal", "upstream": upstream}}]},
            {"name": "wholesale", "users": [{"name": "alsham-account", "balance": "100.00"}],
             "packages": [{"name": "pubg-60-w", "product": "PUBG", "price": "0.95"}]}
        ]})
    }

    #[test]
    fn internal_routing_forwards_to_a_package_and_account_of_another_tenant() {
        let doc = forwarding(json!({"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}));
        let setup = validate(&doc.to_string(), &Existing::with_test_kinds()).unwrap();
        let up = setup.tenants[0].packages[0].upstream.clone().unwrap();
        assert_eq!((up.tenant.as_str(), up.package.as_str(), up.account.as_str()), ("wholesale", "pubg-60-w", "alsham-account"));
        assert_eq!(referenced_tenants(&doc.to_string()).unwrap(), vec!["alsham", "wholesale"]);
        // Unknown names, each at its own path.
        let doc = forwarding(json!({"tenant": "wholesale", "package": "nope", "account": "nobody"}));
        let problems = problems_of(&doc);
        let at = "tenants[0].packages[0].routing.upstream";
        assert_eq!(
            problems.iter().map(|p| p.path.clone()).collect::<Vec<_>>(),
            [format!("{at}.package"), format!("{at}.account")]
        );
        assert!(problems[1].message.contains("names user 'nobody', which tenant wholesale does not have"), "{problems:#?}");
        let problems = problems_of(&forwarding(json!({"tenant": "elsewhere", "package": "p", "account": "a"})));
        assert!(problems[0].message.contains("names tenant 'elsewhere', which does not exist"), "{problems:#?}");
        let problems = problems_of(&forwarding(json!({"tenant": "alsham", "package": "pubg-60", "account": "x"})));
        assert!(problems[0].message.contains("forwarding goes to another tenant"), "{problems:#?}");
        // What the database holds counts too.
        let doc = json!({"tenants": [{"name": "alsham", "packages": [{"name": "pubg-60", "product": "PUBG", "price": "1.10",
            "routing": {"mode": "auto", "provider_type": "internal",
                        "upstream": {"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}}}]}]});
        assert!(validate(&doc.to_string(), &Existing::with_test_kinds()).is_err());
        let mut existing = Existing::with_test_kinds();
        existing.tenants.insert("wholesale".into());
        existing.packages.entry("wholesale".into()).or_default().insert("pubg-60-w".into());
        existing.users.entry("wholesale".into()).or_default().insert("alsham-account".into());
        assert!(validate(&doc.to_string(), &existing).is_ok());
    }

    #[test]
    fn internal_routing_takes_no_provider_and_upstream_is_only_for_internal() {
        let mut doc = forwarding(json!({"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}));
        doc["tenants"][0]["packages"][0]["routing"]["primary"] = json!("znet-main");
        let problems = problems_of(&doc);
        assert!(
            problems.iter().any(|p| p
                .message
                .contains("provider_type internal forwards every order to routing.upstream; remove routing.primary")),
            "{problems:#?}"
        );
        let mut doc = forwarding(json!({"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}));
        doc["tenants"][0]["packages"][0]["routing"]["provider_type"] = json!("manual");
        doc["tenants"][0]["packages"][0]["routing"]["mode"] = json!("manual");
        let problems = problems_of(&doc);
        assert_eq!(problems[0].path, "tenants[0].packages[0].routing.upstream", "{problems:#?}");
        let mut doc = forwarding(Value::Null);
        doc["tenants"][0]["packages"][0]["routing"].as_object_mut().unwrap().remove("upstream");
        let problems = problems_of(&doc);
        assert!(problems[0].message.contains("provider_type is internal but no upstream package is set"), "{problems:#?}");
    }

    #[test]
    fn a_forwarding_cycle_through_the_file_or_the_database_is_refused() {
        // wholesale forwards back to alsham in the same file.
        let mut doc = forwarding(json!({"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}));
        doc["tenants"][0]["users"] = json!([{"name": "wholesale-account"}]);
        doc["tenants"][1]["packages"][0]["routing"] = json!({"mode": "auto", "provider_type": "internal",
            "upstream": {"tenant": "alsham", "package": "pubg-60", "account": "wholesale-account"}});
        let problems = problems_of(&doc);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].message.contains("forwarding cycle: alsham/pubg-60 → wholesale/pubg-60-w → alsham/pubg-60"));
        // The database already forwards wholesale's package on, back to alsham: the file closes the cycle.
        let doc = json!({"tenants": [{"name": "alsham", "packages": [{"name": "pubg-60", "product": "PUBG", "price": "1.10",
            "routing": {"mode": "auto", "provider_type": "internal",
                        "upstream": {"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}}}]}]});
        let mut existing = Existing::with_test_kinds();
        existing.tenants.insert("wholesale".into());
        existing.packages.entry("wholesale".into()).or_default().insert("pubg-60-w".into());
        existing.users.entry("wholesale".into()).or_default().insert("alsham-account".into());
        existing.forwarding.insert(("wholesale".into(), "pubg-60-w".into()), ("retail".into(), "x".into()));
        existing.forwarding.insert(("retail".into(), "x".into()), ("alsham".into(), "other".into()));
        let problems = problems_of_with(&doc, &existing);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].path, "tenants[0].packages[0].routing.upstream");
        assert!(problems[0].message.contains("alsham/pubg-60 → wholesale/pubg-60-w → retail/x → alsham/other"), "{problems:#?}");
        // Once retail forwards elsewhere, the same file is fine.
        existing.forwarding.insert(("retail".into(), "x".into()), ("supplier".into(), "y".into()));
        assert!(validate(&doc.to_string(), &existing).is_ok());
    }

    fn problems_of_with(doc: &Value, existing: &Existing) -> Vec<SetupProblem> {
        validate(&doc.to_string(), existing).expect_err("the document is invalid")
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let problems = validate("{\"tenants\": [\n  {\"name\": \"a\",}\n]}", &Existing::with_test_kinds()).unwrap_err();
        assert!(problems[0].message.starts_with("line 2, column "), "{problems:?}");
        assert!(problems[0].message.contains("not valid JSON"), "{problems:?}");
    }
}
