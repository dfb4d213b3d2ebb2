//! # tether — keep TCP connections alive
//!
//! TCP on its own does not notice a dead peer. When a peer loses power, a
//! cable is pulled, or a firewall starts silently dropping packets, no FIN
//! and no RST ever arrive: the socket stays "established" and a reader waits
//! forever. The kernel's `SO_KEEPALIVE` would notice, but only after more than
//! two hours with default settings, and it says nothing about whether the
//! application on the other side is still answering.
//!
//! tether solves this at the application layer with a small framed protocol
//! (see `docs/PROTOCOL.md`): both ends send a 13-byte PING when the line has
//! been quiet for an interval `I`, the other end answers PONG at once, and any
//! byte received counts as life. If nothing at all arrives within a timeout
//! `T` after a PING, the peer is declared dead — within `I + T` of its last
//! frame. A client whose link is lost redials by itself, with exponential
//! backoff and jitter, keeping one connection id across redials.
//!
//! ## Quick start
//!
//! A server that echoes every message, and a client link that redials by
//! itself:
//!
//! ```no_run
//! use tether::{ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
//!         // No allocation, no copy of a large one. Refused with
//!         // backpressure when the peer does not read: stop reading it
//!         // until its output drains (a real server also keeps the echo,
//!         // see the README and examples/echo_server.rs).
//!         if cx.forward(id, message).is_err() {
//!             cx.pause_reading(id);
//!         }
//!     }
//!     fn on_drain(&mut self, cx: &mut Context<'_>, id: ConnId) {
//!         cx.resume_reading(id);
//!     }
//!     fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, why: &DisconnectReason) {
//!         log::info!("{id} gone: {why}");
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?; // heartbeat 10 s / 10 s by default
//! reactor.listen("127.0.0.1:7000".parse().unwrap())?;
//! // A link to another server: redialled with backoff whenever it is lost,
//! // under the same id for its whole life.
//! let _link = reactor.dial("127.0.0.1:7001".parse().unwrap());
//! reactor.run(&mut Echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Layers
//!
//! The core is *sans-IO*: it owns no socket and reads no clock. The caller
//! passes `now` and inputs and collects bytes, deadlines and events back, so
//! every rule is tested exactly with a fake clock.
//!
//! - [`codec`]: the byte-exact frame encoder and incremental decoder.
//! - [`wheel`]: a hierarchical timer wheel (levels of 64 slots with an
//!   occupancy bitmask) that schedules every deadline of a reactor.
//! - [`backoff`]: reconnect delays with exponential growth, a cap and jitter.
//! - [`conn`]: the per-connection state machine — handshake, heartbeats,
//!   dead-peer detection, close and reconnect.
//!
//! On top, the [`reactor`] drives them over real sockets: one `mio::Poll`,
//! a slab of connections, one timer wheel, reads drained to `WouldBlock`
//! into one shared buffer, vectored writes, and your [`Handler`]'s
//! callbacks. A [`Handle`] reaches it from other threads. [`net`] holds
//! the socket options (TCP_NODELAY, keepalive, TCP_USER_TIMEOUT).
//!
//! ## Guarantees
//!
//! - A peer that goes silent is declared dead within `I + T` of its last
//!   byte, plus at most 10 % of `I` for the ping jitter and one step of the
//!   reactor's timer grid (1–16 ms, [`Config::timer_grain`]).
//! - Peer input never panics the reactor, never buffers more than one
//!   frame of `max_frame` plus one read, and a misbehaving peer costs only
//!   its own connection.
//! - Output per connection is bounded by `max_outbound`; beyond it `send`
//!   returns backpressure, and [`Handler::on_drain`] says when there is
//!   room again. [`Context::pause_reading`] holds a peer back through TCP.
//! - Nothing is dropped silently: a message accepted and then not written
//!   whole to the socket (the link ended, a close's linger ran out, a
//!   handle send was refused) is handed back to
//!   [`Handler::on_undelivered`], in order. What was written to the socket
//!   is not confirmed by the peer.
//! - A stall of the local process does not convict live peers: overdue
//!   heartbeat deadlines get a fresh PING and a fresh `T`.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod codec;
pub mod config;
pub mod conn;
pub mod error;
mod handle;
pub mod net;
pub mod reactor;
mod rng;
pub mod wheel;

pub use config::Config;
pub use conn::{PeerInfo, SendError, UndeliveredCause};
pub use error::{CloseCode, DisconnectReason};
pub use handle::{Handle, HandleError, DIAL_WAIT};
pub use reactor::{
    ConnId, ConnStats, Context, Handler, ListenerId, Message, Reactor, ReactorStats,
};

/// The README's code blocks, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
