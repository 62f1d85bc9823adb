//! `orderctl man --dir DIR` (hidden): write one man page per subcommand, nested ones included
//! (`orderctl-provider-check.1`), plus `orderctl.1`, generated from the clap definitions. Each
//! page gets an ENVIRONMENT section (every variable its flags read) and an EXIT STATUS section
//! (from `exit_codes::TABLE`). The pages in `man/` are committed; a test fails when they are
//! stale.

use crate::cli::{Cli, ManArgs};
use crate::error::{Error, Result};
use crate::exit_codes;
use clap::CommandFactory;
use std::collections::BTreeMap;
use std::path::Path;

/// Variables read outside clap, documented on every page.
const OTHER_ENV: &[(&str, &str)] = &[
    ("RUST_LOG", "log filter in env_logger syntax (e.g. orderctl=debug); -v and -q override it"),
    ("NO_COLOR", "when set to a non-empty value, tables and findings are printed without colours"),
];

pub fn run(a: &ManArgs) -> Result<()> {
    let dir = &a.dir;
    std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    let pages = pages()?;
    remove_stale(dir, &pages)?;
    for (name, text) in &pages {
        std::fs::write(dir.join(name), text)
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", dir.join(name).display())))?;
    }
    eprintln!("wrote {} man pages to {}", pages.len(), dir.display());
    Ok(())
}

/// Every page, by file name.
pub fn pages() -> Result<BTreeMap<String, String>> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut out = BTreeMap::new();
    collect(&root, true, &mut out)?;
    Ok(out)
}

fn collect(cmd: &clap::Command, is_root: bool, out: &mut BTreeMap<String, String>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, false, out)?;
    }
    let page_cmd = if is_root {
        // The root's after-help lists exit codes and variables; the sections below say it in full.
        cmd.clone().after_help(None::<&str>)
    } else {
        cmd.clone()
    };
    let man = clap_mangen::Man::new(page_cmd).source(format!("orderctl {}", env!("CARGO_PKG_VERSION"))).manual("orderctl manual");
    let mut buf = Vec::new();
    man.render(&mut buf).map_err(|e| Error::internal(format!("cannot render a man page: {e}")))?;
    let text = String::from_utf8(buf).map_err(|e| Error::internal(format!("a man page is not UTF-8: {e}")))?;
    let extra = format!("{}{}{}", environment_section(cmd), exit_status_section(), see_also_section(cmd, is_root));
    // Before the VERSION section, where EXIT STATUS and ENVIRONMENT conventionally sit.
    let text = match text.find("\n.SH VERSION") {
        Some(at) => format!("{}\n{}{}", &text[..at], extra.trim_end_matches('\n'), &text[at..]),
        None => format!("{text}{extra}"),
    };
    out.insert(man.get_filename(), text);
    Ok(())
}

/// Text for a roff line: escapes backslashes, hyphens and apostrophes.
fn roff(text: &str) -> String {
    text.replace('\\', r"\\").replace('-', r"\-").replace('\'', r"\*(Aq")
}

fn environment_section(cmd: &clap::Command) -> String {
    let mut s = String::from(".SH ENVIRONMENT\n");
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(var) = arg.get_env() else { continue };
        let flag = arg.get_long().map(|l| format!("--{l}")).unwrap_or_else(|| arg.get_id().to_string());
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let default: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let mut line = format!("default for {flag}: {help}");
        if !default.is_empty() {
            line.push_str(&format!(" (default {})", default.join(",")));
        }
        if arg.is_hide_env_values_set() {
            line.push_str("; its value is never printed");
        }
        s.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(&var.to_string_lossy()), roff(&line)));
    }
    for (var, what) in OTHER_ENV {
        s.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(var), roff(what)));
    }
    s
}

fn exit_status_section() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for (code, name, meaning) in exit_codes::TABLE {
        s.push_str(&format!(".TP\n\\fB{code}\\fR ({})\n{}\n", roff(name), roff(meaning)));
    }
    s
}

fn see_also_section(cmd: &clap::Command, is_root: bool) -> String {
    let names: Vec<String> = if is_root {
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(page_name).collect()
    } else {
        vec!["orderctl".to_string()]
    };
    let refs: Vec<String> = names.iter().map(|n| format!("\\fB{}\\fR(1)", roff(n))).collect();
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(", "))
}

fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_string()
}

/// Pages of commands that no longer exist would linger and mislead.
fn remove_stale(dir: &Path, pages: &BTreeMap<String, String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("orderctl") && name.ends_with(".1") && !pages.contains_key(&name) {
            std::fs::remove_file(dir.join(&name))?;
        }
    }
    Ok(())
}
