//! The sweep schedule: a cron expression with seconds, validated here with a message that says
//! what is wrong (tokio-cron-scheduler's own parse error carries none).

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};

pub struct SweepSchedule {
    pub expression: String,
    cron: croner::Cron,
}

impl SweepSchedule {
    pub fn parse(expression: &str) -> Result<SweepSchedule> {
        let fields = expression.split_whitespace().count();
        let hint = "write six fields, seconds first: sec min hour day-of-month month day-of-week, e.g. \"0 */5 * * * *\" (every 5 minutes)";
        if fields != 6 {
            return Err(Error::invalid(format!(
                "--sweep-schedule '{expression}' has {fields} field(s), but six are needed (seconds first)"
            ))
            .with_hint(hint));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expression)
            .map_err(|e| {
                Error::invalid(format!("--sweep-schedule '{expression}' is not a valid cron expression: {e}")).with_hint(hint)
            })?;
        if cron.find_next_occurrence(&Utc::now(), false).is_err() {
            return Err(Error::invalid(format!("--sweep-schedule '{expression}' never fires")).with_hint(hint));
        }
        Ok(SweepSchedule { expression: expression.to_string(), cron })
    }

    /// When it fires next after `t` (for logs).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_and_bad_expressions() {
        assert!(SweepSchedule::parse("0 */5 * * * *").is_ok());
        assert!(SweepSchedule::parse("*/2 * * * * *").is_ok());
        let e = SweepSchedule::parse("*/5 * * * *").err().unwrap();
        assert!(e.message.contains("has 5 field(s)"), "{}", e.message);
        let e = SweepSchedule::parse("0 */5 * * * mo").err().unwrap();
        assert!(e.message.contains("not a valid cron expression"), "{}", e.message);
        let e = SweepSchedule::parse("0 61 * * * *").err().unwrap();
        assert!(e.message.contains("not a valid cron expression"), "{}", e.message);
    }

    proptest! {
        #[test]
        fn every_minute_step_fires_within_its_period(step in 1u32..60) {
            let s = SweepSchedule::parse(&format!("0 */{step} * * * *")).unwrap();
            let now = Utc::now();
            let next = s.next_after(now).unwrap();
            prop_assert!(next > now);
            prop_assert!(next - now <= chrono::Duration::minutes(60));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = SweepSchedule::parse(&text);
        }
    }
}
