//! Our own code stock as a provider: a package with `provider_type = codes` is delivered by
//! handing out PINs from its code group (available → used), atomically with approving the
//! order. Two orders never get the same code (row locks with `SKIP LOCKED`, one transaction);
//! an empty group hands out nothing and says so, so the order can say why it is waiting.

use crate::db::orders;
use crate::error::Result;
use postgres::Client;
use uuid::Uuid;

/// What taking codes for an order came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeHandout {
    /// The order is approved; its PIN is these codes (comma-separated when several).
    Delivered(Vec<String>),
    /// Not enough codes: nothing was taken, the order is unchanged.
    StockEmpty,
    /// Another process handed out this order's codes first.
    AlreadyTaken,
}

impl CodeHandout {
    pub fn pin(codes: &[String]) -> String {
        codes.join(", ")
    }
}

/// Take `quantity` codes from the group for the order and approve it, or nothing at all.
pub fn hand_out(client: &mut Client, order_id: Uuid, code_group_id: i64, quantity: i32) -> Result<CodeHandout> {
    Ok(match orders::take_codes(client, order_id, code_group_id, quantity)? {
        Some(codes) if codes.is_empty() => CodeHandout::AlreadyTaken,
        Some(codes) => CodeHandout::Delivered(codes),
        None => CodeHandout::StockEmpty,
    })
}
