//! A provider's request rate limit as the setup file writes it: `"20/s"`, `"600/min"`,
//! `"5000/h"` — most calls per window, counted over every orderctl process together.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub calls: u32,
    pub per: Duration,
}

impl RateLimit {
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let wrong = || format!("rate_limit '{s}' is not a rate; write it like \"20/s\", \"600/min\" or \"5000/h\"");
        let (calls, unit) = s.trim().split_once('/').ok_or_else(wrong)?;
        let calls: u32 = calls.trim().parse().map_err(|_| wrong())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "m" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(wrong()),
        };
        if calls == 0 || calls > 100_000 {
            return Err(format!("rate_limit '{s}' allows {calls} calls; write from 1 to 100000 per window"));
        }
        Ok(RateLimit { calls, per })
    }

    /// Calls per second, for pacing and display.
    pub fn per_second(self) -> f64 {
        self.calls as f64 / self.per.as_secs_f64()
    }

    /// How long `calls` take at this rate, every process together, when nothing else is asked
    /// of the provider (placements go first, so this is how long the last due one waits).
    pub fn time_for(self, calls: u64) -> Duration {
        self.per.mul_f64(calls as f64 / self.calls as f64)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.calls)
    }
}

/// A currency code as the setup file writes it: three capital letters ("TRY", "USD").
pub fn parse_currency(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.len() == 3 && t.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(t.to_string())
    } else {
        Err(format!("currency '{s}' is not a currency code; write three capital letters like \"TRY\" or \"USD\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_takes_its_calls_over_the_limit() {
        let r = |s: &str| RateLimit::parse(s).unwrap();
        assert_eq!(r("20/s").time_for(1200), Duration::from_secs(60));
        assert_eq!(r("1/min").time_for(9), Duration::from_secs(540));
        assert_eq!(r("5000/h").time_for(0), Duration::ZERO);
    }

    #[test]
    fn rates_parse_and_print_back() {
        for s in ["20/s", "600/min", "5000/h"] {
            assert_eq!(RateLimit::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(RateLimit::parse("600/min").unwrap().per_second(), 10.0);
        for bad in ["", "20", "x/s", "0/s", "20/day", "-1/s", "1000000/s"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_currency("TRY").unwrap(), "TRY");
        assert!(parse_currency("try").is_err() && parse_currency("EURO").is_err());
    }
}
