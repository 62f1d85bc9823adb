use crate::error::{Error, Result};
use crate::settings::Settings;
#[allow(unused_imports)] use crate::cli::*;
pub fn run(_s: &Settings) -> Result<()> { Err(Error::internal("not built yet")) }
