//! Our own stock of PINs: available → used. Two orders never get the same code (row locks with
//! `SKIP LOCKED` inside the caller's transaction); a group without enough codes hands out none.

use crate::db::GenericClient;
use crate::domain::lifecycle::states::CodeState;
use crate::error::Result;
use uuid::Uuid;

/// Take `quantity` codes from the group for the order, inside the caller's transaction (which
/// also writes the order's approval). None when the group has fewer available: nothing taken.
pub fn take(tx: &mut impl GenericClient, order_id: Uuid, code_group_id: i64, quantity: i32) -> Result<Option<Vec<String>>> {
    let mut sp = tx.transaction()?;
    let codes: Vec<String> = sp
        .query(
            &format!(
                "UPDATE code_items SET state = {code_used}, order_id = $1, used_at = now()
              WHERE id IN (SELECT id FROM code_items WHERE code_group_id = $2 AND state = {code_available}
                            ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
              RETURNING code",
                code_used = CodeState::Used.sql(),
                code_available = CodeState::Available.sql()
            ),
            &[&order_id, &code_group_id, &(quantity as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if codes.len() < quantity.max(0) as usize {
        sp.rollback()?;
        return Ok(None);
    }
    sp.commit()?;
    Ok(Some(codes))
}

/// The PIN of an order delivered from stock: its codes, comma-separated when several.
pub fn pin(codes: &[String]) -> String {
    codes.join(", ")
}
