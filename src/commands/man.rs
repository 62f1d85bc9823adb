use crate::error::{Error, Result};
#[allow(unused_imports)] use crate::cli::*;
pub fn run(_a: &ManArgs) -> Result<()> { Err(Error::internal("not built yet")) }
