//! orderctl: dispatch orders for digital goods to providers and watch them until done,
//! directly against Postgres.
//!
//! Layout: `cli` (clap definitions) → `settings` (validated once) → `commands` (one module per
//! subcommand). The work itself: `domain` (pure rules: the order lifecycle, routing, the backoff
//! policy), `db` (every SQL statement), `provider` (one module per protocol), `dispatch` (the
//! stages: route, claim, place, record), `lane` (each provider's work on its own: claim → call
//! → write back), `daemon` (when work runs, and the watchdog), `simulator` (a built-in fake of
//! both provider protocols, as their documents describe them), `webhook` (signed requests to
//! the shops' endpoints; `lane::webhooks` delivers them), `metrics` (what `daemon
//! --metrics-listen` serves).

pub mod cli;
mod commands;
pub mod daemon;
pub mod db;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod exit_codes;
pub mod kit;
pub mod lane;
pub mod metrics;
mod output;
pub mod provider;
pub mod secret;
pub mod settings;
pub mod simulator;
pub mod webhook;

use clap::Parser;
use std::ffi::OsString;

/// Parse arguments, run the command, report any error on stderr, return the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit_codes::USAGE } else { exit_codes::SUCCESS };
            let _ = e.print();
            return code;
        }
    };
    init_logging(&cli.global);
    quiet_on_closed_stdout();
    let json = cli.global.output == cli::OutputFormat::Json;
    match commands::run(cli) {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => {
            report_error(&e, json);
            e.exit_code()
        }
    }
}

fn report_error(e: &error::Error, json: bool) {
    if json {
        eprintln!("{}", e.to_json());
        return;
    }
    eprintln!("error: {}", e.message);
    if let Some(h) = &e.hint {
        eprintln!("hint: {h}");
    }
}

fn init_logging(g: &cli::GlobalArgs) {
    let default = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let mut builder = env_logger::Builder::new();
    // Our own crate follows -v/-q; RUST_LOG, when set, refines on top.
    builder.filter_level(log::LevelFilter::Warn);
    builder.parse_filters(&format!("orderctl={default}"));
    if let Ok(spec) = std::env::var("RUST_LOG") {
        if !g.quiet && g.verbose == 0 {
            builder.parse_filters(&spec);
        }
    }
    builder.format_timestamp_millis().target(env_logger::Target::Stderr);
    let logger = builder.build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(NoWireLogs(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// Libraries that log what goes over the wire at debug and trace level: request URLs with
/// query strings (Znet's `sifre`), headers (x-stor's `api-token`), SQL parameters (credentials
/// written by `apply`). Their records below warn are dropped whatever RUST_LOG asks for, so no
/// log level prints a secret.
const WIRE_LOGGERS: &[&str] = &["ureq", "ureq_proto", "tokio_postgres", "postgres", "postgres_protocol", "tiny_http", "rustls"];

struct NoWireLogs(env_logger::Logger);

impl NoWireLogs {
    fn allowed(metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn || {
            let crate_name = metadata.target().split("::").next().unwrap_or("");
            !WIRE_LOGGERS.contains(&crate_name)
        }
    }
}

impl log::Log for NoWireLogs {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        Self::allowed(metadata) && self.0.enabled(metadata)
    }
    fn log(&self, record: &log::Record) {
        if Self::allowed(record.metadata()) {
            self.0.log(record);
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

/// `orderctl list -o json | head` closes stdout early; `println!` then panics. The reader had
/// what it wanted, so end quietly like other Unix tools instead of printing a panic. (Not by
/// restoring SIGPIPE's default action: that would also kill a daemon whose provider socket
/// closes.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(exit_codes::SUCCESS);
        }
        default(info);
    }));
}
