//! Negotiated liveness (the LIVENESS flag): a client offers to adopt the
//! server's heartbeat, the server sets it (the client's proposal clamped
//! into its range, or its own settings), and the client uses it on that
//! connection; the server's ping-flood limit follows what it set.
//!
//! Per socket: a redial negotiates again. It never reads a clock.

use std::time::Duration;

use super::{Connection, Role};
use crate::config::Heartbeat;
use crate::proto::codec::Handshake;

impl Connection {
    /// The heartbeat in force on this socket: the one the server set
    /// (client, negotiated), else this side's own.
    #[inline]
    pub(super) fn heartbeat(&self) -> Option<Heartbeat> {
        match (self.role, self.sock.liveness_ms) {
            (Role::Client, (i, t)) if i > 0 && t > 0 => Some(Heartbeat {
                interval: Duration::from_millis(i.into()),
                timeout: Duration::from_millis(t.into()),
            }),
            _ => self.config.heartbeat,
        }
    }

    /// Client: whether our HELLO offers to adopt the server's liveness.
    pub(super) fn offers_liveness(&self) -> bool {
        self.role == Role::Client && self.config.adopt_liveness && self.config.heartbeat.is_some()
    }

    /// Server: a HELLO arrived; sets the client's liveness if it offers to
    /// adopt ours (kept for the WELCOME and the ping-flood limit).
    pub(super) fn negotiate_liveness(&mut self, hello: &Handshake) {
        self.sock.liveness_ms = (0, 0);
        if self.role != Role::Server || !hello.has(Handshake::LIVENESS) {
            return;
        }
        let set = match (self.config.client_liveness, self.config.heartbeat) {
            (Some(range), _) => range.clamp_ms(hello.interval_ms, hello.timeout_ms),
            (None, Some(own)) => (
                super::millis_u32(own.interval),
                super::millis_u32(own.timeout),
            ),
            // No range and no heartbeat of our own: nothing to set.
            (None, None) => return,
        };
        if set.0 > 0 && set.1 > 0 {
            self.sock.liveness_ms = set;
        }
    }

    /// Client: WELCOME arrived; adopts its liveness if it sets it.
    pub(super) fn adopt_liveness(&mut self, welcome: &Handshake) {
        self.sock.liveness_ms = (0, 0);
        if self.offers_liveness()
            && welcome.has(Handshake::LIVENESS)
            && welcome.interval_ms > 0
            && welcome.timeout_ms > 0
        {
            self.sock.liveness_ms = (welcome.interval_ms, welcome.timeout_ms);
        }
    }

    /// Server: the shortest gap between the client's PINGs that is not a
    /// strike: the configured one, or, when this side set the client's
    /// interval, that interval less the 10 % its jitter and timers may
    /// take from it, whichever is longer.
    pub(super) fn min_ping_gap(&self, configured: Duration) -> Duration {
        match (self.role, self.sock.liveness_ms) {
            (Role::Server, (i, _)) if i > 0 => {
                configured.max(Duration::from_millis(u64::from(i) - u64::from(i) / 10))
            }
            _ => configured,
        }
    }
}
