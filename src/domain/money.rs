//! Money is a decimal with two places, parsed from strings, never a float.

use rust_decimal::Decimal;
use std::str::FromStr;

/// Largest amount accepted anywhere (fits numeric(14,2)).
pub fn max_amount() -> Decimal {
    Decimal::new(999_999_999_999, 2)
}

/// Parse a decimal amount ("100.00", "0", "1.5"). `what` names the field in the error.
pub fn parse_amount(s: &str, what: &str) -> Result<Decimal, String> {
    let t = s.trim();
    // Plain digits with an optional sign and point: Decimal::from_str also takes "1e3".
    let digits = t.strip_prefix('-').or_else(|| t.strip_prefix('+')).unwrap_or(t);
    let plain = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    let d = Some(t)
        .filter(|_| plain)
        .ok_or(())
        .and_then(|t| Decimal::from_str(t).map_err(|_| ()))
        .map_err(|_| format!("{what} '{s}' is not a decimal amount; write it like \"100.00\""))?;
    if d.scale() > 2 && d.normalize().scale() > 2 {
        return Err(format!("{what} '{s}' has more than two decimal places"));
    }
    if d.abs() > max_amount() {
        return Err(format!("{what} '{s}' is too large (at most {})", max_amount()));
    }
    Ok(d.round_dp(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(parse_amount("100.00", "balance").unwrap().to_string(), "100.00");
        assert_eq!(parse_amount("1.1", "price").unwrap(), Decimal::new(110, 2));
        assert!(parse_amount("1.234", "price").unwrap_err().contains("two decimal"));
        assert!(parse_amount("abc", "price").unwrap_err().contains("not a decimal"));
        assert!(parse_amount("1e3", "price").is_err());
        assert!(parse_amount("99999999999999", "price").unwrap_err().contains("too large"));
    }
}
