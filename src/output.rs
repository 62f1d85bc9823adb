//! Data goes to stdout, as a table or JSON. Logs and progress go to stderr (env_logger,
//! indicatif), never here.

use crate::domain::status::Tone;
use comfy_table::{presets, Cell, Color, ContentArrangement, Table};
use serde::Serialize;

pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}

/// A table with orderctl's look. comfy-table only styles when stdout is a terminal.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(header.iter().map(|h| Cell::new(*h)));
    t
}

/// Colour by status, only when stdout is a terminal and NO_COLOR is not set.
pub fn status_cell(status: &str) -> Cell {
    let cell = Cell::new(status);
    if !colour_enabled() {
        return cell;
    }
    match crate::domain::status::tone(status) {
        Tone::Good => cell.fg(Color::Green),
        Tone::Bad => cell.fg(Color::Red),
        Tone::Waiting => cell.fg(Color::Yellow),
        Tone::Neutral => cell,
    }
}

pub fn colour_enabled() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").map(|v| v.is_empty()).unwrap_or(true) && std::io::stdout().is_terminal()
}
