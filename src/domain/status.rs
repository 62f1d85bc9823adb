//! Order statuses. `status` is what the buyer sees; `external_status` is where the order is with
//! its provider. A finished order (approved or rejected) never moves again.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExternalStatus {
    NotSent,
    Dispatching,
    Sent,
    Processing,
    Done,
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 3] = [OrderStatus::Pending, OrderStatus::Approved, OrderStatus::Rejected];
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Approved => "approved",
            OrderStatus::Rejected => "rejected",
        }
    }
    pub fn is_final(self) -> bool {
        self != OrderStatus::Pending
    }
}

impl ExternalStatus {
    pub const ALL: [ExternalStatus; 6] = [
        ExternalStatus::NotSent,
        ExternalStatus::Dispatching,
        ExternalStatus::Sent,
        ExternalStatus::Processing,
        ExternalStatus::Done,
        ExternalStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalStatus::NotSent => "not_sent",
            ExternalStatus::Dispatching => "dispatching",
            ExternalStatus::Sent => "sent",
            ExternalStatus::Processing => "processing",
            ExternalStatus::Done => "done",
            ExternalStatus::Failed => "failed",
        }
    }
    /// With the provider and not finished: the monitor checks these.
    pub fn is_with_provider(self) -> bool {
        matches!(self, ExternalStatus::Sent | ExternalStatus::Processing)
    }
}

macro_rules! parse_enum {
    ($t:ty, $what:literal) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t>::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = <$t>::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} '{}': use one of {}", $what, s, names.join(", "))
                })
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
parse_enum!(OrderStatus, "status");
parse_enum!(ExternalStatus, "external status");

/// Why an operator action on an order is refused.
pub fn operator_can_finish(status: OrderStatus) -> Result<(), String> {
    match status {
        OrderStatus::Pending => Ok(()),
        OrderStatus::Approved => Err("the order is already approved; a finished order never changes. \
             If the buyer must be paid back, do it as a separate adjustment"
            .into()),
        OrderStatus::Rejected => Err("the order is already rejected and refunded; a finished order never changes. \
             Create a new order if the buyer still wants the goods"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), s);
        }
        for s in ExternalStatus::ALL {
            assert_eq!(s.as_str().parse::<ExternalStatus>().unwrap(), s);
        }
        let err = "sending".parse::<ExternalStatus>().unwrap_err();
        assert!(err.contains("not_sent, dispatching"), "{err}");
    }

    #[test]
    fn only_pending_orders_can_be_finished_by_an_operator() {
        assert!(operator_can_finish(OrderStatus::Pending).is_ok());
        assert!(operator_can_finish(OrderStatus::Approved).is_err());
        assert!(operator_can_finish(OrderStatus::Rejected).is_err());
    }
}
