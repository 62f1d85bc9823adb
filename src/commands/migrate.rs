use crate::cli::MigrateArgs;
use crate::db::{self, migrate};
use crate::error::Result;
use crate::output;
use crate::settings::Settings;

pub fn run(s: &Settings, a: &MigrateArgs) -> Result<()> {
    let migrations = match &a.dir {
        Some(dir) => migrate::from_dir(dir)?,
        None => migrate::built_in(),
    };
    let mut client = db::connect(&s.database_url)?;
    let report = migrate::migrate(&mut client, &migrations, a.dry_run)?;
    if s.json() {
        output::print_json(&report);
        return Ok(());
    }
    let mut t = output::table(&["version", "file", "state", "checksum"]);
    for r in &report {
        t.add_row(vec![r.version.to_string(), r.name.clone(), r.state.clone(), r.checksum[..12].to_string()]);
    }
    println!("{t}");
    let changed = report.iter().filter(|r| r.state != "already applied").count();
    if a.dry_run {
        log::warn!("dry run: {changed} migration(s) would be applied; nothing was changed");
    } else {
        log::info!("{changed} migration(s) applied");
    }
    Ok(())
}
