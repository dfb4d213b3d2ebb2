//! Reconnect delays: exponential growth, a cap, and jitter applied *after*
//! the cap.
//!
//! Pure arithmetic over an attempt counter and a seeded PRNG; it never sleeps
//! and never reads a clock. When to reset the counter (only after a healthy
//! connection) is decided by the connection state machine.

use std::time::Duration;

use crate::config::{ConfigError, MAX_DURATION};
use crate::rng::Rng;

/// Parameters of the reconnect schedule, after gRPC's connection-backoff.
///
/// The delay before attempt `n` (1-based) is
/// `min(initial × multiplier^(n-1), max) × (1 + U(-jitter, +jitter))`.
/// Jitter is applied after the cap on purpose: clients that all reached the
/// cap must keep *different* delays, or a restarted server is hit by one
/// synchronized pulse. A jittered delay may therefore exceed `max` by up to
/// `jitter × max`.
///
/// [`validate`](Self::validate) checks the ranges given on each field;
/// the arithmetic never panics, but with values it refuses the delays are
/// unspecified.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first redial, at most `max`. Default 100 ms.
    pub initial: Duration,
    /// Growth factor per attempt: finite and ≥ 1. Default 2.
    pub multiplier: f64,
    /// Cap of the un-jittered delay, at most one year
    /// ([`MAX_DURATION`]). Default 30 s.
    pub max: Duration,
    /// Randomization factor in `[0, 1)`: ±`jitter` around the delay.
    /// Default 0.2 (±20 %).
    pub jitter: f64,
    /// Give up after this many consecutive failed attempts; `None` (the
    /// default) redials forever.
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.2,
            max_attempts: None,
        }
    }
}

impl BackoffConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(ConfigError("backoff multiplier must be finite and >= 1"));
        }
        if !(self.jitter.is_finite() && (0.0..1.0).contains(&self.jitter)) {
            return Err(ConfigError("backoff jitter must be in [0, 1)"));
        }
        if self.initial > self.max {
            return Err(ConfigError("backoff initial delay must not exceed max"));
        }
        // A delay is `now + delay` (an Instant overflow panics); jittered,
        // it stays below twice `max`.
        if self.max > MAX_DURATION {
            return Err(ConfigError("backoff max delay must be at most one year"));
        }
        Ok(())
    }

    /// The un-jittered delay before attempt `attempt` (1-based), capped at
    /// `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        if self.initial.is_zero() {
            // Zero times any growth (an infinite one included) is zero.
            return Duration::ZERO;
        }
        let exp = attempt.saturating_sub(1).min(1_000) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        // An infinite product (or a NaN one, from a multiplier `validate`
        // refuses) is capped here, and `max` itself is returned as it is:
        // in seconds as f64 a huge `max` rounds up past `Duration::MAX`.
        if secs < self.max.as_secs_f64() {
            Duration::try_from_secs_f64(secs).unwrap_or(self.max)
        } else {
            self.max
        }
    }
}

/// The reconnect schedule of one client connection.
///
/// ```
/// use std::time::Duration;
/// use tether::backoff::{Backoff, BackoffConfig};
///
/// let config = BackoffConfig { jitter: 0.0, ..BackoffConfig::default() };
/// let mut backoff = Backoff::new(config, 1);
/// assert_eq!(backoff.next_delay(), Some(Duration::from_millis(100)));
/// assert_eq!(backoff.next_delay(), Some(Duration::from_millis(200)));
/// assert_eq!(backoff.attempt(), 2);
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Some(Duration::from_millis(100)));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    attempts: Attempts,
    rng: Rng,
}

/// The attempt counter alone, for callers that keep the configuration and
/// a PRNG elsewhere (a connection holds both already).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attempts(u32);

impl Attempts {
    /// Counts one more attempt and returns the delay before it, or `None`
    /// once `max_attempts` are used up.
    pub(crate) fn next_delay(&mut self, config: &BackoffConfig, rng: &mut Rng) -> Option<Duration> {
        if config.max_attempts.is_some_and(|max| self.0 >= max) {
            return None;
        }
        self.0 = self.0.saturating_add(1);
        let base = config.base_delay(self.0);
        let spread = config.jitter * (2.0 * rng.next_f64() - 1.0);
        // `base.mul_f64(1.0 + spread)`, which panics on a factor that is
        // not finite or negative (a jitter `validate` refuses): then the
        // delay stays un-jittered. A valid one (`max` of a year at most,
        // jitter below 1) stays below two years.
        let jittered = Duration::try_from_secs_f64((1.0 + spread) * base.as_secs_f64());
        Some(jittered.unwrap_or(base))
    }

    pub(crate) fn get(self) -> u32 {
        self.0
    }

    pub(crate) fn reset(&mut self) {
        self.0 = 0;
    }
}

impl Backoff {
    /// A fresh schedule; `seed` makes the jitter reproducible.
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            attempts: Attempts::default(),
            rng: Rng::new(seed),
        }
    }

    /// Counts one more attempt and returns the delay to wait before it, or
    /// `None` once `max_attempts` attempts have been used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.attempts.next_delay(&self.config, &mut self.rng)
    }

    /// Attempts counted since the last reset (the number of the attempt the
    /// last delay was for).
    pub fn attempt(&self) -> u32 {
        self.attempts.get()
    }

    /// Starts the schedule over. Call only after a connection has proven
    /// healthy, never merely on connect or handshake.
    pub fn reset(&mut self) {
        self.attempts.reset();
    }

    /// The parameters.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests;
