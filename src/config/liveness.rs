//! Negotiated liveness settings: the range of heartbeat intervals and
//! timeouts a server lets its clients use.
//!
//! Plain data plus validation.

use std::time::Duration;

use crate::error::ConfigError;

/// Server: the heartbeat a client that offers to adopt the server's may
/// use (see [`Config::client_liveness`](super::Config::client_liveness)):
/// its proposed interval and timeout, each clamped into its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLiveness {
    /// The shortest interval a client may ping at.
    pub min_interval: Duration,
    /// The longest interval (a client idle longer is not noticed in time).
    pub max_interval: Duration,
    /// The shortest timeout.
    pub min_timeout: Duration,
    /// The longest timeout.
    pub max_timeout: Duration,
}

impl ClientLiveness {
    /// Clamps a proposal (in ms, as HELLO carries it) into the range.
    pub(crate) fn clamp_ms(&self, interval_ms: u32, timeout_ms: u32) -> (u32, u32) {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        (
            interval_ms.clamp(ms(self.min_interval), ms(self.max_interval)),
            timeout_ms.clamp(ms(self.min_timeout), ms(self.max_timeout)),
        )
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let ok = |lo: Duration, hi: Duration| {
            lo >= Duration::from_millis(1) && lo <= hi && hi.as_millis() <= u128::from(u32::MAX)
        };
        if !ok(self.min_interval, self.max_interval) || !ok(self.min_timeout, self.max_timeout) {
            return Err(ConfigError(
                "client_liveness: each range must run from at least 1 ms up to at most u32::MAX ms, min <= max",
            ));
        }
        Ok(())
    }
}
