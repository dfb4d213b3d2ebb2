//! The reactor's state apart from the application's handler: the poll, the
//! slab of connections, the listeners, the timer wheel, the shared read
//! buffer and the queues between them.
//!
//! Everything here runs on the reactor thread and must never block; time
//! is read once per turn by the loop and passed down as `now`.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Poll, Token};
use slab::Slab;

use super::route::Peer;
use super::slot::Slot;
use super::slots::Slots;
use super::{ConnId, ConnStats, ListenerId, ReactorStats};
use crate::config::Config;
use crate::error::DisconnectReason;
use crate::handle::{Command, Handle, Shared};
use crate::id::MAX_SLOTS;
use crate::proto::conn::{Connection, Event, State};
use crate::proto::wheel::{TimerKey, Wheel};

/// Listener tokens start here; connection tokens are slab indices below.
pub(super) const LISTENER_BASE: usize = 1 << 30;
/// The token of the cross-thread waker.
pub(super) const WAKER: Token = Token(usize::MAX);
/// Application source tokens start here (see `app`).
pub(super) use self::app::SOURCE_BASE;
/// Bytes of fresh, initialized space the shared read buffer is refilled to.
const READ_CHUNK: usize = 64 * 1024;
/// Below this much space left, the read buffer is refilled before a read.
const MIN_READ_SPACE: usize = 4 * 1024;
/// How long accepting pauses after an accept error such as EMFILE.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Commands taken from the handle channel per turn (the rest wait a turn).
const COMMANDS_PER_TURN: usize = 4096;
/// Accept backlog of listeners: deep enough for a reconnect wave.
const ACCEPT_BACKLOG: i32 = 4096;

/// What a wheel entry is for.
#[derive(Clone, Copy, Debug)]
pub(super) enum Target {
    Conn(ConnId),
    Listener(ListenerId),
    /// A routed link's connect to one of its addresses has had its share
    /// of the connect timeout (see `routing`).
    Route(ConnId),
    /// An application timer: its cell (see `app`). Two fields, not a
    /// `TimerId`, so that the entry stays 16 bytes.
    App {
        index: u32,
        generation: u64,
    },
}

/// A listening socket.
pub(super) struct ListenerSlot {
    pub(super) id: ListenerId,
    pub(super) listener: TcpListener,
    pub(super) config: Arc<Config>,
    /// Accepting is paused (after an accept error) until a timer fires.
    pub(super) paused: bool,
    /// A TLS listener's configuration.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
}

/// What one read did.
pub(super) enum ReadStep {
    /// Bytes were read; there may be more.
    Again,
    /// Bytes were read and the socket is empty (a short read).
    Drained,
    /// Drained (WouldBlock), closed, failed, or nothing to read from.
    Done,
}

pub(crate) struct Core {
    pub(super) poll: Poll,
    /// The connections, and the run lent out of one of them.
    pub(super) slots: Slots,
    pub(super) listeners: Slab<ListenerSlot>,
    pub(super) wheel: Wheel<Target>,
    /// The one read buffer of the reactor: reads land here, complete frames
    /// are decoded straight out of it.
    rbuf: BytesMut,
    /// Events a connection call just produced.
    scratch: Vec<Event>,
    /// Events waiting for the handler.
    pub(super) pending: VecDeque<(ConnId, Event)>,
    /// Connections whose output or actions need servicing.
    pub(super) dirty: Vec<usize>,
    pub(super) dirty_spare: Vec<usize>,
    /// Closed connections to free once the handler has seen their last
    /// events (so `conn_stats` still answers in `on_disconnected`).
    reap: Vec<usize>,
    /// Connections whose read budget ran out: read again next turn. With
    /// each, whether it must be read until WouldBlock however short the
    /// reads (a FIN or an error is pending: it raises no new edge).
    pub(super) backlog: Vec<(usize, bool)>,
    pub(super) backlog_spare: Vec<(usize, bool)>,
    expired: Vec<(TimerKey, Target)>,
    pub(super) config: Arc<Config>,
    pub(super) handle: Handle,
    pub(super) shared: Arc<Shared>,
    commands: Receiver<Command>,
    pub(super) commands_left: bool,
    pub(super) now: Instant,
    /// `now` in wheel ticks (rounded down, as the wheel polls), set with
    /// it by [`set_now`](Self::set_now).
    now_tick: u64,
    stats: ReactorStats,
    /// The application's own timers and event sources.
    app: app::AppState,
    /// Host name lookups: the resolver, and its thread once started.
    lookups: crate::resolve::Lookups,
    /// The generation of the last id given out (see [`ConnId`]).
    generation: u64,
    /// Server, resume: the connection holding each session, by id.
    sessions: std::collections::HashMap<u64, ConnId>,
    /// Server, resume: detached sessions, oldest first (with entries of
    /// sessions since resumed or closed, dropped lazily).
    detached: VecDeque<ConnId>,
    /// Where accepted connections' session ids come from.
    session_ids: crate::session_ids::SessionIds,
    seed: u64,
    /// Shutting down: close everything, give up waiting at this instant.
    pub(super) shutdown: Option<Instant>,
    /// Accepted connections beyond this are refused with CLOSE 1008.
    pub(super) max_connections: usize,
    /// The busy-poll spin budget (zero: off; see `Reactor::set_busy_poll`).
    pub(super) busy_poll: Duration,
    pub(super) spin_counts: super::busy_poll::SpinCounts,
    /// The most slots the slab may use: [`MAX_SLOTS`], all an id can name
    /// (lower in tests).
    pub(super) slot_limit: usize,
    /// The thread last published as the reactor's (see `Reactor::turn`).
    pub(super) reactor_thread: Option<std::thread::ThreadId>,
    /// Ciphertext read from a TLS socket, before rustls takes it: one
    /// buffer for all the reactor's TLS connections (empty until the
    /// first TLS read).
    #[cfg(feature = "tls")]
    tls_in: Vec<u8>,
}

impl Core {
    pub(super) fn new(config: Config) -> io::Result<Core> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared::new(waker, config.max_outbound));
        let (handle, commands) = Handle::new(shared.clone());
        let now = Instant::now();
        let seed = config.seed ^ entropy();
        // The constructing thread owns the reactor until another polls it.
        let thread = crate::handle::this_thread();
        shared.set_reactor_thread(thread);
        Ok(Core {
            poll,
            slots: Slots::new(),
            listeners: Slab::new(),
            wheel: Wheel::new(now),
            rbuf: BytesMut::new(),
            scratch: Vec::new(),
            pending: VecDeque::new(),
            dirty: Vec::new(),
            dirty_spare: Vec::new(),
            reap: Vec::new(),
            backlog: Vec::new(),
            backlog_spare: Vec::new(),
            expired: Vec::new(),
            config: Arc::new(config),
            handle,
            shared,
            commands,
            commands_left: false,
            now,
            now_tick: 0,
            reactor_thread: Some(thread),
            stats: ReactorStats::default(),
            app: app::AppState::default(),
            lookups: crate::resolve::Lookups::default(),
            generation: 0,
            session_ids: crate::session_ids::SessionIds::new(seed),
            sessions: std::collections::HashMap::new(),
            detached: VecDeque::new(),
            seed,
            shutdown: None,
            max_connections: usize::MAX,
            busy_poll: Duration::ZERO,
            spin_counts: Default::default(),
            slot_limit: MAX_SLOTS,
            #[cfg(feature = "tls")]
            tls_in: Vec::new(),
        })
    }

    fn slot_index(&self, id: ConnId) -> Option<usize> {
        self.slots.index_of(id)
    }

    pub(super) fn conn_stats(&self, id: ConnId) -> Option<ConnStats> {
        let slot = self.slots.get(self.slot_index(id)?)?;
        let conn = &slot.conn;
        let s = conn.stats();
        // What the handler queued into the lent run counts.
        let (lent_messages, lent_bytes) = self.slots.lent(id);
        let session = conn.session_stats();
        Some(ConnStats {
            role: conn.role(),
            state: conn.state(),
            peer_addr: slot.peer.addr(),
            endpoint: slot.peer.route().map_or(0, |r| r.endpoint()),
            srtt: conn.rtt().srtt(),
            rttvar: conn.rtt().rttvar(),
            pings_sent: s.pings_sent,
            pongs_received: s.pongs_received,
            pings_received: s.pings_received,
            messages_sent: s.messages_sent + lent_messages,
            messages_received: s.messages_received,
            bytes_received: s.bytes_received,
            since_last_recv: conn
                .last_recv()
                .filter(|_| conn.state() == State::Established)
                .map(|t| self.now.saturating_duration_since(t)),
            reconnect_attempt: conn.reconnect_attempt(),
            reconnect_in: conn
                .timer(crate::proto::conn::Timer::Reconnect)
                .map(|t| t.saturating_duration_since(self.now)),
            pending_output: conn.pending_output() + lent_bytes,
            messages_undelivered: s.messages_undelivered,
            session_id: conn.session_id(),
            unacked_messages: session.unacked_messages,
            unacked_bytes: session.unacked_bytes,
            messages_resent: session.messages_resent,
            resumes: session.resumes,
            acks_sent: s.acks_sent,
        })
    }

    pub(super) fn stats(&self) -> ReactorStats {
        ReactorStats {
            connections: self.slots.len(),
            listeners: self.listeners.len(),
            busy_polls: self.spin_counts.polls,
            busy_poll_hits: self.spin_counts.hits,
            ..self.stats
        }
    }

    /// The next generation for an id (see [`ConnId`]: 2^40 of them before
    /// one repeats).
    fn next_generation(&mut self) -> u64 {
        self.generation = crate::id::next_generation(self.generation);
        self.generation
    }

    fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.seed
    }

    /// Puts a connection in a free slot and names it; `None` when the slab
    /// holds [`MAX_SLOTS`] already (the most an id can name).
    fn insert(
        &mut self,
        conn: Connection,
        peer: Peer,
        stream: Option<TcpStream>,
    ) -> Option<ConnId> {
        if self.slots.len() >= self.slot_limit {
            return None;
        }
        let generation = self.next_generation();
        let idx = self
            .slots
            .insert_with(|idx| Slot::new(ConnId::new(idx, generation), conn, peer, stream));
        Some(ConnId::new(idx, generation))
    }

    /// Moves the events the last connection call produced to the handler's
    /// queue, tagged with the connection's id.
    #[inline]
    fn collect(&mut self, idx: usize) {
        if !self.scratch.is_empty() {
            self.collect_events(idx);
        }
    }

    #[inline(never)]
    fn collect_events(&mut self, idx: usize) {
        let Some(slot) = self.slots.get(idx) else {
            self.scratch.clear();
            return;
        };
        let id = slot.id;
        let routed = slot.peer.route().is_some();
        let mut scratch = std::mem::take(&mut self.scratch);
        if routed {
            self.note_route(idx, &mut scratch);
        }
        for event in &scratch {
            self.note_sessions(id, event);
        }
        self.pending.extend(scratch.drain(..).map(|e| (id, e)));
        self.scratch = scratch;
    }

    pub(super) fn mark_dirty(&mut self, idx: usize) {
        if self.slots.mark_dirty(idx) {
            self.dirty.push(idx);
        }
    }

    /// Brings one connection up to date with its state machine: writes its
    /// output, carries out its socket actions, adjusts readiness interest,
    /// re-files its timer, and frees the slot once it is closed.
    pub(super) fn service(&mut self, idx: usize) {
        let now = self.now;
        // Each pass either acts or stops; a connection asks for at most a
        // close and a connect per state change, so a few passes suffice.
        for _ in 0..8 {
            let Some(slot) = self.slots.get_mut(idx) else {
                return;
            };
            slot.dirty = false;
            slot.flush(now, &mut self.scratch);
            if let Err(e) = slot.update_interest(self.poll.registry(), Token(idx)) {
                warn!("{} {}: cannot register socket: {e}", slot.id, slot.peer);
                slot.conn.handle_io_error(now, e.kind(), &mut self.scratch);
            }
            if !self.apply_actions(idx) {
                break;
            }
        }
        self.collect(idx);
        self.count_disconnects(idx);
        self.note_detached(idx);
        self.sync_timer(idx);
        if self.slots.get(idx).is_some_and(|s| s.conn.is_closed()) {
            self.reap.push(idx);
        }
    }

    /// Carries out the connection's socket actions; true if there were any.
    fn apply_actions(&mut self, idx: usize) -> bool {
        let mut acted = false;
        loop {
            let Some(slot) = self.slots.get_mut(idx) else {
                return acted;
            };
            let Some(action) = slot.conn.poll_action() else {
                return acted;
            };
            acted = true;
            match action {
                crate::proto::conn::Action::CloseSocket => slot.drop_stream(self.poll.registry()),
                crate::proto::conn::Action::Connect => {
                    slot.drop_stream(self.poll.registry());
                    // A pause belongs to the socket it paused.
                    slot.paused = false;
                    self.begin_attempt(idx);
                }
            }
        }
    }

    fn count_disconnects(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let total = slot.conn.stats().disconnects;
        if total == slot.counted_disconnects {
            return;
        }
        slot.counted_disconnects = total;
        if let Some(reason) = slot.conn.close_reason() {
            // The peer's fault or a dead peer is worth a line by default;
            // ordinary endings are not.
            let level = match reason {
                DisconnectReason::HeartbeatTimeout
                | DisconnectReason::HandshakeTimeout
                | DisconnectReason::ProtocolError { .. }
                | DisconnectReason::Tls { .. } => log::Level::Info,
                _ => log::Level::Debug,
            };
            log::log!(level, "{} {}: {reason}", slot.id, slot.peer);
            self.stats.closes.count(reason);
        }
    }

    /// Reads the clock: `now` for everything this turn does.
    #[inline]
    pub(super) fn set_now(&mut self) {
        self.set_clock(Instant::now());
    }

    /// Sets `now` (and its tick) to `now`: the clock read, or a test's.
    #[inline]
    fn set_clock(&mut self, now: Instant) {
        self.now = now;
        self.now_tick = self.wheel.now_tick(now);
    }

    /// Frees the slots of closed connections whose events have all been
    /// handed to the handler.
    pub(super) fn reap_closed(&mut self) {
        while let Some(idx) = self.reap.pop() {
            self.remove_if_closed(idx);
        }
    }

    fn remove_if_closed(&mut self, idx: usize) {
        if !self.slots.get(idx).is_some_and(|s| s.conn.is_closed()) {
            return;
        }
        let mut slot = self.slots.remove(idx);
        slot.drop_stream(self.poll.registry());
        self.forget_route(&mut slot.peer);
        if slot.conn.role() == crate::proto::conn::Role::Server {
            self.forget_session(slot.id, slot.conn.session_id());
        }
        if let Some(filed) = slot.timer {
            self.wheel.cancel(filed.key);
        }
        debug!("{} {}: released", slot.id, slot.peer);
    }

    pub(super) fn count_turn(&mut self) {
        self.stats.turns += 1;
    }
}

/// Some bits that differ between processes and runs, so that clients
/// started together do not draw the same jitter.
fn entropy() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    let stack = &nanos as *const u64 as usize as u64;
    nanos ^ pid.rotate_left(32) ^ stack.rotate_left(17)
}

mod accepting;
mod reading;
mod requests;
mod routing;
mod sessions;
mod timers;

// The application's own timers and event sources (issue #17).
mod app;

// TLS listeners, dials and reads (issue #18).
#[cfg(feature = "tls")]
mod tls;

#[cfg(test)]
mod tests;
