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
//! client.transmit_into(&mut wire, &mut events);
//! server.handle_input(t0, &mut wire, &mut events);
//! server.transmit_into(&mut wire, &mut events);
//! client.handle_input(t0, &mut wire, &mut events);
//!
//! assert!(matches!(events[0], Event::Connected(_))); // the server's
//! assert!(matches!(events[1], Event::Connected(ref p) if p.session_id == 42));
//! // The server PINGs after I (10 s) of silence, plus jitter.
//! let ping_at = t0 + Duration::from_secs(10) + server.ping_jitter();
//! assert_eq!(server.timer(Timer::Ping), Some(ping_at));
//! // Nothing is due sooner: the handshake needs no answer.
//! assert_eq!(server.poll_timeout(), Some(ping_at));
//!
//! // Both resume the session by default: the server acknowledges a
//! // message 20 ms after it (sooner when 64 arrive).
//! let t1 = t0 + Duration::from_secs(1);
//! client.send(bytes::Bytes::from_static(b"hi")).unwrap();
//! client.transmit_into(&mut wire, &mut events);
//! server.handle_input(t1, &mut wire, &mut events);
//! assert_eq!(server.poll_timeout(), Some(t1 + Duration::from_millis(20)));
//! ```

mod ending;
mod event;
mod flags;
mod input;
mod liveness;
mod negotiated;
mod outbox;
mod output;
mod queue_lifetime;
mod read_input;
mod replay_log;
mod resume;
mod rtt;
mod session;
mod socket;
mod state;
mod timer;
mod transport;

#[cfg(test)]
mod tests;

use std::io;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace};

use crate::backoff::Attempts;
use crate::config::Config;
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec;
use crate::rng::Rng;

pub use event::{Action, Event, PeerInfo, ResumeStatus, SendError, Stats, UndeliveredCause};
use flags::Flag;
pub(crate) use outbox::COPY_MAX;
pub use read_input::ReadInput;
pub use resume::{MovedSocket, ResumeRequest, SessionStats};
pub use rtt::RttEstimator;
use session::Session;
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

/// See [`Connection::rare`](Connection).
#[derive(Debug, Default)]
struct Rare {
    /// Why the last socket (or the connection) ended.
    close_reason: Option<DisconnectReason>,
    /// Server: a resume HELLO waiting for the driver's answer.
    pending_hello: Option<Box<codec::Handshake>>,
    /// Under a queue lifetime: when the messages waiting unsent were seen.
    unsent: Option<Box<queue_lifetime::UnsentAges>>,
}

/// Socket actions waiting for the driver.
#[derive(Clone, Copy, Debug, Default)]
struct Actions {
    close_socket: bool,
    connect: bool,
}

/// One end of one tether link: a state machine driven by `handle_*` inputs
/// and read through `poll_*` outputs. See the [module docs](self).
///
/// In declaration order (`repr(C)`): what the per-read path touches comes
/// first (the state, the links to the config and the session, the timer
/// table, the counters, the socket's hot line); the redial schedule, the
/// RTT estimate and the random source, needed now and then, come last.
#[derive(Debug)]
#[repr(C)]
pub struct Connection {
    state: State,
    role: Role,
    /// The application closed us (or the backoff gave up): never redial.
    stopping: bool,
    actions: Actions,
    /// Low 32 bits of `stats.bytes_sent` when the write-stall timer was
    /// armed (only compared for equality). It belongs with that timer, in
    /// the connection's table: set whenever the timer is armed.
    stall_mark: u32,
    /// Client: redial attempts since the last healthy connection (the
    /// schedule itself is `config.backoff`, the jitter comes from `rng`).
    attempts: Attempts,
    config: Arc<Config>,
    /// Session resume's numbering and replay log, while resume is wanted
    /// (client) or granted (server); boxed: one pointer otherwise.
    session: Option<Box<Session>>,
    /// What a connection needs only now and then (why it last ended, a
    /// resume HELLO awaiting its answer, the ages of messages waiting under
    /// a queue lifetime), boxed together: one pointer on every connection.
    rare: Option<Box<Rare>>,
    /// When the last byte from the peer arrived, on whichever socket: a
    /// fact of the link's history (the heartbeat deadlines of the current
    /// socket count from it once it is established).
    last_recv: Stamp,
    timers: TimerTable,
    stats: Stats,
    /// Everything that belongs to the current socket, dropped whole with
    /// it: a redial starts from a fresh one.
    sock: Socket,
    rtt: RttEstimator,
    rng: Rng,
    session_id: u64,
}

impl Connection {
    /// A client connection, [`State::Idle`] until [`start`](Self::start).
    /// `seed` feeds jitter and nonces; give each connection its own.
    ///
    /// `config` must pass [`Config::validate`] (as every configuration the
    /// reactor takes does): its durations are added to instants, which
    /// panics past the ranges validation enforces.
    pub fn client(config: Arc<Config>, seed: u64) -> Connection {
        let mut conn = Connection::new(config, Role::Client, State::Idle, seed);
        if conn.config.resume.is_some() {
            conn.session = Some(Box::default());
        }
        conn
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

    /// The rarely needed part, allocated on first use.
    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
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
            session: None,
            rare: None,
            stats: Stats::default(),
            config,
        }
    }

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

    /// Client: the host name of the endpoint being dialed did not resolve
    /// (`kind` and `detail` as the resolver said, `NotFound` for no
    /// address): the attempt ends as a failed connect does
    /// ([`DisconnectReason::Resolve`]), and a redial is scheduled.
    pub fn handle_resolve_failed(
        &mut self,
        now: Instant,
        host: &str,
        kind: io::ErrorKind,
        detail: String,
        events: &mut Vec<Event>,
    ) {
        if self.state == State::Connecting {
            let reason = DisconnectReason::Resolve {
                kind,
                detail: format!("{host}: {detail}"),
            };
            self.lose(now, reason, events);
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

    /// The application closes the connection for good: queued messages are
    /// flushed, then CLOSE `code` with `reason` (truncated to 123 bytes) is
    /// sent and the socket closed. A client stops redialling.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str, events: &mut Vec<Event>) {
        self.stopping = true;
        self.timers.stop(Timer::Reconnect);
        match self.state {
            State::Idle | State::Backoff | State::Detached => self.finish(events),
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
        self.rare.as_deref()?.close_reason.as_ref()
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
}

/// Milliseconds of `d`, saturating at `u32::MAX`.
fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}
