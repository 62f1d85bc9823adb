use crate::error::{Error, Result};
use crate::settings::Settings;
#[allow(unused_imports)] use crate::cli::*;
pub fn run(_s: &Settings, _a: &CreateArgs) -> Result<()> { Err(Error::internal("not built yet")) }
