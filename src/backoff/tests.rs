use std::collections::HashSet;
use std::time::Duration;

use super::{Attempts, BackoffConfig};
use crate::rng::Rng;

/// The reconnect schedule of one client link, as the connection keeps it
/// (attempts, configuration and PRNG together), for these tests.
#[derive(Clone, Debug)]
pub(super) struct Backoff {
    config: BackoffConfig,
    attempts: Attempts,
    rng: Rng,
}

impl Backoff {
    /// A fresh schedule; `seed` makes the jitter reproducible.
    pub(super) fn new(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            attempts: Attempts::default(),
            rng: Rng::new(seed),
        }
    }

    /// Counts one more attempt and returns the delay to wait before it, or
    /// `None` once `max_attempts` attempts have been used up.
    pub(super) fn next_delay(&mut self) -> Option<Duration> {
        self.attempts.next_delay(&self.config, &mut self.rng)
    }

    /// Attempts counted since the last reset (the number of the attempt the
    /// last delay was for).
    pub(super) fn attempt(&self) -> u32 {
        self.attempts.get()
    }

    /// Starts the schedule over. Call only after a connection has proven
    /// healthy, never merely on connect or handshake.
    pub(super) fn reset(&mut self) {
        self.attempts.reset();
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn no_jitter() -> BackoffConfig {
    BackoffConfig {
        jitter: 0.0,
        ..BackoffConfig::default()
    }
}

#[test]
fn grows_exponentially_then_caps() {
    let mut b = Backoff::new(no_jitter(), 0);
    let got: Vec<Duration> = (0..12).map(|_| b.next_delay().unwrap()).collect();
    let want = [
        100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000,
    ];
    assert_eq!(got, want.iter().map(|&m| ms(m)).collect::<Vec<_>>());
}

#[test]
fn huge_attempt_numbers_stay_at_the_cap() {
    let c = no_jitter();
    assert_eq!(c.base_delay(u32::MAX), ms(30_000));
    assert_eq!(c.base_delay(1), ms(100));
    assert_eq!(c.base_delay(0), ms(100));
}

#[test]
fn jitter_stays_within_bounds_below_and_at_the_cap() {
    let config = BackoffConfig::default();
    for seed in 0..200 {
        let mut b = Backoff::new(config, seed);
        for attempt in 1..=15 {
            let d = b.next_delay().unwrap().as_secs_f64();
            let base = config.base_delay(attempt).as_secs_f64();
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "seed {seed} attempt {attempt}: {d} not within ±20 % of {base}"
            );
        }
    }
}

#[test]
fn clients_at_the_cap_keep_different_delays() {
    // The trap: capping after jittering gives every capped client exactly
    // `max`. Here 1 000 clients at attempt 20 must stay spread over ±20 %.
    let config = BackoffConfig::default();
    let delays: Vec<Duration> = (0..1_000u64)
        .map(|seed| {
            let mut b = Backoff::new(config, seed);
            (0..19).for_each(|_| {
                b.next_delay();
            });
            b.next_delay().unwrap()
        })
        .collect();
    let distinct: HashSet<Duration> = delays.iter().copied().collect();
    assert!(
        distinct.len() > 900,
        "only {} distinct delays",
        distinct.len()
    );
    let above = delays.iter().filter(|d| **d > ms(30_000)).count();
    let below = delays.iter().filter(|d| **d < ms(30_000)).count();
    assert!(above > 300 && below > 300, "above {above}, below {below}");
    let min = delays.iter().min().unwrap().as_secs_f64();
    let max = delays.iter().max().unwrap().as_secs_f64();
    assert!(max - min > 10.0, "spread {min}..{max} too narrow");
}

#[test]
fn first_delays_of_many_clients_are_spread() {
    let config = BackoffConfig::default();
    let firsts: HashSet<Duration> = (0..100u64)
        .map(|seed| Backoff::new(config, seed).next_delay().unwrap())
        .collect();
    assert!(firsts.len() > 90);
}

#[test]
fn same_seed_gives_same_schedule() {
    let config = BackoffConfig::default();
    let run = |seed| {
        let mut b = Backoff::new(config, seed);
        (0..10).map(|_| b.next_delay().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn max_attempts_gives_up_and_reset_starts_over() {
    let config = BackoffConfig {
        max_attempts: Some(3),
        ..no_jitter()
    };
    let mut b = Backoff::new(config, 0);
    assert_eq!(b.next_delay(), Some(ms(100)));
    assert_eq!(b.next_delay(), Some(ms(200)));
    assert_eq!(b.next_delay(), Some(ms(400)));
    assert_eq!(b.next_delay(), None);
    assert_eq!(b.attempt(), 3);
    b.reset();
    assert_eq!(b.attempt(), 0);
    assert_eq!(b.next_delay(), Some(ms(100)));
}

#[test]
fn validate_rejects_nonsense() {
    let ok = BackoffConfig::default();
    assert!(ok.validate().is_ok());
    for bad in [
        BackoffConfig {
            multiplier: 0.5,
            ..ok
        },
        BackoffConfig {
            multiplier: f64::NAN,
            ..ok
        },
        BackoffConfig { jitter: 1.0, ..ok },
        BackoffConfig { jitter: -0.1, ..ok },
        BackoffConfig {
            initial: ms(50_000),
            ..ok
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn validate_bounds_the_delays_to_one_year() {
    let year = crate::config::MAX_DURATION;
    let ok = BackoffConfig {
        initial: year,
        max: year,
        ..BackoffConfig::default()
    };
    assert!(ok.validate().is_ok());
    let too_long = BackoffConfig {
        max: year + Duration::from_secs(1),
        ..BackoffConfig::default()
    };
    assert!(too_long.validate().is_err(), "{too_long:?} accepted");
}

#[test]
fn delays_never_panic_whatever_the_configuration() {
    // `validate` refuses all of these; the arithmetic must not panic on
    // them all the same (a `Backoff` is built from any configuration).
    let ok = BackoffConfig::default();
    let configs = [
        BackoffConfig {
            max: Duration::MAX,
            ..ok
        },
        BackoffConfig {
            initial: Duration::MAX,
            max: Duration::MAX,
            ..ok
        },
        BackoffConfig {
            initial: Duration::MAX,
            max: ms(1),
            ..ok
        },
        BackoffConfig {
            jitter: f64::NAN,
            ..ok
        },
        BackoffConfig { jitter: 1.5, ..ok },
        BackoffConfig {
            jitter: f64::INFINITY,
            ..ok
        },
        BackoffConfig { jitter: -3.0, ..ok },
        BackoffConfig {
            multiplier: f64::NAN,
            ..ok
        },
        BackoffConfig {
            multiplier: -2.0,
            ..ok
        },
        BackoffConfig {
            multiplier: f64::INFINITY,
            initial: Duration::ZERO,
            ..ok
        },
        BackoffConfig {
            multiplier: f64::MAX,
            jitter: 0.999_999,
            max: crate::config::MAX_DURATION,
            ..ok
        },
    ];
    for config in configs {
        for seed in 0..50 {
            let mut b = Backoff::new(config, seed);
            for _ in 0..40 {
                let _ = b.next_delay();
            }
        }
        for attempt in [0, 1, 2, 3, 64, 1_000, u32::MAX] {
            let _ = config.base_delay(attempt);
        }
    }
}

#[test]
fn a_zero_initial_delay_stays_zero_however_large_the_multiplier() {
    let config = BackoffConfig {
        initial: Duration::ZERO,
        multiplier: f64::MAX,
        ..no_jitter()
    };
    assert!(config.validate().is_ok());
    for attempt in [1, 2, 3, 10, u32::MAX] {
        assert_eq!(
            config.base_delay(attempt),
            Duration::ZERO,
            "attempt {attempt}"
        );
    }
}
