//! Reconnect delays: exponential growth, a cap, and jitter applied *after*
//! the cap.
//!
//! Pure arithmetic over an attempt counter and a seeded PRNG; it never sleeps
//! and never reads a clock. When to reset the counter (only after a healthy
//! connection) is decided by the connection state machine.

use std::time::Duration;

use crate::config::BackoffConfig;
use crate::rng::Rng;

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

#[cfg(test)]
mod tests;
