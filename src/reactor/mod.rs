//! The reactor: one `mio::Poll` loop that serves and dials TCP with
//! heartbeats, dead-peer detection and automatic reconnect (see
//! [`Reactor`] for one turn of its loop).
//!
//! ```no_run
//! use std::time::Duration;
//! use tether::{Config, ConnId, Context, Handler, Message, PeerInfo, Reactor};
//!
//! struct Client;
//!
//! impl Handler for Client {
//!     fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
//!         cx.send(id, &b"hello"[..]).ok();
//!     }
//!     fn on_message(&mut self, _: &mut Context<'_>, id: ConnId, message: Message<'_>) {
//!         log::info!("{id}: {message:?}");
//!     }
//! }
//!
//! let config = Config::builder()
//!     .heartbeat(Duration::from_secs(5), Duration::from_secs(5))
//!     .build()
//!     .expect("valid config");
//! let mut reactor = Reactor::with_config(config)?;
//! reactor.dial("localhost:7000".parse::<tether::Endpoint>()?);
//! reactor.run(&mut Client)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod app;
mod busy_poll;
mod core;
mod filing;
mod handler;
mod lent_run;
mod message;
mod route;
mod slot;
mod slots;
mod stats;
#[cfg(feature = "tls")]
mod tls;

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::Events;

use self::core::{Core, ReadStep, LISTENER_BASE, WAKER};
use crate::config::Config;
use crate::endpoint::Endpoints;
use crate::error::ConfigError;
use crate::handle::Handle;
use crate::proto::conn::Event;

pub(crate) use crate::id::{ConnId, ListenerId};
pub use app::Ready;
pub use handler::{Context, Handler};
pub use message::Message;
pub use stats::{CloseCounts, ConnStats, ReactorStats};

/// Readiness events taken from the OS per poll.
const EVENTS_CAPACITY: usize = 1024;
/// Reads per connection per turn before others get their turn (64 KiB
/// each): one busy peer cannot starve the rest.
const READ_BUDGET: usize = 16;

/// A single-threaded event loop holding every connection, listener and
/// timer (see the [crate docs](crate) for a server and a client).
///
/// One turn of the loop: poll with a timeout that ends at the next timer;
/// for each readiness event read until WouldBlock (into one shared buffer),
/// feed the connection's state machine, hand its events to the
/// [`Handler`], write its output until WouldBlock, and wait for writable
/// readiness only while output is pending; then advance the timer wheel to
/// the current instant and feed each expiry to its connection. The loop is
/// single-threaded and never blocks anywhere but in `poll`.
pub struct Reactor {
    core: Core,
    events: Events,
}

impl Reactor {
    /// A reactor whose connections use [`Config::default`].
    pub fn new() -> io::Result<Reactor> {
        Reactor::with_config(Config::default())
    }

    /// A reactor whose connections use `config` unless a dial gives its own.
    pub fn with_config(config: Config) -> io::Result<Reactor> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Reactor {
            core: Core::new(config)?,
            events: Events::with_capacity(EVENTS_CAPACITY),
        })
    }

    /// Caps the connections the reactor holds (accepted and dialed);
    /// connections accepted beyond it are sent CLOSE 1008 "server full" and
    /// closed at once. Default: no cap but the process's file limit and
    /// the 2^24 − 1 connections a reactor's ids can name (a dial beyond
    /// those gives up at once, with [`Handler::on_gave_up`]).
    pub fn set_max_connections(&mut self, limit: usize) {
        self.core.max_connections = limit;
    }

    /// Busy polling: before the loop would block waiting for readiness, it
    /// polls without blocking for up to `budget` (a zero-timeout poll in a
    /// loop), and blocks only when the budget is spent with nothing ready.
    /// A message that arrives meanwhile is handled without the kernel's
    /// wake-up of a sleeping thread, which takes a lone round trip's
    /// latency down (see docs/BENCHMARKS.md for the measured figures).
    ///
    /// It costs a core: the reactor's thread spins, up to `budget` after
    /// every turn, so an idle reactor with a budget near its turn interval
    /// keeps a core busy. Worth it on a machine with a core to spare for a
    /// latency-critical link; a budget of tens of microseconds catches a
    /// peer's immediate answer. Never past the next timer; `Duration::ZERO`
    /// (the default) turns it off. [`ReactorStats::busy_polls`] and
    /// [`busy_poll_hits`](ReactorStats::busy_poll_hits) say what it did.
    pub fn set_busy_poll(&mut self, budget: Duration) {
        self.core.busy_poll = budget;
    }

    /// Listens on `addr` (port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr)).
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        self.context().listen(addr)
    }

    /// The bound address of a listener.
    pub fn local_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.core.local_addr(id)
    }

    /// Dials `to`; the link redials by itself whenever it is lost and
    /// keeps this id for its whole life.
    ///
    /// `to` is a [`SocketAddr`] (or an `(IpAddr, u16)` pair), dialed as
    /// it is; an [`Endpoint`](crate::Endpoint) parsed from
    /// `"host:port"`, whose name is looked up again at every attempt, on
    /// the reactor's resolver thread (see [`set_resolver`](Self::set_resolver)),
    /// its addresses (the first 16) tried in turn within the connect
    /// timeout, IPv6 and IPv4 interleaved, the one that worked last
    /// first; or
    /// [`Endpoints`], a failover list. A name that does not resolve ends
    /// the attempt with [`DisconnectReason::Resolve`](crate::DisconnectReason::Resolve)
    /// and the link backs off as after a refused connect.
    ///
    /// ```no_run
    /// use tether::{Endpoint, Endpoints, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let by_addr = reactor.dial("127.0.0.1:7000".parse::<std::net::SocketAddr>()?);
    /// let by_name = reactor.dial("feed.example.com:7000".parse::<Endpoint>()?);
    /// let failover = reactor.dial("a.example.com:7000,b.example.com:7000".parse::<Endpoints>()?);
    /// # let _ = (by_addr, by_name, failover);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dial(&mut self, to: impl Into<Endpoints>) -> ConnId {
        self.context().dial(to)
    }

    /// Dials `to` with its own configuration, once
    /// [`Config::validate`] accepts it (a refused one dials nothing).
    pub fn dial_with(
        &mut self,
        to: impl Into<Endpoints>,
        config: Config,
    ) -> Result<ConnId, ConfigError> {
        self.context().dial_with(to, config)
    }

    /// Looks host names up with `resolver` from now on, instead of the
    /// system's ([`SystemResolver`](crate::SystemResolver)). Lookups run
    /// on one thread, started at the reactor's first name and ended when
    /// the reactor is dropped (after a lookup in progress returns).
    pub fn set_resolver(&mut self, resolver: impl crate::Resolver) {
        self.core.set_resolver(std::sync::Arc::new(resolver));
    }

    /// The endpoint connection `id` is on, or trying (see
    /// [`Context::endpoint`]).
    pub fn endpoint(&self, id: ConnId) -> Option<crate::Endpoint> {
        self.core.endpoint(id)
    }

    /// The full callback API (send, close, dial, …) outside a callback.
    pub fn context(&mut self) -> Context<'_> {
        self.core.set_now();
        Context {
            core: &mut self.core,
        }
    }

    /// A `Send + Clone` handle for other threads.
    pub fn handle(&self) -> Handle {
        self.core.handle.clone()
    }

    /// Reactor-wide counters.
    pub fn stats(&self) -> ReactorStats {
        self.core.stats()
    }

    /// A snapshot of one connection.
    pub fn conn_stats(&self, id: ConnId) -> Option<ConnStats> {
        self.core.conn_stats(id)
    }

    /// True once a shutdown has begun ([`Context::shutdown`],
    /// [`Handle::shutdown`]).
    pub fn is_shutting_down(&self) -> bool {
        self.core.shutdown.is_some()
    }

    /// True once a shutdown has completed: every connection is closed (or
    /// was dropped at the shutdown deadline).
    pub fn is_shut_down(&self) -> bool {
        self.core.shutdown.is_some() && self.core.slots.is_empty()
    }

    /// Runs until a shutdown (from [`Context::shutdown`] or
    /// [`Handle::shutdown`]) completes.
    pub fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        // Checked first: a shutdown that finished in `poll_once` before
        // this call returns at once, not after the next timer.
        while !self.is_shut_down() {
            self.poll_once(handler, None)?;
        }
        Ok(())
    }

    /// One turn of the loop: waits at most `timeout` (and never past the
    /// next timer; `None` waits for the next timer or event), then handles
    /// everything that is ready. For services that own their loop.
    pub fn poll_once<H: Handler>(
        &mut self,
        handler: &mut H,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        // Published for `Handle::dial`'s same-thread check; the lock is
        // taken only when the reactor runs on a new thread.
        let this = crate::handle::this_thread();
        if self.core.reactor_thread != Some(this) {
            self.core.shared.set_reactor_thread(this);
            self.core.reactor_thread = Some(this);
        }
        let timeout = self.poll_timeout(timeout);
        let core = &mut self.core;
        match busy_poll::wait(
            &mut core.poll,
            &mut self.events,
            timeout,
            core.busy_poll,
            &mut core.spin_counts,
        ) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.core.set_now();
        self.core.count_turn();

        let mut backlog = mem::take(&mut self.core.backlog_spare);
        mem::swap(&mut backlog, &mut self.core.backlog);
        for event in self.events.iter() {
            let token = event.token();
            if token == WAKER {
                self.core.drain_commands();
            } else if token.0 >= LISTENER_BASE {
                // Application sources sit above the listeners: no test on
                // the connections' path.
                if token.0 >= self::core::SOURCE_BASE {
                    let index = token.0 - self::core::SOURCE_BASE;
                    app::on_source_ready(&mut self.core, handler, index, event);
                } else {
                    self.core.accept(token.0 - LISTENER_BASE);
                }
            } else {
                let readiness = Readiness {
                    readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                    // A FIN or an error comes with no further edge: read
                    // until the socket says so, however short the reads.
                    drain: event.is_read_closed() || event.is_error(),
                };
                on_conn_ready(&mut self.core, handler, token.0, readiness);
            }
        }
        for &(idx, drain) in &backlog {
            let readiness = Readiness {
                readable: true,
                drain,
            };
            on_conn_ready(&mut self.core, handler, idx, readiness);
        }
        backlog.clear();
        self.core.backlog_spare = backlog;
        if self.core.commands_left {
            self.core.drain_commands();
        }
        if self.core.shared.take_drained() {
            handler.on_handle_drain(&mut Context {
                core: &mut self.core,
            });
        }
        // Replies to what was just read (PONGs above all) are written
        // before any timer runs.
        settle(&mut self.core, handler);
        self.core.fire_timers();
        app::fire_app_timers(&mut self.core, handler);
        settle(&mut self.core, handler);
        self.core.finish_shutdown_if_due();
        dispatch(&mut self.core, handler);
        if self.is_shut_down() {
            // Handles' dials fail at once from now on.
            self.core.shared.set_stopped();
        }
        Ok(())
    }

    fn poll_timeout(&self, requested: Option<Duration>) -> Option<Duration> {
        let core = &self.core;
        if !core.backlog.is_empty()
            || !core.pending.is_empty()
            || !core.dirty.is_empty()
            || core.commands_left
        {
            return Some(Duration::ZERO);
        }
        let next = core.wheel.next_expiration_tick();
        if next.is_none() && core.shutdown.is_none() {
            return requested;
        }
        let now = Instant::now();
        let mut timeout = requested;
        let mut limit = |d: Duration| timeout = Some(timeout.map_or(d, |t| t.min(d)));
        if let Some(next) = next {
            // In whole ticks, with no clock arithmetic beyond the tick of
            // `now`: epoll waits whole milliseconds and mio rounds a
            // timeout up to the next one, which gives this same wait.
            limit(Duration::from_millis(
                next.saturating_sub(core.wheel.now_tick(now)),
            ));
        }
        if let Some(deadline) = core.shutdown {
            limit(deadline.saturating_duration_since(now));
        }
        timeout
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.core.shared.set_stopped();
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("stats", &self.core.stats())
            .finish_non_exhaustive()
    }
}

/// What a readiness event said about a connection's socket.
#[derive(Clone, Copy)]
struct Readiness {
    readable: bool,
    /// Read until WouldBlock even after a short read.
    drain: bool,
}

/// Handles a readiness event on connection `idx`: finishes a connect, or
/// reads until WouldBlock (or the read budget: then the rest waits in the
/// backlog for the next turn), then writes.
fn on_conn_ready<H: Handler>(core: &mut Core, handler: &mut H, idx: usize, ready: Readiness) {
    let Some(slot) = core.slots.get(idx) else {
        return;
    };
    if slot.conn.state() == crate::proto::conn::State::Connecting {
        core.on_connect_ready(idx);
    } else if ready.readable && !slot.paused {
        let mut budget = READ_BUDGET;
        loop {
            let (step, chunk) = core.read_once(idx, ready.drain);
            let spent = deliver_read(core, handler, idx, chunk);
            core.reuse_read(spent);
            dispatch(core, handler);
            if core.slots.get(idx).is_some_and(|s| s.paused) {
                // Paused by the handler: not another read (resuming
                // reads on, to the end).
                break;
            }
            match step {
                ReadStep::Done | ReadStep::Drained => break,
                ReadStep::Again => {
                    budget -= 1;
                    if budget == 0 {
                        // The obligation to drain goes with it: the FIN
                        // that asked for it raises no new edge.
                        core.backlog.push((idx, ready.drain));
                        break;
                    }
                }
            }
        }
    }
    core.service(idx);
    dispatch(core, handler);
}

/// Feeds the bytes of one read to connection `idx`, handing each message
/// to the handler as it is decoded, borrowed from the read buffer.
/// Returns the bytes of `chunk` that were gone through in place (the
/// frames after the last message the handler took), for
/// [`Core::reuse_read`].
fn deliver_read<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    idx: usize,
    chunk: BytesMut,
) -> BytesMut {
    if chunk.is_empty() {
        return BytesMut::new();
    }
    // Answers to this connection may go into its lent run until
    // the read is delivered.
    core.slots.begin_read(idx);
    let mut input = core.start_input(idx, chunk);
    while let Some((id, len)) = core.next_message(idx, &mut input) {
        // Events of the frames before this one (a handshake) go first; a
        // callback among them may end this connection (a close from
        // another connection's callback): then nothing more of this read
        // is delivered, as after a close from its own `on_message`.
        if !core.pending.is_empty() {
            dispatch_pending(core, handler);
            if !core.delivers_to(idx, id) {
                break;
            }
        }
        input.deliver(len, |buf, start| {
            let cx = &mut Context { core: &mut *core };
            handler.on_message(cx, id, Message::new(buf, start, len));
        });
    }
    let spent = core.finish_input(idx, input);
    core.slots.end_read();
    spent
}

/// Hands queued events to the handler, then services the connections the
/// handler touched, until nothing is left.
fn settle<H: Handler>(core: &mut Core, handler: &mut H) {
    loop {
        dispatch(core, handler);
        if core.dirty.is_empty() {
            core.reap_closed();
            return;
        }
        let mut batch = mem::take(&mut core.dirty_spare);
        mem::swap(&mut batch, &mut core.dirty);
        for &idx in &batch {
            // Skip those serviced since they were marked (most are: a read
            // services its connection right after the handler ran).
            if core.slots.get(idx).is_some_and(|s| s.dirty) {
                core.service(idx);
            }
        }
        batch.clear();
        core.dirty_spare = batch;
    }
}

/// Hands queued events to the handler (cheap to call when there are none:
/// it runs once per message).
#[inline]
fn dispatch<H: Handler>(core: &mut Core, handler: &mut H) {
    if !core.pending.is_empty() {
        dispatch_pending(core, handler);
    }
}

#[inline(never)]
fn dispatch_pending<H: Handler>(core: &mut Core, handler: &mut H) {
    while let Some((id, event)) = core.pending.pop_front() {
        let cx = &mut Context { core: &mut *core };
        match event {
            Event::Connected(peer) => handler.on_connected(cx, id, &peer),
            Event::Message(message) => {
                // Not produced on this path (reads hand messages over in
                // place, see `deliver_frames`); handled all the same.
                let len = message.len();
                let mut buf = BytesMut::from(message);
                handler.on_message(cx, id, Message::new(&mut buf, 0, len));
            }
            Event::Disconnected { reason } => handler.on_disconnected(cx, id, &reason),
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } => handler.on_reconnecting(cx, id, attempt, delay, &reason),
            Event::GaveUp { attempts, reason } => handler.on_gave_up(cx, id, attempts, &reason),
            Event::Undelivered { messages, cause } => {
                handler.on_undelivered(cx, id, messages, cause)
            }
            Event::Drained => handler.on_drain(cx, id),
        }
    }
}
