//! Session resume settings: whether a link keeps its messages across
//! broken connections, how many unacknowledged bytes a session holds, and
//! how long and how many detached sessions a server keeps.
//!
//! Plain data plus validation.

use std::time::Duration;

use crate::error::ConfigError;

/// Session resume (see the crate docs and `docs/PROTOCOL.md`): every
/// message is delivered exactly once and in order across broken
/// connections and redials, as long as the session is resumed. On by
/// default ([`Config::resume`](super::Config::resume)); `None` there turns
/// it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeConfig {
    /// Bytes of DATA (frames as on the wire) a session holds that the peer
    /// has not acknowledged yet — sent, being sent, or queued while the
    /// link is down. A `send` beyond it is refused with backpressure, and
    /// `on_drain` follows once acknowledgements have freed half. `None`:
    /// the output's bound, [`Config::max_outbound`](super::Config::max_outbound)
    /// (the default). Like that bound, it must hold a message of
    /// `max_frame` bytes (plus 5) for such a message to be sent.
    pub max_unacked: Option<usize>,
    /// Server: how long a session whose connection ended is held for the
    /// client to resume. Then it is forgotten and its unacknowledged
    /// messages are handed back to the application. Above zero, at most
    /// one year. Default 60 s.
    pub session_expiry: Duration,
    /// Server: how many detached sessions a reactor holds at most; beyond
    /// it the oldest is forgotten (its messages handed back), so new
    /// clients are never refused for it. Default 10 000.
    pub max_detached: usize,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        ResumeConfig {
            max_unacked: None,
            session_expiry: Duration::from_secs(60),
            max_detached: 10_000,
        }
    }
}

impl ResumeConfig {
    /// Checks the values.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_unacked == Some(0) {
            return Err(ConfigError(
                "resume max_unacked must be above zero (None: max_outbound)",
            ));
        }
        if self.session_expiry.is_zero() || self.session_expiry > super::MAX_DURATION {
            return Err(ConfigError(
                "resume session_expiry must be above zero and at most one year",
            ));
        }
        Ok(())
    }
}
