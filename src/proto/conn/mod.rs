//! The sans-IO connection state machine: handshake, heartbeats, dead-peer
//! detection, close, and reconnect with backoff.
//!
//! A [`Connection`] owns no socket and reads no clock. The driver (the
//! reactor, or a test) passes `now` and what happened — bytes read, connect
//! finished or failed, stream closed, a deadline reached, an application
//! send or close — and collects what to do: bytes to write
//! ([`Connection::transmit`]), the next deadline ([`Connection::poll_timeout`]),
//! socket actions ([`Connection::poll_action`]) and application [`Event`]s,
//! which are appended to a caller-owned `Vec` so an idle connection holds no
//! event queue. It must never block, never panic on peer input, and never
//! buffer more than one partial frame plus the bytes of one read.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use bytes::BytesMut;
//! use tether::Config;
//! use tether::proto::conn::{Action, Connection, Event, Timer};
//!
//! let config = Arc::new(Config::default());
//! let t0 = Instant::now();
//! let mut events = Vec::new();
//!
//! let mut client = Connection::client(config.clone(), 1);
//! client.start(t0);
//! assert_eq!(client.poll_action(), Some(Action::Connect));
//! client.handle_connected(t0);
//!
//! let mut server = Connection::server(config, t0, 42, 2);
//! // Move the client's HELLO to the server, and the WELCOME back.
//! let mut wire = BytesMut::new();
//! client.transmit_into(&mut wire);
//! server.handle_input(t0, &mut wire, &mut events);
//! server.transmit_into(&mut wire);
//! client.handle_input(t0, &mut wire, &mut events);
//!
//! assert!(matches!(events[0], Event::Connected(_))); // the server's
//! assert!(matches!(events[1], Event::Connected(ref p) if p.session_id == 42));
//! // The server PINGs after I (10 s) of silence, plus jitter.
//! let ping_at = t0 + Duration::from_secs(10) + server.ping_jitter();
//! assert_eq!(server.timer(Timer::Idle), Some(ping_at));
//! // Nothing is due sooner: the handshake needs no answer.
//! assert_eq!(server.poll_timeout(), Some(ping_at));
//!
//! // A message the server leaves unanswered starts its write-idle clock:
//! // unless it writes something first, it ACKs I/2 (5 s) later.
//! let t1 = t0 + Duration::from_secs(1);
//! client.send(bytes::Bytes::from_static(b"hi")).unwrap();
//! client.transmit_into(&mut wire);
//! server.handle_input(t1, &mut wire, &mut events);
//! assert_eq!(server.poll_timeout(), Some(t1 + Duration::from_secs(5)));
//! ```

mod ending;
mod event;
mod flags;
mod input;
mod outbox;
mod rtt;
mod socket;
mod state;
mod timer;

#[cfg(test)]
mod tests;

use std::io::{self, IoSlice};
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use log::{debug, trace, warn};

use crate::backoff::Attempts;
use crate::config::Config;
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{self, Handshake, HEADER_LEN};
use crate::rng::Rng;

pub use event::{Action, Event, PeerInfo, SendError, Stats, UndeliveredCause};
use flags::Flag;
pub(crate) use outbox::COPY_MAX;
pub use rtt::RttEstimator;
use socket::Socket;
pub use state::{Role, State};
pub use timer::Timer;
use timer::{Stamp, TimerTable};

/// How much of a partial frame's announced length is reserved up front; the
/// rest grows as bytes actually arrive, so a peer announcing a large frame
/// and then trickling it cannot make us reserve `max_frame` at once.
const PARTIAL_RESERVE_CAP: usize = 64 * 1024;

/// Unsent PONGs (13 bytes each) a connection holds beyond `max_outbound`
/// before it decides the peer pings without reading.
const PONG_BACKLOG: usize = 4 * codec::HEARTBEAT_FRAME_LEN;

/// Socket actions waiting for the driver.
#[derive(Clone, Copy, Debug, Default)]
struct Actions {
    close_socket: bool,
    connect: bool,
}

/// One end of one tether link: a state machine driven by `handle_*` inputs
/// and read through `poll_*` outputs. See the [module docs](self).
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    role: Role,
    state: State,
    /// Everything that belongs to the current socket, dropped whole with
    /// it: a redial starts from a fresh one.
    sock: Socket,
    timers: TimerTable,
    actions: Actions,
    rng: Rng,
    rtt: RttEstimator,
    /// Client: redial attempts since the last healthy connection (the
    /// schedule itself is `config.backoff`, the jitter comes from `rng`).
    attempts: Attempts,
    /// When the last byte from the peer arrived, on whichever socket: a
    /// fact of the link's history (the heartbeat deadlines of the current
    /// socket count from it once it is established).
    last_recv: Stamp,
    /// The application closed us (or the backoff gave up): never redial.
    stopping: bool,
    /// Low 32 bits of `stats.bytes_sent` when the write-stall timer was
    /// armed (only compared for equality). It belongs with that timer, in
    /// the connection's table: set whenever the timer is armed.
    stall_mark: u32,
    session_id: u64,
    /// Boxed: needed once per ending, not worth 32 bytes on every connection.
    close_reason: Option<Box<DisconnectReason>>,
    stats: Stats,
}

impl Connection {
    /// A client connection, [`State::Idle`] until [`start`](Self::start).
    /// `seed` feeds jitter and nonces; give each connection its own.
    ///
    /// `config` must pass [`Config::validate`] (as every configuration the
    /// reactor takes does): its durations are added to instants, which
    /// panics past the ranges validation enforces.
    pub fn client(config: Arc<Config>, seed: u64) -> Connection {
        Connection::new(config, Role::Client, State::Idle, seed)
    }

    /// A server connection for a freshly accepted socket, waiting for HELLO
    /// until the handshake timeout. `session_id` goes into WELCOME.
    /// `config` must pass [`Config::validate`], as for
    /// [`client`](Self::client).
    pub fn server(config: Arc<Config>, now: Instant, session_id: u64, seed: u64) -> Connection {
        let mut conn = Connection::new(config, Role::Server, State::Handshaking, seed);
        conn.session_id = session_id;
        let deadline = now + conn.config.handshake_timeout;
        conn.timers.set(Timer::Handshake, deadline);
        conn
    }

    fn new(config: Arc<Config>, role: Role, state: State, seed: u64) -> Connection {
        let rng = Rng::new(seed ^ config.seed.rotate_left(17));
        Connection {
            role,
            state,
            sock: Socket::default(),
            timers: TimerTable::default(),
            actions: Actions::default(),
            rng,
            rtt: RttEstimator::default(),
            attempts: Attempts::default(),
            last_recv: Stamp::NONE,
            stopping: false,
            stall_mark: 0,
            session_id: 0,
            close_reason: None,
            stats: Stats::default(),
            config,
        }
    }

    // ----- inputs ---------------------------------------------------------

    /// Client: starts the first dial (asks for [`Action::Connect`]).
    /// Does nothing unless the connection is [`State::Idle`].
    pub fn start(&mut self, now: Instant) {
        if self.state == State::Idle {
            self.begin_connect(now);
        }
    }

    /// Client: the TCP connect finished; sends HELLO.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.state != State::Connecting {
            return;
        }
        self.timers.stop(Timer::Connect);
        self.set_state(State::Handshaking);
        self.timers
            .set(Timer::Handshake, now + self.config.handshake_timeout);
        let hello = self.our_handshake();
        codec::encode_hello(&hello, self.sock.outbox.ctrl());
    }

    /// Client: the TCP connect failed; schedules a redial.
    pub fn handle_connect_failed(
        &mut self,
        now: Instant,
        kind: io::ErrorKind,
        events: &mut Vec<Event>,
    ) {
        if self.state == State::Connecting {
            self.lose(now, DisconnectReason::ConnectFailed(kind), events);
        }
    }

    /// The peer closed its side of the stream (read returned 0).
    ///
    /// The end is reported at once ([`DisconnectReason::PeerEof`]). An
    /// established connection with output queued — replies to what the
    /// peer sent before its end — keeps the socket open in
    /// [`State::Closing`] until that output is written, the close linger
    /// passes or a write fails, so a peer that half-closes after its
    /// requests still gets the replies; no CLOSE is added to them. From
    /// then on there is nothing to read ([`is_read_closed`](Self::is_read_closed)),
    /// and a repeated EOF changes nothing. Otherwise the socket is closed
    /// at once; so it is when the peer ends while we are closing.
    pub fn handle_eof(&mut self, now: Instant, events: &mut Vec<Event>) {
        match self.state {
            State::Established if !self.sock.outbox.is_empty() => {
                debug!(
                    "{:?}: lost: {}; flushing {} bytes first",
                    self.role,
                    DisconnectReason::PeerEof,
                    self.sock.outbox.len()
                );
                self.sock.flags.set(Flag::ReadClosed, true);
                self.disconnect(now, DisconnectReason::PeerEof, events);
                self.enter_closing(now, events);
            }
            State::Handshaking | State::Established => {
                self.lose(now, DisconnectReason::PeerEof, events)
            }
            State::Closing if !self.sock.flags.get(Flag::ReadClosed) => self.close_socket(events),
            _ => {}
        }
    }

    /// A read or write on the socket failed.
    pub fn handle_io_error(&mut self, now: Instant, kind: io::ErrorKind, events: &mut Vec<Event>) {
        match self.state {
            State::Connecting => self.lose(now, DisconnectReason::ConnectFailed(kind), events),
            State::Handshaking | State::Established => {
                self.lose(now, DisconnectReason::Io(kind), events)
            }
            State::Closing => self.close_socket(events),
            _ => {}
        }
    }

    /// Processes every deadline that is due at `now`. Call it when
    /// [`poll_timeout`](Self::poll_timeout) has passed (calling it early is
    /// harmless).
    pub fn handle_timeout(&mut self, now: Instant, events: &mut Vec<Event>) {
        while let Some((timer, due)) = self.timers.pop_due(now) {
            trace!("{:?} timer {timer:?} fired in {}", self.role, self.state);
            self.on_timer(timer, due, now, events);
        }
    }

    /// Queues one message. Refused unless established, when larger than
    /// `max_frame`, or when the output queue would pass `max_outbound`.
    pub fn send(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.may_send(payload.len())?;
        self.sock.outbox.push_data(payload);
        self.note_send();
        Ok(())
    }

    /// Queues a copy of one message, refused as by [`send`](Self::send).
    /// A small message is copied straight into the output (no allocation).
    pub fn send_slice(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.may_send(payload.len())?;
        self.sock.outbox.push_slice(payload);
        self.note_send();
        Ok(())
    }

    /// Queues a copy of one whole DATA frame — its header and a payload of
    /// at most [`COPY_MAX`] bytes — as received (a message forwarded as it
    /// came off the wire): one copy into the output instead of encoding
    /// the header and copying the payload. Refused as by [`send`](Self::send).
    #[inline]
    pub(crate) fn send_framed(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.may_send(frame.len().saturating_sub(HEADER_LEN))?;
        self.sock.outbox.push_framed(frame);
        self.note_send();
        Ok(())
    }

    /// Lends the driver the packed run at the back of the output, to append
    /// whole small DATA frames to directly while it answers this
    /// connection's input (the reactor's reply run): the run, how many
    /// bytes may be appended (its cap and `max_outbound` both counted), and
    /// the largest payload allowed. Frames appended within those limits
    /// are exactly what [`send`](Self::send) would accept. `None` unless
    /// established with such a run open. Nothing else may touch the output
    /// until [`return_run`](Self::return_run).
    pub(crate) fn lend_run(&mut self) -> Option<(BytesMut, usize, usize)> {
        if self.state != State::Established {
            return None;
        }
        let (run, room) = self.sock.outbox.take_open_run()?;
        let queued = self.sock.outbox.len() + run.len();
        let room = room.min(self.config.max_outbound.saturating_sub(queued));
        let max_payload = self.config.max_frame.min(COPY_MAX);
        Some((run, room, max_payload))
    }

    /// [`lend_run`](Self::lend_run) with no DATA queued: a fresh run from
    /// the thread's pool, for the first answer of a read. `None` unless
    /// established with no DATA (or closing frames) queued; queued control
    /// frames stay ahead of it, as ahead of any unstarted DATA.
    pub(crate) fn lend_fresh_run(&mut self) -> Option<(BytesMut, usize, usize)> {
        if self.state != State::Established {
            return None;
        }
        let (run, room) = self.sock.outbox.take_fresh_run()?;
        let room = room.min(
            self.config
                .max_outbound
                .saturating_sub(self.sock.outbox.len()),
        );
        let max_payload = self.config.max_frame.min(COPY_MAX);
        Some((run, room, max_payload))
    }

    /// Takes back a run lent by [`lend_run`](Self::lend_run) or
    /// [`lend_fresh_run`](Self::lend_fresh_run), with `messages` frames
    /// appended to it since.
    pub(crate) fn return_run(&mut self, run: BytesMut, messages: u64) {
        self.sock.outbox.put_back_run(run);
        if messages > 0 {
            // As `note_send` for each: counted, and the trim timer armed
            // (a fresh run's first message did not pass `note_send`).
            self.stats.messages_sent += messages - 1;
            self.note_send();
        }
    }

    /// Bookkeeping for every message queued: the count, and the trim timer
    /// that frees the output buffers once the connection stops sending.
    #[inline]
    fn note_send(&mut self) {
        self.stats.messages_sent += 1;
        if !self.timers.is_armed(Timer::Trim) {
            // From the last receipt (a stamp: no clock read here); a
            // deadline already past only means an early first look.
            let due = self.last_recv.after(self.trim_period());
            self.timers.set_stamp(Timer::Trim, due);
        }
    }

    /// How long output buffers stay with a connection that stopped sending:
    /// the heartbeat interval, or 1 s without heartbeats.
    fn trim_period(&self) -> Duration {
        self.config
            .heartbeat
            .map_or(Duration::from_secs(1), |hb| hb.interval)
    }

    /// The trim timer fired: free the output buffers if nothing is queued
    /// (so a connection that went quiet holds none). It looks again one
    /// period later if output is queued or if it just freed something, and
    /// stops once a look finds nothing to free, until the next message
    /// arms it. So a connection that sends all the time gives its buffers
    /// back at most once per period, when its queue happens to be empty —
    /// an allocation per period, not per message — even when the receipt
    /// its first deadline counted from is long past (a peer that never
    /// talks, no heartbeats), and one that stopped sending is looked at at
    /// most twice more.
    fn on_trim(&mut self, now: Instant) {
        if !self.sock.outbox.is_empty() || self.sock.outbox.release_idle_memory() {
            let due = now + self.trim_period();
            self.timers.set(Timer::Trim, due);
        }
    }

    #[inline]
    fn may_send(&mut self, len: usize) -> Result<(), SendError> {
        if self.state != State::Established {
            return Err(SendError::NotConnected);
        }
        let max = self.config.max_frame;
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        let queued = self.sock.outbox.len();
        let limit = self.config.max_outbound;
        // Saturating: `queued` counts a shared payload once per send, and
        // on a 32-bit target `max_frame` alone may approach `usize::MAX`.
        if queued.saturating_add(HEADER_LEN).saturating_add(len) > limit {
            self.sock.flags.set(Flag::Refused, true);
            return Err(SendError::Backpressure { queued, limit });
        }
        Ok(())
    }

    /// After output was written (see [`advance_transmit`](Self::advance_transmit)):
    /// pushes [`Event::Drained`] if a send was refused with backpressure
    /// and the queued output has fallen to half of `max_outbound` or
    /// below since. Cheap when nothing was refused.
    #[inline]
    pub fn poll_drain(&mut self, events: &mut Vec<Event>) {
        if self.sock.flags.get(Flag::Refused)
            && self.sock.outbox.len() <= self.config.max_outbound / 2
        {
            self.sock.flags.set(Flag::Refused, false);
            if self.state == State::Established {
                events.push(Event::Drained);
            }
        }
    }

    /// The application closes the connection for good: queued messages are
    /// flushed, then CLOSE `code` with `reason` (truncated to 123 bytes) is
    /// sent and the socket closed. A client stops redialling.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str, events: &mut Vec<Event>) {
        self.stopping = true;
        self.timers.stop(Timer::Reconnect);
        match self.state {
            State::Idle | State::Backoff => self.finish(events),
            State::Connecting => {
                self.actions.close_socket = true;
                self.finish(events);
            }
            State::Handshaking | State::Established => {
                codec::encode_close(code, reason, self.sock.outbox.tail());
                self.disconnect(now, DisconnectReason::LocalClose(code), events);
                self.enter_closing(now, events);
            }
            State::Closing | State::Closed => {}
        }
    }

    /// The driver drops the connection now, whatever its state (a
    /// shutdown whose deadline passed): the socket is to be closed, queued
    /// messages are handed back ([`Event::Undelivered`]), and the
    /// connection ends [`State::Closed`], never to redial.
    pub fn abort(&mut self, now: Instant, events: &mut Vec<Event>) {
        self.stopping = true;
        self.timers.stop(Timer::Reconnect);
        if matches!(self.state, State::Handshaking | State::Established) {
            self.disconnect(
                now,
                DisconnectReason::LocalClose(CloseCode::GOING_AWAY),
                events,
            );
        }
        if self.state.has_socket() {
            self.drop_socket(events);
        }
        self.finish(events);
    }

    /// Records that the first `n` bytes of [`transmit`](Self::transmit)'s
    /// slices were written to the socket.
    pub fn advance_transmit(&mut self, n: usize) {
        self.sock.outbox.advance(n);
        self.stats.bytes_sent += n as u64;
        if n > 0 {
            // We said something: whatever the peer said so far is
            // answered (see `on_write_idle`).
            self.timers.stop(Timer::WriteIdle);
            self.sock.recv_mark = self.talk_received();
            if self.sock.flags.take(Flag::SocketFull) {
                // Room in a full send buffer appears only as the peer acks.
                self.sock.flags.set(Flag::PeerDrained, true);
            }
        }
        if self.state == State::Closing && self.sock.outbox.is_empty() {
            // Nothing is queued: nothing can be handed back.
            self.close_socket(&mut Vec::new());
        }
    }

    /// The socket would not take more output while some is pending. Arms
    /// the write-stall timer: if not one byte is written before it fires,
    /// the peer is not reading and the connection is closed.
    ///
    /// It also lets a sender whose PING is queued behind a large message
    /// tell a live, reading peer from a dead one: when a full socket takes
    /// more output, the peer acknowledged data, and that counts as life.
    pub fn handle_write_blocked(&mut self, now: Instant) {
        self.sock.flags.set(Flag::SocketFull, true);
        let Some(timeout) = self.config.write_stall_timeout else {
            return;
        };
        if self.pending_output() > 0 && !self.timers.is_armed(Timer::WriteStall) {
            self.stall_mark = self.stats.bytes_sent as u32;
            self.timers.set(Timer::WriteStall, now + timeout);
        }
    }

    // ----- outputs --------------------------------------------------------

    /// Fills `dst` with the next slices to write, in order, and returns how
    /// many it filled (0: nothing to write). Write them with one vectored
    /// write, then report the count with [`advance_transmit`](Self::advance_transmit).
    pub fn transmit<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.sock.outbox.chunks(dst)
    }

    /// All pending output when it is one contiguous slice, to write with
    /// one plain `send` (then [`advance_transmit`](Self::advance_transmit));
    /// `None` when it is not (use [`transmit`](Self::transmit)) or when
    /// nothing is pending.
    #[inline]
    pub(crate) fn transmit_contiguous(&self) -> Option<&[u8]> {
        self.sock.outbox.contiguous()
    }

    /// Moves all pending output into `dst` (for tests and simple drivers
    /// that copy anyway).
    pub fn transmit_into(&mut self, dst: &mut BytesMut) {
        loop {
            let mut iov = [IoSlice::new(&[]); 16];
            let n = self.sock.outbox.chunks(&mut iov);
            if n == 0 {
                return;
            }
            let mut written = 0;
            for s in &iov[..n] {
                dst.extend_from_slice(s);
                written += s.len();
            }
            self.advance_transmit(written);
        }
    }

    /// Bytes waiting to be written. While non-zero the driver wants
    /// writable readiness.
    pub fn pending_output(&self) -> usize {
        self.sock.outbox.len()
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// has something to do. It may be early (some deadlines are re-checked
    /// lazily when they fire), never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next socket action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        if mem::take(&mut self.actions.close_socket) {
            return Some(Action::CloseSocket);
        }
        if mem::take(&mut self.actions.connect) {
            return Some(Action::Connect);
        }
        None
    }

    // ----- accessors ------------------------------------------------------

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Terminal: no socket, no timers, nothing more will happen.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The peer ended its side of the current socket's stream and the
    /// socket stays open only to flush the output queued for it (see
    /// [`handle_eof`](Self::handle_eof)): there is nothing more to read,
    /// and a driver stops reading it (a level-triggered poll would
    /// otherwise report the end of stream again and again).
    pub fn is_read_closed(&self) -> bool {
        self.sock.flags.get(Flag::ReadClosed)
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Why the last socket of this connection ended, if one did.
    pub fn close_reason(&self) -> Option<&DisconnectReason> {
        self.close_reason.as_deref()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Round-trip time estimates from PING/PONG.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// When the last byte was received.
    pub fn last_recv(&self) -> Option<Instant> {
        self.timers.instant_of(self.last_recv)
    }

    /// The session id (assigned by the server).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Client: the number of the current (or coming) attempt since the
    /// last healthy connection; 0 when healthy.
    pub fn reconnect_attempt(&self) -> u32 {
        self.attempts.get()
    }

    /// The jitter currently added to the heartbeat interval.
    pub fn ping_jitter(&self) -> Duration {
        Duration::from_millis(self.sock.ping_jitter_ms.into())
    }

    /// When a named timer is armed to fire, if it is.
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
    }

    // ----- frames ---------------------------------------------------------

    fn our_handshake(&self) -> Handshake {
        let (interval, timeout) = self.config.heartbeat.map_or((0, 0), |hb| {
            (millis_u32(hb.interval), millis_u32(hb.timeout))
        });
        Handshake {
            flags: 0,
            interval_ms: interval,
            timeout_ms: timeout,
            // A HELLO always asks for a new session (there is no resume
            // yet); only WELCOME carries the id the server assigned.
            session_id: match self.role {
                Role::Server => self.session_id,
                Role::Client => 0,
            },
            recv_seq: 0,
        }
    }

    fn establish(&mut self, now: Instant, peer: &Handshake, events: &mut Vec<Event>) {
        self.timers.stop(Timer::Handshake);
        self.set_state(State::Established);
        self.sock.flags.set(Flag::Connected, true);
        self.sock.flags.set(Flag::FrameSinceHandshake, false);
        self.stats.handshakes = self.stats.handshakes.saturating_add(1);
        self.last_recv = self.timers.stamp(now);
        if let Some(hb) = self.config.heartbeat {
            self.sock.ping_jitter_ms = self.next_jitter_ms();
            self.timers
                .set(Timer::Idle, now + hb.interval + self.ping_jitter());
        }
        if self.role == Role::Client {
            self.timers
                .set(Timer::Healthy, now + self.config.healthy_period());
        }
        self.sock.session_rx_base = self.stats.messages_received;
        let own = self
            .config
            .heartbeat
            .map_or(0, |hb| millis_u32(hb.interval));
        self.sock.write_idle_ms = match (own, peer.interval_ms) {
            (0, 0) => 0,
            (0, p) | (p, 0) => (p / 2).max(1),
            (a, b) => (a.min(b) / 2).max(1),
        };
        // The handshake needs no answer: talk counts from here.
        self.sock.recv_mark = self.talk_received();
        events.push(Event::Connected(PeerInfo {
            interval: Duration::from_millis(peer.interval_ms.into()),
            timeout: Duration::from_millis(peer.timeout_ms.into()),
            // The server's assigned id on both ends (HELLO carries 0).
            session_id: self.session_id,
        }));
    }

    // ----- liveness -------------------------------------------------------

    /// Any byte is proof of life: restart the read-idle clock (the idle
    /// deadline moves with it, so it only comes due after a real silence)
    /// and stand down a pending death sentence.
    fn note_life(&mut self, now: Instant) {
        self.last_recv = self.timers.stamp(now);
        if self.state != State::Established {
            return;
        }
        self.timers.stop(Timer::Dead);
        if let Some(hb) = self.config.heartbeat {
            let due = self.last_recv.after(hb.interval + self.ping_jitter());
            self.timers.set_stamp(Timer::Idle, due);
        }
    }

    /// After a read: if the peer said something we have not answered, start
    /// the write-idle clock (our next write stops it; see
    /// [`on_write_idle`](Self::on_write_idle)).
    #[inline]
    fn note_talk(&mut self) {
        if self.sock.write_idle_ms == 0
            || self.state != State::Established
            || self.timers.is_armed(Timer::WriteIdle)
            || self.talk_received() == self.sock.recv_mark
        {
            return;
        }
        let due = self.last_recv.after(self.write_idle());
        self.timers.set_stamp(Timer::WriteIdle, due);
    }

    /// A PING was received (and answered): this side's own next PING is
    /// due one interval and a jitter after it, and the jitter is drawn
    /// afresh here, as the pinging side draws after each PING it sends.
    /// So every exchange on an idle link is a new draw on both sides, and
    /// either may ping next (and sample the round trip); a side that drew
    /// only after its own PINGs kept its first draw while the peer pinged
    /// first, and with a high one never pinged again.
    fn redraw_ping_jitter(&mut self) {
        let Some(hb) = self.config.heartbeat else {
            return;
        };
        if self.state != State::Established {
            return;
        }
        self.sock.ping_jitter_ms = self.next_jitter_ms();
        let due = self.last_recv.after(hb.interval + self.ping_jitter());
        self.timers.set_stamp(Timer::Idle, due);
    }

    /// The idle timer fired: a whole interval (and the jitter) of silence.
    fn on_idle(&mut self, now: Instant) {
        let (Some(hb), Some(last)) = (self.config.heartbeat, self.last_recv()) else {
            return;
        };
        let due = last + hb.interval + self.ping_jitter();
        if now < due {
            self.timers.set(Timer::Idle, due);
            return;
        }
        self.probe(now, hb.timeout);
        self.sock.flags.set(Flag::PeerDrained, false);
        self.sock.ping_jitter_ms = self.next_jitter_ms();
        trace!(
            "{:?}: PING {:#x} after {:?} of silence",
            self.role,
            self.sock.probe_nonce,
            now - last
        );
    }

    /// Probes the peer at `now`: it has `timeout` from now to send anything.
    ///
    /// The probe is a fresh PING, unless our previous PING is still queued
    /// (the socket has not taken all of it yet): that one has not reached
    /// the peer, so it serves as the probe, nonce and all, and no second
    /// PING queues up behind it. So at most one PING ever waits in the
    /// output, however long the socket takes nothing.
    fn probe(&mut self, now: Instant, timeout: Duration) {
        if !self.sock.outbox.ping_queued() {
            let nonce = self.rng.next_u64();
            self.sock.outbox.push_ping(nonce);
            self.sock.probe_nonce = nonce;
            self.stats.pings_sent = self.stats.pings_sent.saturating_add(1);
        }
        self.sock.probe_sent = self.timers.stamp(now);
        self.timers.set(Timer::Dead, now + timeout);
    }

    /// The death sentence came due while *we* were not running (a long
    /// callback, SIGSTOP, a suspended VM: it was handled `late`, more than
    /// a timer grain plus the stall tolerance): what the peer sent
    /// meanwhile may still be unread, so convicting it would blame it for
    /// our delay. Give it a fresh `T` instead, and a fresh PING — unless our PING is still
    /// queued (the socket took nothing of it): then that one is the probe
    /// (see [`probe`](Self::probe)), so a driver that never writes while
    /// every deadline is handled late does not pile up a PING per `T`.
    fn forgive_stall(&mut self, now: Instant, late: Duration) {
        let Some(hb) = self.config.heartbeat else {
            return;
        };
        warn!(
            "{:?}: heartbeat deadline handled {late:?} late (local stall); re-probing the peer",
            self.role
        );
        self.stats.stalls_forgiven = self.stats.stalls_forgiven.saturating_add(1);
        self.probe(now, hb.timeout);
    }

    /// A random extra delay of at most 10 % of the interval, in whole ms.
    /// At most `I/10` less one step of the reactor's timer grid
    /// ([`Config::timer_grain`]): a PING handled on the grid still leaves
    /// within `I/10` of `I`, the jitter the contract allows.
    fn next_jitter_ms(&mut self) -> u32 {
        let interval_ms = self
            .config
            .heartbeat
            .map_or(0, |hb| millis_u32(hb.interval));
        let grain_ms = millis_u32(self.config.timer_grain());
        // At most interval_ms / 10, so it fits.
        self.rng
            .below_inclusive(u64::from((interval_ms / 10).saturating_sub(grain_ms))) as u32
    }

    fn on_timer(&mut self, timer: Timer, due: Instant, now: Instant, events: &mut Vec<Event>) {
        match (timer, self.state) {
            (Timer::Connect, State::Connecting) => {
                self.lose(now, DisconnectReason::ConnectTimeout, events)
            }
            (Timer::Handshake, State::Handshaking) => {
                self.fail(now, DisconnectReason::HandshakeTimeout, events)
            }
            (Timer::Idle, State::Established) => self.on_idle(now),
            (Timer::Dead, State::Established) => {
                // Handled within one grain of the reactor's timer grid
                // after `due` is on time: the deadline was filed there.
                let late = now.saturating_duration_since(due);
                let allowed = self
                    .config
                    .timer_grain()
                    .saturating_add(self.config.stall_tolerance);
                if late > allowed {
                    self.forgive_stall(now, late);
                } else if self.sock.flags.take(Flag::PeerDrained) {
                    // Our PING is stuck behind data the peer is visibly
                    // taking in: wait another T for its answer.
                    if let Some(hb) = self.config.heartbeat {
                        self.stats.drain_extensions = self.stats.drain_extensions.saturating_add(1);
                        self.timers.set(Timer::Dead, now + hb.timeout);
                    }
                } else {
                    self.fail(now, DisconnectReason::HeartbeatTimeout, events)
                }
            }
            (Timer::Healthy, State::Established) => {
                if self.sock.flags.get(Flag::FrameSinceHandshake) {
                    self.attempts.reset();
                } else {
                    self.sock.flags.set(Flag::HealthyPending, true);
                }
            }
            (Timer::Linger, State::Closing) => self.close_socket(events),
            (Timer::WriteIdle, State::Established) => self.on_write_idle(),
            (Timer::Trim, _) => self.on_trim(now),
            (Timer::WriteStall, State::Handshaking | State::Established) => {
                self.on_write_stall_timer(now, events)
            }
            (Timer::Reconnect, State::Closing) => {
                self.drop_socket(events);
                self.begin_connect(now);
            }
            (Timer::Reconnect, State::Backoff) => self.begin_connect(now),
            // A timer that outlived the state it belonged to.
            _ => {}
        }
    }

    fn write_idle(&self) -> Duration {
        Duration::from_millis(self.sock.write_idle_ms.into())
    }

    /// Low 32 bits of the bytes received that call for a sign of life back:
    /// everything but PONGs (answers to our own PINGs) and ACKs (the
    /// peer's own signs of life). Only compared for equality, so the low
    /// bits suffice (wrapping).
    fn talk_received(&self) -> u32 {
        let quiet = self
            .stats
            .pongs_received
            .wrapping_add(self.stats.acks_received);
        (self.stats.bytes_received as u32)
            .wrapping_sub(quiet.wrapping_mul(codec::HEARTBEAT_FRAME_LEN as u64) as u32)
    }

    /// Receiving but saying nothing: send an ACK (the count of DATA frames
    /// received this session, as the contract defines it) so the peer hears
    /// from us. A peer pushing a large message has its own PINGs queued
    /// behind that message, so without this it could not tell us from a
    /// dead peer.
    ///
    /// The timer is armed by a read that brought talk (anything but PONGs
    /// and ACKs, the peer's own answers; answering those would start an
    /// endless ACK ping-pong between two quiet peers) and stopped by our
    /// next write, so when it fires nothing was written for the write-idle
    /// period since that talk came. On an idle link the PONG answering each
    /// PING stops it, so it never fires there, and a busy connection never
    /// lets it come due either.
    fn on_write_idle(&mut self) {
        if self.talk_received() != self.sock.recv_mark && self.pending_output() == 0 {
            let count = self.stats.messages_received - self.sock.session_rx_base;
            codec::encode_ack(count, self.sock.outbox.ctrl());
            self.stats.acks_sent = self.stats.acks_sent.saturating_add(1);
        }
        self.sock.recv_mark = self.talk_received();
    }

    fn on_write_stall_timer(&mut self, now: Instant, events: &mut Vec<Event>) {
        if self.pending_output() == 0 {
            return;
        }
        if self.stats.bytes_sent as u32 != self.stall_mark {
            // Progress in this window, but output is still queued: watch
            // the next window.
            if let Some(timeout) = self.config.write_stall_timeout {
                self.stall_mark = self.stats.bytes_sent as u32;
                self.timers.set(Timer::WriteStall, now + timeout);
            }
            return;
        }
        // Not one byte in a whole window: the peer does not read, so a
        // CLOSE frame could not reach it either.
        self.lose(now, DisconnectReason::WriteStalled, events);
    }
}

/// Milliseconds of `d`, saturating at `u32::MAX`.
fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}
