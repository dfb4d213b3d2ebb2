//! The reconnect schedule's parameters: plain data, their ranges, and the
//! un-jittered delay of an attempt.
//!
//! Reads no clock and draws no random number; `backoff` adds the jitter.

use std::time::Duration;

use super::MAX_DURATION;
use crate::error::ConfigError;

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
