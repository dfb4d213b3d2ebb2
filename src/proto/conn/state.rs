//! The explicit states of a connection and the roles it can play.
//!
//! Names only; the transitions live in the state machine, which changes
//! state through one function that logs every `A => B`.

use std::fmt;

/// Which end of the link a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We dialed; we send HELLO and redial when the link is lost.
    Client,
    /// We accepted; we answer WELCOME and never redial.
    Server,
}

/// Where a connection is in its life.
///
/// Client: `Idle → Connecting → Handshaking → Established → Closing →
/// Backoff → Connecting → …`, ending in `Closed` when the application
/// closes it or the backoff gives up. Accepted server connection:
/// `Handshaking → Established → Closing → Closed`, or, holding a resumable
/// session, `… → Closing → Detached`, then `Established` again when the
/// client resumes on a new socket, or `Closed` when the session expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Client, not started yet.
    Idle,
    /// Client: waiting for the TCP connect to finish.
    Connecting,
    /// TCP is up; waiting for WELCOME (client) or HELLO (server).
    Handshaking,
    /// Handshake done: messages and heartbeats flow.
    Established,
    /// The socket is still open only to flush output: what was queued, and
    /// our CLOSE frame when we end the connection (none when the peer ended
    /// its stream first).
    Closing,
    /// Client: socket closed, waiting for the reconnect timer.
    Backoff,
    /// Server: the socket closed; the session is held for the client to
    /// resume until its expiry.
    Detached,
    /// Terminal: no socket and no timers; the connection can be dropped.
    Closed,
}

impl State {
    /// Whether a socket belongs to the connection in this state.
    pub fn has_socket(self) -> bool {
        matches!(
            self,
            State::Connecting | State::Handshaking | State::Established | State::Closing
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
