//! The wheel against a naive model (a map of pending timers) over random
//! inserts, cancels, resets, clock steps and polls.

use std::collections::BTreeMap;

use super::*;

/// The naive model: every pending timer by id, with its key and tick.
struct Model {
    /// id → (key, tick). A `BTreeMap` so runs are reproducible.
    live: BTreeMap<u64, (TimerKey, u64)>,
    /// The clock as the wheel sees it: the largest floor tick polled.
    now: u64,
}

impl Model {
    fn earliest(&self) -> Option<u64> {
        self.live.values().map(|&(_, t)| t).min()
    }

    fn due(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, &(_, t))| t <= self.now)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn pick(&self, rng: &mut Rng) -> Option<(u64, TimerKey)> {
        let n = self.live.len() as u64;
        if n == 0 {
            return None;
        }
        let i = rng.below_inclusive(n - 1) as usize;
        self.live.iter().nth(i).map(|(&id, &(k, _))| (id, k))
    }
}

/// A deadline in ns after the origin relative to the clock: past, near,
/// minutes, days, beyond the horizon, or an exact millisecond.
fn random_deadline(rng: &mut Rng, clock_ns: u64) -> u64 {
    let ms = NS_PER_MS;
    match rng.below_inclusive(99) {
        0..=9 => clock_ns.saturating_sub(rng.below_inclusive(10 * SEC * ms)),
        10..=44 => clock_ns + rng.below_inclusive(200 * ms),
        45..=69 => clock_ns + rng.below_inclusive(10 * MIN * ms),
        70..=84 => clock_ns + rng.below_inclusive(30 * DAY * ms),
        85..=89 => clock_ns + range(rng, 795 * DAY * ms, 3_000 * DAY * ms),
        _ => (clock_ns / ms + rng.below_inclusive(5_000)) * ms,
    }
}

/// How far the clock moves: mostly a few ms, sometimes hours or years,
/// rarely backwards.
fn random_step(rng: &mut Rng) -> i64 {
    let ms = NS_PER_MS;
    let forward = match rng.below_inclusive(999) {
        0..=9 => return -(rng.below_inclusive(SEC * ms) as i64),
        10..=409 => rng.below_inclusive(3 * ms),
        410..=709 => rng.below_inclusive(100 * ms),
        710..=859 => rng.below_inclusive(10 * SEC * ms),
        860..=949 => rng.below_inclusive(HOUR * ms),
        950..=994 => rng.below_inclusive(20 * DAY * ms),
        _ => rng.below_inclusive(1_000 * DAY * ms),
    };
    forward as i64
}

fn run_model(seed: u64, ops: usize) {
    let origin = Instant::now();
    let mut rng = Rng::new(seed);
    let mut w = Wheel::new(origin);
    let mut m = Model {
        live: BTreeMap::new(),
        now: 0,
    };
    let mut stale: Vec<TimerKey> = Vec::new();
    let mut clock_ns: u64 = 0;
    let mut next_id = 0u64;
    let (mut fired_total, mut jumps) = (0usize, 0usize);

    for op in 0..ops {
        match rng.below_inclusive(99) {
            // insert
            0..=39 => {
                let ns = random_deadline(&mut rng, clock_ns);
                let key = w.insert(at_ns(origin, ns), next_id);
                m.live.insert(next_id, (key, ceil_ms(ns)));
                next_id += 1;
            }
            // cancel, of a live or a stale key
            40..=51 => {
                if let Some((id, key)) = m.pick(&mut rng) {
                    assert_eq!(w.cancel(key), Some(id), "op {op}");
                    m.live.remove(&id);
                    stale.push(key);
                }
                if !stale.is_empty() {
                    let i = rng.below_inclusive(stale.len() as u64 - 1) as usize;
                    assert_eq!(w.cancel(stale[i]), None, "op {op}: stale cancel");
                }
            }
            // reset, of a live or a stale key
            52..=63 => {
                let ns = random_deadline(&mut rng, clock_ns);
                if let Some((id, key)) = m.pick(&mut rng) {
                    assert!(w.reset(key, at_ns(origin, ns)), "op {op}");
                    m.live.insert(id, (key, ceil_ms(ns)));
                }
                if !stale.is_empty() {
                    let i = rng.below_inclusive(stale.len() as u64 - 1) as usize;
                    assert!(!w.reset(stale[i], at_ns(origin, ns)), "op {op}");
                }
            }
            // advance the clock and drain everything due
            64..=89 => {
                let step = random_step(&mut rng);
                clock_ns = clock_ns.saturating_add_signed(step);
                jumps += usize::from(step > (DAY * NS_PER_MS) as i64);
                m.now = m.now.max(clock_ns / NS_PER_MS);
                let fired: Vec<(TimerKey, u64)> = w.advance(at_ns(origin, clock_ns)).collect();
                let mut last = 0;
                for &(key, id) in &fired {
                    let (want_key, tick) = m.live[&id];
                    assert_eq!(key, want_key, "op {op}: key of {id}");
                    assert!(tick >= last, "op {op}: out of order");
                    last = tick;
                }
                let mut got: Vec<u64> = fired.iter().map(|&(_, id)| id).collect();
                got.sort_unstable();
                assert_eq!(got, m.due(), "op {op}: fired set at {} ms", m.now);
                for (key, id) in fired {
                    m.live.remove(&id);
                    stale.push(key);
                }
                fired_total += got.len();
            }
            // poll one at a time without draining: earliest tick first
            _ => {
                for _ in 0..rng.below_inclusive(3) {
                    let min_due = m.earliest().filter(|&t| t <= m.now);
                    let now = at_ns(origin, clock_ns);
                    // Through the Instant API or in ticks: the same.
                    let polled = if rng.below_inclusive(1) == 0 {
                        w.poll(now)
                    } else {
                        w.poll_tick(w.now_tick(now))
                    };
                    match polled {
                        Some((key, id)) => {
                            let (want_key, tick) = m.live[&id];
                            assert_eq!(key, want_key, "op {op}");
                            assert_eq!(Some(tick), min_due, "op {op}: not the earliest");
                            m.live.remove(&id);
                            stale.push(key);
                            fired_total += 1;
                        }
                        None => assert_eq!(min_due, None, "op {op}: due timer kept"),
                    }
                }
            }
        }
        if stale.len() > 64 {
            let i = rng.below_inclusive(63) as usize;
            stale.swap_remove(i);
        }

        assert_eq!(w.len(), m.live.len(), "op {op}: len");
        assert_eq!(w.is_empty(), m.live.is_empty());
        match (w.next_expiration(), m.earliest()) {
            (None, None) => {}
            (Some(next), Some(tick)) => {
                assert!(next <= at(origin, tick), "op {op}: next expiration late")
            }
            (got, want) => panic!("op {op}: next_expiration {got:?}, earliest tick {want:?}"),
        }
        match (w.next_expiration_tick(), m.earliest()) {
            (None, None) => {}
            (Some(next), Some(tick)) => assert!(next <= tick, "op {op}: next tick late"),
            (got, want) => panic!("op {op}: next_expiration_tick {got:?}, earliest {want:?}"),
        }
        if let Some((id, key)) = m.pick(&mut rng) {
            assert_eq!(w.get(key), Some(&id));
            assert_eq!(w.deadline(key), Some(at(origin, m.live[&id].1)));
        }
        if op % 16 == 0 {
            check_invariants(&w);
        }
    }
    check_invariants(&w);
    assert!(fired_total > ops / 10, "seed {seed}: too few timers fired");
    assert!(jumps > 0, "seed {seed}: no large jump exercised");
}

#[test]
fn matches_a_naive_model_over_random_operations() {
    for seed in [11, 12, 13, 14, 15, 16] {
        run_model(seed, 20_000);
    }
}
