use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::level::{self, HORIZON, LEVELS, SLOTS, SLOT_KEEP};
use super::*;
use crate::rng::Rng;

mod model;

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const NS_PER_MS: u64 = 1_000_000;

/// The fake clock: `t` ms after `origin`.
fn at(origin: Instant, t: u64) -> Instant {
    origin + Duration::from_millis(t)
}

/// `ns` nanoseconds after `origin`.
fn at_ns(origin: Instant, ns: u64) -> Instant {
    origin + Duration::from_nanos(ns)
}

/// The tick a deadline `ns` after the origin rounds up to.
fn ceil_ms(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_MS)
}

fn range(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.below_inclusive(hi - lo)
}

/// Walks every slot and the due list and checks them against the
/// occupancy masks, the entry fields and the slab: every entry filed in
/// exactly one place and recording that place (slot and position, or due
/// links both ways), slot timers due after `elapsed` but not before their
/// slot's next start, slot capacities bounded by their lengths, due timers
/// sorted and due.
fn check_invariants<T>(w: &Wheel<T>) {
    // The kept scan result is the one a fresh scan finds.
    assert_eq!(w.next_slot(), w.scan_next_slot(), "kept next slot is stale");
    let mut seen = HashSet::new();
    for n in 0..LEVELS {
        let level = w.slots.level(n);
        for slot in 0..SLOTS {
            let bucket = level::bucket(n, slot);
            let entries = w.slots.entries(bucket);
            let bit = level.occupied() >> slot & 1 == 1;
            assert_eq!(!entries.is_empty(), bit, "level {n} slot {slot} occupancy");
            let capacity = w.slots.capacity(bucket);
            assert!(
                capacity <= SLOT_KEEP.max(4 * entries.len()),
                "level {n} slot {slot}: capacity {capacity} for {} entries",
                entries.len()
            );
            let start = level.slot_start(w.elapsed, slot);
            for (pos, &index) in entries.iter().enumerate() {
                let e = w.at(index).expect("a slot holds a vacant cell");
                assert!(seen.insert(index), "entry {index} filed twice");
                let place = Place::Slot {
                    bucket: bucket as u16,
                    pos: pos as u32,
                };
                assert_eq!(e.place, place, "place of {index}");
                assert!(e.tick > w.elapsed, "slot timer already due");
                assert!(start <= e.tick, "slot starts after its timer is due");
            }
        }
    }
    let (mut prev, mut cur, mut last_tick) = (NONE, w.due_head, 0);
    while cur != NONE {
        let e = w.at(cur).expect("the due list holds a vacant cell");
        assert!(seen.insert(cur), "entry {cur} filed twice");
        let Place::Due { prev: p, next } = e.place else {
            panic!("due entry {cur} has place {:?}", e.place);
        };
        assert_eq!(p, prev, "prev link of due {cur}");
        assert!(e.tick <= w.elapsed, "due timer not due");
        assert!(e.tick >= last_tick, "due list out of order");
        last_tick = e.tick;
        (prev, cur) = (cur, next);
    }
    assert_eq!(w.due_tail, prev, "due tail");
    assert_eq!(seen.len(), w.len(), "entries outside any list");
    // The slab: occupied cells are exactly the filed ones, and the free
    // list runs through every vacant cell once.
    let occupied = w
        .cells
        .iter()
        .filter(|c| matches!(c, Cell::Occupied(_)))
        .count();
    assert_eq!(occupied, w.len(), "occupied cells");
    let (mut vacant, mut free) = (HashSet::new(), w.free);
    while free != NONE {
        assert!(vacant.insert(free), "free list loops at {free}");
        match w.cells.get(free as usize) {
            Some(Cell::Vacant { next_free }) => free = *next_free,
            _ => panic!("free list reaches occupied or missing cell {free}"),
        }
    }
    assert_eq!(
        vacant.len() + w.len(),
        w.cells.len(),
        "vacant cells off the free list"
    );
}

// ----- basics -----

#[test]
fn empty_wheel_has_no_expiration_and_polls_nothing() {
    let origin = Instant::now();
    let mut w: Wheel<u32> = Wheel::new(origin);
    assert!(w.is_empty());
    assert_eq!(w.len(), 0);
    assert_eq!(w.next_expiration(), None);
    assert_eq!(w.poll(at(origin, 10 * DAY)), None);
    assert_eq!(w.advance(at(origin, 20 * DAY)).count(), 0);
    assert_eq!(w.next_expiration(), None);
    check_invariants(&w);
}

#[test]
fn deadline_rounds_up_and_clock_rounds_down() {
    let origin = Instant::now();
    let mut w = Wheel::with_capacity(origin, 4);
    let k = w.insert(at_ns(origin, 1_500_000), "a"); // 1.5 ms -> tick 2
    assert_eq!(w.deadline(k), Some(at(origin, 2)));
    assert_eq!(w.next_expiration(), Some(at(origin, 2)));
    assert_eq!(w.next_expiration_tick(), Some(2));
    assert_eq!(w.now_tick(at_ns(origin, 1_999_999)), 1);
    assert_eq!(w.now_tick(at(origin, 2)), 2);
    assert_eq!(w.now_tick(origin - Duration::from_millis(5)), 0);
    assert_eq!(w.poll(at(origin, 1)), None);
    assert_eq!(w.poll_tick(1), None);
    assert_eq!(w.poll(at_ns(origin, 1_999_999)), None, "floor(1.99 ms) = 1");
    assert_eq!(w.poll(at(origin, 2)), Some((k, "a")));
    let exact = w.insert(at(origin, 7), "b");
    assert_eq!(w.deadline(exact), Some(at(origin, 7)));
    assert_eq!(w.poll(at_ns(origin, 6_999_999)), None);
    assert_eq!(w.poll(at(origin, 7)), Some((exact, "b")));
}

#[test]
fn past_and_pre_origin_deadlines_fire_at_the_next_poll() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    assert_eq!(w.poll(at(origin, 1_000)), None);
    let past = w.insert(at(origin, 400), 1);
    let zero = w.insert(origin, 2);
    assert_eq!(w.len(), 2);
    assert_eq!(w.next_expiration(), Some(origin), "no later than tick 0");
    // Even a clock reading behind the wheel fires them: they are due.
    let fired: Vec<_> = w.advance(at(origin, 3)).collect();
    assert_eq!(fired, [(zero, 2), (past, 1)]);
    if let Some(before) = origin.checked_sub(Duration::from_secs(5)) {
        let k = w.insert(before, 3);
        assert_eq!(w.deadline(k), Some(origin));
        assert_eq!(w.poll(at(origin, 1_000)), Some((k, 3)));
    }
    assert!(w.is_empty());
}

#[test]
fn fresh_wheel_fires_origin_deadline_at_origin() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let k = w.insert(origin, ());
    assert_eq!(w.poll(origin), Some((k, ())));
}

#[test]
fn past_deadlines_are_returned_in_tick_order() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let now = at(origin, 1_000);
    // Some timers come due from their slot at 1 000 ...
    for t in [1_000, 1_000, 999] {
        w.insert(at(origin, t), t);
    }
    let first = w.poll(now).map(|(_, t)| t);
    assert_eq!(first, Some(999));
    // ... then deadlines already passed are inserted between polls.
    for t in [700, 300, 900, 500, 1_000, 100, 700] {
        w.insert(at(origin, t), t);
    }
    check_invariants(&w);
    assert_eq!(w.poll(now).map(|(_, t)| t), Some(100));
    w.insert(at(origin, 200), 200);
    w.insert(at(origin, 800), 800);
    check_invariants(&w);
    let rest: Vec<u64> = w.advance(now).map(|(_, t)| t).collect();
    assert_eq!(
        rest,
        [200, 300, 500, 700, 700, 800, 900, 1_000, 1_000, 1_000]
    );
}

#[test]
fn get_get_mut_deadline_and_len() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let a = w.insert(at(origin, 10), String::from("a"));
    let b = w.insert(at(origin, 20 * SEC), String::from("b"));
    assert_eq!(w.len(), 2);
    assert_eq!(w.get(a).map(String::as_str), Some("a"));
    if let Some(v) = w.get_mut(b) {
        v.push('!');
    }
    assert_eq!(w.get(b).map(String::as_str), Some("b!"));
    assert_eq!(w.deadline(b), Some(at(origin, 20 * SEC)));
    assert_eq!(w.advance(at(origin, 10)).count(), 1);
    assert_eq!(w.len(), 1);
    assert_eq!(w.get(a), None);
    assert_eq!(w.deadline(a), None);
    assert_eq!(w.cancel(b).as_deref(), Some("b!"));
    assert!(w.is_empty());
}

#[test]
fn advance_leaves_timers_not_yet_due() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    for t in [5, 64, 65, 4_096, 4_097, 70_000] {
        w.insert(at(origin, t), t);
    }
    let fired: Vec<u64> = w.advance(at(origin, 4_096)).map(|(_, t)| t).collect();
    assert_eq!(fired, [5, 64, 65, 4_096]);
    assert_eq!(w.len(), 2);
    check_invariants(&w);
    let mut it = w.advance(at(origin, 5_000));
    assert_eq!(it.next().map(|(_, t)| t), Some(4_097));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None, "fused");
}

// ----- firing at the right time -----

/// 5 000 timers within 5 minutes, clock stepped 1 ms at a time: each fires
/// exactly once, at its rounded-up tick (never early, < 1 ms late), in
/// non-decreasing tick order.
#[test]
fn random_timers_fire_once_on_time_with_1ms_steps() {
    let origin = Instant::now();
    let mut rng = Rng::new(1);
    let mut w = Wheel::new(origin);
    let horizon = 5 * MIN;
    let deadlines: Vec<u64> = (0..5_000)
        .map(|_| rng.below_inclusive(horizon * NS_PER_MS))
        .collect();
    let mut keys = Vec::new();
    for (id, &ns) in deadlines.iter().enumerate() {
        keys.push(w.insert(at_ns(origin, ns), id));
    }
    assert_eq!(w.len(), 5_000);
    let mut fired = vec![false; deadlines.len()];
    let mut last_tick = 0;
    for t in 0..=horizon {
        for (key, id) in w.advance(at(origin, t)) {
            assert_eq!(keys[id], key);
            assert!(!fired[id], "timer {id} fired twice");
            fired[id] = true;
            let ns = deadlines[id];
            assert_eq!(ceil_ms(ns), t, "timer {id} at {ns} ns fired at {t} ms");
            assert!(t * NS_PER_MS >= ns && t * NS_PER_MS - ns < NS_PER_MS);
            assert!(t >= last_tick);
            last_tick = t;
        }
        if t % 10_007 == 0 {
            check_invariants(&w);
        }
    }
    assert!(fired.iter().all(|&f| f));
    assert!(w.is_empty());
    assert_eq!(w.next_expiration(), None);
}

/// Runs `count` timers with deadlines in `[0, span]` ms against a clock
/// advanced by random steps of `[0, max_step]` ms (with sub-ms parts): each
/// timer fires at the first poll whose clock reaches its tick, once, in
/// tick order.
fn fire_at_first_poll_reaching_tick(seed: u64, count: usize, span: u64, max_step: u64) {
    let origin = Instant::now();
    let mut rng = Rng::new(seed);
    let mut w = Wheel::new(origin);
    let mut ticks = Vec::new();
    for id in 0..count {
        let ns = rng.below_inclusive(span * NS_PER_MS);
        let key = w.insert(at_ns(origin, ns), id);
        ticks.push(ceil_ms(ns));
        assert_eq!(w.deadline(key), Some(at(origin, ceil_ms(ns))));
    }
    let (mut clock_ns, mut prev_ms, mut last_tick) = (0u64, 0u64, 0u64);
    let mut fired = 0;
    let mut polls = 0;
    while fired < count {
        clock_ns += rng.below_inclusive(max_step * NS_PER_MS);
        let now_ms = clock_ns / NS_PER_MS;
        for (_, id) in w.advance(at_ns(origin, clock_ns)) {
            let tick = ticks[id];
            assert!(tick <= now_ms, "timer {id} early: tick {tick} at {now_ms}");
            assert!(
                tick > prev_ms || (polls == 0 && tick == 0),
                "timer {id} late: tick {tick}, previous poll at {prev_ms}"
            );
            assert!(tick >= last_tick, "out of order");
            last_tick = tick;
            ticks[id] = u64::MAX; // a second firing would fail the checks
            fired += 1;
        }
        prev_ms = now_ms;
        polls += 1;
        if polls % 1_000 == 0 {
            check_invariants(&w);
        }
    }
    assert!(w.is_empty());
}

#[test]
fn random_small_steps_fire_at_the_first_poll_reaching_the_tick() {
    fire_at_first_poll_reaching_tick(2, 5_000, 3 * MIN, 7);
}

#[test]
fn hours_and_days_ahead_with_a_coarse_clock() {
    fire_at_first_poll_reaching_tick(3, 2_000, 6 * HOUR, 5 * SEC);
    fire_at_first_poll_reaching_tick(4, 2_000, 4 * DAY, 2 * MIN);
}

#[test]
fn far_deadlines_fire_on_time_and_not_before() {
    let origin = Instant::now();
    let fars = [
        3 * DAY,
        3 * DAY + 1,
        HORIZON - 1,
        HORIZON,
        HORIZON + 1,
        800 * DAY + 17,
        2_000 * DAY + 3,
        3_650 * DAY + 12_345,
    ];
    for &t in &fars {
        let mut w = Wheel::new(origin);
        let k = w.insert(at(origin, t), t);
        // A jump to just before never fires it ...
        assert_eq!(w.poll(at(origin, t - 1)), None, "deadline {t}");
        check_invariants(&w);
        assert_eq!(w.len(), 1);
        assert!(w.next_expiration().is_some_and(|n| n <= at(origin, t)));
        // ... the deadline itself does.
        assert_eq!(w.poll(at(origin, t)), Some((k, t)), "deadline {t}");
    }
}

/// A reactor sleeps until `next_expiration` and polls: that never skips
/// past a deadline, reaches each one in a few wakeups, even years ahead.
#[test]
fn chasing_next_expiration_reaches_each_deadline_exactly() {
    let origin = Instant::now();
    let deadlines = [
        1,
        63,
        64,
        4_097,
        5 * MIN + 3,
        3 * DAY,
        HORIZON + 1,
        900 * DAY + 5,
        2_000 * DAY,
        3_650 * DAY + 1,
    ];
    let mut w = Wheel::new(origin);
    for &t in &deadlines {
        w.insert(at(origin, t), t);
    }
    let mut wakeups = 0;
    let mut fired = Vec::new();
    while let Some(next) = w.next_expiration() {
        wakeups += 1;
        assert!(wakeups < 40 * deadlines.len(), "too many wakeups");
        let earliest = deadlines[fired.len()];
        assert!(
            next <= at(origin, earliest),
            "woke after deadline {earliest}"
        );
        for (_, t) in w.advance(next) {
            assert_eq!(next, at(origin, t), "fired {t} off its deadline");
            fired.push(t);
        }
        check_invariants(&w);
    }
    assert_eq!(fired, deadlines);
}

#[test]
fn deadline_beyond_the_tick_cap_stays_pending() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let Some(absurd) = origin.checked_add(Duration::from_millis(u64::MAX)) else {
        return; // this platform's Instant cannot reach it anyway
    };
    let k = w.insert(absurd, "never");
    let soon = w.insert(at(origin, 5), "soon");
    assert!(w.next_expiration().is_some());
    assert_eq!(w.advance(absurd).collect::<Vec<_>>(), [(soon, "soon")]);
    assert_eq!(w.len(), 1);
    check_invariants(&w);
    assert_eq!(w.cancel(k), Some("never"));
}

#[test]
fn clock_going_backwards_neither_panics_nor_fires_early() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let a = w.insert(at(origin, 50), 'a');
    assert_eq!(w.poll(at(origin, 40)), None);
    assert_eq!(w.poll(at(origin, 30)), None);
    assert_eq!(w.poll(origin), None);
    if let Some(before) = origin.checked_sub(Duration::from_secs(1)) {
        assert_eq!(w.poll(before), None);
    }
    assert_eq!(w.poll(at(origin, 49)), None);
    assert_eq!(w.poll(at(origin, 50)), Some((a, 'a')));

    let b = w.insert(at(origin, 1_200), 'b');
    assert_eq!(w.poll(at(origin, 1_000)), None);
    // The wheel stands at 1 000 now: 500 is due, 1 200 is not, whatever
    // the clock says.
    let c = w.insert(at(origin, 500), 'c');
    assert_eq!(w.poll(at(origin, 600)), Some((c, 'c')));
    assert_eq!(w.poll(at(origin, 800)), None);
    assert_eq!(w.poll(at(origin, 1_199)), None);
    assert_eq!(w.poll(at(origin, 1_200)), Some((b, 'b')));
}

/// Advancing by days at once fires everything due, in order, and nothing
/// that is not.
#[test]
fn large_jumps_fire_everything_due_in_order() {
    let origin = Instant::now();
    let mut rng = Rng::new(5);
    let mut w = Wheel::new(origin);
    let mut ticks = BTreeMap::new();
    for id in 0..3_000u64 {
        let t = match id % 3 {
            0 => rng.below_inclusive(10 * SEC),
            1 => rng.below_inclusive(10 * DAY),
            _ => rng.below_inclusive(1_000 * DAY),
        };
        w.insert(at(origin, t), id);
        ticks.insert(id, t);
    }
    let mut prev = 0;
    for now in [3 * DAY, 3 * DAY, 9 * DAY, 10 * DAY, 500 * DAY, 1_000 * DAY] {
        let fired: Vec<u64> = w.advance(at(origin, now)).map(|(_, id)| id).collect();
        let fired_ticks: Vec<u64> = fired.iter().map(|id| ticks[id]).collect();
        assert!(fired_ticks.windows(2).all(|p| p[0] <= p[1]), "order");
        let mut got: Vec<u64> = fired.clone();
        got.sort_unstable();
        let want: Vec<u64> = ticks
            .iter()
            .filter(|&(_, &t)| t <= now && (t > prev || (prev == 0 && t == 0)))
            .map(|(&id, _)| id)
            .collect();
        assert_eq!(got, want, "jump to {now}");
        prev = now;
        check_invariants(&w);
    }
    assert!(w.is_empty());
}

// ----- cancel, reset, stale keys -----

#[test]
fn cancelled_timers_never_fire() {
    let origin = Instant::now();
    let mut rng = Rng::new(6);
    let mut w = Wheel::new(origin);
    let mut keys = Vec::new();
    for id in 0..2_000u64 {
        let t = range(&mut rng, 1, 10 * MIN);
        keys.push(w.insert(at(origin, t), id));
    }
    let mut cancelled = HashSet::new();
    for (id, &key) in keys.iter().enumerate() {
        if id % 3 == 0 {
            assert_eq!(w.cancel(key), Some(id as u64));
            cancelled.insert(id as u64);
        }
    }
    check_invariants(&w);
    assert_eq!(w.len(), keys.len() - cancelled.len());
    let mut step = 0;
    let mut fired = 0;
    while !w.is_empty() {
        step += range(&mut rng, 1, 2_000);
        for (_, id) in w.advance(at(origin, step)) {
            assert!(!cancelled.contains(&id), "cancelled timer {id} fired");
            fired += 1;
        }
    }
    assert_eq!(fired, keys.len() - cancelled.len());
}

#[test]
fn cancel_keeps_slot_lists_and_occupancy_consistent() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    // Three timers in one level-2 slot (ticks 8192..12288).
    let a = w.insert(at(origin, 9_000), 'a');
    let b = w.insert(at(origin, 9_500), 'b');
    let c = w.insert(at(origin, 10_000), 'c');
    let level2 = |w: &Wheel<char>| w.slots.level(2).occupied();
    assert_eq!(level2(&w), 1 << 2);
    assert_eq!(w.cancel(b), Some('b')); // middle of the list
    check_invariants(&w);
    assert_eq!(w.cancel(c), Some('c')); // head of the list
    check_invariants(&w);
    assert_eq!(level2(&w), 1 << 2);
    assert_eq!(w.cancel(a), Some('a')); // last one: the bit goes
    assert_eq!(level2(&w), 0);
    assert!(w.slots.levels().iter().all(|l| l.occupied() == 0));
    assert_eq!(w.next_expiration(), None);

    // Cancel in the middle of a partly drained due list.
    let keys: Vec<TimerKey> = "wxyz"
        .chars()
        .map(|c| w.insert(at(origin, 100), c))
        .collect();
    let (first, _) = w.poll(at(origin, 100)).unwrap_or((keys[0], '?'));
    let left: Vec<TimerKey> = keys.iter().copied().filter(|&k| k != first).collect();
    let middle = w.get(left[1]).copied();
    assert!(middle.is_some());
    assert_eq!(w.cancel(left[1]), middle);
    check_invariants(&w);
    let rest: Vec<TimerKey> = w.advance(at(origin, 100)).map(|(k, _)| k).collect();
    assert_eq!(rest.len(), 2);
    assert!(!rest.contains(&left[1]) && !rest.contains(&first));
}

#[test]
fn reset_moves_a_timer_earlier_or_later() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let early = w.insert(at(origin, 1_000), "early");
    let late = w.insert(at(origin, 1_000), "late");
    let far = w.insert(at(origin, 5 * DAY), "far");
    assert!(w.reset(early, at(origin, 50)));
    assert!(w.reset(late, at(origin, 3_000)));
    assert!(w.reset(far, at(origin, 2_000)));
    assert_eq!(w.deadline(early), Some(at(origin, 50)));
    check_invariants(&w);
    assert_eq!(w.poll(at(origin, 49)), None);
    assert_eq!(w.poll(at(origin, 50)), Some((early, "early")));
    assert_eq!(w.poll(at(origin, 1_999)), None, "nothing left at 1 000");
    assert_eq!(w.poll(at(origin, 2_000)), Some((far, "far")));
    assert_eq!(w.poll(at(origin, 2_999)), None);
    assert_eq!(w.poll(at(origin, 3_000)), Some((late, "late")));
    assert!(!w.reset(late, at(origin, 9_000)), "fired: stale");
    assert!(w.is_empty());
}

#[test]
fn reset_of_a_due_timer_not_yet_polled_and_reset_into_the_past() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let a = w.insert(at(origin, 100), 'a');
    let b = w.insert(at(origin, 100), 'b');
    let c = w.insert(at(origin, 400), 'c');
    let (first, _) = w.poll(at(origin, 200)).unwrap_or((a, 'a'));
    let other = if first == a { b } else { a };
    // `other` is due but not yet polled: push it out.
    assert!(w.reset(other, at(origin, 500)));
    check_invariants(&w);
    assert_eq!(w.poll(at(origin, 200)), None);
    // Reset into the past: due at the next poll.
    assert!(w.reset(c, at(origin, 150)));
    assert_eq!(w.poll(at(origin, 200)), Some((c, 'c')));
    assert_eq!(w.poll(at(origin, 499)), None);
    assert_eq!(w.poll(at(origin, 500)).map(|(k, _)| k), Some(other));
}

#[test]
fn repeated_resets_fire_only_at_the_last_deadline() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let k = w.insert(at(origin, 30), ());
    // A heartbeat deadline pushed out every 10 ms by incoming frames.
    for t in (0..2_000).step_by(10) {
        assert_eq!(w.poll(at(origin, t)), None, "at {t}");
        assert!(w.reset(k, at(origin, t + 30)));
    }
    check_invariants(&w);
    assert_eq!(w.poll(at(origin, 2_019)), None);
    assert_eq!(w.poll(at(origin, 2_020)), Some((k, ())));
}

#[test]
fn stale_keys_are_noops_even_after_index_reuse() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    let fired = w.insert(at(origin, 10), 1);
    let cancelled = w.insert(at(origin, 20), 2);
    assert_eq!(w.advance(at(origin, 10)).count(), 1);
    assert_eq!(w.cancel(cancelled), Some(2));

    for stale in [fired, cancelled] {
        assert_eq!(w.cancel(stale), None);
        assert!(!w.reset(stale, at(origin, 15)));
        assert_eq!(w.get(stale), None);
        assert_eq!(w.get_mut(stale), None);
        assert_eq!(w.deadline(stale), None);
    }
    assert!(w.is_empty());

    // The slab hands both indices out again.
    let new_a = w.insert(at(origin, 1_000), 10);
    let new_b = w.insert(at(origin, 2_000), 20);
    let reused: HashSet<u32> = [new_a.index, new_b.index].into();
    assert_eq!(reused, [fired.index, cancelled.index].into());
    for stale in [fired, cancelled] {
        assert_eq!(w.cancel(stale), None);
        assert!(!w.reset(stale, at(origin, 15)));
        assert_eq!(w.get(stale), None);
        assert_eq!(w.get_mut(stale), None);
        assert_eq!(w.deadline(stale), None);
    }
    assert_eq!(w.len(), 2);
    check_invariants(&w);
    assert_eq!(w.poll(at(origin, 999)), None, "a stale reset moved nothing");
    assert_eq!(w.poll(at(origin, 1_000)), Some((new_a, 10)));
    assert_eq!(w.poll(at(origin, 2_000)), Some((new_b, 20)));
}

// ----- storage: positions in a slot, reclamation -----

/// The bucket entry `key` is filed in (panics for a due or stale key).
fn bucket_of<T>(w: &Wheel<T>, key: TimerKey) -> usize {
    match w.entry(key).map(|e| e.place) {
        Some(Place::Slot { bucket, .. }) => usize::from(bucket),
        place => panic!("{key:?} is not in a slot: {place:?}"),
    }
}

#[test]
fn a_cell_is_no_larger_than_its_entry() {
    // What the module docs promise for a `u64` value: 8 (value) + 8 (tick)
    // + 4 (generation) + 12 (place, whose spare tag values also tell a
    // vacant cell).
    assert_eq!(std::mem::size_of::<Entry<u64>>(), 32);
    assert_eq!(std::mem::size_of::<Cell<u64>>(), 32);
}

#[test]
fn removal_from_anywhere_in_a_slot_keeps_the_others_findable() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    // Twenty timers in one level-2 slot (ticks 8192..12288), removed from
    // the front, the back and the middle, by cancel and by reset; each
    // removal but the last moves the slot's last entry into the hole.
    let keys: Vec<TimerKey> = (0..20u64)
        .map(|i| w.insert(at(origin, 9_000 + 100 * i), i))
        .collect();
    let bucket = bucket_of(&w, keys[0]);
    assert!(keys.iter().all(|&k| bucket_of(&w, k) == bucket));
    for &i in &[0usize, 19, 7, 1, 18, 10] {
        assert_eq!(w.cancel(keys[i]), Some(i as u64));
        check_invariants(&w);
    }
    for &i in &[2usize, 17, 9] {
        assert!(w.reset(keys[i], at(origin, 20_000 + i as u64)));
        check_invariants(&w);
    }
    assert_eq!(w.slots.entries(bucket).len(), 11);
    let mut fired = Vec::new();
    for t in (8_000..=30_000).step_by(50) {
        fired.extend(w.advance(at(origin, t)).map(|(_, id)| id));
    }
    assert_eq!(fired, [3, 4, 5, 6, 8, 11, 12, 13, 14, 15, 16, 2, 9, 17]);
    assert!(w.is_empty());
}

#[test]
fn cancelled_timers_leave_no_storage_behind() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    // A burst of 10 000 timers in one slot, all cancelled.
    let keys: Vec<TimerKey> = (0..10_000u64)
        .map(|i| w.insert(at(origin, 9_000 + i % 3_000), i))
        .collect();
    let bucket = bucket_of(&w, keys[0]);
    assert!(w.slots.capacity(bucket) >= 10_000);
    for (i, &key) in keys.iter().enumerate().rev() {
        assert_eq!(w.cancel(key), Some(i as u64));
        if i % 1_000 == 0 {
            check_invariants(&w);
        }
    }
    assert!(w.is_empty());
    assert!(
        w.slots.capacity(bucket) <= SLOT_KEEP,
        "the slot shrank back"
    );
    assert_eq!(w.next_expiration(), None);

    // The cells are reused, not added to: the slab stays at its peak.
    let cells = w.cells.len();
    assert_eq!(cells, 10_000);
    for i in 0..10_000u64 {
        w.insert(at(origin, 50_000 + i), i);
    }
    assert_eq!(w.cells.len(), cells);
    check_invariants(&w);
}

#[test]
fn insert_cancel_churn_uses_constant_storage() {
    let origin = Instant::now();
    let mut rng = Rng::new(21);
    let mut w = Wheel::new(origin);
    // Background timers over a minute, as in the benchmark, then many
    // insert + cancel pairs at random deadlines in the same window.
    for id in 0..1_000u64 {
        w.insert(at(origin, range(&mut rng, 1, MIN)), id);
    }
    let capacities =
        |w: &Wheel<u64>| -> usize { (0..LEVELS * SLOTS).map(|b| w.slots.capacity(b)).sum() };
    for id in 1_000..101_000u64 {
        let key = w.insert(at(origin, range(&mut rng, 1, MIN)), id);
        assert_eq!(w.cancel(key), Some(id));
        assert_eq!(w.cancel(key), None, "a cancelled key is stale");
    }
    assert_eq!(w.len(), 1_000);
    assert_eq!(w.cells.len(), 1_001, "one cell reused over and over");
    let after_churn = capacities(&w);
    check_invariants(&w);
    // The slot vectors hold at most 4 × 1 000 entries plus SLOT_KEEP per
    // slot, whatever the churn.
    assert!(after_churn <= 4 * 1_000 + LEVELS * SLOTS * SLOT_KEEP);
    // Everything left fires, on time.
    let mut fired = 0;
    for t in (0..=MIN + 7).step_by(7) {
        let due: Vec<TimerKey> = w.advance(at(origin, t)).map(|(key, _)| key).collect();
        for key in due {
            assert_eq!(w.get(key), None, "fired: stale");
            fired += 1;
        }
    }
    assert_eq!(fired, 1_000);
}

#[test]
fn a_cascaded_slot_keeps_a_small_allocation_for_reuse() {
    let origin = Instant::now();
    let mut w = Wheel::new(origin);
    // Two timers in a level-1 slot: cascaded at its start into level 0.
    let a = w.insert(at(origin, 100), 'a');
    let b = w.insert(at(origin, 120), 'b');
    let bucket = bucket_of(&w, a);
    assert_eq!(bucket_of(&w, b), bucket);
    assert_eq!(w.poll(at(origin, 64)), None, "cascaded, nothing due");
    assert!(w.slots.entries(bucket).is_empty());
    let kept = w.slots.capacity(bucket);
    assert!(
        kept > 0 && kept <= SLOT_KEEP,
        "allocation {kept} handed back"
    );
    check_invariants(&w);
    assert_eq!(w.poll(at(origin, 100)), Some((a, 'a')));
    assert_eq!(w.poll(at(origin, 120)), Some((b, 'b')));
}

#[test]
fn coarsen_rounds_up_to_the_grid_and_never_earlier() {
    let origin = Instant::now();
    let w: Wheel<u32> = Wheel::new(origin);
    let grid = Duration::from_millis(16);
    // On the grid already: unchanged.
    assert_eq!(w.coarsen(at(origin, 32), grid), at(origin, 32));
    // Anywhere in (16, 32] ms goes to 32; a nanosecond past 32 goes to 48.
    assert_eq!(w.coarsen(at_ns(origin, 16_000_001), grid), at(origin, 32));
    assert_eq!(w.coarsen(at(origin, 31), grid), at(origin, 32));
    assert_eq!(w.coarsen(at_ns(origin, 32_000_001), grid), at(origin, 48));
    // 1 ms (and anything below it) is the tick: only the rounding up.
    assert_eq!(
        w.coarsen(at_ns(origin, 7_300_000), Duration::ZERO),
        at(origin, 8)
    );
    assert_eq!(
        w.coarsen(at_ns(origin, 7_300_000), Duration::from_millis(1)),
        at(origin, 8)
    );
    // Random deadlines and grids: never earlier, less than one step later,
    // on the grid.
    let mut rng = Rng::new(5);
    for _ in 0..10_000 {
        let deadline = at_ns(origin, range(&mut rng, 0, 10_000_000_000));
        let step = range(&mut rng, 1, 100);
        let c = w.coarsen(deadline, Duration::from_millis(step));
        assert!(c >= deadline);
        assert!(c - deadline < Duration::from_millis(step));
        assert_eq!((c - origin).as_nanos() % (u128::from(step) * 1_000_000), 0);
    }
    // Beyond the tick range: as it is.
    let far = origin + Duration::from_secs(400 * 365 * 86_400 * 100);
    assert_eq!(w.coarsen(far, grid), far);
}

#[test]
fn the_tick_api_files_as_the_instant_api_does() {
    // Two wheels fed the same random deadlines, one as instants and one
    // as ticks (with resets and cancels): they fire the same values at
    // the same polls and agree on every next expiration.
    let origin = Instant::now();
    let mut by_instant: Wheel<u64> = Wheel::new(origin);
    let mut by_tick: Wheel<u64> = Wheel::new(origin);
    let mut rng = Rng::new(41);
    let mut keys = Vec::new();
    let mut now = 0;
    for value in 0..20_000u64 {
        let deadline = at_ns(
            origin,
            (now + range(&mut rng, 0, 10 * MIN)) * NS_PER_MS + range(&mut rng, 0, NS_PER_MS),
        );
        let tick = by_tick.deadline_tick(deadline);
        assert_eq!(tick, ceil_ms((deadline - origin).as_nanos() as u64));
        keys.push((
            by_instant.insert(deadline, value),
            by_tick.insert_tick(tick, value),
        ));
        match rng.below_inclusive(9) {
            0 => {
                let (a, b) = keys.swap_remove(rng.below_inclusive(keys.len() as u64 - 1) as usize);
                assert_eq!(by_instant.cancel(a), by_tick.cancel(b));
            }
            1 => {
                let (a, b) = keys[rng.below_inclusive(keys.len() as u64 - 1) as usize];
                let to = at_ns(origin, (now + range(&mut rng, 0, MIN)) * NS_PER_MS + 1);
                assert_eq!(
                    by_instant.reset(a, to),
                    by_tick.reset_tick(b, by_tick.deadline_tick(to))
                );
            }
            2 => {
                now += range(&mut rng, 0, 5 * SEC);
                let a: Vec<u64> = by_instant
                    .advance(at(origin, now))
                    .map(|(_, v)| v)
                    .collect();
                let b: Vec<u64> = by_tick.advance(at(origin, now)).map(|(_, v)| v).collect();
                assert_eq!(a, b, "fired at {now} ms");
            }
            _ => {}
        }
        assert_eq!(by_instant.next_expiration(), by_tick.next_expiration());
    }
    check_invariants(&by_tick);
    assert_eq!(by_instant.len(), by_tick.len());
}

#[test]
fn a_tick_beyond_the_cap_is_the_cap_and_never_fires() {
    let origin = Instant::now();
    let mut w: Wheel<&str> = Wheel::new(origin);
    let never = w.insert_tick(u64::MAX, "never");
    let soon = w.insert_tick(5, "soon");
    assert_eq!(w.deadline(soon), Some(at(origin, 5)));
    assert_eq!(w.deadline(never), w.instant_at(MAX_TICK));
    assert_eq!((w.tick(soon), w.tick(never)), (Some(5), Some(MAX_TICK)));
    let far = origin + Duration::from_secs(20_000 * 365 * 86_400);
    let fired: Vec<_> = w.advance(far).map(|(_, v)| v).collect();
    assert_eq!(fired, ["soon"]);
    assert_eq!(w.get(never), Some(&"never"));
    // Reset beyond the cap: still pending, still never due.
    assert!(w.reset_tick(never, u64::MAX - 1));
    assert_eq!(w.advance(far).count(), 0);
    assert!(!w.reset_tick(soon, 1), "a fired timer's key is stale");
    assert_eq!(w.tick(soon), None);
    assert_eq!(w.tick(never), Some(MAX_TICK));
    check_invariants(&w);
}

#[test]
fn coarsen_tick_is_coarsen_in_ticks() {
    let origin = Instant::now();
    let w: Wheel<u32> = Wheel::new(origin);
    let mut rng = Rng::new(6);
    for _ in 0..10_000 {
        let deadline = at_ns(origin, range(&mut rng, 0, 100_000_000_000));
        let grain = Duration::from_micros(range(&mut rng, 0, 200_000));
        assert_eq!(
            w.deadline_tick(w.coarsen(deadline, grain)),
            w.coarsen_tick(w.deadline_tick(deadline), grain),
        );
    }
    // Rounding that would pass the cap keeps the tick; the cap stays.
    let grid = Duration::from_millis(1 << 20);
    assert_eq!(w.coarsen_tick(MAX_TICK - 1, grid), MAX_TICK - 1);
    assert_eq!(w.coarsen_tick(MAX_TICK, grid), MAX_TICK);
    assert_eq!(w.coarsen_tick(u64::MAX, grid), MAX_TICK);
    assert_eq!(w.coarsen_tick(17, Duration::from_millis(16)), 32);
}
