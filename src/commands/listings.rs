use crate::error::{Error, Result};
use crate::settings::Settings;
#[allow(unused_imports)] use crate::cli::*;
pub fn tenants(_s: &Settings) -> Result<()> { Err(Error::internal("not built yet")) }
pub fn users(_s: &Settings) -> Result<()> { Err(Error::internal("not built yet")) }
pub fn providers(_s: &Settings) -> Result<()> { Err(Error::internal("not built yet")) }
pub fn packages(_s: &Settings) -> Result<()> { Err(Error::internal("not built yet")) }
