use crate::error::{Error, Result};
use crate::settings::Settings;
#[allow(unused_imports)] use crate::cli::*;
pub fn approve(_s: &Settings, _a: &ApproveArgs) -> Result<()> { Err(Error::internal("not built yet")) }
pub fn reject(_s: &Settings, _a: &RejectArgs) -> Result<()> { Err(Error::internal("not built yet")) }
