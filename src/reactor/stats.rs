//! Counters and gauges of the reactor and of each connection.
//!
//! Plain data, cheap to copy out; reading them never touches a socket.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::DisconnectReason;
use crate::proto::conn::{Role, State};

/// How many sockets ended for each kind of reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseCounts {
    /// A PING went unanswered for the heartbeat timeout.
    pub heartbeat_timeout: u64,
    /// The handshake did not complete in time.
    pub handshake_timeout: u64,
    /// A TCP connect did not complete in time.
    pub connect_timeout: u64,
    /// A TCP connect failed.
    pub connect_failed: u64,
    /// The endpoint's host name did not resolve.
    pub resolve_failed: u64,
    /// The peer sent CLOSE.
    pub peer_closed: u64,
    /// The peer closed the stream without CLOSE.
    pub peer_eof: u64,
    /// A read or write failed.
    pub io_error: u64,
    /// The peer broke the protocol.
    pub protocol_error: u64,
    /// The peer broke a policy (ping flood).
    pub policy_violation: u64,
    /// The peer stopped reading our output.
    pub write_stalled: u64,
    /// The local application (or a shutdown) closed the connection.
    pub local_close: u64,
    /// Server, resume: a newer connection took the session over.
    pub taken_over: u64,
    /// Server, resume: a detached session expired (or was forgotten for
    /// newer ones).
    pub session_expired: u64,
    /// The TLS layer failed (feature `tls`).
    pub tls: u64,
}

impl CloseCounts {
    pub(crate) fn count(&mut self, reason: &DisconnectReason) {
        let counter = match reason {
            DisconnectReason::HeartbeatTimeout => &mut self.heartbeat_timeout,
            DisconnectReason::HandshakeTimeout => &mut self.handshake_timeout,
            DisconnectReason::ConnectTimeout => &mut self.connect_timeout,
            DisconnectReason::ConnectFailed(_) => &mut self.connect_failed,
            DisconnectReason::Resolve { .. } => &mut self.resolve_failed,
            DisconnectReason::PeerClosed { .. } => &mut self.peer_closed,
            DisconnectReason::PeerEof => &mut self.peer_eof,
            DisconnectReason::Io(_) => &mut self.io_error,
            DisconnectReason::ProtocolError { .. } => &mut self.protocol_error,
            DisconnectReason::PolicyViolation { .. } => &mut self.policy_violation,
            DisconnectReason::WriteStalled => &mut self.write_stalled,
            DisconnectReason::LocalClose(_) => &mut self.local_close,
            DisconnectReason::TakenOver => &mut self.taken_over,
            DisconnectReason::SessionExpired => &mut self.session_expired,
            DisconnectReason::Tls { .. } => &mut self.tls,
        };
        *counter += 1;
    }

    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.heartbeat_timeout
            + self.handshake_timeout
            + self.connect_timeout
            + self.connect_failed
            + self.resolve_failed
            + self.peer_closed
            + self.peer_eof
            + self.io_error
            + self.protocol_error
            + self.policy_violation
            + self.write_stalled
            + self.local_close
            + self.taken_over
            + self.session_expired
            + self.tls
    }
}

/// Reactor-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReactorStats {
    /// Connections held now (accepted and dialed, in any state).
    pub connections: usize,
    /// Listening sockets now.
    pub listeners: usize,
    /// Connections accepted so far.
    pub accepted: u64,
    /// TCP connects started so far (first dials and redials).
    pub connects: u64,
    /// Connections refused because `max_connections` was reached.
    pub refused: u64,
    /// Accept calls that failed with something other than "no more".
    pub accept_errors: u64,
    /// Sockets closed, by cause.
    pub closes: CloseCounts,
    /// The reactor's own lag: how late it handled connection timers, in
    /// the last turn that handled any (the latest of them). Counted from
    /// each deadline's step on the timer grid
    /// ([`Config::timer_grain`](crate::Config::timer_grain)), or, for a
    /// deadline already past when the connection set it (one counted from
    /// an old instant, such as the last receipt before a silence), from
    /// the turn that set it: that timer is due at once. So it is the delay
    /// of the loop itself (a long callback, a stalled process), not how
    /// far a deadline was behind when it was set.
    pub lag: Duration,
    /// The largest [`lag`](Self::lag) seen.
    pub max_lag: Duration,
    /// Turns of the loop so far.
    pub turns: u64,
    /// Busy polling ([`Reactor::set_busy_poll`](crate::Reactor::set_busy_poll)):
    /// non-blocking polls made while spinning.
    pub busy_polls: u64,
    /// Busy polling: waits a spinning poll ended, something being ready
    /// within the budget (the rest blocked once it was spent).
    pub busy_poll_hits: u64,
    /// Server, resume: sessions begun (resume granted to a new client).
    pub sessions_started: u64,
    /// Server, resume: sessions whose socket ended and that were held
    /// detached for the client to resume.
    pub sessions_detached: u64,
    /// Server, resume: sessions a client resumed on a new socket.
    pub sessions_resumed: u64,
    /// Server, resume: detached sessions forgotten before their expiry to
    /// hold newer ones (`max_detached`); expiries themselves are in
    /// [`closes`](Self::closes) (`session_expired`).
    pub sessions_evicted: u64,
    /// Client, resume: links whose server no longer held their session.
    pub sessions_lost: u64,
    /// Wheel entries that came due and found nothing due on their
    /// connection, because traffic had moved its deadline later since
    /// the entry was filed (each costs a look at the connection and a
    /// re-file; the reactor re-files on the way instead where it can).
    pub early_timers: u64,
    /// Times the reactor's shared read buffer was given fresh, zeroed
    /// memory (64 KiB): at the first read, and whenever reads have moved
    /// through it because something keeps their bytes (messages taken as
    /// `Bytes`, partial frames). Reads handled in place give their memory
    /// back, so a stream of such reads fills it once.
    pub read_buffer_fills: u64,
}

/// A snapshot of one connection.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConnStats {
    /// Client (dialed) or server (accepted).
    pub role: Role,
    /// Where the connection is in its life.
    pub state: State,
    /// The peer's address. For a dialed link, the address dialed: for a
    /// link dialed by name, the address of its current socket (or its
    /// last one; the unspecified address until the name first resolved).
    pub peer_addr: SocketAddr,
    /// Client: the endpoint the link is on (or trying), as its index in
    /// the list it was dialed with; 0 for one endpoint, and on a server.
    /// [`Context::endpoint`](crate::Context::endpoint) gives the endpoint
    /// itself (its name).
    pub endpoint: usize,
    /// Smoothed round-trip time, once a PONG has been timed.
    pub srtt: Option<Duration>,
    /// Round-trip time variance.
    pub rttvar: Option<Duration>,
    /// PINGs sent.
    pub pings_sent: u32,
    /// PONGs received.
    pub pongs_received: u64,
    /// PINGs received (and answered).
    pub pings_received: u64,
    /// DATA frames sent.
    pub messages_sent: u64,
    /// DATA frames received.
    pub messages_received: u64,
    /// Bytes received, all frames included.
    pub bytes_received: u64,
    /// Time since the last byte arrived, once established.
    pub since_last_recv: Option<Duration>,
    /// Client: the current redial attempt since the last healthy
    /// connection (0 when healthy).
    pub reconnect_attempt: u32,
    /// Client in backoff: time until the next redial.
    pub reconnect_in: Option<Duration>,
    /// Bytes queued for sending.
    pub pending_output: usize,
    /// Messages handed back undelivered ([`Handler::on_undelivered`]):
    /// of `messages_sent`, the ones that were never written whole.
    ///
    /// [`Handler::on_undelivered`]: crate::Handler::on_undelivered
    pub messages_undelivered: u64,
    /// The session id the server assigned.
    pub session_id: u64,
    /// Resume: messages sent (or queued while the link was down) that the
    /// peer has not acknowledged yet, and their bytes as DATA frames.
    pub unacked_messages: u64,
    /// See [`unacked_messages`](Self::unacked_messages).
    pub unacked_bytes: usize,
    /// Resume: messages sent again after resume handshakes.
    pub messages_resent: u64,
    /// Resume: connections that resumed the session.
    pub resumes: u32,
    /// ACK frames sent (13 bytes each): a resumed session's receipt
    /// counts (every 64 DATA frames received, or 20 ms after the first
    /// one not yet acknowledged), and signs of life while receiving
    /// without sending.
    pub acks_sent: u32,
}
