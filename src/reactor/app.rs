//! Embedding tether in a service's own loop: the application's timers and
//! event sources, on the reactor's thread, in the reactor's poll and wheel.
//!
//! The core holds them (`core/app.rs`); this module is their API on
//! [`Context`] and [`Reactor`], the [`Ready`] a source's callback gets,
//! and the two places the loop calls the handler for them.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::Interest;

use super::core::Core;
use super::{dispatch, Context, Handler, Reactor};
use crate::id::{SourceId, TimerId};

/// What a readiness event said about one of the application's sources
/// (see [`Handler::on_source`]).
///
/// Readiness is edge-triggered: it says the source *became* ready, and is
/// not reported again until the source has returned `WouldBlock`. So on
/// [`is_readable`](Self::is_readable), read until `WouldBlock` (or note
/// that more is left, see [`Handler::on_source`]); a readiness that finds
/// nothing to read (a spurious one) is normal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ready(u8);

const READABLE: u8 = 1;
const WRITABLE: u8 = 2;
const READ_CLOSED: u8 = 4;
const WRITE_CLOSED: u8 = 8;
const ERROR: u8 = 16;

impl Ready {
    fn from_event(event: &mio::event::Event) -> Ready {
        let mut bits = 0;
        for (on, bit) in [
            (event.is_readable(), READABLE),
            (event.is_writable(), WRITABLE),
            (event.is_read_closed(), READ_CLOSED),
            (event.is_write_closed(), WRITE_CLOSED),
            (event.is_error(), ERROR),
        ] {
            if on {
                bits |= bit;
            }
        }
        Ready(bits)
    }

    /// The source has something to read (or to accept): read until
    /// `WouldBlock`.
    pub fn is_readable(self) -> bool {
        self.0 & READABLE != 0
    }

    /// The source can be written to: write until `WouldBlock`.
    pub fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
    }

    /// The read side is closed (end of file, a hung-up pipe). What was
    /// sent before it may still be waiting: read it until the source says
    /// so.
    pub fn is_read_closed(self) -> bool {
        self.0 & READ_CLOSED != 0
    }

    /// The write side is closed (the reader of a pipe went away).
    pub fn is_write_closed(self) -> bool {
        self.0 & WRITE_CLOSED != 0
    }

    /// The source has an error pending (read it with the source's own
    /// call, e.g. `take_error`).
    pub fn is_error(self) -> bool {
        self.0 & ERROR != 0
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (READABLE, "READABLE"),
            (WRITABLE, "WRITABLE"),
            (READ_CLOSED, "READ_CLOSED"),
            (WRITE_CLOSED, "WRITE_CLOSED"),
            (ERROR, "ERROR"),
        ];
        let mut first = true;
        f.write_str("Ready(")?;
        for (bit, name) in names {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

impl Context<'_> {
    /// Sets a timer `after` the turn's time ([`now`](Self::now)):
    /// [`Handler::on_timer`] gets `id` and `token` at the first turn of
    /// the loop whose clock has reached that deadline — never before it,
    /// and late by the wheel's rounding to whole milliseconds (a
    /// millisecond or two, with the poll's own) plus however long the
    /// loop takes to turn (the reactor never waits past its next timer).
    /// O(1): timers live in the reactor's timer wheel with its
    /// connections' deadlines.
    ///
    /// A timer fires once. For a periodic one, set the next from its
    /// callback — with [`set_timer_at`](Self::set_timer_at) at the
    /// previous deadline plus the period, so that lateness does not add up
    /// (see there). A timer set from a callback for a deadline already
    /// passed (a `Duration::ZERO`) fires at the next turn, never in the
    /// turn that set it: the loop polls its sockets in between.
    ///
    /// # Panics
    ///
    /// If about 2^32 timers (the application's and tether's own) are
    /// pending at once.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tether::{Context, Handler, Reactor, TimerId};
    ///
    /// const FLUSH: u64 = 1;
    ///
    /// struct Service;
    ///
    /// impl Handler for Service {
    ///     fn on_timer(&mut self, cx: &mut Context<'_>, _: TimerId, token: u64) {
    ///         if token == FLUSH {
    ///             log::info!("flush at {:?}", cx.now());
    ///             cx.set_timer(Duration::from_millis(100), FLUSH); // again
    ///         }
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// reactor.set_timer(Duration::from_millis(100), FLUSH);
    /// reactor.run(&mut Service)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.core.set_app_timer_after(after, token)
    }

    /// Sets a timer for the instant `at`: [`Handler::on_timer`] gets `id`
    /// and `token` at the first turn whose clock has reached `at`, never
    /// before (an instant already passed: at the next turn). Like
    /// [`set_timer`](Self::set_timer) otherwise.
    ///
    /// Timers due in the same turn fire in deadline order (in whole
    /// milliseconds, the wheel's resolution), and those due in the same
    /// millisecond in the order they were set.
    ///
    /// The drift-free way to run something every `period`: keep the
    /// deadline and set the next one from it, not from the clock. A late
    /// turn then delays one callback, not all those after it.
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use tether::{Context, Handler, Reactor, TimerId};
    ///
    /// const PERIOD: Duration = Duration::from_secs(1);
    /// const STATS: u64 = 7;
    ///
    /// struct Service {
    ///     next: Instant,
    /// }
    ///
    /// impl Handler for Service {
    ///     fn on_timer(&mut self, cx: &mut Context<'_>, _: TimerId, token: u64) {
    ///         if token == STATS {
    ///             log::info!("{:?}", cx.stats());
    ///             self.next += PERIOD; // not cx.now() + PERIOD
    ///             cx.set_timer_at(self.next, STATS);
    ///         }
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let mut service = Service { next: Instant::now() + PERIOD };
    /// reactor.set_timer_at(service.next, STATS);
    /// reactor.run(&mut service)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`set_timer`](Self::set_timer).
    pub fn set_timer_at(&mut self, at: Instant, token: u64) -> TimerId {
        self.core.set_app_timer_at(at, token)
    }

    /// Cancels timer `id`: true if it had not fired (its callback will not
    /// run), false if it has fired or was cancelled already. O(1). A stale
    /// id never cancels another timer.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.core.cancel_app_timer(id)
    }

    /// Registers one of the application's event sources — a UDP or Unix
    /// socket, a pipe, an eventfd, anything that is a
    /// [`mio::event::Source`] — with the reactor's poll, for `interest`:
    /// its readiness comes to [`Handler::on_source`] with the returned id.
    ///
    /// tether never reads, writes or closes the source; the application
    /// keeps it, and must [`deregister`](Self::deregister) it before
    /// dropping it (else its id stays taken).
    ///
    /// The contract is mio's, edge-triggered: a readiness event says the
    /// source became ready, and is not repeated while data is left unread.
    /// On each readable event, read until the source returns `WouldBlock`
    /// (or see [`Handler::on_source`] for reading in portions).
    ///
    /// ```no_run
    /// use std::io;
    /// use tether::mio::{net::UdpSocket, Interest};
    /// use tether::{Context, Handler, Reactor, Ready, SourceId};
    ///
    /// struct Feed {
    ///     socket: UdpSocket,
    /// }
    ///
    /// impl Handler for Feed {
    ///     fn on_source(&mut self, cx: &mut Context<'_>, _: SourceId, ready: Ready) {
    ///         if !ready.is_readable() {
    ///             return;
    ///         }
    ///         let mut buf = [0; 2048];
    ///         loop {
    ///             match self.socket.recv(&mut buf) {
    ///                 Ok(n) => log::info!("{n} bytes at {:?}", cx.now()),
    ///                 Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
    ///                 Err(e) => { log::warn!("feed: {e}"); break; }
    ///             }
    ///         }
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let mut feed = Feed { socket: UdpSocket::bind("127.0.0.1:9000".parse().unwrap())? };
    /// reactor.register(&mut feed.socket, Interest::READABLE)?;
    /// reactor.run(&mut feed)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// What the OS says (a source registered already, a closed fd), or
    /// `Other` with 2^29 sources registered.
    pub fn register<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        interest: Interest,
    ) -> io::Result<SourceId> {
        self.core.register_source(source, interest)
    }

    /// Changes the interest of source `id` (`source` must be the one
    /// registered under it). Re-registering also re-arms the edge: a
    /// source that is ready now is reported again.
    ///
    /// # Errors
    ///
    /// `NotFound` for a stale id (the source was deregistered), and what
    /// the OS says.
    pub fn reregister<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        id: SourceId,
        interest: Interest,
    ) -> io::Result<()> {
        self.core.reregister_source(source, id, interest)
    }

    /// Deregisters source `id` (`source` must be the one registered under
    /// it): no readiness of it is reported from now on, not even one
    /// polled already this turn, and `id` is stale.
    ///
    /// # Errors
    ///
    /// `NotFound` for a stale id, and what the OS says (the id is retired
    /// all the same).
    pub fn deregister<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        id: SourceId,
    ) -> io::Result<()> {
        self.core.deregister_source(source, id)
    }
}

impl Reactor {
    /// Sets a timer `after` now, before or between runs (see
    /// [`Context::set_timer`]).
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.context().set_timer(after, token)
    }

    /// Sets a timer for `at`, before or between runs (see
    /// [`Context::set_timer_at`]).
    pub fn set_timer_at(&mut self, at: Instant, token: u64) -> TimerId {
        self.core.set_app_timer_at(at, token)
    }

    /// Cancels a timer (see [`Context::cancel_timer`]).
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.core.cancel_app_timer(id)
    }

    /// Registers an event source (see [`Context::register`]).
    pub fn register<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        interest: Interest,
    ) -> io::Result<SourceId> {
        self.core.register_source(source, interest)
    }

    /// Changes a source's interest (see [`Context::reregister`]).
    pub fn reregister<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        id: SourceId,
        interest: Interest,
    ) -> io::Result<()> {
        self.core.reregister_source(source, id, interest)
    }

    /// Deregisters a source (see [`Context::deregister`]).
    pub fn deregister<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        id: SourceId,
    ) -> io::Result<()> {
        self.core.deregister_source(source, id)
    }
}

/// Runs the callbacks of the application timers that came due this turn
/// (taken from the wheel by `Core::fire_timers`), in deadline order. A
/// timer one of them sets or re-arms for now waits for the next turn.
///
/// A test and no call on a turn with none due (every turn of a busy
/// connection's loop).
#[inline(always)]
pub(super) fn fire_app_timers<H: Handler>(core: &mut Core, handler: &mut H) {
    if core.has_due_app_timers() {
        run_due_app_timers(core, handler);
    }
}

#[inline(never)]
fn run_due_app_timers<H: Handler>(core: &mut Core, handler: &mut H) {
    // What the connections' timers produced goes first.
    dispatch(core, handler);
    let due = core.take_due();
    for &d in &due {
        // Not if an earlier callback cancelled it.
        if let Some(token) = core.fire_due(d) {
            handler.on_timer(&mut Context { core: &mut *core }, d.id(), token);
            dispatch(core, handler);
        }
    }
    core.restore_due(due);
}

/// A readiness event for application source slot `index`.
#[inline(never)]
pub(super) fn on_source_ready<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    index: usize,
    event: &mio::event::Event,
) {
    let Some(id) = core.ready_source(index) else {
        return;
    };
    let ready = Ready::from_event(event);
    handler.on_source(&mut Context { core: &mut *core }, id, ready);
    dispatch(core, handler);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reads_back_its_flags_and_prints_them() {
        let ready = Ready(READABLE | READ_CLOSED);
        assert!(ready.is_readable() && ready.is_read_closed());
        assert!(!ready.is_writable() && !ready.is_write_closed() && !ready.is_error());
        assert_eq!(format!("{ready:?}"), "Ready(READABLE | READ_CLOSED)");
        assert_eq!(format!("{:?}", Ready::default()), "Ready()");
        let all = Ready(READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | ERROR);
        assert!(all.is_writable() && all.is_write_closed() && all.is_error());
    }
}
