//! What a connection hands back to its driver and application: events,
//! socket actions, send refusals and counters.
//!
//! Plain data; nothing here decides anything.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::error::DisconnectReason;

/// What the application learns about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed; messages can flow.
    Connected(PeerInfo),
    /// A DATA frame arrived (its payload, not copied).
    Message(Bytes),
    /// A connection that had reported [`Event::Connected`] ended.
    Disconnected {
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// Client: a redial is scheduled `delay` from now. Follows every loss,
    /// including failed attempts that never connected.
    Reconnecting {
        /// The number of the coming attempt since the last healthy
        /// connection (1 for the first redial).
        attempt: u32,
        /// How long until the redial.
        delay: Duration,
        /// What ended the previous attempt.
        reason: DisconnectReason,
    },
    /// Messages that were accepted for sending but will not be, handed
    /// back in the order they were sent: the socket ended (or the
    /// connection failed) while they were queued or partly written.
    /// Messages already written whole to the socket are not among them,
    /// although the kernel may still have held some of them when the link
    /// broke.
    Undelivered {
        /// The payloads, in send order.
        messages: Vec<Bytes>,
        /// Why they were not delivered.
        cause: UndeliveredCause,
    },
    /// A send was refused with [`SendError::Backpressure`] and the queued
    /// output has since fallen to half of `max_outbound` or below: there
    /// is room again. Once per refusal.
    Drained,
    /// Client: the backoff's `max_attempts` were used up; the connection is
    /// closed for good.
    GaveUp {
        /// Attempts made since the last healthy connection.
        attempts: u32,
        /// What ended the last attempt.
        reason: DisconnectReason,
    },
}

/// Why messages were handed back undelivered (see
/// [`Event::Undelivered`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UndeliveredCause {
    /// The connection's socket ended, or the connection failed, before
    /// they were completely written to it.
    Dropped,
    /// A send made through a `Handle` was refused on the reactor thread
    /// (the connection was not established, the message too large, or its
    /// output full).
    Refused(SendError),
    /// Resume: the server did not hold the session any more (it restarted,
    /// or let the session expire), so these messages, not acknowledged in
    /// the old session, were not sent again. Some may have been delivered
    /// before the link broke. The link goes on in a new session.
    SessionLost,
    /// Resume: the server does not hold sessions (its WELCOME did not grant
    /// resume), so these messages, not acknowledged on the previous
    /// connection, were not sent again. Some may have been delivered.
    NotResumable,
    /// Resume: the session ended — closed, given up, or (on a server)
    /// forgotten — with these messages not acknowledged by the peer. Some
    /// may have been delivered.
    SessionEnded,
    /// They waited unsent for the configured
    /// [`queue_lifetime`](crate::Config::queue_lifetime) (behind a full
    /// socket, or while the link was down), so they were taken out of the
    /// queue instead of sent late. None of them reached the peer.
    Expired,
}

impl fmt::Display for UndeliveredCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UndeliveredCause::Dropped => f.write_str("the connection ended before they were sent"),
            UndeliveredCause::Refused(e) => write!(f, "refused: {e}"),
            UndeliveredCause::SessionLost => {
                f.write_str("the server lost the session; not acknowledged in it")
            }
            UndeliveredCause::NotResumable => {
                f.write_str("the server does not resume sessions; not acknowledged")
            }
            UndeliveredCause::SessionEnded => {
                f.write_str("the session ended before the peer acknowledged them")
            }
            UndeliveredCause::Expired => f.write_str("not sent within the queue lifetime"),
        }
    }
}

/// What the peer announced in its handshake. (Non-exhaustive: fields
/// are added as the protocol grows; read them, match with `..`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's heartbeat interval (zero if it sends none); on a client
    /// whose server set its liveness (LIVENESS), the interval it set for
    /// this client.
    pub interval: Duration,
    /// The peer's heartbeat timeout (or, as above, the one set for us).
    pub timeout: Duration,
    /// The session id the server assigned (on both ends).
    pub session_id: u64,
    /// What became of session resume on this connection.
    pub resume: ResumeStatus,
    /// Client: which of the link's endpoints this connection reached, as
    /// its index in the list the link was dialed with (see
    /// [`Endpoints`](crate::Endpoints)); 0 for a link dialed to one
    /// endpoint, and on a server.
    pub endpoint: usize,
    /// Client: the link moved: this connection reached another endpoint
    /// than its previous connection did (a failover, or the way back to
    /// the preferred endpoint). False on the first connection, and on a
    /// server.
    pub moved: bool,
}

/// What became of session resume when a connection was established (see
/// [`PeerInfo::resume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeStatus {
    /// Not asked for (resume is off on this side, or the client did not
    /// ask): the connection carries no resume guarantee.
    Off,
    /// Client: asked for, but the server does not hold sessions: this
    /// connection carries no resume guarantee.
    Refused,
    /// A new session: every message from here on is delivered exactly once
    /// and in order across broken connections, as long as it is resumed.
    New,
    /// The session went on where it broke off: `resent` messages not
    /// acknowledged before were sent again; nothing was lost or repeated.
    Resumed {
        /// Messages sent again.
        resent: u64,
    },
    /// Client: the server did not hold the session any more; a new one
    /// began (the messages it had not acknowledged were handed back).
    Lost,
}

/// A socket operation the driver must perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a new TCP connection to the peer (client), then report
    /// [`Connection::handle_connected`](super::Connection::handle_connected) or [`Connection::handle_connect_failed`](super::Connection::handle_connect_failed).
    Connect,
    /// Close the socket now, without reading or writing anything more.
    CloseSocket,
}

/// Why [`Connection::send`](super::Connection::send) refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Not established (connecting, reconnecting, closing or closed).
    NotConnected,
    /// The payload exceeds `max_frame`.
    TooLarge {
        /// The payload length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Queued output would exceed `max_outbound`: wait until it drains.
    Backpressure {
        /// Bytes already queued.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotConnected => f.write_str("not connected"),
            SendError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds max_frame {max}")
            }
            SendError::Backpressure { queued, limit } => {
                write!(f, "{queued} bytes queued, limit {limit}: backpressure")
            }
        }
    }
}

impl std::error::Error for SendError {}

/// Counters of one connection, across redials.
///
/// None of them can overflow: the counts of frames the peer sends are
/// `u64`, and the `u32` counts of things that happen at most once per timer
/// period or per connection attempt stop at `u32::MAX` — except
/// `disconnects`, which wraps to 0 (drivers compare it for change).
// In declaration order: what every read and write moves or reads (the
// talk received counts PONGs and ACKs) in the first 64 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[repr(C)]
pub struct Stats {
    /// DATA frames received.
    pub messages_received: u64,
    /// DATA frames queued for sending.
    pub messages_sent: u64,
    /// Bytes received, all frames included.
    pub bytes_received: u64,
    /// Bytes written to the socket, all frames included.
    pub bytes_sent: u64,
    /// PONGs received (matching or not).
    pub pongs_received: u64,
    /// ACK frames received.
    pub acks_received: u64,
    /// PINGs the peer sent us (each answered with a PONG).
    pub pings_received: u64,
    /// Sockets (or connect attempts) that ended, for any reason; the last
    /// reason is [`Connection::close_reason`](super::Connection::close_reason).
    /// Wraps to 0 after `u32::MAX`.
    pub disconnects: u32,
    /// PINGs we sent (queued for sending; a probe that finds our previous
    /// PING still queued reuses it and is not counted again).
    pub pings_sent: u32,
    /// Of the messages sent, the ones handed back undelivered
    /// ([`Event::Undelivered`]).
    pub messages_undelivered: u64,
    /// Handshakes completed.
    pub handshakes: u32,
    /// Heartbeat deadlines that came due during a local stall and were
    /// answered with a fresh `T` (and a fresh PING, unless ours was still
    /// queued) instead of a conviction.
    pub stalls_forgiven: u32,
    /// Heartbeat deadlines extended because the peer kept acknowledging our
    /// queued output (a PING stuck behind a large message on a thin link).
    pub drain_extensions: u32,
    /// ACK frames sent: receipt counts of a resumed session, and signs of
    /// life while we were receiving without saying anything.
    pub acks_sent: u32,
}
