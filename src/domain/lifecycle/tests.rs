//! The lifecycle's proof: examples of every rule, and a model-based property test that drives
//! one order through random interleavings of provider behaviour, crashes, lease expiries, late
//! answers, several workers and operator commands, and checks what must always hold.

use super::*;
use crate::domain::answers::{CheckOutcome, PlacementOutcome};
use crate::domain::backoff::BackoffPolicy;

pub(crate) fn facts() -> Facts {
    Facts {
        number: 1042,
        status: OrderStatus::Pending,
        external: ExternalStatus::NotSent,
        attention: None,
        reconciling: false,
        operator_forced: false,
        lane: 0,
        provider_id: None,
        reference: None,
        scheduled: true,
        checks: 0,
        no_news: 0,
        placement_attempts: 0,
        price: Decimal::new(110, 2),
        late_pin: None,
        forwarded: false,
        pin: None,
        operator_reason: None,
        settlement: None,
        expects_pin: false,
    }
}

fn placing(attempts: u32) -> Facts {
    Facts {
        external: ExternalStatus::Dispatching,
        lane: 7,
        provider_id: Some(7),
        reference: Some("170000000000000001".into()),
        placement_attempts: attempts,
        ..facts()
    }
}

fn with_provider() -> Facts {
    Facts { external: ExternalStatus::Sent, ..placing(1) }
}

fn policy() -> BackoffPolicy {
    BackoffPolicy { jitter: 0.0, ..BackoffPolicy::default() }
}

fn pctx<'a>(p: &'a BackoffPolicy, fallback: Option<Fallback>) -> PlacementContext<'a> {
    PlacementContext { provider: "znet-main", policy: p, fallback, resent: false, provider_cannot_take: false }
}

fn cctx(p: &BackoffPolicy, since_placement: Duration) -> CheckContext<'_> {
    CheckContext {
        provider: "znet-main",
        policy: p,
        since_dispatch: Duration::from_secs(120),
        since_placement,
        absent_after: Duration::from_secs(60),
        unit: 0.5,
    }
}

fn xstor() -> Option<Fallback> {
    Some(Fallback { provider_id: 8, name: "xstor".into() })
}

fn rejected(m: &str) -> PlacementOutcome {
    PlacementOutcome::Rejected { message: m.into() }
}

#[test]
fn states_are_derived_from_the_row() {
    assert_eq!(State::of(&facts()), State::New);
    assert_eq!(State::of(&Facts { scheduled: false, ..facts() }), State::WaitingForOperator);
    assert_eq!(State::of(&Facts { lane: 7, ..facts() }), State::ToPlace { reuse: false });
    assert_eq!(State::of(&Facts { lane: 7, reference: Some("r".into()), ..facts() }), State::ToPlace { reuse: true });
    assert_eq!(State::of(&placing(1)), State::Placing);
    assert_eq!(State::of(&Facts { reconciling: true, ..placing(1) }), State::Reconciling);
    assert_eq!(State::of(&with_provider()), State::WithProvider);
    let forced = Facts { status: OrderStatus::Rejected, operator_forced: true, ..with_provider() };
    assert_eq!(State::of(&forced), State::Watched);
    let late = Facts { external: ExternalStatus::Done, attention: Some(Attention::DeliveredAfterRefund), ..forced };
    assert_eq!(State::of(&late), State::NeedsOperator(Attention::DeliveredAfterRefund));
    assert_eq!(State::of(&Facts { external: ExternalStatus::Failed, ..facts() }), State::Inconsistent);
}

#[test]
fn a_rejected_re_placement_is_a_rejection_by_that_provider() {
    // Scenario 1: placement 2 (same reference, after reconciliation found nothing) is refused.
    let p = policy();
    let f = placing(2);
    let t = placed(&f, &rejected("3: Yetersiz Bakiye"), &pctx(&p, None));
    assert_eq!(t.attention, Set::To(Attention::PlacementRejected));
    assert_eq!(t.schedule, Schedule::Off);
    assert_eq!(t.placement, Some(PlacementWord::Rejected));
    assert_eq!(t.money, Money::None, "no silent refund");
    assert_eq!(t.notice, Some(Notice::NeedsAction));
    // With a fallback, the same answer moves the order there.
    let t = placed(&f, &rejected("3: Yetersiz Bakiye"), &pctx(&p, xstor()));
    assert_eq!((t.lane, t.provider_id, t.reference.clone(), t.schedule), (Some(8), Some(8), Set::Clear, Schedule::Now));
}

#[test]
fn a_refused_re_placement_of_a_reference_that_may_have_arrived_flags_may_be_held() {
    // Issue 20: the first attempt's outcome was unknown; the provider refuses the same reference
    // now ("3|Bu referans daha önce kullanılmış"). That proves nothing: no fallback, no refund.
    let p = policy();
    let ctx = PlacementContext { resent: true, ..pctx(&p, xstor()) };
    let t = placed(&placing(2), &rejected("3: Bu referans daha önce kullanılmış"), &ctx);
    assert_eq!(t.attention, Set::To(Attention::MayBeHeld));
    assert_eq!((t.lane, t.provider_id, t.reference.clone()), (None, None, Set::Keep), "never moved to the fallback");
    assert_eq!(t.external, Some(ExternalStatus::Dispatching));
    assert_eq!((t.money, t.schedule), (Money::None, Schedule::Off));
    assert_eq!(t.placement, Some(PlacementWord::Rejected), "this attempt's own outcome");
    assert!(t.message.unwrap().contains("may be held by znet-main under reference 170000000000000001: check before rejecting"));
    // Dispatching it is refused with exit 8 (needs an operator's check).
    let flagged = Facts { attention: Some(Attention::MayBeHeld), scheduled: false, ..placing(2) };
    assert!(operator(&flagged, &OperatorAction::Dispatch).unwrap_err().needs_action);
}

#[test]
fn an_approval_without_the_pin_a_product_delivers_is_flagged() {
    let p = policy();
    let f = Facts { expects_pin: true, ..with_provider() };
    let approved = CheckOutcome::Approved { pin: None, message: "ok".into() };
    let t = checked(&f, &approved, None, &cctx(&p, Duration::from_secs(5)));
    assert_eq!((t.status, t.attention.clone()), (None, Set::To(Attention::PinMissing)));
    assert!(!t.completed);
    let with_pin = CheckOutcome::Approved { pin: Some("P".into()), message: "ok".into() };
    assert_eq!(checked(&f, &with_pin, None, &cctx(&p, Duration::from_secs(5))).status, Some(OrderStatus::Approved));
}

#[test]
fn a_repeated_decision_is_already_done_and_another_one_is_a_conflict() {
    let approved = Facts { status: OrderStatus::Approved, external: ExternalStatus::Done, pin: Some("A".into()), ..facts() };
    let same = operator(&approved, &OperatorAction::Approve { pin: "A", force: true }).unwrap_err();
    assert!(same.already_done);
    let other = operator(&approved, &OperatorAction::Approve { pin: "B", force: false }).unwrap_err();
    assert!(!other.already_done && other.message.contains("stands approved"));
    let rejected = Facts {
        status: OrderStatus::Rejected,
        external: ExternalStatus::Sent,
        operator_forced: true,
        operator_reason: Some("asked".into()),
        ..with_provider()
    };
    assert!(operator(&rejected, &OperatorAction::Reject { reason: "asked", force: true }).unwrap_err().already_done);
    let conflict = operator(&rejected, &OperatorAction::Reject { reason: "other", force: true }).unwrap_err();
    assert!(!conflict.already_done && conflict.message.contains("asked"));
}

#[test]
fn the_rejection_and_the_move_to_the_fallback_are_one_transition() {
    // Scenario 2: one write records the refusal and makes the fallback's lane due.
    let p = policy();
    let t = placed(&placing(1), &rejected("3: Kupur Bilgisi Bulunamadı"), &pctx(&p, xstor()));
    assert_eq!(t.placement, Some(PlacementWord::Rejected));
    assert_eq!(t.external, Some(ExternalStatus::NotSent));
    assert_eq!(t.placement_attempts, Some(0));
    assert_eq!(t.attention, Set::Keep);
    assert!(t.event.unwrap().message.contains("moving to fallback xstor"));
}

#[test]
fn a_configuration_stop_on_a_re_placement_is_recorded() {
    // Scenario 3: the provider got disabled between the placements.
    let f = Facts { external: ExternalStatus::NotSent, reference: Some("r1".into()), ..placing(1) };
    let t = config_stop(&f, Attention::ProviderDisabled, "provider znet-main is disabled", None);
    assert_eq!((t.attention, t.schedule), (Set::To(Attention::ProviderDisabled), Schedule::Off));
    assert_eq!(t.notice, Some(Notice::NeedsAction));
}

#[test]
fn an_order_the_provider_holds_is_not_decided_by_an_operator_unless_forced() {
    // Scenario 5.
    let f = with_provider();
    let refused = operator(&f, &OperatorAction::Reject { reason: "buyer asked", force: false }).unwrap_err();
    assert!(refused.message.contains("its provider holds it"), "{}", refused.message);
    assert!(refused.hint.contains("--force"));
    let t = operator(&f, &OperatorAction::Reject { reason: "buyer asked", force: true }).unwrap();
    assert_eq!(
        (t.status, t.money, t.operator_forced, t.schedule),
        (Some(OrderStatus::Rejected), Money::Refund, Some(true), Schedule::Keep)
    );
    assert_eq!(t.external, None, "the provider's side stays as it is: still watched");
    // The provider delivers later: recorded and flagged.
    let watched = Facts { status: OrderStatus::Rejected, operator_forced: true, ..f };
    let late = checked(
        &watched,
        &CheckOutcome::Approved { pin: Some("PIN-9".into()), message: String::new() },
        None,
        &cctx(&policy(), Duration::ZERO),
    );
    assert_eq!(late.late_pin.as_deref(), Some("PIN-9"));
    assert_eq!(late.attention, Set::To(Attention::DeliveredAfterRefund));
    assert_eq!(late.external, Some(ExternalStatus::Done));
    // ... and settled by an operator, once.
    let flagged = Facts {
        external: ExternalStatus::Done,
        attention: Some(Attention::DeliveredAfterRefund),
        late_pin: Some("PIN-9".into()),
        ..watched
    };
    let t = operator(&flagged, &OperatorAction::Settle(Settlement::Recharge)).unwrap();
    assert_eq!((t.status, t.money, t.pin.as_deref()), (Some(OrderStatus::Approved), Money::Recharge, Some("PIN-9")));
    let t = operator(&flagged, &OperatorAction::Settle(Settlement::WriteOff)).unwrap();
    assert_eq!((t.status, t.money), (None, Money::WriteOff));
}

#[test]
fn a_placement_rejected_order_stays_dispatchable_after_a_configuration_stop() {
    // Scenario 6: the re-dispatch stops on configuration; dispatch is still possible afterwards.
    let f =
        Facts { external: ExternalStatus::Failed, attention: Some(Attention::PlacementRejected), scheduled: false, ..placing(1) };
    assert!(operator(&f, &OperatorAction::Dispatch).is_ok());
    let stopped = Facts { attention: Some(Attention::ProviderDisabled), external: ExternalStatus::NotSent, ..f };
    assert!(operator(&stopped, &OperatorAction::Dispatch).is_ok());
    for &a in Attention::ALL {
        let f = Facts { attention: Some(a), ..facts() };
        let allowed = operator(&f, &OperatorAction::Dispatch).is_ok();
        assert_eq!(
            allowed,
            a.is_configuration()
                || matches!(
                    a,
                    Attention::PlacementRejected
                        | Attention::PlacementLimit
                        | Attention::WriteRefused
                        | Attention::ForwardRefused
                ),
            "{a}"
        );
    }
}

#[test]
fn reconciliation_reads_not_found_as_absent_only_after_a_late_arrival_is_implausible() {
    let p = policy();
    let f = Facts { reconciling: true, ..placing(1) };
    let early =
        checked(&f, &CheckOutcome::NotFound { message: "İşlem Bulunamadı".into() }, None, &cctx(&p, Duration::from_secs(10)));
    assert_eq!(early.no_news, Some(1));
    assert!(matches!(early.schedule, Schedule::In(_)));
    let late =
        checked(&f, &CheckOutcome::NotFound { message: "İşlem Bulunamadı".into() }, None, &cctx(&p, Duration::from_secs(61)));
    assert_eq!(
        (late.placement, late.external, late.schedule),
        (Some(PlacementWord::Absent), Some(ExternalStatus::NotSent), Schedule::Now)
    );
    // The budget: the third unconfirmed placement flags the order instead.
    let t = checked(
        &Facts { placement_attempts: MAX_PLACEMENTS, ..f },
        &CheckOutcome::NotFound { message: String::new() },
        None,
        &cctx(&p, Duration::from_secs(61)),
    );
    assert_eq!((t.attention, t.schedule), (Set::To(Attention::PlacementLimit), Schedule::Off));
}

#[test]
fn a_re_placement_restarts_the_schedule_and_extra_checks_never_pass_the_budget() {
    let p = BackoffPolicy { max_checks: 3, ..policy() };
    let f = Facts { checks: 2, no_news: 5, ..placing(2) };
    let t = placed(
        &f,
        &PlacementOutcome::Accepted { external_order_id: None, message: String::new(), early: None, cost: None, balance: None },
        &pctx(&p, None),
    );
    assert_eq!((t.checks, t.no_news, t.schedule), (Some(0), Some(0), Schedule::In(p.first_check)));
    // A safety sweep's check of an order whose checks are used up does not count past the budget.
    let f = Facts { checks: 3, ..with_provider() };
    let t = checked(&f, &CheckOutcome::Waiting { message: String::new() }, None, &cctx(&p, Duration::ZERO));
    assert_eq!(t.checks, Some(3));
}

#[test]
fn the_deadline_runs_from_the_first_dispatch_and_flags_without_refund() {
    let p = BackoffPolicy { give_up_after: Duration::from_secs(3600), ..policy() };
    let ctx = CheckContext { since_dispatch: Duration::from_secs(3601), ..cctx(&p, Duration::ZERO) };
    let t = checked(&with_provider(), &CheckOutcome::Waiting { message: String::new() }, None, &ctx);
    assert_eq!((t.attention, t.external, t.money), (Set::To(Attention::GivenUp), Some(ExternalStatus::Failed), Money::None));
    assert_eq!(t.message.as_deref(), Some("no final answer after 1h"));
}

#[test]
fn a_sent_before_answer_reconciles_now_and_a_stale_claim_is_never_sent() {
    let p = policy();
    let t = placed(
        &placing(1),
        &PlacementOutcome::SentBefore { message: "4: Daha Önce Gönderilmiş (166189)".into() },
        &pctx(&p, xstor()),
    );
    assert_eq!((t.reconciling, t.schedule, t.placement), (Some(true), Schedule::Now, Some(PlacementWord::SentBefore)));
    let t = not_sent(&placing(1), "the claim is older than its lease", "znet-main");
    assert_eq!(
        (t.external, t.placement, t.schedule),
        (Some(ExternalStatus::NotSent), Some(PlacementWord::NotSent), Schedule::Now)
    );
}

/// A call that never left (no turn under the provider's rate limit in time) changes nothing
/// and spends nothing: a placement is due again with its attempt given back, a check is due
/// again shortly without counting as a check or as "no news", and neither writes history.
#[test]
fn a_call_that_never_left_is_neither_an_unknown_outcome_nor_a_check() {
    let p = policy();
    let why = "no call within the provider's rate limit (5/s) in 2 s; nothing was sent";
    let t = placed(&placing(2), &PlacementOutcome::NotSent { reason: why.into() }, &pctx(&p, xstor()));
    assert_eq!(
        (t.external, t.placement, t.placement_attempts, t.reconciling, t.schedule),
        (Some(ExternalStatus::NotSent), Some(PlacementWord::NotSent), Some(1), Some(false), Schedule::Now)
    );
    for f in [with_provider(), placing(1)] {
        let t = checked(&f, &CheckOutcome::NotAsked { reason: why.into() }, None, &cctx(&p, Duration::from_secs(5)));
        assert_eq!((t.checks, t.no_news, t.status, t.external), (None, None, None, None), "{f:?}");
        assert_eq!(t.schedule, Schedule::In(Duration::from_secs(1)));
        assert!(t.event.is_none() && t.message.is_none() && matches!(t.attention, Set::Keep), "{t:?}");
    }
    // The bound: once the order's time is up, a check never asked counts like an unanswered one.
    let late = CheckContext { since_dispatch: p.give_up_after, ..cctx(&p, Duration::from_secs(5)) };
    let t = checked(&with_provider(), &CheckOutcome::NotAsked { reason: why.into() }, None, &late);
    let unanswered = checked(&with_provider(), &CheckOutcome::failed(why), None, &late);
    assert_eq!((&t.attention, t.schedule, t.no_news), (&unanswered.attention, unanswered.schedule, unanswered.no_news));
    assert!(!matches!(t.attention, Set::Keep), "given up and flagged: {t:?}");
}

#[test]
fn a_forwarded_order_finishes_with_its_upstream_order_and_only_a_forced_decision_overtakes_it() {
    let up = UpstreamOrder { tenant: "wholesale", number: 2041 };
    let f = facts();
    let t = forwarded(&f, uuid::Uuid::nil(), up);
    assert_eq!(
        (t.external, t.schedule, t.sent, t.forwarded_to),
        (Some(ExternalStatus::Sent), Schedule::Off, true, Some(uuid::Uuid::nil()))
    );
    let fwd = Facts { external: ExternalStatus::Sent, scheduled: false, forwarded: true, ..facts() };
    assert_eq!(State::of(&fwd), State::Forwarded);
    assert!(matches!(work_for(&fwd), Work::Decide(_)), "nothing to ask anyone");
    // Approved upstream: approved here with the same PIN; rejected: rejected and refunded.
    let t = upstream_finished(&fwd, up, UpstreamOutcome::Approved { pin: Some("PIN-7") }).unwrap();
    assert_eq!((t.status, t.pin.as_deref(), t.notice), (Some(OrderStatus::Approved), Some("PIN-7"), Some(Notice::Approved)));
    let t = upstream_finished(&fwd, up, UpstreamOutcome::Rejected { reason: "cancelled_by_provider" }).unwrap();
    assert_eq!((t.status, t.money), (Some(OrderStatus::Rejected), Money::Refund));
    // An operator here: refused while the upstream order is open, unless forced; never dispatched again.
    let refused = operator(&fwd, &OperatorAction::Approve { pin: "X", force: false }).unwrap_err();
    assert!(refused.message.contains("forwarded to another tenant"), "{}", refused.message);
    assert!(operator(&fwd, &OperatorAction::Dispatch).unwrap_err().message.contains("already forwarded"));
    let t = operator(&fwd, &OperatorAction::Reject { reason: "buyer asked", force: true }).unwrap();
    assert_eq!((t.money, t.operator_forced, t.external), (Money::Refund, Some(true), None));
    // ... and the upstream's later delivery is recorded and flagged, then settled like a provider's.
    let decided = Facts { status: OrderStatus::Rejected, operator_forced: true, ..fwd.clone() };
    assert_eq!(State::of(&decided), State::Watched);
    let t = upstream_finished(&decided, up, UpstreamOutcome::Approved { pin: Some("PIN-7") }).unwrap();
    assert_eq!((t.attention, t.late_pin.as_deref()), (Set::To(Attention::DeliveredAfterRefund), Some("PIN-7")));
    // A refusal upstream leaves the order for an operator here, unrefunded.
    let t = forward_refused(&f, "wholesale", "account alsham-account has 0.00");
    assert_eq!((t.attention, t.money, t.notice), (Set::To(Attention::ForwardRefused), Money::None, Some(Notice::NeedsAction)));
    assert!(upstream_finished(&f, up, UpstreamOutcome::Approved { pin: None }).is_none(), "not forwarded: nothing to finish");
}

#[test]
fn every_attention_round_trips_through_its_name() {
    for &a in Attention::ALL {
        assert_eq!(Attention::parse(a.as_str()), Some(a));
    }
}

/// The model: one order, two providers, random behaviour, workers that crash, operators.
mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const LEASE: u64 = 5_000;
    const ABSENT_AFTER: u64 = 10_000;
    const PRIMARY: i64 = 1;
    const FALLBACK: i64 = 2;

    /// How a provider treats one placement call.
    #[derive(Debug, Clone, Copy)]
    enum Placement {
        Accept,
        AcceptFinishedAtOnce,
        Reject,
        /// HTTP 500 before the provider took the order.
        ErrorBefore,
        /// HTTP 500 (or garbage) after the provider took it.
        ErrorAfter,
        /// The reply never comes in time; the provider takes the order later, maybe later than
        /// the reconcile window (a dealer site that commits minutes after the call). Until then
        /// it refuses a re-placement of the reference ("3|Bu referans daha önce kullanılmış").
        Hang(u64),
    }

    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// The due order is claimed by a worker that answers after `delay` ms (maybe after its
        /// lease: a slow or hanging call), or never (`crash`).
        Work {
            delay: u64,
            crash: bool,
            placement: Placement,
            noise: bool,
        },
        Wait(u64),
        Approve {
            force: bool,
        },
        Reject {
            force: bool,
        },
        Dispatch,
        Settle {
            recharge: bool,
        },
        /// `orderctl poll`: asks the provider now, whether or not the check is due (never an
        /// in-flight placement's), answering after `delay` ms.
        Poll {
            delay: u64,
            noise: bool,
        },
        /// An operator of the tenant that forwarded the order, acting on its own order.
        Downstream(DownAction),
    }

    #[derive(Debug, Clone, Copy)]
    enum DownAction {
        Approve { force: bool },
        Reject { force: bool },
        Dispatch,
        Settle { recharge: bool },
    }

    /// Steps for a forwarded order: everything that can happen to the upstream order, and the
    /// forwarding tenant's operator acting on the forwarded one.
    fn forwarded_step() -> impl Strategy<Value = Step> {
        let down = prop_oneof![
            any::<bool>().prop_map(|force| DownAction::Approve { force }),
            any::<bool>().prop_map(|force| DownAction::Reject { force }),
            Just(DownAction::Dispatch),
            any::<bool>().prop_map(|recharge| DownAction::Settle { recharge }),
        ];
        prop_oneof![12 => step(), 2 => down.prop_map(Step::Downstream)]
    }

    fn step() -> impl Strategy<Value = Step> {
        let placement = prop_oneof![
            4 => Just(Placement::Accept),
            1 => Just(Placement::AcceptFinishedAtOnce),
            2 => Just(Placement::Reject),
            2 => Just(Placement::ErrorBefore),
            2 => Just(Placement::ErrorAfter),
            1 => (0u64..3 * ABSENT_AFTER).prop_map(Placement::Hang),
        ];
        prop_oneof![
            12 => (0u64..8_000, prop::bool::weighted(0.1), placement, prop::bool::weighted(0.2))
                .prop_map(|(delay, crash, placement, noise)| Step::Work { delay, crash, placement, noise }),
            4 => (0u64..20_000).prop_map(Step::Wait),
            1 => any::<bool>().prop_map(|force| Step::Approve { force }),
            1 => any::<bool>().prop_map(|force| Step::Reject { force }),
            1 => Just(Step::Dispatch),
            1 => any::<bool>().prop_map(|recharge| Step::Settle { recharge }),
            2 => (0u64..8_000, prop::bool::weighted(0.2)).prop_map(|(delay, noise)| Step::Poll { delay, noise }),
        ]
    }

    /// What a provider knows about one reference.
    #[derive(Debug, Clone)]
    struct Held {
        /// When the placement took effect there.
        arrived: u64,
        /// It took effect later than the reconcile window after its placement: a re-placement
        /// of its reference was allowed to happen meanwhile.
        beyond_window: bool,
        approved: bool,
        final_at: u64,
    }

    struct World {
        now: u64,
        row: Facts,
        lease: i64,
        due_at: Option<u64>,
        dispatched_at: Option<u64>,
        placed_at: u64,
        pin: Option<String>,
        /// (provider, reference) → what the provider holds.
        held: HashMap<(i64, String), Held>,
        placements: Vec<(i64, String, &'static str)>,
        charges: i32,
        refunds: i32,
        recharges: i32,
        write_offs: i32,
        calls: u32,
        next_ref: u64,
        /// Write-backs under way: (when, lease they claimed with, what they will write).
        pending: Vec<(u64, i64, Pending)>,
        violations: Vec<String>,
        seed: u64,
        /// An operator decided a given-up order: the diagnosis tells them to ask the provider
        /// first, and the decision (its PIN) is theirs.
        decided_given_up: bool,
        /// The model's order as the upstream of a forwarded order: the order of the tenant that
        /// forwarded it. `exists` is false until the forwarding happened.
        down: Option<Downstream>,
        exists: bool,
    }

    /// A forwarded order, in the tenant that forwarded it.
    struct Downstream {
        row: Facts,
        pin: Option<String>,
        refunds: i32,
        recharges: i32,
        write_offs: i32,
        /// Every finish of the upstream order, as it was told to this order.
        told: Vec<OrderStatus>,
    }

    impl Downstream {
        /// What `db::transitions` does with a transition of this order.
        fn apply(&mut self, t: &Transition) {
            let r = &mut self.row;
            if let Some(s) = t.status {
                r.status = s;
            }
            if let Some(e) = t.external {
                r.external = e;
            }
            match t.attention {
                Set::Keep => {}
                Set::To(a) => r.attention = Some(a),
                Set::Clear => r.attention = None,
            }
            match t.schedule {
                Schedule::Keep => {}
                Schedule::Off => r.scheduled = false,
                Schedule::Now | Schedule::In(_) => r.scheduled = true,
            }
            if let Some(l) = t.lane {
                r.lane = l;
            }
            if let Some(p) = &t.pin {
                self.pin = Some(p.clone());
            }
            if let Some(p) = &t.late_pin {
                r.late_pin = Some(p.clone());
            }
            if let Some(v) = t.operator_forced {
                r.operator_forced = v;
            }
            if t.forwarded_to.is_some() {
                r.forwarded = true;
            }
            match t.money {
                Money::None => {}
                Money::Refund => self.refunds = 1,
                Money::Recharge => self.recharges = 1,
                Money::WriteOff => self.write_offs = 1,
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Pending {
        Placed { facts: Facts, outcome: PlacementOutcome, provider: i64, resent: bool },
        Checked { facts: Facts, answer: CheckOutcome, since_placement: u64 },
    }

    impl World {
        fn new(seed: u64) -> World {
            World {
                now: 0,
                row: Facts { lane: PRIMARY, provider_id: Some(PRIMARY), ..facts() },
                lease: 0,
                due_at: Some(0),
                dispatched_at: None,
                placed_at: 0,
                pin: None,
                held: HashMap::new(),
                placements: vec![],
                charges: 1,
                refunds: 0,
                recharges: 0,
                write_offs: 0,
                calls: 0,
                next_ref: 0,
                pending: vec![],
                violations: vec![],
                seed,
                decided_given_up: false,
                down: None,
                exists: true,
            }
        }

        /// The model's order as the upstream of an order of another tenant, forwarded to it at
        /// once, or (`refused_first`) refused by the upstream at first and forwarded only when
        /// an operator dispatches it again.
        fn forwarded(seed: u64, refused_first: bool) -> World {
            let mut w = World::new(seed);
            let mut d = Downstream {
                row: Facts { number: 77, price: Decimal::new(150, 2), ..facts() },
                pin: None,
                refunds: 0,
                recharges: 0,
                write_offs: 0,
                told: vec![],
            };
            if refused_first {
                d.apply(&forward_refused(&d.row, "up", "account has 0.00"));
                w.exists = false;
                w.due_at = None;
                w.row.scheduled = false;
            } else {
                d.apply(&forwarded(&d.row, uuid::Uuid::nil(), UpstreamOrder { tenant: "up", number: 1042 }));
            }
            w.down = Some(d);
            w
        }

        /// The upstream order reached a final status: the forwarded order is told in the same
        /// transaction (what `db::transitions::finish_forwarded` does).
        fn tell_downstream(&mut self) {
            let Some(mut d) = self.down.take() else { return };
            if d.row.forwarded {
                let outcome = match self.row.status {
                    OrderStatus::Approved => UpstreamOutcome::Approved { pin: self.pin.as_deref() },
                    _ => UpstreamOutcome::Rejected { reason: "cancelled_by_provider" },
                };
                d.told.push(self.row.status);
                if let Some(t) = upstream_finished(&d.row, UpstreamOrder { tenant: "up", number: 1042 }, outcome) {
                    d.apply(&t);
                }
            }
            self.down = Some(d);
        }

        fn downstream(&mut self, action: DownAction) {
            let Some(d) = self.down.as_mut() else { return };
            let action = match action {
                DownAction::Approve { force } => OperatorAction::Approve { pin: "DOWN-BY-HAND", force },
                DownAction::Reject { force } => OperatorAction::Reject { reason: "asked", force },
                DownAction::Dispatch => OperatorAction::Dispatch,
                DownAction::Settle { recharge } => {
                    OperatorAction::Settle(if recharge { Settlement::Recharge } else { Settlement::WriteOff })
                }
            };
            let Ok(t) = operator(&d.row, &action) else { return };
            d.apply(&t);
            if action == OperatorAction::Dispatch {
                // Routed at once: forwarded, and the upstream order exists from now on.
                if d.row.forwarded {
                    self.violations.push("a forwarded order was dispatched again".into());
                }
                d.apply(&forwarded(&d.row, uuid::Uuid::nil(), UpstreamOrder { tenant: "up", number: 1042 }));
                if self.exists {
                    self.violations.push("forwarded twice: a second upstream order".into());
                }
                self.exists = true;
                self.due_at = Some(self.now);
                self.row.scheduled = true;
            }
        }

        fn rand(&mut self) -> u64 {
            self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.seed >> 33
        }

        fn policy() -> BackoffPolicy {
            BackoffPolicy {
                first_check: Duration::from_secs(1),
                backoff_base: Duration::from_secs(2),
                backoff_max: Duration::from_secs(8),
                max_checks: 5,
                give_up_after: Duration::from_secs(120),
                jitter: 0.0,
            }
        }

        /// What `db::transitions` does with a transition: the persistence semantics in small.
        fn apply(&mut self, t: &Transition, placement_key: Option<(i64, String)>) {
            let r = &mut self.row;
            if let Some(s) = t.status {
                r.status = s;
            }
            if let Some(e) = t.external {
                r.external = e;
            }
            match t.attention {
                Set::Keep => {}
                Set::To(a) => r.attention = Some(a),
                Set::Clear => r.attention = None,
            }
            if let Some(v) = t.reconciling {
                r.reconciling = v;
            }
            match t.schedule {
                Schedule::Keep => {}
                Schedule::Off => self.due_at = None,
                Schedule::Now => self.due_at = Some(self.now),
                Schedule::In(d) => self.due_at = Some(self.now + d.as_millis() as u64),
            }
            r.scheduled = self.due_at.is_some();
            if let Some(l) = t.lane {
                r.lane = l;
            }
            if let Some(p) = t.provider_id {
                r.provider_id = Some(p);
            }
            match &t.reference {
                Set::Keep => {}
                Set::To(x) => r.reference = Some(x.clone()),
                Set::Clear => r.reference = None,
            }
            if let Some(c) = t.checks {
                r.checks = c;
            }
            if let Some(c) = t.no_news {
                r.no_news = c;
            }
            if let Some(c) = t.placement_attempts {
                r.placement_attempts = c;
            }
            if let Some(p) = &t.pin {
                self.pin = Some(p.clone());
            }
            if let Some(p) = &t.late_pin {
                r.late_pin = Some(p.clone());
            }
            if let Some(v) = t.operator_forced {
                r.operator_forced = v;
            }
            // The latest attempt of the reference, only while its outcome is unrecorded.
            if let (Some(word), Some((p, reference))) = (t.placement, placement_key) {
                if let Some(row) = self.placements.iter_mut().rev().find(|(pp, rr, _)| *pp == p && *rr == reference) {
                    if row.2 == "in_flight" {
                        row.2 = word.as_str();
                    }
                }
            }
            match t.money {
                Money::None => {}
                // Unique ledger rows: a second refund is a no-op.
                Money::Refund => self.refunds = 1,
                Money::Recharge => self.recharges = 1,
                Money::WriteOff => self.write_offs = 1,
            }
            if t.money == Money::Refund && self.refunds > 1 {
                self.violations.push("refunded twice".into());
            }
            self.lease += 1;
            if t.final_status().is_some() {
                self.tell_downstream();
            }
        }

        fn placement_key(&self) -> Option<(i64, String)> {
            Some((self.row.provider_id?, self.row.reference.clone()?))
        }

        fn truth(&self, provider: i64, reference: &str, at: u64) -> CheckOutcome {
            match self.held.get(&(provider, reference.to_string())) {
                Some(h) if h.arrived <= at && h.final_at <= at && h.approved => {
                    CheckOutcome::Approved { pin: Some(format!("PIN-{reference}")), message: String::new() }
                }
                Some(h) if h.arrived <= at && h.final_at <= at => CheckOutcome::Cancelled { message: "iptal".into() },
                Some(h) if h.arrived <= at => CheckOutcome::Waiting { message: String::new() },
                _ => CheckOutcome::NotFound { message: "İşlem Bulunamadı".into() },
            }
        }

        fn take(&mut self, provider: i64, reference: &str, at: u64) {
            let approved = self.rand() % 4 != 0;
            let final_at = at + self.rand() % 30_000;
            let beyond_window = at >= self.now + ABSENT_AFTER;
            self.held.insert((provider, reference.to_string()), Held { arrived: at, beyond_window, approved, final_at });
        }

        fn work(&mut self, delay: u64, crash: bool, placement: Placement, noise: bool) {
            match self.due_at {
                Some(t) if t <= self.now => {}
                _ => return,
            }
            // The claim: lease bumped, pushed a lease ahead.
            self.lease += 1;
            let lease = self.lease;
            self.due_at = Some(self.now + LEASE);
            let policy = Self::policy();
            match work_for(&self.row) {
                Work::Route => unreachable!("the model's order starts in its provider's lane"),
                Work::Decide(t) => {
                    let key = self.placement_key();
                    self.apply(&t, key);
                }
                Work::Place { reuse } => {
                    // write_reference, committed before the call.
                    let provider = self.row.lane;
                    let reference = if reuse {
                        self.row.reference.clone().unwrap()
                    } else {
                        self.next_ref += 1;
                        format!("{provider}-{}", self.next_ref)
                    };
                    self.row.external = ExternalStatus::Dispatching;
                    self.row.provider_id = Some(provider);
                    self.row.reference = Some(reference.clone());
                    self.row.placement_attempts += 1;
                    self.dispatched_at.get_or_insert(self.now);
                    self.placed_at = self.now;
                    self.lease += 1;
                    let lease = self.lease;
                    // Every attempt is its own placement row; an earlier one that may have reached
                    // the provider makes a refusal of this one prove nothing.
                    let resent =
                        self.placements.iter().any(|(pp, rr, w)| *pp == provider && *rr == reference && *w != "not_sent");
                    self.placements.push((provider, reference.clone(), "in_flight"));
                    // The call.
                    self.calls += 1;
                    let key = (provider, reference.clone());
                    if self.held.get(&key).is_some_and(|h| !h.beyond_window) {
                        self.violations.push(format!("reference {reference} placed again after {provider} took it"));
                    }
                    let outcome = match placement {
                        _ if self.held.get(&key).is_some_and(|h| h.arrived <= self.now) => {
                            PlacementOutcome::SentBefore { message: "4|sent before".into() }
                        }
                        // Seen, not recorded yet: the provider refuses the reference in words that
                        // look definite.
                        _ if self.held.contains_key(&key) => {
                            PlacementOutcome::Rejected { message: "3|Bu referans daha önce kullanılmış".into() }
                        }
                        Placement::Accept => {
                            self.take(provider, &reference, self.now);
                            PlacementOutcome::Accepted {
                                external_order_id: None,
                                message: String::new(),
                                early: None,
                                cost: None,
                                balance: None,
                            }
                        }
                        Placement::AcceptFinishedAtOnce => {
                            self.held.insert(
                                key,
                                Held { arrived: self.now, beyond_window: false, approved: true, final_at: self.now },
                            );
                            PlacementOutcome::Accepted {
                                external_order_id: None,
                                cost: None,
                                balance: None,
                                message: String::new(),
                                early: Some(CheckOutcome::Approved {
                                    pin: Some(format!("PIN-{reference}")),
                                    message: String::new(),
                                }),
                            }
                        }
                        Placement::Reject => PlacementOutcome::Rejected { message: "3|Yetersiz Bakiye".into() },
                        Placement::ErrorBefore => PlacementOutcome::Ambiguous { reason: "HTTP 500".into() },
                        Placement::ErrorAfter => {
                            self.take(provider, &reference, self.now);
                            PlacementOutcome::Ambiguous { reason: "garbage".into() }
                        }
                        Placement::Hang(after) => {
                            self.take(provider, &reference, self.now + after);
                            PlacementOutcome::Ambiguous { reason: "timeout".into() }
                        }
                    };
                    let facts = self.row.clone();
                    if !crash {
                        self.pending.push((self.now + delay, lease, Pending::Placed { facts, outcome, provider, resent }));
                    }
                }
                Work::Check { .. } => {
                    self.calls += 1;
                    let provider = self.row.provider_id.unwrap();
                    let reference = self.row.reference.clone().unwrap();
                    let answer = if noise { CheckOutcome::failed("garbage") } else { self.truth(provider, &reference, self.now) };
                    let _ = policy;
                    let facts = self.row.clone();
                    let since_placement = self.now - self.placed_at;
                    if !crash {
                        self.pending.push((self.now + delay, lease, Pending::Checked { facts, answer, since_placement }));
                    }
                }
            }
        }

        /// Write-backs whose time has come; a stale one (the lease moved on) is dropped.
        fn deliver(&mut self) {
            self.pending.sort_by_key(|p| p.0);
            while let Some(pos) = self.pending.iter().position(|p| p.0 <= self.now) {
                let (_, lease, pending) = self.pending.remove(pos);
                if lease != self.lease {
                    continue;
                }
                let policy = Self::policy();
                let since_dispatch = Duration::from_millis(self.now - self.dispatched_at.unwrap_or(self.now));
                let key = self.placement_key();
                let t = match pending {
                    Pending::Placed { facts, outcome, provider, resent } => {
                        // What `record::placed` does: no fallback for a re-placement's refusal.
                        let fallback =
                            (provider == PRIMARY && !resent).then(|| Fallback { provider_id: FALLBACK, name: "fallback".into() });
                        placed(
                            &facts,
                            &outcome,
                            &PlacementContext { provider: "p", policy: &policy, fallback, resent, provider_cannot_take: false },
                        )
                    }
                    Pending::Checked { facts, answer, since_placement } => {
                        let ctx = CheckContext {
                            provider: "p",
                            policy: &policy,
                            since_dispatch,
                            since_placement: Duration::from_millis(since_placement),
                            absent_after: Duration::from_millis(ABSENT_AFTER),
                            unit: 0.5,
                        };
                        let learned = None;
                        checked(&facts, &answer, learned, &ctx)
                    }
                };
                self.apply(&t, key);
            }
        }

        fn operator(&mut self, action: OperatorAction) {
            if !self.exists {
                return;
            }
            // Given up, or maybe held after a refused re-placement: the diagnosis tells the
            // operator to ask the provider first, and the decision is theirs.
            let given_up = matches!(State::of(&self.row), State::NeedsOperator(Attention::GivenUp | Attention::MayBeHeld));
            if let Ok(t) = operator(&self.row, &action) {
                if given_up && matches!(action, OperatorAction::Approve { .. } | OperatorAction::Reject { .. }) {
                    self.decided_given_up = true;
                }
                let key = self.placement_key();
                if action == OperatorAction::Dispatch {
                    // The command routes it at once: back to the primary's lane.
                    self.apply(&t, key.clone());
                    let r = routed_to_provider(&self.row, PRIMARY, "p", "operator");
                    self.apply(&r, key);
                } else {
                    self.apply(&t, key);
                }
            }
        }

        /// `orderctl poll`: the order's check, claimed now whatever its schedule (the same work,
        /// the same window as every other caller).
        fn poll(&mut self, delay: u64, noise: bool) {
            if matches!(work_for(&self.row), Work::Check { .. }) && State::of(&self.row) != State::Placing {
                self.due_at = Some(self.now);
                self.work(delay, false, Placement::Accept, noise);
            }
        }

        fn run(&mut self, steps: &[Step]) {
            for s in steps {
                match *s {
                    Step::Work { delay, crash, placement, noise } => self.work(delay, crash, placement, noise),
                    Step::Wait(ms) => self.now += ms,
                    Step::Approve { force } => self.operator(OperatorAction::Approve { pin: "BY-HAND", force }),
                    Step::Reject { force } => self.operator(OperatorAction::Reject { reason: "asked", force }),
                    Step::Dispatch => self.operator(OperatorAction::Dispatch),
                    Step::Settle { recharge } => {
                        self.operator(OperatorAction::Settle(if recharge { Settlement::Recharge } else { Settlement::WriteOff }))
                    }
                    Step::Downstream(action) => self.downstream(action),
                    Step::Poll { delay, noise } => self.poll(delay, noise),
                }
                self.deliver();
            }
            // Then nobody but the provider and the workers: everything must come to rest.
            let mut rounds = 0;
            while self.due_at.is_some() || !self.pending.is_empty() {
                rounds += 1;
                if rounds > 2_000 {
                    self.violations.push(format!("no rest after 2000 rounds: {:?}", State::of(&self.row)));
                    break;
                }
                if let Some(t) = self.due_at {
                    self.now = self.now.max(t);
                }
                self.deliver();
                self.work(100, false, Placement::Accept, false);
                self.now += 100;
                self.deliver();
            }
        }

        fn check_invariants(&mut self) {
            let state = State::of(&self.row);
            // At rest: final, flagged, or waiting for an operator by design.
            let at_rest = state.is_final()
                || matches!(state, State::NeedsOperator(_) | State::WaitingForOperator)
                || (self.row.operator_forced && self.due_at.is_none());
            if !at_rest {
                self.violations.push(format!("not final nor flagged at rest: {state:?}"));
            }
            // Bounded provider calls: placements per provider and checks per deadline.
            let max_calls = 2 * MAX_PLACEMENTS * 4 + 200;
            if self.calls > max_calls {
                self.violations.push(format!("{} provider calls", self.calls));
            }
            // Money: one charge; a refund exactly when rejected (or settled by a recharge).
            let rejected = self.row.status == OrderStatus::Rejected;
            if self.charges != 1 || (self.refunds == 1) != (rejected || self.recharges == 1) {
                self.violations
                    .push(format!("money: status {} refunds {} recharges {}", self.row.status, self.refunds, self.recharges));
            }
            // Every delivery by a provider is the order's PIN, or recorded and flagged, or settled.
            let delivered: Vec<String> = self
                .held
                .iter()
                .filter(|(_, h)| h.approved && h.final_at <= self.now && h.arrived <= self.now)
                .map(|((_, r), _)| format!("PIN-{r}"))
                .collect();
            if delivered.len() > 1 {
                self.violations.push(format!("delivered twice: {delivered:?}"));
            }
            // A provider that records a placement later than its own reconcile window breaks the
            // window's promise: what still holds then is that no second provider gets the order
            // (below), not that an operator's decision or an ended watch hears of it.
            let beyond_window = self.held.values().any(|h| h.beyond_window);
            // Never two providers for one order: at most one provider ever holds it.
            let mut holders: Vec<i64> = self.held.keys().map(|(p, _)| *p).collect();
            holders.sort_unstable();
            holders.dedup();
            if holders.len() > 1 {
                self.violations.push(format!("held by {} providers at once: {:?}", holders.len(), self.held));
            }
            for pin in &delivered {
                let ours = self.pin.as_deref() == Some(pin.as_str())
                    && self.row.status == OrderStatus::Approved
                    && !self.row.operator_forced;
                let recorded = self.row.late_pin.as_deref() == Some(pin.as_str()) || self.write_offs == 1 || self.recharges == 1;
                let flagged = matches!(self.row.attention, Some(Attention::GivenUp | Attention::MayBeHeld));
                let excused = beyond_window;
                if !(ours || recorded || flagged || excused || self.decided_given_up || self.row.status == OrderStatus::Pending) {
                    self.violations.push(format!("provider delivered {pin} but the order does not show it: {:?}", self.row));
                }
            }
        }
    }

    impl World {
        /// What must hold of a forwarded order once everything is at rest.
        fn check_downstream(&mut self) {
            let Some(d) = self.down.as_ref() else { return };
            let mut v = Vec::new();
            let state = State::of(&d.row);
            let up_final = self.exists && self.row.status.is_final();
            // At rest: final, flagged, or waiting for an upstream order that is itself at rest
            // without a final answer (its operator must act there).
            let waiting_upstream = matches!(state, State::Forwarded | State::Watched) && self.exists && !up_final;
            if !(state.is_final() || matches!(state, State::NeedsOperator(_)) || waiting_upstream) {
                v.push(format!("forwarded order not final nor flagged at rest: {state:?}"));
            }
            if up_final && state == State::Forwarded {
                v.push("the upstream order finished but the forwarded order was never told".into());
            }
            // Money of the forwarding tenant's buyer: a refund exactly when rejected (or settled by a recharge).
            let rejected = d.row.status == OrderStatus::Rejected;
            if d.refunds > 1 || (d.refunds == 1) != (rejected || d.recharges == 1) {
                v.push(format!("downstream money: status {} refunds {} recharges {}", d.row.status, d.refunds, d.recharges));
            }
            // Every delivery upstream reaches the buyer downstream: as the PIN, or recorded as
            // the late PIN (flagged or settled).
            if self.exists && self.row.status == OrderStatus::Approved {
                let delivered = self.pin.as_deref();
                if d.row.forwarded && d.pin.as_deref() != delivered && d.row.late_pin.as_deref() != delivered {
                    v.push(format!("upstream delivered {delivered:?}; downstream has pin {:?} late {:?}", d.pin, d.row.late_pin));
                }
            }
            // Approved downstream without a forced decision: the very PIN the upstream delivered.
            if d.row.forwarded && d.row.status == OrderStatus::Approved && !d.row.operator_forced && d.pin != self.pin {
                v.push(format!("downstream approved with {:?}, upstream's PIN is {:?}", d.pin, self.pin));
            }
            // A rejection upstream never leaves the forwarded order open.
            if self.exists && self.row.status == OrderStatus::Rejected && d.row.forwarded && d.row.status == OrderStatus::Pending
            {
                v.push("upstream rejected, downstream still pending".into());
            }
            // Told once per final status the upstream order reached, never while it was open.
            if d.told.len() > 2 {
                v.push(format!("told {} times: {:?}", d.told.len(), d.told));
            }
            self.violations.extend(v);
        }
    }

    /// Cases per property: PROPTEST_CASES when set (for long runs), else `default`.
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]
        #[test]
        fn a_forwarded_order_finishes_with_its_upstream_order_exactly_once(
            steps in prop::collection::vec(forwarded_step(), 1..60),
            seed in any::<u64>(),
            refused_first in prop::bool::weighted(0.2),
        ) {
            let mut w = World::forwarded(seed, refused_first);
            w.run(&steps);
            if w.exists {
                w.check_invariants();
            }
            w.check_downstream();
            let d = w.down.as_ref().unwrap();
            prop_assert!(
                w.violations.is_empty(),
                "{:?}\nupstream {:?} pin {:?}\ndownstream {:?} pin {:?}",
                w.violations, w.row, w.pin, d.row, d.pin
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]
        #[test]
        fn every_order_ends_final_or_flagged_with_money_and_placements_exactly_once(
            steps in prop::collection::vec(step(), 1..60),
            seed in any::<u64>(),
        ) {
            let mut w = World::new(seed);
            w.run(&steps);
            w.check_invariants();
            prop_assert!(w.violations.is_empty(), "{:?}\nrow {:?}\nplacements {:?}\nheld {:?}", w.violations, w.row, w.placements, w.held);
        }
    }
}

/// Issue 23: a refusal that describes the provider waits for it when no fallback is left
/// (nothing refunded or flagged); a pause waits with no bound; a held-back order goes to the
/// fallback without a call; the hold over, it ends as a refusal without fallback does.
#[test]
fn a_provider_that_cannot_take_orders_makes_them_wait_or_fall_back() {
    use crate::domain::lifecycle::{held_back, HeldBack};
    let p = policy();
    let mut ctx = pctx(&p, None);
    ctx.provider_cannot_take = true;
    let t = placed(&placing(1), &PlacementOutcome::Rejected { message: "8: yetersiz bakiye".into() }, &ctx);
    assert_eq!(t.external, Some(ExternalStatus::WaitingForProvider));
    assert_eq!((t.money, t.attention.clone(), t.notice), (Money::None, Set::Keep, None));
    assert_eq!(t.placement, Some(PlacementWord::Rejected));
    let waiting = Facts { external: ExternalStatus::WaitingForProvider, reference: None, ..facts() };
    assert_eq!(State::of(&waiting), State::WaitingForProvider);
    assert_eq!(work_for(&waiting), Work::Place { reuse: false });
    let paused = held_back(&waiting, HeldBack::Paused("dealer down"), None);
    assert!(paused.event.is_none(), "the wait is told once, when it starts");
    assert_eq!(paused.message.as_deref(), Some("dealer down"));
    let fb = Fallback { provider_id: 9, name: "xstor".into() };
    let moved = held_back(&facts(), HeldBack::Unavailable { reason: "no balance", expired: false }, Some(&fb));
    assert_eq!((moved.lane, moved.schedule), (Some(9), Schedule::Now));
    let over = held_back(&waiting, HeldBack::Unavailable { reason: "no balance", expired: true }, None);
    assert_eq!(over.attention, Set::To(Attention::PlacementRejected));
    assert_eq!(over.money, Money::None);
}

/// A placement's answer and the check made right after it under the same claim, as one
/// transition (`placed_then_checked`): the row it leaves is the row the two leave written one
/// after the other, the side effects are the check's, and both history entries are kept.
mod placed_then_checked {
    use super::*;
    use proptest::prelude::*;

    fn accepted(cost: Option<i64>) -> PlacementOutcome {
        PlacementOutcome::Accepted {
            external_order_id: None,
            message: String::new(),
            early: None,
            cost: cost.map(|c| Decimal::new(c, 2)),
            balance: None,
        }
    }

    fn at_once() -> BackoffPolicy {
        BackoffPolicy { first_check: Duration::ZERO, ..policy() }
    }

    fn check_outcome() -> impl Strategy<Value = CheckOutcome> {
        let pin = prop::option::of("[A-Z0-9]{4,12}");
        prop_oneof![
            "[a-z ]{0,12}".prop_map(|message| CheckOutcome::Waiting { message }),
            (pin, "[a-z ]{0,12}").prop_map(|(pin, message)| CheckOutcome::Approved { pin, message }),
            "[a-z ]{0,12}".prop_map(|message| CheckOutcome::Cancelled { message }),
            "[a-z ]{0,12}".prop_map(|message| CheckOutcome::NotFound { message }),
            ("[a-z ]{0,12}", any::<bool>()).prop_map(|(reason, answered)| CheckOutcome::NoNews { reason, answered }),
            "[a-z ]{0,12}".prop_map(|reason| CheckOutcome::NotAsked { reason }),
        ]
    }

    #[test]
    fn an_order_delivered_at_its_first_check_is_approved_in_one_transition_with_both_entries() {
        let p = at_once();
        let f = placing(1);
        let answer = CheckOutcome::Approved { pin: Some("PIN-1".into()), message: "ok".into() };
        let t = placed_then_checked(&f, &accepted(Some(1012)), &pctx(&p, None), &answer, Some("Z-9"), &cctx(&p, Duration::ZERO));
        assert_eq!((t.status, t.external), (Some(OrderStatus::Approved), Some(ExternalStatus::Done)));
        assert!(t.sent && t.completed);
        assert_eq!((t.placement, t.cost), (Some(PlacementWord::Accepted), Some(Decimal::new(1012, 2))));
        assert_eq!((t.notice, t.schedule), (Some(Notice::Approved), Schedule::Off));
        assert_eq!(t.external_order_id.as_deref(), Some("Z-9"));
        let first = t.first.as_ref().expect("the placement's entry kept");
        assert_eq!((first.event.kind, first.status, first.external), ("dispatch", OrderStatus::Pending, ExternalStatus::Sent));
        assert!(first.event.message.starts_with("accepted by znet-main"), "{}", first.event.message);
        assert_eq!(t.event.as_ref().map(|e| e.kind), Some("check.approved"));
        assert_eq!(t.placement_message(), Some(first.event.message.as_str()), "the placement row records the placement's answer");
    }

    #[test]
    fn without_a_check_due_at_once_the_placement_answer_stands_alone() {
        let answer = CheckOutcome::Approved { pin: None, message: "ok".into() };
        // The first check a minute away (the default): the answer of a check made now is not the order's next step.
        let later = policy();
        let t =
            placed_then_checked(&placing(1), &accepted(None), &pctx(&later, None), &answer, None, &cctx(&later, Duration::ZERO));
        assert_eq!(t, placed(&placing(1), &accepted(None), &pctx(&later, None)));
        // A refusal moves the order to the fallback: no check of this provider follows.
        let p = at_once();
        let t =
            placed_then_checked(&placing(1), &rejected("3: no"), &pctx(&p, xstor()), &answer, None, &cctx(&p, Duration::ZERO));
        assert_eq!(t, placed(&placing(1), &rejected("3: no"), &pctx(&p, xstor())));
        assert!(t.first.is_none());
    }

    proptest! {
        #[test]
        fn one_transition_leaves_what_two_leave(
            answer in check_outcome(),
            expects_pin in any::<bool>(),
            attempts in 1u32..=MAX_PLACEMENTS,
            cost in prop::option::of(0i64..10_000),
            since in 0u64..400,
            learned in prop::option::of("[0-9]{1,8}"),
        ) {
            let p = at_once();
            let f = Facts { expects_pin, ..placing(attempts) };
            let ctx = pctx(&p, None);
            let c = CheckContext { since_dispatch: Duration::from_secs(since), ..cctx(&p, Duration::ZERO) };
            let merged = placed_then_checked(&f, &accepted(cost), &ctx, &answer, learned.as_deref(), &c);
            let first = placed(&f, &accepted(cost), &ctx);
            let between = f.after(&first);
            let second = checked(&between, &answer, learned.as_deref(), &c);
            prop_assert_eq!(f.after(&merged), between.after(&second));
            prop_assert_eq!(&merged.event, &second.event);
            prop_assert_eq!(merged.first.as_ref().map(|s| &s.event), first.event.as_ref());
            prop_assert_eq!((merged.money, merged.notice, merged.schedule), (second.money, second.notice, second.schedule));
            prop_assert_eq!((merged.placement, merged.cost), (first.placement, first.cost));
            prop_assert_eq!((merged.sent, merged.completed), (true, second.completed));
            prop_assert_eq!(&merged.message, &second.message.clone().or(first.message.clone()));
            prop_assert_eq!(&merged.external_order_id, &second.external_order_id.clone().or(first.external_order_id.clone()));
        }
    }
}

#[test]
fn only_a_schedule_due_within_its_own_transaction_is_looked_at_for_a_follow_up() {
    // The writer claims follow-up checks only of orders whose schedule this says may be due
    // at once (`next_check_at <= now()` in the same transaction); a wrong `false` here would
    // leave an accepted order's first check to the next claim round.
    assert!(Schedule::Now.may_be_due_at_once());
    assert!(Schedule::Keep.may_be_due_at_once());
    assert!(Schedule::In(Duration::ZERO).may_be_due_at_once());
    assert!(Schedule::In(Duration::from_micros(999)).may_be_due_at_once(), "scheduled by whole milliseconds: 0 ms from now");
    assert!(!Schedule::In(Duration::from_millis(1)).may_be_due_at_once());
    assert!(!Schedule::Off.may_be_due_at_once());
}
