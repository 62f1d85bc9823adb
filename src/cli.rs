//! Every clap definition lives here and nowhere else. Commands receive these raw values and
//! `settings` turns the shared ones into validated settings once, at the edge.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
Exit status:
  0 success, 1 internal error, 2 usage error, 3 not found, 4 invalid input,
  5 refused by the current state, 6 database unavailable, 7 provider unavailable,
  8 a check found problems that need action, 9 poll --wait timed out.

Environment:
  DATABASE_URL       Postgres connection URL (same as --database-url; never printed)
  ORDERCTL_TENANT    default for --tenant
  ORDERCTL_OUTPUT    default for --output (table or json)
  RUST_LOG           log filter (env_logger syntax); -v and -q adjust it
  NO_COLOR           disable colours in tables";

#[derive(Debug, Parser)]
#[command(
    name = "orderctl",
    version,
    about = "Dispatch orders for digital goods to providers and watch them until done, directly against Postgres",
    long_about = None,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Postgres connection URL, e.g. postgres://orderctl@127.0.0.1:5432/orderctl
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Output format for data on stdout
    #[arg(long, short = 'o', global = true, env = "ORDERCTL_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Restrict every read and write to this tenant
    #[arg(long, global = true, env = "ORDERCTL_TENANT", value_name = "TENANT")]
    pub tenant: Option<String>,

    /// More logging on stderr (-v info, -vv debug, -vvv trace), on top of RUST_LOG
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// Provider connect timeout
    #[arg(long, global = true, env = "ORDERCTL_CONNECT_TIMEOUT", default_value = "5s", value_name = "DURATION")]
    pub connect_timeout: humantime::Duration,

    /// Provider total request timeout (connect + send + read)
    #[arg(long, global = true, env = "ORDERCTL_REQUEST_TIMEOUT", default_value = "20s", value_name = "DURATION")]
    pub request_timeout: humantime::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// The monitor's schedule. Shared by every command that checks orders.
#[derive(Debug, Args, Clone)]
pub struct PolicyArgs {
    /// Delay between sending an order and its first status check
    #[arg(long, env = "ORDERCTL_FIRST_CHECK", default_value = "60s", value_name = "DURATION")]
    pub first_check: humantime::Duration,

    /// Delay after the first check; doubles with every further check
    #[arg(long, env = "ORDERCTL_BACKOFF_BASE", default_value = "30s", value_name = "DURATION")]
    pub backoff_base: humantime::Duration,

    /// Upper bound for the delay between two checks
    #[arg(long, env = "ORDERCTL_BACKOFF_MAX", default_value = "10m", value_name = "DURATION")]
    pub backoff_max: humantime::Duration,

    /// Status checks per order before it waits only for the give-up limit
    #[arg(long, env = "ORDERCTL_MAX_CHECKS", default_value_t = 20, value_name = "N")]
    pub max_checks: u32,

    /// An order without a final answer this long after it was sent is failed and flagged for an operator
    #[arg(long, env = "ORDERCTL_GIVE_UP_AFTER", default_value = "24h", value_name = "DURATION")]
    pub give_up_after: humantime::Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending schema migrations from sql/
    Migrate(MigrateArgs),
    /// Apply a declarative setup file (tenants, users, providers, code stock, packages, routing, webhooks, exchange rates)
    Apply(ApplyArgs),
    /// Print the current setup in the setup-file format (secrets as references or {"stored": true}; stock as counts)
    Export(ExportArgs),
    /// Routing checks
    #[command(subcommand)]
    Routing(RoutingCommand),
    /// List tenants
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// List users and their balances
    #[command(subcommand)]
    User(UserCommand),
    /// List providers or check that one answers
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// List packages with their routing
    #[command(subcommand)]
    Package(PackageCommand),
    /// Create an order: charge the buyer and (for auto routing) dispatch it
    Create(CreateArgs),
    /// Send an order to its provider, exactly once
    Dispatch(DispatchArgs),
    /// Finish an open order by hand with a PIN
    Approve(ApproveArgs),
    /// Reject an open order and refund the buyer (exactly once)
    Reject(RejectArgs),
    /// Settle a provider's delivery that came after an operator's decision
    Settle(SettleArgs),
    /// Show everything about one order, its history and why it is where it is
    Inspect(InspectArgs),
    /// List orders, or the ones that are not moving (--stuck)
    List(ListArgs),
    /// Check one order with its provider now
    Poll(PollArgs),
    /// One pass of all periodic work, for cron and systemd timers
    Sweep(SweepArgs),
    /// Run dispatch, status checks and the safety sweep continuously
    Daemon(DaemonArgs),
    /// Counts, lateness and timings of the whole operation, from the database alone
    Stats(StatsArgs),
    /// Find everything that needs an operator: database, migrations, routing, providers, stuck orders
    Doctor(DoctorArgs),
    /// List the monthly partitions of events, finished orders and placements; create missing ones ahead
    Partitions(PartitionsArgs),
    /// Write the finished orders of months before --before to a file, then remove them
    #[command(after_help = ARCHIVE_HELP)]
    Archive(ArchiveArgs),
    /// Webhook deliveries: list them, retry failed ones, test a tenant's endpoints
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Run the whole job end to end on a throwaway database and the built-in simulator
    Demo(DemoArgs),
    /// Run the built-in provider simulator (Znet and x-stor on one port)
    Simulate(SimulateArgs),
    /// Print shell completions
    Completions(CompletionsArgs),
    /// Write man pages (one per subcommand)
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// List what would be applied and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Read migrations from this directory instead of the ones built into the binary
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub const APPLY_HELP: &str = r#"Format (JSON; amounts are decimal strings; names are unique within a tenant):
  {"tenants": [{"name": "alsham", "currency": "TRY",
    "users": [{"name": "halil", "email": "halil@example.com", "balance": "100.00", "overdraft_limit": "0"}],
    "providers": [{"name": "znet-main", "kind": "znet", "base_url": "http://127.0.0.1:18080",
                   "credentials": {"kod": "...", "sifre": "..."}, "enabled": true, "max_in_flight": 16},
                  {"name": "xstor", "kind": "xstor", "base_url": "http://127.0.0.1:18080",
                   "credentials": {"api_token": "..."},
                   "schedule": {"first_check": "5s", "backoff_base": "5s", "backoff_max": "2m",
                                "max_checks": 30, "give_up_after": "6h"}}],
    "code_groups": [{"name": "itunes-10", "codes": ["AAAA-1111"]}],
    "packages": [{"name": "pubg-60", "product": "PUBG Mobile", "price": "1.10", "enabled": true,
                  "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-main", "fallback": "xstor"},
                  "mappings": {"znet-main": {"oyun": "7001", "kupur": "60"}, "xstor": {"product_id": "501"}}},
                 {"name": "pubg-60-fwd", "product": "PUBG Mobile", "price": "1.15",
                  "routing": {"mode": "auto", "provider_type": "internal",
                              "upstream": {"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}}}],
    "webhooks": [{"url": "https://shop.example/hooks/orders", "secret": "...",
                  "events": ["order.approved", "order.rejected", "order.needs_action"], "enabled": true}]}],
   "exchange_rates": {"USD/TRY": "34.10"}}

Money: a tenant's "currency" (three capital letters; optional) is the money its package prices
and balances are in; without it the money is not named. A provider's "currency" is the money it
charges in; without it, the tenant's. "exchange_rates" (top level, optional) declares what one
unit of the first currency is worth in the second, as an exact decimal string (at most 10
places); only the pair as written converts (USD/TRY converts USD costs into TRY, never back).
Each order records the rate in force when its cost was recorded, so changing a rate never
changes a past margin. A file without "exchange_rates" leaves the stored rates alone; a pair it
no longer names is listed, and retired with --prune. Rates apply to every tenant: a file that
declares them is refused under --tenant.

Routing: mode auto (dispatched by itself) or manual (an operator dispatches or delivers it);
provider_type external (primary, optional fallback, a mapping for each), codes (code_group),
manual, or internal: forwarded to another tenant's package (upstream), as that tenant's order
paid by its user `account` (whose balance and overdraft apply there) and routed by that
tenant's routing; when that order finishes, the forwarded one finishes with the same PIN, or
rejected and refunded. The upstream tenant, package and account must exist (in the file or the
database); forwarding that comes back to a tenant it already passed (A -> B -> A, at any depth)
is refused, here and by the database.

Schedule (optional, per provider): each value given replaces the global --first-check,
--backoff-base, --backoff-max, --max-checks or --give-up-after for that provider's orders.
Durations are strings ("500ms", "5s", "2m", "6h") of at most 30 days; backoff_base and
backoff_max at least 100ms, give_up_after at least 1s, max_checks 1 to 1000; first_check at
most give_up_after, backoff_max at least backoff_base. `orderctl provider list` shows the
schedule in force for each provider and where each value came from.

Provider health (optional, per provider): "low_balance": "500.00" (below it `doctor` warns, the
gauge orderctl_provider_balance_low is 1, one log line says so), "hold_for": "30m" (how long
orders wait for a provider that cannot take them, with no fallback, before they end as a
rejection with no fallback does; default 30m), "breaker": {"failures": 5, "cool_down": "30s"}
(failed calls in a row that open the circuit breaker, and how long it stays open before one
probe decides), "probe_every": "30s" (how often a provider that refused orders for its own
reasons is asked again with a balance call).

The whole file is validated first; any problem means nothing is written (exit 4). Problems go to
stderr, one per line; with --output json they are a JSON array of {path, message} on stdout.
Re-applying a file changes nothing. Code stock only grows; a package's mappings are replaced.
Credentials and webhook secrets are stored and never printed. A webhook is named by its url;
`events` defaults to all of them. A secret (a credentials field, a webhook's secret) written as
{"stored": true} keeps what the database holds (`orderctl export` writes them so).

The plan: apply first compares the file with the database, per tenant it declares, and prints
every create, change (field: old -> new, secrets masked), revival and retirement; --dry-run
prints it and writes nothing. Objects of those tenants that the file no longer names are listed
("N objects not in the file: ...") and left alone; with --prune they are retired: a retired
package cannot be ordered (create exits 3 and says it was retired), a retired provider gets no
new placements while its open orders are still checked to the end, a retired webhook gets no
new deliveries and its pending ones are cancelled. Nothing is deleted (orders keep naming their
package and provider) and users are never retired. Naming a retired object again revives it.
A plan that retires a provider, code group or package that a package the file keeps still
routes to is refused (exit 5). Two applies at once run one after the other (--lock-wait); the
second plans against what the first left and lists what it changed (concurrent_changes).

Balances: a user's first apply credits the declared balance as an opening_balance ledger row;
re-applying the same declared balance changes nothing (orders may have spent since); a different
declared balance posts the difference as an adjustment row."#;

#[derive(Debug, Args)]
#[command(after_help = APPLY_HELP)]
pub struct ApplyArgs {
    /// Setup file (JSON); - reads stdin
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: String,
    /// Validate and show the plan (every create, change, revival and retirement), write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Retire the objects of the file's tenants that the file no longer names (providers, code
    /// groups, packages, webhooks; users are never retired). Without it they are only listed
    #[arg(long)]
    pub prune: bool,
    /// How long to wait for another apply to finish before giving up
    #[arg(long, default_value = "2m", value_name = "DURATION")]
    pub lock_wait: humantime::Duration,
}

#[derive(Debug, Args)]
#[command(after_help = "The output is a setup file (JSON, whatever --output says) for every tenant, or the one \
--tenant names: `orderctl export > setup.json` starts version control from a running system, and applying \
it to the same database plans no change. Secrets are never written: a credential that is a reference \
({\"env\": ...}, {\"file\": ...}) stays one; a secret stored as a value becomes {\"stored\": true}, which \
apply reads as \"keep what is stored\". Code stock is written as counts (\"stock\"), never codes. A \
user's balance is the declared one (apply posts differences to the ledger). Retired objects are left out.")]
pub struct ExportArgs {}

#[derive(Debug, Subcommand)]
pub enum RoutingCommand {
    /// Find every routing problem in the database (exit 8 when there is one)
    Check,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users with balances (needs --tenant)
    List,
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// List providers (credentials masked) with the check schedule in force for each
    List(ProviderListArgs),
    /// Call a provider's balance and catalogue and print them
    Check(ProviderCheckArgs),
    /// Stop placements with a provider for every daemon and command (within 2 s); its orders
    /// wait with the reason, nothing is refunded or flagged. Checks of placed orders continue
    Pause(ProviderHoldArgs),
    /// End a pause or drain, clear the causes the provider gave (no balance, maintenance) and
    /// close its breaker: placements go out again
    Resume(ProviderNameArgs),
    /// No new placements with a provider (orders go to the routing's fallback, or wait);
    /// checks of orders it holds continue
    Drain(ProviderHoldArgs),
}

#[derive(Debug, Args)]
pub struct ProviderHoldArgs {
    /// Provider name (use --tenant when several tenants have one of this name)
    pub name: String,
    /// Why, for the next operator: shown by `inspect`, `list --stuck`, `provider list`
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ProviderNameArgs {
    /// Provider name (use --tenant when several tenants have one of this name)
    pub name: String,
}

pub const SCHEDULE_HELP: &str = "The schedule shown is the one in force for each provider's orders: the provider's own \
`schedule` from the setup file, over the global one given here (flags or ORDERCTL_* environment variables, else the \
built-in defaults). Give the same flags or environment as the daemon to see the daemon's schedule.";

#[derive(Debug, Args)]
#[command(after_help = SCHEDULE_HELP)]
pub struct ProviderListArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct ProviderCheckArgs {
    /// Provider name
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// List packages with a routing summary (needs --tenant)
    List,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Buyer (user name in the tenant)
    #[arg(long)]
    pub user: String,
    /// Package name
    #[arg(long)]
    pub package: String,
    /// Player id / account the goods go to
    #[arg(long, value_name = "ID")]
    pub player: String,
    /// Extra information for the provider
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub extra: String,
    /// Quantity
    #[arg(long, default_value = "1", value_name = "N")]
    pub quantity: String,
    /// Only create and charge; leave dispatch to the daemon, sweep or an operator
    #[arg(long)]
    pub no_dispatch: bool,
    /// Your key for this create (unique per tenant): repeating a create with the same key
    /// returns the order made the first time and charges nothing, so a script can retry safely
    #[arg(long, value_name = "KEY")]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "An order flagged may_be_held (a re-placement was refused while the first placement may still \
be held by its provider) is never dispatched elsewhere: `dispatch` exits 8; ask the provider, then approve or reject it.")]
pub struct DispatchArgs {
    /// Order uuid or order number
    pub order: String,
    /// Send to this provider instead of the one routing names (operator's manual dispatch)
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Print the request that would be sent (secrets masked) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub const FORCE_HELP: &str = "While a provider holds an order (a placement was sent and not refused), approving or \
rejecting it is refused (exit 5): the provider may still deliver, so the buyer could get it twice or be refunded for \
what they then receive. With --force the decision is made anyway and the order keeps being watched; a late delivery \
is stored (late PIN) and flagged for `orderctl settle`.

Repeating a decision is safe: the same command with the same arguments on an order it already decided exits 0 \
(\"already done\", nothing changes), with or without --force. Another decision on a decided order (another PIN, \
another reason, a reject of an approved order) exits 5 and says what stands.";

#[derive(Debug, Args)]
#[command(after_help = FORCE_HELP)]
pub struct ApproveArgs {
    /// Order uuid or order number
    pub order: String,
    /// The PIN or confirmation delivered to the buyer
    #[arg(long)]
    pub pin: String,
    /// Approve even though a provider holds the order (it keeps being watched)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(after_help = FORCE_HELP)]
pub struct RejectArgs {
    /// Order uuid or order number
    pub order: String,
    /// Why: stored on the order and shown in its history
    #[arg(long)]
    pub reason: String,
    /// Reject (and refund) even though a provider holds the order (it keeps being watched)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["recharge", "write_off"])))]
#[command(after_help = "A settlement is made once: the same settlement again exits 0 (already done), the other one exits 5.")]
pub struct SettleArgs {
    /// Order uuid or order number
    pub order: String,
    /// The buyer keeps the late delivery and is charged again (only after a refund)
    #[arg(long)]
    pub recharge: bool,
    /// The business absorbs the provider's cost (recorded in the ledger with amount 0)
    #[arg(long)]
    pub write_off: bool,
}

#[derive(Debug, Args)]
#[command(after_help = SCHEDULE_HELP)]
pub struct InspectArgs {
    /// Order uuid or order number
    pub order: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Filter by status (pending, approved, rejected)
    #[arg(long)]
    pub status: Option<String>,
    /// Filter by external status (not_sent, dispatching, sent, processing, done, failed)
    #[arg(long)]
    pub external_status: Option<String>,
    /// Filter by provider name
    #[arg(long)]
    pub provider: Option<String>,
    /// Filter by package name
    #[arg(long)]
    pub package: Option<String>,
    /// Filter by user name
    #[arg(long)]
    pub user: Option<String>,
    /// Only orders created within this long ago (e.g. 1h, 2days)
    #[arg(long, value_name = "DURATION")]
    pub since: Option<humantime::Duration>,
    /// Only orders created more than this long ago
    #[arg(long, value_name = "DURATION")]
    pub until: Option<humantime::Duration>,
    /// Only orders that are not moving, each with its diagnosis
    #[arg(long)]
    pub stuck: bool,
    /// An auto order still not sent after this long counts as stuck
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub stuck_after: humantime::Duration,
    /// At most this many orders, newest first (by order number)
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// Order uuid or order number
    pub order: String,
    /// Keep checking by the backoff policy until the order is final or --timeout passes
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this long (exit 9)
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub timeout: humantime::Duration,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args, Clone)]
pub struct WorkArgs {
    /// Orders checked by the batch safety sweep (the oldest open ones)
    #[arg(long, env = "ORDERCTL_BATCH_SIZE", default_value_t = 100, value_name = "N")]
    pub batch_size: i64,
    /// Most results a lane writes back in one transaction (and most orders routed at once)
    #[arg(long, env = "ORDERCTL_ROUND_SIZE", default_value_t = 500, value_name = "N")]
    pub round_size: i64,
    /// How long a claim keeps other workers off an order (must exceed --request-timeout)
    #[arg(long, env = "ORDERCTL_LEASE", default_value = "60s", value_name = "DURATION")]
    pub lease: humantime::Duration,
    /// An auto order still not sent after this long is reported as stuck
    #[arg(long, env = "ORDERCTL_STUCK_AFTER", default_value = "5m", value_name = "DURATION")]
    pub stuck_after: humantime::Duration,
    /// Provider calls in flight at once from this process, per provider (each provider's
    /// max_in_flight also holds across every process)
    #[arg(long, env = "ORDERCTL_CONCURRENCY", default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
}

/// How webhooks are delivered (`sweep`, `daemon`, `webhook retry`, `webhook test`).
#[derive(Debug, Args, Clone)]
pub struct WebhookArgs {
    /// Webhook request timeout (connect + send + answer); a 2xx within it is delivered
    #[arg(long, env = "ORDERCTL_WEBHOOK_TIMEOUT", default_value = "10s", value_name = "DURATION")]
    pub webhook_timeout: humantime::Duration,
    /// Delay before the first retry of a delivery that failed; doubles with every retry
    #[arg(long, env = "ORDERCTL_WEBHOOK_RETRY_FIRST", default_value = "10s", value_name = "DURATION")]
    pub webhook_retry_first: humantime::Duration,
    /// Upper bound for the delay between two attempts of a delivery
    #[arg(long, env = "ORDERCTL_WEBHOOK_RETRY_MAX", default_value = "1h", value_name = "DURATION")]
    pub webhook_retry_max: humantime::Duration,
    /// A delivery still not delivered this long after its event (or its replay) is
    /// dead-lettered (`webhook list --failed`); an endpoint's own "retry_horizon" wins
    #[arg(
        long,
        alias = "webhook-give-up-after",
        env = "ORDERCTL_WEBHOOK_RETRY_HORIZON",
        default_value = "3d",
        value_name = "DURATION"
    )]
    pub webhook_retry_horizon: humantime::Duration,
    /// Webhook requests in flight at once from this process (at most 2 per endpoint, across
    /// every process)
    #[arg(long, env = "ORDERCTL_WEBHOOK_CONCURRENCY", default_value_t = 32, value_name = "N")]
    pub webhook_concurrency: usize,
}

#[derive(Debug, Args)]
#[command(after_help = "Every lane runs even when one fails (the routing lane, each provider's lane): the report names \
the failed lanes (`lanes_failed`), and the exit status is the first failed lane's.")]
pub struct SweepArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub work: WorkArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Signals: SIGTERM/SIGINT stop claiming at once and wait up to --shutdown-grace for calls in \
flight; placements claimed but not yet sent are handed back (due again at once for any daemon). SIGHUP (systemctl \
reload) resolves every credential reference ({\"env\": ...}/{\"file\": ...}: provider credentials, webhook \
secrets) again and logs that it did, never a value; between reloads the daemon keeps the values it resolved first.")]
pub struct DaemonArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub work: WorkArgs,
    /// When the batch safety sweep runs (cron with seconds, UTC): sec min hour day month weekday
    #[arg(long, env = "ORDERCTL_SWEEP_SCHEDULE", default_value = "0 */5 * * * *", value_name = "CRON")]
    pub sweep_schedule: String,
    /// How often to look for due work when nothing woke the daemon
    #[arg(long, env = "ORDERCTL_IDLE_POLL", default_value = "100ms", value_name = "DURATION")]
    pub idle_poll: humantime::Duration,
    /// On SIGTERM/SIGINT, stop claiming at once and wait at most this long for calls in flight
    /// (what comes back is written; the rest is reconciled after its lease). Placements not yet
    /// sent are handed back at once
    #[arg(long, env = "ORDERCTL_SHUTDOWN_GRACE", default_value = "25s", value_name = "DURATION")]
    pub shutdown_grace: humantime::Duration,
    /// Serve GET /metrics (Prometheus text format) and GET /healthz on this address, e.g.
    /// 127.0.0.1:9187 (off when not given)
    #[arg(long, env = "ORDERCTL_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// A URL straight to Postgres for what needs a session of its own (the LISTEN wake-ups),
    /// when --database-url goes through a pooler in transaction mode; sslmode etc. as there
    #[arg(long, env = "ORDERCTL_DIRECT_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub direct_database_url: Option<String>,
    /// What sits between orderctl and Postgres: auto (detect at start), none, session,
    /// transaction. In transaction mode, without --direct-database-url, new orders are found
    /// by polling (--idle-poll) instead of LISTEN
    #[arg(long, env = "ORDERCTL_POOLER", value_enum, default_value_t = Pooler::Auto, value_name = "MODE")]
    pub pooler: Pooler,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooler {
    Auto,
    None,
    Session,
    Transaction,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// List webhook deliveries, newest first (never a secret)
    List(WebhookListArgs),
    /// List webhook endpoints with their state (active, paused, disabled), never a secret
    Endpoints,
    /// Send failed (or one) deliveries again now, with a fresh retry window
    Retry(WebhookRetryArgs),
    /// Send an event again (even a delivered one), or an endpoint's dead-lettered events since a time
    Replay(WebhookReplayArgs),
    /// Stop sending to an endpoint (its events queue up) until `webhook resume`
    Pause(WebhookEndpointArgs),
    /// Send to a paused or disabled endpoint again
    Resume(WebhookEndpointArgs),
    /// Give an endpoint a new secret, read from standard input; the old one keeps signing too
    /// for --overlap
    RotateSecret(WebhookRotateArgs),
    /// Send a signed `ping` to each of a tenant's webhooks now and report each answer
    Test(WebhookTestArgs),
}

#[derive(Debug, Args)]
pub struct WebhookListArgs {
    /// Only deliveries whose retries are used up
    #[arg(long)]
    pub failed: bool,
    /// At most this many deliveries
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "failed"])))]
pub struct WebhookRetryArgs {
    /// A delivery id, or an event id (every delivery of that event)
    pub id: Option<String>,
    /// Every failed delivery
    #[arg(long)]
    pub failed: bool,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["id", "endpoint"])))]
pub struct WebhookReplayArgs {
    /// A delivery id, or an event id (every delivery of that event), sent again whatever its state
    pub id: Option<String>,
    /// An endpoint (its id or url): its dead-lettered deliveries, with --since
    #[arg(long, requires = "since", conflicts_with = "id")]
    pub endpoint: Option<String>,
    /// Events created at or after this time (RFC 3339, e.g. 2026-12-05T10:00:00Z) or this long ago (e.g. 6h)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

#[derive(Debug, Args)]
pub struct WebhookEndpointArgs {
    /// The endpoint: its id (`webhook endpoints`) or its url
    pub endpoint: String,
}

#[derive(Debug, Args)]
pub struct WebhookRotateArgs {
    /// The endpoint: its id (`webhook endpoints`) or its url
    pub endpoint: String,
    /// How long the previous secret keeps signing next to the new one (a second signature)
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub overlap: humantime::Duration,
    /// Make a new `whsec_` secret and write it to this file (created, mode 0600) instead of
    /// reading one from standard input
    #[arg(long, value_name = "FILE", conflicts_with_all = ["secret_env", "secret_file"])]
    pub generate_to: Option<std::path::PathBuf>,
    /// With --generate-to: store a reference to the file (`{"file": FILE}`) instead of its value,
    /// so the secret stays out of the database (the daemon's host must see the same file)
    #[arg(long, requires = "generate_to")]
    pub as_reference: bool,
    /// Store a reference to this environment variable (`{"env": VAR}`); it must be set here
    #[arg(long, value_name = "VAR", conflicts_with = "secret_file")]
    pub secret_env: Option<String>,
    /// Store a reference to this file (`{"file": PATH}`, e.g. a systemd credential); it must be
    /// readable here
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<String>,
}

#[derive(Debug, Args)]
pub struct WebhookTestArgs {
    /// Tenant whose webhooks are called
    pub tenant: String,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Window for finished orders and provider counts
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub since: humantime::Duration,
    /// Refresh in place every 2 s (on a terminal)
    #[arg(long)]
    pub watch: bool,
    /// An auto order still not sent after this long counts as stuck
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub stuck_after: humantime::Duration,
    /// Money instead: orders, revenue, provider cost, margin and refunds of the orders created
    /// in the --since window, per tenant currency, each cost converted with the exchange rate its
    /// order recorded; costs no rate converted are shown apart (dealer data: for the operator)
    #[arg(long)]
    pub money: bool,
    /// With --money: break the rows down by package, provider or day (UTC)
    #[arg(long, value_enum, requires = "money", value_name = "WHAT")]
    pub by: Option<MoneyBy>,
}

/// What `stats --money --by` breaks rows down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MoneyBy {
    Package,
    Provider,
    Day,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also call every enabled provider's balance
    #[arg(long)]
    pub providers: bool,
    /// An auto order still not sent after this long is a finding
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub stuck_after: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct PartitionsArgs {
    /// Months after the current one (UTC) that must have partitions; missing ones are created
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=36))]
    pub ahead: u32,
}

pub const ARCHIVE_HELP: &str = r#"File format: JSON lines, one object per row (the order's month in "month"), written from one
snapshot and fsynced (file and directory) before anything is removed:
  {"table": "orders", "month": "2026-01", "row": {...every column...}}
  {"table": "order_events", "month": "2026-01", "row": {...}}
  {"table": "placements", "month": "2026-01", "row": {...}}
  {"table": "webhook_deliveries", "month": "2026-01", "row": {...}}
Orders come first (by number), then events, placements and webhook deliveries (by id). Read it back with
  jq -c 'select(.table == "orders") | .row' FILE
or into Postgres with
  CREATE TABLE archive (doc jsonb);
  \copy archive FROM 'FILE' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
  SELECT (jsonb_populate_record(NULL::orders, doc->'row')).* FROM archive WHERE doc->>'table' = 'orders';

Refused (exit 5, nothing written or removed) while any order of those months is open: pending, still
watched after an operator's forced decision, a provider's late delivery not yet settled, or a webhook
notice still to be delivered. Ledger rows stay, so every balance is unchanged. The orders' webhook
deliveries and keys are removed 500 orders per transaction (finished orders are never claimed, so the
daemon does not wait for them); the months' partitions of events, finished orders and placements are
then dropped (event inserts, placement claims and finishing write-backs wait at most 60 ms; order claims
never). A run stopped part way (exit 5) says how many orders it removed; its file is complete; run it
again with a new file to remove the rest (that file holds the rows still there)."#;

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Archive every month before this one (YYYY-MM, UTC); the current month and later are refused
    #[arg(long, value_name = "YYYY-MM")]
    pub before: String,
    /// The file to write (JSON lines); it must not exist yet
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders to create
    #[arg(long, default_value_t = 36)]
    pub orders: usize,
    /// Keep the throwaway database cluster and print where it is
    #[arg(long)]
    pub keep: bool,
}

pub const SIMULATE_HELP: &str = r#"Protocols, strictly as the providers' own documents show them (where they are
silent, the least helpful reading):

Znet under /servis/ (plain text; kod and sifre in the query):
  bakiye_kontrol.php  OK|<balance>
  pin_listesi.php     {"success": true, "result": [{"id", "adi", "fiyat", "oyun_adi",
                      "oyun_bilgi_id", "kupur"}]}, all values strings; games (oyun) 7001, 7002,
                      7003, each with kupur 60, 325, 660
  pin_ekle.php        OK|<cost>|<remaining>
                      referans not a number of at most 18 digits: 3|Referans Bilgisi Geçersiz
                      (leading zeros are dropped, as a numeric column would)
                      unknown oyun or kupur: 3|Kupur Bilgisi Bulunamadı
                      a referans placed before: 4|Daha Önce Gönderilmiş (<its order id>)
  pin_kontrol.php     waiting OK|1| - |İşlem bekleniyor, approved OK|2|<PIN>|Onaylandı,
                      cancelled OK|3| - |İşlem iptal edildi, unknown 3|Sipariş bulunamadı
  Bad credentials: HTTP 200 with an empty body (unknown dealer, API off, IP not allowed).

x-stor under /client/api/ (JSON; header api-token):
  profile             {"balance": "<string>", "email": "..."}
  products            [{"id": "501", "name", "price": "<string>", "category_name",
                      "available", "params": ["playerId"], "product_type": "package",
                      "qty_values": {"min": 1, "max": 100}}]; products 501, 502, 503
  newOrder/<id>/params?qty=..&playerId=..&order_uuid=..
                      {"status": "OK", "data": {"order_id": "<string>", "status",
                      "price": "<string>", "pin"?, "replay_api": [...], "note"}}
  check?orders=[...]  a URL-encoded JSON array of order ids; with &uuid=1, of order_uuids;
                      {"status": "OK", "data": [{"order_id", "status", "price"?, "pin"?,
                      "note"}]}; price and pin only when approved; unknown ones are missing
  No reply ever names the order_uuid. Status words: waiting wait or pending, approved
  accept or success, cancelled reject or cancelled (one of each pair per order, chosen by
  its reference).
  Errors: HTTP 200 {"status": "ERROR", "message": "<text>", "error": "<snake_case>"},
  never a numeric code (the documented example has none): "api-token required",
  "Invalid api-token", "Product not found", "Invalid quantity", "Missing parameter:
  <name>", "Invalid orders parameter", "Duplicate order_uuid" (an order_uuid placed
  before), "Insufficient balance".

Anything else is an HTML web page (HTTP 200), like a dealer site's front page.

Beyond the documents (testing aids; every share is drawn per call):
  --error-share       HTTP 500 "before taking the order": nothing is recorded
  --empty-share       HTTP 200 with an empty body: nothing is recorded
  --garbage-share     garbage bytes: the order IS recorded (the reply got mangled)
  --hang-share        the answer comes after --hang: the order IS recorded first
  --reject-share      a definite rejection, nothing recorded: Znet 3|Yetersiz Bakiye,
                      x-stor ERROR "Insufficient balance"
  --reject-replacements
                      a placement whose reference an earlier call saw but recorded nothing
                      for (a 500, an empty reply, a refusal) is refused: Znet 8|Bağlantı
                      hatası veya yetersiz bakiye, x-stor ERROR "Duplicate order_uuid"
  --waiting-note      the text of every waiting reply (Znet message, x-stor note)
A reference placed through one protocol is unknown to the other. Outcomes and PINs are
derived from (--seed, reference).

Control API (never faulted):
  GET  /_sim/stats    orders placed, calls, double placements (placements of a reference
                      already recorded), faults injected, peak calls in flight, every order
  GET  /_sim/config   the settings that can change at run time
  POST /_sim/config   a JSON object with any of: complete_after, jitter, hang, latency
                      (durations as "300ms" or milliseconds); cancel_share, error_share,
                      garbage_share, empty_share, hang_share, reject_share (0..1);
                      reject_replacements (true/false); waiting_note (a string, or null
                      for the defaults)
  POST /_sim/reset    forget every order and counter"#;

#[derive(Debug, Args, Clone)]
#[command(after_help = SIMULATE_HELP)]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free one; the chosen address is printed on stdout)
    #[arg(long, default_value = "127.0.0.1:18080", value_name = "ADDR")]
    pub listen: String,
    /// Time until a placed order turns final
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub complete_after: humantime::Duration,
    /// Random extra time until final, 0..JITTER
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub jitter: humantime::Duration,
    /// Share of orders that end cancelled (0..1)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub cancel_share: f64,
    /// Share of calls answered with HTTP 500 (nothing recorded)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub error_share: f64,
    /// Share of calls answered with garbage bytes (order recorded)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub garbage_share: f64,
    /// Share of calls answered with an empty body (nothing recorded)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub empty_share: f64,
    /// Share of calls answered only after --hang (order recorded)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub hang_share: f64,
    /// How long a hanging call hangs
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub hang: humantime::Duration,
    /// Share of placements refused with a definite rejection; nothing recorded
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub reject_share: f64,
    /// Refuse a placement whose reference an earlier call saw without recording it
    #[arg(long)]
    pub reject_replacements: bool,
    /// Share of placements recorded only after --slow-record (the reply comes after that too;
    /// until then the reference counts as seen without an order)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub slow_record_share: f64,
    /// How long a slowly recorded placement takes to be recorded
    #[arg(long, default_value = "8s", value_name = "DURATION")]
    pub slow_record: humantime::Duration,
    /// Text of every waiting status reply [default: Znet "İşlem bekleniyor", x-stor "Processing..."]
    #[arg(long, value_name = "TEXT")]
    pub waiting_note: Option<String>,
    /// Latency added to every call
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub latency: humantime::Duration,
    /// Accepted Znet dealer login as KOD:SIFRE (repeatable; default accepts any non-empty pair)
    #[arg(long = "znet-login", value_name = "KOD:SIFRE", hide_default_value = true)]
    pub znet_logins: Vec<String>,
    /// Accepted x-stor api-token (repeatable; default accepts any non-empty token)
    #[arg(long = "xstor-token", value_name = "TOKEN")]
    pub xstor_tokens: Vec<String>,
    /// Seed for the random choices (outcomes are also derived from each reference)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Requests answered at once, as a provider's workers (the others wait for one)
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into
    #[arg(long, default_value = "man")]
    pub dir: PathBuf,
}
