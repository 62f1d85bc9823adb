//! x-stor client API adapter (being built).
use super::*;
pub struct Xstor { config: ProviderConfig }
impl Xstor { pub fn new(config: ProviderConfig) -> Result<Xstor> { Ok(Xstor { config }) } }
impl Provider for Xstor {
    fn config(&self) -> &ProviderConfig { &self.config }
    fn place(&self, _req: &PlacementRequest) -> PlacementOutcome { PlacementOutcome::Ambiguous { reason: "not built".into() } }
    fn check(&self, _reference: &str) -> CheckOutcome { CheckOutcome::NoNews { reason: "not built".into() } }
    fn balance(&self) -> std::result::Result<Balance, ProviderError> { Err(ProviderError::Unreachable("not built".into())) }
    fn catalogue(&self) -> std::result::Result<Vec<CatalogueItem>, ProviderError> { Err(ProviderError::Unreachable("not built".into())) }
    fn describe_placement(&self, _req: &PlacementRequest) -> String { String::new() }
}
