//! The application's timers and sources with an injected clock: a core
//! driven by hand-set instants, each "turn" doing what the loop does with
//! timers (`fire_timers`, then the application's callbacks). No wait.

use std::time::{Duration, Instant};

use super::super::*;
use crate::id::{SourceId, TimerId};
use crate::reactor::app::fire_app_timers;
use crate::reactor::{Context, Handler};
use crate::rng::Rng;

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a test does from inside a timer callback.
type Action = Box<dyn FnMut(&mut Context<'_>, TimerId, u64)>;

/// Records every timer callback: the turn's clock, the id, the token.
#[derive(Default)]
struct Timers {
    fired: Vec<(Instant, TimerId, u64)>,
    action: Option<Action>,
}

impl Handler for Timers {
    fn on_timer(&mut self, cx: &mut Context<'_>, id: TimerId, token: u64) {
        self.fired.push((cx.now(), id, token));
        if let Some(action) = &mut self.action {
            action(cx, id, token);
        }
    }
}

/// A core with no connection; its clock's origin is the wheel's tick 0.
fn core() -> (Core, Instant) {
    let core = Core::new(Config::default()).expect("core");
    let t0 = core.now;
    (core, t0)
}

fn cx(core: &mut Core) -> Context<'_> {
    Context { core }
}

/// One turn of the loop at `now`, as far as timers go.
fn turn(core: &mut Core, handler: &mut Timers, now: Instant) {
    core.set_clock(now);
    core.fire_timers();
    fire_app_timers(core, handler);
}

/// Where a deadline `d` after `t0` fires: the whole millisecond at or
/// after it.
fn due_at(t0: Instant, d: Duration) -> Instant {
    t0 + ms(d.as_micros().div_ceil(1000) as u64)
}

#[test]
fn the_wheel_entry_of_an_application_timer_stays_sixteen_bytes() {
    assert_eq!(std::mem::size_of::<Target>(), 16);
}

#[test]
fn a_timer_fires_at_the_first_turn_at_its_deadline_never_one_before() {
    let (mut core, t0) = core();
    let mut h = Timers::default();
    // Within a tick, on tick edges, at level boundaries of the wheel
    // (64 ms, 4.096 s) and minutes out.
    let deadlines = [
        0u64,
        1,
        999,
        1_000,
        1_001,
        1_500,
        63_999,
        64_000,
        64_001,
        4_095_999,
        4_096_000,
        4_096_001,
        300_000_123,
    ];
    let ids: Vec<TimerId> = deadlines
        .iter()
        .enumerate()
        .map(|(i, &d)| cx(&mut core).set_timer_at(t0 + us(d), i as u64))
        .collect();
    assert_eq!(core.app_timers(), deadlines.len());
    let fired_at = |h: &Timers, i: usize| {
        h.fired
            .iter()
            .find(|&&(_, _, token)| token == i as u64)
            .map(|&(when, id, _)| (when, id))
    };
    for (i, &d) in deadlines.iter().enumerate() {
        let at = due_at(t0, us(d));
        if fired_at(&h, i).is_none() {
            if at > t0 {
                // A microsecond before: not yet.
                turn(&mut core, &mut h, at - us(1));
                assert_eq!(fired_at(&h, i), None, "timer {i} ({d} µs) early");
            }
            turn(&mut core, &mut h, at);
        }
        // (Or at an earlier timer's turn, in the same millisecond.)
        assert_eq!(fired_at(&h, i), Some((at, ids[i])), "timer {i}");
        assert!(at >= t0 + us(d));
    }
    assert_eq!(h.fired.len(), deadlines.len(), "each fired once");
    assert_eq!(core.app_timers(), 0);
    assert!(core.wheel.is_empty());
}

#[test]
fn set_timer_counts_from_the_turns_clock() {
    let (mut core, t0) = core();
    let mut h = Timers::default();
    core.set_clock(t0 + us(2_300));
    let id = cx(&mut core).set_timer(us(1_000), 5); // due at 3.3 ms: fires at 4
    turn(&mut core, &mut h, t0 + us(3_999));
    assert!(h.fired.is_empty());
    turn(&mut core, &mut h, t0 + ms(4));
    assert_eq!(h.fired, [(t0 + ms(4), id, 5)]);
}

#[test]
fn a_cancelled_timer_never_fires_and_a_fired_one_cannot_be_cancelled() {
    let (mut core, t0) = core();
    let mut h = Timers::default();
    let a = cx(&mut core).set_timer(ms(10), 1);
    let b = cx(&mut core).set_timer(ms(20), 2);
    assert!(cx(&mut core).cancel_timer(a), "pending: cancelled");
    assert!(!cx(&mut core).cancel_timer(a), "cancelled twice");
    turn(&mut core, &mut h, t0 + ms(15));
    assert!(h.fired.is_empty());
    turn(&mut core, &mut h, t0 + ms(20));
    assert_eq!(h.fired, [(t0 + ms(20), b, 2)]);
    assert!(!cx(&mut core).cancel_timer(b), "fired: nothing to cancel");
    assert_eq!(core.app_timers(), 0);
    assert!(core.wheel.is_empty());
}

#[test]
fn a_stale_id_never_cancels_the_timer_that_reuses_its_cell() {
    let (mut core, t0) = core();
    let mut h = Timers::default();
    let old = cx(&mut core).set_timer(ms(5), 1);
    assert!(cx(&mut core).cancel_timer(old));
    let new = cx(&mut core).set_timer(ms(5), 2);
    assert_eq!(new.index(), old.index(), "the cell is reused");
    assert_ne!(new, old);
    assert!(!cx(&mut core).cancel_timer(old), "stale");
    turn(&mut core, &mut h, t0 + ms(5));
    assert_eq!(h.fired, [(t0 + ms(5), new, 2)]);

    // And an id that fired, against the timer in its cell after it.
    let newer = cx(&mut core).set_timer(ms(5), 3);
    assert_eq!(newer.index(), new.index());
    assert!(!cx(&mut core).cancel_timer(new), "fired");
    turn(&mut core, &mut h, t0 + ms(10));
    assert_eq!(h.fired.last(), Some(&(t0 + ms(10), newer, 3)));
}

/// Sets 10 000 timers at random deadlines up to 10 s (a third cancelled
/// again), runs turns at random steps of up to `max_step_us`, and checks
/// that each timer left fires once, at the first turn at or after its
/// deadline's millisecond, in deadline order, ties in the order set.
fn ten_thousand_timers(seed: u64, max_step_us: u64) {
    let (mut core, t0) = core();
    let mut h = Timers::default();
    let mut rng = Rng::new(seed);
    let mut want = Vec::new();
    for token in 0..10_000u64 {
        let d = us(rng.below_inclusive(10_000_000));
        let id = cx(&mut core).set_timer_at(t0 + d, token);
        if rng.below_inclusive(2) == 0 {
            assert!(cx(&mut core).cancel_timer(id));
        } else {
            want.push((due_at(t0, d), id, token));
        }
    }
    // Deadline order; within a millisecond, the order set.
    want.sort_by_key(|&(at, _, token)| (at, token));
    let mut now = t0;
    let mut turns = Vec::new();
    let end = t0 + ms(10_000);
    while now < end {
        turn(&mut core, &mut h, now);
        turns.push(now);
        now += us(rng.below_inclusive(max_step_us));
    }
    turn(&mut core, &mut h, now);
    turns.push(now);
    assert_eq!(h.fired.len(), want.len());
    for (&(fired, id, token), &(at, want_id, want_token)) in h.fired.iter().zip(&want) {
        assert_eq!((id, token), (want_id, want_token), "out of order");
        let first = turns[turns.partition_point(|&t| t < at)];
        assert_eq!(fired, first, "timer {token} due at {at:?}");
    }
    assert_eq!(core.app_timers(), 0);
    assert!(core.wheel.is_empty());

    // The cells and the due batch are reused: once they have grown to
    // the most timers pending and due at once, firing allocates nothing.
    let cells = core.app.timers.capacity();
    let mut batch = None;
    for round in 1..=3 {
        for token in 0..want.len() as u64 {
            cx(&mut core).set_timer(us(rng.below_inclusive(10_000_000)), token);
        }
        now += ms(10_001);
        turn(&mut core, &mut h, now);
        assert_eq!(h.fired.len(), (round + 1) * want.len());
        assert_eq!(core.app.timers.capacity(), cells);
        let grown = core.app.due.capacity();
        assert_eq!(*batch.get_or_insert(grown), grown);
    }
}

#[test]
fn ten_thousand_timers_fire_in_deadline_order_turn_by_turn() {
    ten_thousand_timers(17, 3_000);
}

#[test]
fn ten_thousand_timers_fire_in_deadline_order_after_long_stalls() {
    // Turns up to 2 s apart: many due in one turn, sorted all the same.
    ten_thousand_timers(18, 2_000_000);
}

#[test]
fn a_timer_set_from_its_own_callback_for_now_fires_at_the_next_turn() {
    let (mut core, t0) = core();
    let mut h = Timers {
        action: Some(Box::new(|cx, _, token| {
            if token < 3 {
                // Already due: at the next turn, not in this one.
                cx.set_timer(Duration::ZERO, token + 1);
            } else if token == 3 {
                let past = cx.now() - ms(1);
                cx.set_timer_at(past, 4);
            }
        })),
        ..Timers::default()
    };
    cx(&mut core).set_timer(ms(5), 0);
    let at = t0 + ms(5);
    for n in 0..=4 {
        turn(&mut core, &mut h, at);
        assert_eq!(h.fired.len(), n + 1, "one callback per turn");
        assert_eq!(h.fired[n].2, n as u64);
    }
    turn(&mut core, &mut h, at);
    assert_eq!(h.fired.len(), 5, "done");
    assert!(core.wheel.is_empty());
}

#[test]
fn a_periodic_timer_re_armed_from_its_deadline_does_not_drift() {
    const PERIOD: Duration = Duration::from_millis(10);
    let (mut core, t0) = core();
    let next = std::rc::Rc::new(std::cell::Cell::new(t0 + PERIOD));
    let deadline = next.clone();
    let mut h = Timers {
        action: Some(Box::new(move |cx, _, _| {
            deadline.set(deadline.get() + PERIOD);
            cx.set_timer_at(deadline.get(), 0);
        })),
        ..Timers::default()
    };
    cx(&mut core).set_timer_at(next.get(), 0);
    let mut rng = Rng::new(5);
    let mut late = Vec::new();
    for k in 1..=100u32 {
        // A turn just before, then one late by up to 7.999 ms.
        turn(&mut core, &mut h, t0 + PERIOD * k - us(1));
        let lateness = us(rng.below_inclusive(7_999));
        late.push(lateness);
        turn(&mut core, &mut h, t0 + PERIOD * k + lateness);
    }
    assert_eq!(h.fired.len(), 100);
    for (k, (&(fired, _, _), lateness)) in h.fired.iter().zip(&late).enumerate() {
        assert_eq!(fired, t0 + PERIOD * (k as u32 + 1) + *lateness);
    }
    assert_eq!(next.get(), t0 + PERIOD * 101, "no lateness added up");
}

#[test]
fn a_callback_can_cancel_a_timer_due_in_the_same_turn() {
    let (mut core, t0) = core();
    let second = std::rc::Rc::new(std::cell::Cell::new(None));
    let other = second.clone();
    let mut h = Timers {
        action: Some(Box::new(move |cx, id, token| {
            if token == 1 {
                assert!(!cx.cancel_timer(id), "its own id has fired");
                let b = other.get().expect("set");
                assert!(cx.cancel_timer(b), "due, but its callback has not run");
            }
        })),
        ..Timers::default()
    };
    let a = cx(&mut core).set_timer(ms(5), 1);
    second.set(Some(cx(&mut core).set_timer(ms(5), 2)));
    let c = cx(&mut core).set_timer(us(3_500), 3);
    let d = cx(&mut core).set_timer(us(4_500), 4);
    turn(&mut core, &mut h, t0 + ms(6));
    assert_eq!(
        h.fired,
        [(t0 + ms(6), c, 3), (t0 + ms(6), a, 1), (t0 + ms(6), d, 4)],
        "deadline order; 4.5 ms and 5 ms fall in one tick: the order set"
    );
    assert_eq!(core.app_timers(), 0);
}

#[test]
fn a_timer_beyond_the_clocks_range_never_fires_and_can_be_cancelled() {
    let (mut core, t0) = core();
    let mut h = Timers::default();
    let id = cx(&mut core).set_timer(Duration::MAX, 1);
    turn(
        &mut core,
        &mut h,
        t0 + Duration::from_secs(100 * 365 * 86_400),
    );
    assert!(h.fired.is_empty());
    assert!(cx(&mut core).cancel_timer(id));
    assert!(core.wheel.is_empty());
}

#[test]
fn a_source_id_is_retired_by_deregister_and_never_aliases_its_successor() {
    let (mut core, _) = core();
    let addr = "127.0.0.1:0".parse().expect("addr");
    let mut a = mio::net::UdpSocket::bind(addr).expect("udp");
    let mut b = mio::net::UdpSocket::bind(addr).expect("udp");
    let old = cx(&mut core)
        .register(&mut a, mio::Interest::READABLE)
        .expect("register");
    // Events polled in the turn it was registered in predate it.
    assert_eq!(core.ready_source(old.index()), None);
    core.count_turn();
    assert_eq!(core.ready_source(old.index()), Some(old));
    cx(&mut core)
        .reregister(
            &mut a,
            old,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )
        .expect("reregister");
    cx(&mut core).deregister(&mut a, old).expect("deregister");
    assert_eq!(core.ready_source(old.index()), None);
    assert_eq!(core.app_sources(), 0);

    let new: SourceId = cx(&mut core)
        .register(&mut b, mio::Interest::READABLE)
        .expect("register");
    assert_eq!(new.index(), old.index(), "the slot is reused");
    assert_ne!(new, old);
    let kind = |r: std::io::Result<()>| r.expect_err("stale").kind();
    assert_eq!(
        kind(cx(&mut core).deregister(&mut a, old)),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(
        kind(cx(&mut core).reregister(&mut a, old, mio::Interest::READABLE)),
        std::io::ErrorKind::NotFound
    );
    // The event of the old source polled this turn is not the new one's.
    assert_eq!(core.ready_source(new.index()), None);
    core.count_turn();
    assert_eq!(core.ready_source(new.index()), Some(new));
    assert_eq!(core.app_sources(), 1);
}
