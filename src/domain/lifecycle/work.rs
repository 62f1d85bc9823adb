//! What a claimed order needs next. A lane claims due orders and asks this module what each one
//! is for; the answer never depends on anything but the order's own row.

use super::{Attention, Facts, Notice, Schedule, Set, State, Transition, MAX_PLACEMENTS};
use crate::domain::status::ExternalStatus;

#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Decide where it goes (routing lane).
    Route,
    /// Place it with the lane's provider; `reuse`: send the order's reference again (the
    /// provider was shown not to have it).
    Place { reuse: bool },
    /// Ask the provider for its status; `reconcile`: a placement whose outcome is unknown (or
    /// whose claim ran out without a recorded outcome) is looked up by its reference.
    Check { reconcile: bool },
    /// Nothing to ask anyone: write this transition now.
    Decide(Box<Transition>),
}

pub fn work_for(f: &Facts) -> Work {
    match State::of(f) {
        State::New => Work::Route,
        State::ToPlace { .. } | State::WaitingForProvider if f.placement_attempts >= MAX_PLACEMENTS => Work::Decide(Box::new(
            Transition {
                external: Some(ExternalStatus::Failed),
                attention: Set::To(Attention::PlacementLimit),
                schedule: Schedule::Off,
                message: Some(format!("{MAX_PLACEMENTS} placements without a confirmed outcome")),
                notice: Some(Notice::NeedsAction),
                ..Transition::default()
            }
            .event("dispatch", format!("the placement budget ({MAX_PLACEMENTS}) is used up: the order waits for an operator")),
        )),
        State::ToPlace { reuse } => Work::Place { reuse },
        // Whether its provider is back is decided where placements are claimed (the gate).
        State::WaitingForProvider => Work::Place { reuse: false },
        State::Placing | State::Reconciling => Work::Check { reconcile: true },
        // A forwarded order has nothing to ask anyone: its upstream order finishes it.
        State::Watched if !f.forwarded => Work::Check { reconcile: false },
        State::WithProvider => Work::Check { reconcile: false },
        other => Work::Decide(Box::new(
            Transition { schedule: Schedule::Off, ..Transition::default() }
                .event("unscheduled", format!("due, but {other:?} has no work to do: taken off the queue")),
        )),
    }
}
