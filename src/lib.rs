//! # tether — keep TCP connections alive
//!
//! ## The dead-peer problem
//!
//! TCP on its own does not notice a dead peer. When a peer loses power, a
//! cable is pulled, or a firewall starts silently dropping packets, no FIN
//! and no RST ever arrive: the socket stays "established" and a reader waits
//! forever. The kernel's `SO_KEEPALIVE` would notice, but only after more
//! than two hours with default settings, and it says nothing about whether
//! the application on the other side is still answering.
//!
//! tether solves this at the application layer with a small framed protocol
//! (`docs/PROTOCOL.md`): both ends send a 13-byte PING when the line has
//! been quiet for an interval `I`, the other end answers PONG at once, and
//! any byte received counts as life. If nothing at all arrives within a
//! timeout `T` after a PING, the peer is declared dead — within `I + T` of
//! its last frame. A client whose link is lost redials by itself, with
//! exponential backoff and jitter, keeping one connection id across
//! redials.
//!
//! ## The model
//!
//! A [`Reactor`] is one single-threaded loop over a `mio::Poll`: it holds
//! every connection (accepted on its listeners, or dialed), one timer wheel
//! for all their deadlines, and calls your [`Handler`] when something
//! happens — [`on_connected`](Handler::on_connected),
//! [`on_message`](Handler::on_message) (a [`Message`] borrowed from the
//! read buffer), [`on_disconnected`](Handler::on_disconnected) with a
//! [`DisconnectReason`], [`on_reconnecting`](Handler::on_reconnecting).
//! Callbacks get a [`Context`] to send, close, dial, listen and pause with;
//! they run on the loop's thread and must not block. A [`ConnId`] names a
//! connection for its whole life; [`Config`] holds every setting with its
//! default ([`Config::builder`]). Other threads use a [`Handle`].
//!
//! ## A server
//!
//! ```no_run
//! use tether::{ConnId, Context, DisconnectReason, Handler, Message, Reactor};
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
//!         log::info!("{id} gone: {why}"); // e.g. "heartbeat timeout"
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?; // heartbeat 10 s / 10 s by default
//! reactor.listen("127.0.0.1:7000".parse().unwrap())?;
//! reactor.run(&mut Echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## A client
//!
//! ```no_run
//! use std::time::Duration;
//! use tether::{Config, ConnId, Context, DisconnectReason, Endpoint, Handler, PeerInfo, Reactor};
//!
//! struct Client;
//!
//! impl Handler for Client {
//!     fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
//!         let _ = cx.send(id, &b"hello"[..]); // again after every redial
//!     }
//!     fn on_reconnecting(&mut self, _: &mut Context<'_>, id: ConnId, attempt: u32,
//!                        delay: Duration, why: &DisconnectReason) {
//!         log::warn!("{id}: {why}; redial #{attempt} in {delay:?}");
//!     }
//! }
//!
//! let config = Config::builder()
//!     .heartbeat(Duration::from_secs(2), Duration::from_secs(3)) // dead within 5 s
//!     .build()
//!     .expect("valid config");
//! let mut reactor = Reactor::with_config(config)?;
//! // One id for life; the name is looked up again at every redial.
//! let link = reactor.dial("localhost:7000".parse::<Endpoint>().expect("host:port"));
//! let handle = reactor.handle(); // Send + Clone
//! std::thread::spawn(move || handle.send(link, &b"from a thread"[..]));
//! reactor.run(&mut Client)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Embedding
//!
//! A service that owns its loop calls [`Reactor::poll_once`] with a
//! timeout instead of [`Reactor::run`]; the reactor never waits past its
//! next timer. Or the service's own work joins tether's loop: its timers
//! ([`Context::set_timer`], [`Context::set_timer_at`], a [`TimerId`] and a
//! token back in [`Handler::on_timer`]) share the reactor's timer wheel,
//! and any `mio` event source — a UDP socket, a pipe — registered with
//! [`Context::register`] reports its readiness ([`Ready`]) to
//! [`Handler::on_source`] under a [`SourceId`] (see
//! `examples/feed_relay.rs`). [`Reactor::stats`] ([`ReactorStats`]) and
//! [`Reactor::conn_stats`] ([`ConnStats`]) are plain structs, cheap to
//! read. Socket options ([`SocketOptions`], [`Keepalive`], [`UserTimeout`])
//! and the reconnect schedule ([`BackoffConfig`]) are part of the
//! [`Config`]; every configuration is validated ([`ConfigError`]) wherever
//! it reaches a reactor.
//!
//! ## TLS
//!
//! With the cargo feature `tls`, listeners and dials can run over TLS
//! (rustls, `ring` provider): `Reactor::listen_tls` and
//! `Reactor::dial_tls` take a rustls configuration, which the `tls`
//! module builds from PEM files (ALPN `tether/1`). TLS sits below the
//! frame codec, so heartbeats, dead-peer detection, backpressure and
//! redials are the same; a refused handshake ends the attempt with
//! [`DisconnectReason::Tls`], whose [`TlsFailure`] says what failed.
//!
//! ## Guarantees and limits
//!
//! - A peer that goes silent is declared dead within `I + T` of its last
//!   byte, plus at most 10 % of `I` for the ping jitter and one step of the
//!   reactor's timer grid (1–16 ms, [`Config::timer_grain`]).
//! - Peer input never panics the reactor, never buffers more than one
//!   frame of `max_frame` plus one read, and a misbehaving peer costs only
//!   its own connection (with the right [`CloseCode`]).
//! - Output per connection is bounded by `max_outbound`; beyond it `send`
//!   returns [`SendError::Backpressure`], and [`Handler::on_drain`] says
//!   when there is room again. [`Context::pause_reading`] holds a peer back
//!   through TCP. A [`Handle`]'s queue is bounded too
//!   ([`HandleError::Backpressure`]).
//! - Nothing is dropped silently: a message accepted and then not written
//!   whole to the socket (the link ended, a close's linger ran out, a
//!   handle send was refused) is handed back to
//!   [`Handler::on_undelivered`], in order ([`UndeliveredCause`]). What was
//!   written to the socket is not confirmed by the peer: a link that breaks
//!   may lose what the kernels still held.
//! - A stall of the local process does not convict live peers: overdue
//!   heartbeat deadlines get a fresh PING and a fresh `T`
//!   ([`Config::stall_tolerance`]).
//!
//! The sans-IO pieces under the reactor (codec, timer wheel, connection
//! state machine) are reachable in [`proto`], outside semver, for tests,
//! fuzzing and benchmarks.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod config;
mod endpoint;
mod error;
mod handle;
mod id;
mod net;
mod reactor;
mod resolve;
mod rng;
mod session_ids;

pub use config::{
    BackoffConfig, ClientLiveness, Config, ConfigBuilder, Heartbeat, Keepalive, PingFlood,
    ResumeConfig, SocketOptions, UserTimeout, MAX_DURATION, MIN_QUEUE_LIFETIME,
    MIN_STALL_TOLERANCE,
};
pub use endpoint::{Endpoint, EndpointError, Endpoints};
pub use error::{CloseCode, ConfigError, DisconnectReason, TlsFailure};
pub use handle::{Handle, HandleError, DIAL_WAIT};
pub use id::{ConnId, ListenerId, SourceId, TimerId};
pub use proto::conn::{PeerInfo, ResumeStatus, Role, SendError, State, UndeliveredCause};
pub use reactor::{
    CloseCounts, ConnStats, Context, Handler, Message, Reactor, ReactorStats, Ready,
};
pub use resolve::{Resolver, SystemResolver};

/// The mio tether is built on, for the application's own event sources
/// ([`Context::register`] takes any `mio::event::Source` and a
/// `mio::Interest`): use it to match tether's version.
pub use mio;

pub mod proto;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

/// The README's code blocks, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
