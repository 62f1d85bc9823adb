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

/// Most decimal places of an exchange rate (`exchange_rates.rate` is numeric(20,10)).
const RATE_PLACES: u32 = 10;

/// An exchange rate as an operator declares it ("34.10": one unit of the first currency is worth
/// that many of the second). Exact: a plain positive decimal with at most ten places, never a
/// float and never rounded.
pub fn parse_rate(s: &str) -> Result<Decimal, String> {
    let t = s.trim();
    let plain = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    let d = Some(t)
        .filter(|_| plain)
        .and_then(|t| Decimal::from_str(t).ok())
        .ok_or_else(|| format!("rate '{s}' is not a decimal number; write it like \"34.10\""))?;
    if d <= Decimal::ZERO {
        return Err(format!("rate '{s}' is not above zero; a rate says what one unit is worth"));
    }
    if d.normalize().scale() > RATE_PLACES {
        return Err(format!("rate '{s}' has more than {RATE_PLACES} decimal places"));
    }
    if d >= Decimal::from(10_000_000_000i64) {
        return Err(format!("rate '{s}' is too large (below 10000000000)"));
    }
    Ok(d.normalize())
}

/// A pair of currencies an exchange rate converts: `from` into `to`, written "USD/TRY".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CurrencyPair {
    pub from: String,
    pub to: String,
}

impl CurrencyPair {
    pub fn parse(s: &str) -> Result<CurrencyPair, String> {
        let (from, to) = s.split_once('/').ok_or_else(|| {
            format!("'{s}' is not a currency pair; write the currency converted from, a slash and the one converted to, like \"USD/TRY\"")
        })?;
        let (from, to) = (crate::domain::pace::parse_currency(from)?, crate::domain::pace::parse_currency(to)?);
        if from == to {
            return Err(format!("'{s}' converts a currency into itself; name two different currencies"));
        }
        Ok(CurrencyPair { from, to })
    }
}

impl std::fmt::Display for CurrencyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_pairs_parse_exactly_or_say_why_not() {
        assert_eq!(parse_rate("34.10").unwrap().to_string(), "34.1");
        assert_eq!(parse_rate("0.0293255132").unwrap().to_string(), "0.0293255132");
        assert!(parse_rate("0.00000000001").unwrap_err().contains("decimal places"));
        assert!(parse_rate("0").unwrap_err().contains("above zero"));
        assert!(parse_rate("-1").unwrap_err().contains("not a decimal"));
        assert!(parse_rate("3e1").unwrap_err().contains("not a decimal"));
        assert!(parse_rate("10000000000").unwrap_err().contains("too large"));
        let p = CurrencyPair::parse("USD/TRY").unwrap();
        assert_eq!((p.from.as_str(), p.to.as_str(), p.to_string()), ("USD", "TRY", "USD/TRY".to_string()));
        assert!(CurrencyPair::parse("USDTRY").unwrap_err().contains("not a currency pair"));
        assert!(CurrencyPair::parse("usd/TRY").unwrap_err().contains("three capital letters"));
        assert!(CurrencyPair::parse("TRY/TRY").unwrap_err().contains("into itself"));
    }

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
