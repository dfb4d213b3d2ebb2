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
//! The mio reactor that drives these over real sockets builds on them.
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
pub use conn::PeerInfo;
pub use error::{CloseCode, DisconnectReason};
pub use handle::{Handle, HandleError};
pub use reactor::{ConnId, ConnStats, Context, Handler, ListenerId, Reactor, ReactorStats};
