//! The reactor's state apart from the application's handler: the poll, the
//! slab of connections, the listeners, the timer wheel, the shared read
//! buffer and the queues between them.
//!
//! Everything here runs on the reactor thread and must never block; time
//! is read once per turn by the loop and passed down as `now`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::mem;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};
use slab::Slab;
use socket2::SockRef;

use super::filing::{self, Decision};
use super::id::Generation;
use super::reply::ReplyRun;
use super::slot::{Filed, Slot};
use super::{ConnId, ConnStats, ListenerId, ReactorStats};
use crate::config::Config;
use crate::conn::{Connection, Event, SendError, State, UndeliveredCause};
use crate::error::{CloseCode, DisconnectReason};
use crate::handle::{Command, Handle, Shared};
use crate::net;
use crate::wheel::{TimerKey, Wheel};

/// Listener tokens start here; connection tokens are slab indices below.
pub(super) const LISTENER_BASE: usize = 1 << 30;
/// The token of the cross-thread waker.
pub(super) const WAKER: Token = Token(usize::MAX);
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
}

/// A listening socket.
pub(super) struct ListenerSlot {
    pub(super) id: ListenerId,
    pub(super) listener: TcpListener,
    pub(super) config: Arc<Config>,
    /// Accepting is paused (after an accept error) until a timer fires.
    pub(super) paused: bool,
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
    pub(super) slots: Slab<Slot>,
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
    /// The generation of the last id given out (see [`ConnId`]).
    generation: u64,
    next_session: u64,
    seed: u64,
    /// Shutting down: close everything, give up waiting at this instant.
    pub(super) shutdown: Option<Instant>,
    /// Accepted connections beyond this are refused with CLOSE 1008.
    pub(super) max_connections: usize,
    /// The thread last published as the reactor's (see `Reactor::turn`).
    pub(super) reactor_thread: Option<std::thread::ThreadId>,
    /// The connection whose read is being delivered to the handler.
    pub(super) reading: Option<ConnId>,
    /// Its output run, lent while the handler answers it (see [`ReplyRun`]).
    pub(super) reply: Option<ReplyRun>,
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
            slots: Slab::new(),
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
            generation: 0,
            next_session: seed | 1,
            seed,
            shutdown: None,
            max_connections: usize::MAX,
            reading: None,
            reply: None,
        })
    }

    // ----- the application's requests -------------------------------------

    fn slot_index(&self, id: ConnId) -> Option<usize> {
        let idx = id.index as usize;
        match self.slots.get(idx) {
            Some(slot) if slot.id == id => Some(idx),
            _ => None,
        }
    }

    pub(super) fn send(&mut self, id: ConnId, message: Bytes) -> Result<(), SendError> {
        self.queue_on(id, |conn| conn.send(message))
    }

    pub(super) fn send_slice(&mut self, id: ConnId, message: &[u8]) -> Result<(), SendError> {
        self.queue_on(id, |conn| conn.send_slice(message))
    }

    /// (Out of line: the handler's answers to the connection being read
    /// take the reply run instead, see `Context::forward`.)
    #[inline(never)]
    pub(super) fn send_framed(&mut self, id: ConnId, frame: &[u8]) -> Result<(), SendError> {
        self.queue_on(id, |conn| conn.send_framed(frame))
    }

    /// Queues output on connection `id` with `queue`, and marks it for
    /// writing. (One slab lookup: this runs once per message sent.)
    #[inline]
    fn queue_on(
        &mut self,
        id: ConnId,
        queue: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        self.settle_reply();
        let idx = id.index as usize;
        let slot = match self.slots.get_mut(idx) {
            Some(slot) if slot.id == id => slot,
            _ => return Err(SendError::NotConnected),
        };
        queue(&mut slot.conn)?;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(idx);
        }
        if self.reading == Some(id) {
            // Answering the connection being read: its next small answers
            // go straight into its run.
            if let Some((run, room, max_payload)) = slot.conn.lend_run() {
                self.reply = Some(ReplyRun::new(id, idx, run, room, max_payload));
            }
        }
        Ok(())
    }

    /// The reply run for an answer to connection `id`: the lent one, or
    /// — for the first answer of a read, to the connection being read,
    /// with no DATA queued on it — a fresh run from the thread's pool,
    /// lent at once (the queue would pack the answer into the same run
    /// and lend it right after). `None` otherwise: the answer goes the
    /// queue's way.
    #[inline]
    pub(super) fn reply_run(&mut self, id: ConnId) -> Option<&mut ReplyRun> {
        if self.reply.is_none() && self.reading == Some(id) {
            self.lend_fresh(id);
        }
        self.reply.as_mut()
    }

    #[inline(never)]
    fn lend_fresh(&mut self, id: ConnId) {
        let idx = id.index as usize;
        let Some(slot) = self.slots.get_mut(idx).filter(|slot| slot.id == id) else {
            return;
        };
        let Some((run, room, max_payload)) = slot.conn.lend_fresh_run() else {
            return;
        };
        self.mark_dirty(idx);
        self.reply = Some(ReplyRun::new(id, idx, run, room, max_payload));
    }

    /// Returns the lent reply run, if any, to its connection. Runs before
    /// anything else touches a connection's output or input.
    #[inline]
    pub(super) fn settle_reply(&mut self) {
        if let Some(reply) = self.reply.take() {
            self.return_reply(reply);
        }
    }

    #[inline(never)]
    fn return_reply(&mut self, reply: ReplyRun) {
        match self.slots.get_mut(reply.idx) {
            Some(slot) if slot.id == reply.id => slot.conn.return_run(reply.run, reply.messages),
            // Not reachable: a slot is only freed after a service, which
            // settles first. The frames go the way of the connection's.
            _ => debug!("{}: reply run of a freed slot dropped", reply.id),
        }
    }

    pub(super) fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.settle_reply();
        let Some(idx) = self.slot_index(id) else {
            return false;
        };
        let now = self.now;
        self.slots[idx]
            .conn
            .close(now, code, reason, &mut self.scratch);
        self.collect(idx);
        self.mark_dirty(idx);
        true
    }

    /// Dials `addr` with `config`, which every caller has validated
    /// (`Config::validate`): its durations are added to instants.
    /// Pauses (`on` false) or resumes reading connection `id`; false for
    /// an unknown id. A resumed connection is read at the next turn until
    /// WouldBlock: what arrived while it was paused raised no edge.
    pub(super) fn set_reading(&mut self, id: ConnId, on: bool) -> bool {
        let Some(idx) = self.slot_index(id) else {
            return false;
        };
        let slot = &mut self.slots[idx];
        if slot.paused == on {
            slot.paused = !on;
            if on {
                self.backlog.push((idx, true));
            }
        }
        true
    }

    pub(super) fn dial(&mut self, addr: SocketAddr, config: Arc<Config>) -> ConnId {
        let seed = self.next_seed();
        let mut conn = Connection::client(config, seed);
        conn.start(self.now);
        let id = self.insert(conn, addr, None);
        self.service(id.index as usize);
        id
    }

    pub(super) fn listen(
        &mut self,
        addr: SocketAddr,
        config: Arc<Config>,
    ) -> io::Result<ListenerId> {
        let mut listener = net::listen(addr, ACCEPT_BACKLOG, &config.socket, config.heartbeat)?;
        let generation = self.next_generation();
        let entry = self.listeners.vacant_entry();
        let index = entry.key();
        let id = ListenerId {
            index: index as u32,
            generation,
        };
        self.poll.registry().register(
            &mut listener,
            Token(LISTENER_BASE + index),
            Interest::READABLE,
        )?;
        entry.insert(ListenerSlot {
            id,
            listener,
            config,
            paused: false,
        });
        Ok(id)
    }

    pub(super) fn unlisten(&mut self, id: ListenerId) -> bool {
        let idx = id.index as usize;
        if !self.listeners.get(idx).is_some_and(|l| l.id == id) {
            return false;
        }
        let mut l = self.listeners.remove(idx);
        let _ = self.poll.registry().deregister(&mut l.listener);
        true
    }

    pub(super) fn local_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        let l = self.listeners.get(id.index as usize)?;
        if l.id != id {
            return None;
        }
        l.listener.local_addr().ok()
    }

    pub(super) fn conn_stats(&self, id: ConnId) -> Option<ConnStats> {
        let slot = self.slots.get(self.slot_index(id)?)?;
        let conn = &slot.conn;
        let s = conn.stats();
        // What the handler queued into the lent reply run counts.
        let (lent_messages, lent_bytes) = match &self.reply {
            Some(r) if r.id == id => (r.messages, r.run.len()),
            _ => (0, 0),
        };
        Some(ConnStats {
            role: conn.role(),
            state: conn.state(),
            peer_addr: slot.addr,
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
                .timer(crate::conn::Timer::Reconnect)
                .map(|t| t.saturating_duration_since(self.now)),
            pending_output: conn.pending_output() + lent_bytes,
            messages_undelivered: s.messages_undelivered,
            session_id: conn.session_id(),
        })
    }

    pub(super) fn stats(&self) -> ReactorStats {
        ReactorStats {
            connections: self.slots.len(),
            listeners: self.listeners.len(),
            ..self.stats
        }
    }

    pub(super) fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let now = self.now;
        self.shutdown = Some(now + self.config.close_linger + Duration::from_millis(100));
        debug!("shutting down: {} connections", self.slots.len());
        let listeners: Vec<ListenerId> = self.listeners.iter().map(|(_, l)| l.id).collect();
        for id in listeners {
            self.unlisten(id);
        }
        let ids: Vec<ConnId> = self.slots.iter().map(|(_, s)| s.id).collect();
        for id in ids {
            self.close(id, CloseCode::GOING_AWAY, "shutdown");
        }
    }

    pub(super) fn drain_commands(&mut self) {
        self.shared.clear_notified();
        self.commands_left = false;
        for _ in 0..COMMANDS_PER_TURN {
            let Ok(command) = self.commands.try_recv() else {
                return;
            };
            match command {
                Command::Send(id, message) => {
                    self.shared.taken(message.len());
                    // A clone shares the payload (a reference count), so a
                    // refused message can be handed back whole.
                    if let Err(e) = self.send(id, message.clone()) {
                        debug!("{id}: message from a handle refused: {e}");
                        self.pending.push_back((
                            id,
                            Event::Undelivered {
                                messages: vec![message],
                                cause: UndeliveredCause::Refused(e),
                            },
                        ));
                    }
                }
                Command::Close(id, code, reason) => {
                    self.close(id, code, &reason);
                }
                Command::Dial(addr, config, reply) => {
                    let config = config.unwrap_or_else(|| self.config.clone());
                    // Not if the caller gave up waiting: it has no id.
                    reply.answer(|| self.dial(addr, config));
                }
                Command::Shutdown => self.begin_shutdown(),
                Command::Reading(id, on) => {
                    self.set_reading(id, on);
                }
            }
        }
        self.commands_left = true;
    }

    // ----- connections ----------------------------------------------------

    /// A generation no id of this reactor had before (2^64 of them: the
    /// counter does not wrap in practice, and wraps rather than panics).
    fn next_generation(&mut self) -> Generation {
        self.generation = self.generation.wrapping_add(1);
        Generation::new(self.generation)
    }

    fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.seed
    }

    fn insert(&mut self, conn: Connection, addr: SocketAddr, stream: Option<TcpStream>) -> ConnId {
        let generation = self.next_generation();
        let entry = self.slots.vacant_entry();
        let id = ConnId {
            index: entry.key() as u32,
            generation,
        };
        entry.insert(Slot {
            id,
            conn,
            addr,
            stream,
            interest: None,
            timer: None,
            dirty: false,
            paused: false,
            counted_disconnects: 0,
        });
        id
    }

    /// Moves the events the last connection call produced to the handler's
    /// queue, tagged with the connection's id.
    #[inline]
    fn collect(&mut self, idx: usize) {
        if self.scratch.is_empty() {
            return;
        }
        let Some(slot) = self.slots.get(idx) else {
            self.scratch.clear();
            return;
        };
        let id = slot.id;
        self.pending.extend(self.scratch.drain(..).map(|e| (id, e)));
    }

    pub(super) fn mark_dirty(&mut self, idx: usize) {
        if let Some(slot) = self.slots.get_mut(idx) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// Brings one connection up to date with its state machine: writes its
    /// output, carries out its socket actions, adjusts readiness interest,
    /// re-files its timer, and frees the slot once it is closed.
    pub(super) fn service(&mut self, idx: usize) {
        self.settle_reply();
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
                warn!("{} {}: cannot register socket: {e}", slot.id, slot.addr);
                slot.conn.handle_io_error(now, e.kind(), &mut self.scratch);
            }
            if !self.apply_actions(idx) {
                break;
            }
        }
        self.collect(idx);
        self.count_disconnects(idx);
        self.sync_timer(idx);
        if self.slots.get(idx).is_some_and(|s| s.conn.is_closed()) {
            self.reap.push(idx);
        }
    }

    /// Carries out the connection's socket actions; true if there were any.
    fn apply_actions(&mut self, idx: usize) -> bool {
        let now = self.now;
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
                crate::conn::Action::CloseSocket => slot.drop_stream(self.poll.registry()),
                crate::conn::Action::Connect => {
                    slot.drop_stream(self.poll.registry());
                    // A pause belongs to the socket it paused.
                    slot.paused = false;
                    self.stats.connects += 1;
                    let config = slot.conn.config().clone();
                    match net::connect(slot.addr, &config.socket, config.heartbeat) {
                        Ok(stream) => slot.stream = Some(stream),
                        Err(e) => {
                            debug!("{} {}: connect failed at once: {e}", slot.id, slot.addr);
                            slot.conn
                                .handle_connect_failed(now, e.kind(), &mut self.scratch);
                        }
                    }
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
                | DisconnectReason::ProtocolError { .. } => log::Level::Info,
                _ => log::Level::Debug,
            };
            log::log!(level, "{} {}: {reason}", slot.id, slot.addr);
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

    /// Keeps one wheel entry per connection at (or just after) its earliest
    /// deadline. Entries are filed on a grid (see [`Config::timer_grain`])
    /// so that the deadlines of many connections share wake-ups.
    ///
    /// A deadline that moved later (traffic pushes the idle deadline on
    /// every read) re-files the entry at once the first time after a
    /// filing, and after that only once the clock is 3/4 of the way to the
    /// entry; before that it leaves the entry alone, at the cost of a
    /// compare. So a busy connection costs the wheel one re-file per
    /// interval, made while its slot is in cache, and an idle one whose
    /// peer pings (its deadline moves once per interval, just before it
    /// would come due) none that fire early and find nothing due.
    fn sync_timer(&mut self, idx: usize) {
        let Some(next) = self.slots.get(idx).map(|slot| slot.conn.poll_timeout()) else {
            return;
        };
        self.file_timer(idx, next);
    }

    /// [`sync_timer`](Self::sync_timer) with the connection's earliest
    /// deadline already known.
    fn file_timer(&mut self, idx: usize, next: Option<Instant>) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let now_tick = self.now_tick;
        let before = slot.timer.map(|f| f.filing);
        match (filing::decide(before, next, now_tick), next) {
            (Decision::Keep, _) => {}
            (Decision::Cancel, _) | (Decision::File, None) => {
                if let Some(f) = slot.timer.take() {
                    self.wheel.cancel(f.key);
                }
            }
            (Decision::File, Some(at)) => {
                let grain = slot.conn.config().timer_grain();
                // In ticks: one clock conversion for the filing.
                let want = self.wheel.coarsen_tick(self.wheel.deadline_tick(at), grain);
                let target = Target::Conn(slot.id);
                let key = match slot.timer {
                    Some(f) if self.wheel.tick(f.key) == Some(want) => f.key,
                    Some(f) if self.wheel.reset_tick(f.key, want) => f.key,
                    _ => self.wheel.insert_tick(want, target),
                };
                slot.timer = Some(Filed {
                    key,
                    filing: filing::filed(before, at, want, now_tick),
                });
            }
        }
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
        if let Some(filed) = slot.timer {
            self.wheel.cancel(filed.key);
        }
        debug!("{} {}: released", slot.id, slot.addr);
        let cap = self.slots.capacity();
        if cap > 1024 && self.slots.len() < cap / 4 {
            self.slots.shrink_to_fit();
        }
    }

    /// A readiness event on a connection that is still connecting.
    pub(super) fn on_connect_ready(&mut self, idx: usize) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(stream) = slot.stream.as_ref() else {
            return;
        };
        match net::connect_result(stream) {
            Ok(true) => slot.conn.handle_connected(now),
            Ok(false) => {}
            Err(e) => {
                debug!("{} {}: connect failed: {e}", slot.id, slot.addr);
                slot.conn
                    .handle_connect_failed(now, e.kind(), &mut self.scratch);
            }
        }
        self.collect(idx);
    }

    /// Reads one chunk from connection `idx` into the shared buffer and
    /// returns it, unprocessed (empty if nothing was read), with what the
    /// read says about the socket. The caller feeds it to the connection
    /// with [`Connection::begin_input`] and friends.
    ///
    /// A read that fills less than the buffer emptied the socket's receive
    /// queue: data arriving after it raises a new edge, so (unless `drain`
    /// asks for the FIN or error that brings no new edge) it counts as
    /// drained, saving the extra `recv` that would only say WouldBlock.
    pub(super) fn read_once(&mut self, idx: usize, drain: bool) -> (ReadStep, BytesMut) {
        let now = self.now;
        let nothing = (ReadStep::Done, BytesMut::new());
        let Some(slot) = self.slots.get_mut(idx) else {
            return nothing;
        };
        if !matches!(
            slot.conn.state(),
            State::Handshaking | State::Established | State::Closing
        ) || slot.conn.is_read_closed()
        {
            return nothing;
        }
        if slot.stream.is_none() {
            return nothing;
        }
        if self.rbuf.len() < MIN_READ_SPACE {
            // Write out this connection's replies first: queued messages
            // may still point into the buffer, and once they are gone the
            // old allocation is reclaimed instead of a new one made. The
            // zero fill keeps the buffer initialized without unsafe code.
            slot.flush(now, &mut self.scratch);
            self.rbuf.clear();
            self.rbuf.reserve(READ_CHUNK);
            self.rbuf.resize(READ_CHUNK, 0);
            self.stats.read_buffer_fills += 1;
        }
        let Some(stream) = slot
            .stream
            .as_mut()
            .filter(|_| slot.conn.state().has_socket())
        else {
            self.collect(idx);
            return nothing; // the flush failed and ended it
        };
        let result = match stream.read(&mut self.rbuf[..]) {
            Ok(0) => {
                slot.conn.handle_eof(now, &mut self.scratch);
                nothing
            }
            Ok(n) => {
                let short = n < self.rbuf.len();
                let step = if short && !drain {
                    ReadStep::Drained
                } else {
                    ReadStep::Again
                };
                (step, self.rbuf.split_to(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => (ReadStep::Again, BytesMut::new()),
            Err(e) => {
                slot.conn.handle_io_error(now, e.kind(), &mut self.scratch);
                nothing
            }
        };
        self.collect(idx);
        result
    }

    /// Gives the bytes of a read that were consumed in place back to the
    /// read buffer when they lie just in front of it, i.e. the read ended
    /// on a frame boundary (a partial frame at its end, copied out by
    /// `end_input`, sits in between): the next read then lands in the
    /// same memory, still in cache, instead of moving on through the
    /// 64 KiB buffer, and the buffer is zero-filled afresh only when
    /// something keeps its bytes. Messages the handler took as `Bytes`
    /// are not in `spent` and keep their bytes: `spent` only ever starts
    /// after them.
    #[inline]
    pub(super) fn reuse_read(&mut self, mut spent: BytesMut) {
        let adjoins = spent.as_ptr() as usize + spent.len() == self.rbuf.as_ptr() as usize;
        if spent.is_empty() || !adjoins {
            return;
        }
        // Both are views of the one allocation `read_once` split, and
        // nothing reallocated the buffer since: joined without a copy.
        match spent.try_unsplit(mem::take(&mut self.rbuf)) {
            Ok(()) => self.rbuf = spent,
            Err(rbuf) => self.rbuf = rbuf,
        }
    }

    /// Starts feeding one read's bytes to connection `idx`; see
    /// [`Connection::begin_input`].
    pub(super) fn begin_input(&mut self, idx: usize, data: &mut BytesMut) -> Option<BytesMut> {
        let now = self.now;
        let head = self.slots.get_mut(idx)?.conn.begin_input(now, data);
        self.collect(idx);
        head
    }

    /// The next message in `buf` for connection `idx`, its frame starting
    /// at `*pos`: its id and the payload length, the frame then at `*pos`
    /// (see [`Connection::take_data`] and [`Connection::poll_input_after`]).
    /// Events the frames before it produced are queued for the handler
    /// first. (Always inlined: it runs once per message, in the read loop.)
    #[inline(always)]
    pub(super) fn next_message(
        &mut self,
        idx: usize,
        buf: &mut BytesMut,
        pos: &mut usize,
    ) -> Option<(ConnId, usize)> {
        let slot = self.slots.get_mut(idx)?;
        let rest = buf.get(*pos..).unwrap_or_default();
        match slot.conn.take_data(rest) {
            Some(len) => Some((slot.id, len)),
            // The read ended on a frame boundary (the usual end): nothing
            // left to decode; the caller consumes what it stepped over.
            None if rest.is_empty() => None,
            None => self.next_message_slow(idx, buf, pos),
        }
    }

    /// [`next_message`](Self::next_message) past a whole DATA frame: the
    /// bytes before `*pos` are consumed (`*pos` becomes 0) and the rest is
    /// processed the general way.
    #[inline(never)]
    fn next_message_slow(
        &mut self,
        idx: usize,
        buf: &mut BytesMut,
        pos: &mut usize,
    ) -> Option<(ConnId, usize)> {
        // Input other than a plain message may answer (a PONG) or end the
        // connection: its output must be whole first.
        self.settle_reply();
        let now = self.now;
        let slot = self.slots.get_mut(idx)?;
        let next = slot
            .conn
            .poll_input_after(now, buf, mem::take(pos), &mut self.scratch);
        let id = slot.id;
        self.collect(idx);
        next.map(|len| (id, len))
    }

    /// Ends one read's input on connection `idx`; see
    /// [`Connection::end_input`].
    pub(super) fn end_input(&mut self, idx: usize, buf: &mut BytesMut) {
        match self.slots.get_mut(idx) {
            Some(slot) => slot.conn.end_input(buf),
            None => buf.clear(),
        }
    }

    // ----- listeners ------------------------------------------------------

    /// Accepts until the listen queue is empty (or accepting must pause).
    pub(super) fn accept(&mut self, index: usize) {
        loop {
            let Some(l) = self.listeners.get_mut(index) else {
                return;
            };
            if l.paused {
                return;
            }
            match l.listener.accept() {
                Ok((stream, addr)) => {
                    if self.slots.len() >= self.max_connections {
                        self.refuse(stream, addr);
                        continue;
                    }
                    self.stats.accepted += 1;
                    let config = l.config.clone();
                    self.adopt(stream, addr, config);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying now would
                    // spin; the pending connections wait in the backlog.
                    self.stats.accept_errors += 1;
                    l.paused = true;
                    let id = l.id;
                    warn!("{id}: accept failed: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                    self.wheel
                        .insert(self.now + ACCEPT_PAUSE, Target::Listener(id));
                    return;
                }
            }
        }
    }

    /// Over the connection limit: tell the peer why (best effort, on a
    /// fresh socket whose buffer is empty) and close at once.
    fn refuse(&mut self, mut stream: TcpStream, addr: SocketAddr) {
        self.stats.refused += 1;
        let mut close = BytesMut::new();
        crate::codec::encode_close(CloseCode::POLICY_VIOLATION, "server full", &mut close);
        let _ = io::Write::write(&mut stream, &close);
        debug!("{addr}: refused, {} connections held", self.slots.len());
    }

    fn adopt(&mut self, stream: TcpStream, addr: SocketAddr, config: Arc<Config>) {
        if !net::ACCEPTED_INHERIT_OPTIONS {
            if let Err(e) = net::configure(SockRef::from(&stream), &config.socket, config.heartbeat)
            {
                debug!("{addr}: socket options not applied: {e}");
            }
        }
        let session = self.next_session;
        self.next_session = self.next_session.wrapping_add(1);
        let seed = self.next_seed();
        let conn = Connection::server(config, self.now, session, seed);
        let id = self.insert(conn, addr, Some(stream));
        debug!("{id} {addr}: accepted");
        self.service(id.index as usize);
    }

    // ----- timers ---------------------------------------------------------

    /// Hands every due wheel entry to its connection or listener.
    pub(super) fn fire_timers(&mut self) {
        let now = self.now;
        self.expired.clear();
        while let Some(entry) = self.wheel.poll_tick(self.now_tick) {
            self.expired.push(entry);
        }
        let mut lag = None;
        for i in 0..self.expired.len() {
            let (key, target) = self.expired[i];
            match target {
                Target::Conn(id) => {
                    let Some(idx) = self.slot_index(id) else {
                        continue;
                    };
                    let slot = &mut self.slots[idx];
                    match slot.timer {
                        Some(filed) if filed.key == key => {
                            let grain = slot.conn.config().timer_grain();
                            let due = self.wheel.coarsen(filed.filing.deadline, grain);
                            let late = now.saturating_duration_since(due);
                            lag = Some(lag.map_or(late, |l: Duration| l.max(late)));
                            slot.timer = None;
                        }
                        _ => continue,
                    }
                    let next = slot.conn.poll_timeout();
                    if next.is_some_and(|at| at > now) {
                        // The lazy entry of a deadline that moved later
                        // (traffic came) and was not re-filed on the way
                        // (see `file_timer`): nothing is due, only re-file
                        // it.
                        self.stats.early_timers += 1;
                        self.file_timer(idx, next);
                        continue;
                    }
                    slot.conn.handle_timeout(now, &mut self.scratch);
                    self.collect(idx);
                    self.service(idx);
                }
                Target::Listener(id) => {
                    let index = id.index as usize;
                    if let Some(l) = self.listeners.get_mut(index).filter(|l| l.id == id) {
                        l.paused = false;
                        self.accept(index);
                    }
                }
            }
        }
        if let Some(lag) = lag {
            self.stats.lag = lag;
            self.stats.max_lag = self.stats.max_lag.max(lag);
        }
    }

    /// Past the shutdown deadline: whatever has not finished closing is
    /// dropped (its sockets closed).
    pub(super) fn finish_shutdown_if_due(&mut self) {
        if self.shutdown.is_some_and(|deadline| self.now >= deadline) && !self.slots.is_empty() {
            debug!(
                "shutdown deadline passed: dropping {} connections",
                self.slots.len()
            );
            let now = self.now;
            let left: Vec<usize> = self.slots.iter().map(|(idx, _)| idx).collect();
            for idx in left {
                // What they still held is handed back (the caller
                // dispatches the events).
                self.slots[idx].conn.abort(now, &mut self.scratch);
                self.collect(idx);
            }
            for mut slot in self.slots.drain() {
                slot.drop_stream(self.poll.registry());
            }
            self.reap.clear();
        }
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

#[cfg(test)]
mod tests;
