//! What belongs to one TCP connection (socket) of a [`Connection`]: the
//! partial frame, the output queue, the liveness bookkeeping and the
//! yes/no facts of that socket.
//!
//! Plain data, made fresh for every socket and dropped whole with it, so
//! that a redial can inherit nothing from the socket before. It owns no
//! socket itself (the connection is sans-IO) and decides nothing.
//!
//! [`Connection`]: super::Connection

use bytes::BytesMut;

use super::flags::Flags;
use super::outbox::Outbox;
use super::timer::Stamp;

/// The state of a connection's current socket (see the module docs).
///
/// In declaration order (`repr(C)`): what every read and write touches
/// first, in one cache line; the heartbeat probe's bookkeeping after it.
#[derive(Debug, Default)]
#[repr(C)]
pub(super) struct Socket {
    /// Bytes of an incomplete frame; empty (and unallocated) otherwise.
    pub(super) recv: BytesMut,
    /// Output not yet written.
    pub(super) outbox: Outbox,
    /// Write-idle period in ms (half the shorter of our and the peer's
    /// heartbeat interval; 0: off), and the low 32 bits of the talk
    /// received (see `talk_received`) when we last wrote or checked.
    pub(super) write_idle_ms: u32,
    pub(super) recv_mark: u32,
    /// Jitter added to the current heartbeat interval (≤ 10 % of `I`), ms.
    pub(super) ping_jitter_ms: u32,
    /// Negotiated liveness on this socket (LIVENESS): client, the interval
    /// and timeout the server set for it (its `I` and `T` here); server,
    /// those it set for the client (its ping-flood limit follows). Zero:
    /// not negotiated.
    pub(super) liveness_ms: (u32, u32),
    /// Yes/no facts: read closed, connected reported, a frame since the
    /// handshake, healthy pending, socket full, a send
    /// refused (see [`Flag`](super::flags::Flag)).
    pub(super) flags: Flags,
    /// How many of the peer's PINGs came too soon (one byte:
    /// `PingFlood::MAX_STRIKES` is below its saturation); `last_ping_rx`
    /// is when the previous one arrived.
    pub(super) ping_strikes: u8,
    /// The outstanding PING's nonce, and when the probe it serves began
    /// (queued, or reused while still queued), for an RTT sample.
    pub(super) probe_nonce: u64,
    pub(super) probe_sent: Stamp,
    /// When a full socket last took more of our output after our PING was
    /// written: the peer's TCP acknowledged, so it is alive (a death
    /// deadline may move to `T` after it). `NONE` when it has not since
    /// the PING.
    pub(super) drained_at: Stamp,
    pub(super) last_ping_rx: Stamp,
    /// `messages_received` when this session began (ACK counts per
    /// session).
    pub(super) session_rx_base: u64,
}
