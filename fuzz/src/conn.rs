//! Fuzzing the connection state machine under a fake clock.
//!
//! An input is a [`CONFIG_LEN`]-byte configuration followed by a script of
//! [`Op`]s: clock jumps, timer expiries (on time, late, early), bytes from
//! a hostile or well-behaved peer delivered in arbitrary pieces, partial
//! writes, socket results, and application calls. The harness plays a
//! sensible driver (it only reports socket results for a socket the
//! connection asked for, and forgets a socket's bytes when it closes), and
//! after every step checks the invariants listed on [`run`].

mod check;
mod script;
mod tolerate;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tether::proto::codec::{Decoder, Frame};
use tether::proto::conn::{Action, Connection, Event, Role, SendError, State, Stats};
use tether::Heartbeat;
use tether::{CloseCode, Config};

use super::input::Input;
use super::track;
pub use script::{config, flags, script, span, Op, PeerFrame, CONFIG_LEN};
use script::{io_kind, lateness, pattern, reason};
pub use tolerate::{Bug, Tolerate};

/// How far the fake clock may be moved to a deadline: a year. (Timer
/// tables store deadlines as `i64` nanoseconds, so a clock centuries ahead
/// of the first deadline is out of scope.)
pub const HORIZON: Duration = Duration::from_secs(365 * 24 * 3600);

/// The session id the fuzzed server assigns.
pub const SERVER_SESSION: u64 = 42;

/// What control frames may add to `max_outbound`: a handshake frame, a
/// PING, a few PONGs and the longest CLOSE.
pub const CTRL_SLACK: usize = 35 + 13 + 4 * 13 + 130;

fn is_reading(state: State) -> bool {
    matches!(state, State::Handshaking | State::Established)
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// What the harness knows about the socket the connection holds.
struct Sock {
    /// Connect finished (client) / accepted (server).
    open: bool,
    /// Peer bytes not delivered yet.
    peer: BytesMut,
    /// Delivered bytes the harness has not parsed into frames yet, while
    /// the connection reads; `None` once it stopped (error or CLOSE).
    shadow: Option<BytesMut>,
    /// Our written bytes not parsed yet, and the stream offset of the next
    /// frame to parse.
    out: BytesMut,
    out_parsed: u64,
    out_total: u64,
    out_first: bool,
    out_closed: bool,
    /// PINGs received and answered: nonce, and our stream offset then.
    pongs_due: VecDeque<(u64, u64)>,
    /// Messages accepted by `send`, in order.
    sent: VecDeque<Bytes>,
    /// Messages received on this socket, and the count in our last ACK.
    received: u64,
    acked: u64,
    /// When the last byte was delivered while the connection read.
    last_rx: Option<Instant>,
    /// When our outstanding PING went out, and when the peer is due to be
    /// declared dead for it (none after any byte arrives).
    ping_out: Option<Instant>,
    dead_at: Option<Instant>,
    /// The nonce of our last PING written, for the peer's PONG.
    our_ping: Option<u64>,
    /// When each PING not completely written yet was queued (or last
    /// reused as a probe); at most one.
    pings_queued: VecDeque<Instant>,
    /// The outstanding PING an RTT sample would come from, once written.
    probe: Option<(u64, Instant)>,
    /// When the handshake completed, and whether a frame came after it.
    established_at: Option<Instant>,
    frame_after_handshake: bool,
    /// The first `handle_write_blocked` with output pending.
    first_blocked: Option<Instant>,
    /// The last write of at least one byte, or when the socket opened.
    last_progress: Instant,
    connected: bool,
}

impl Sock {
    fn new(open: bool, now: Instant) -> Sock {
        Sock {
            open,
            peer: BytesMut::new(),
            shadow: Some(BytesMut::new()),
            out: BytesMut::new(),
            out_parsed: 0,
            out_total: 0,
            out_first: false,
            out_closed: false,
            pongs_due: VecDeque::new(),
            sent: VecDeque::new(),
            received: 0,
            acked: 0,
            last_rx: None,
            ping_out: None,
            dead_at: None,
            our_ping: None,
            pings_queued: VecDeque::new(),
            probe: None,
            established_at: None,
            frame_after_handshake: false,
            first_blocked: None,
            last_progress: now,
            connected: false,
        }
    }
}

/// The connection's state before a step, for the checks after it.
struct Before {
    state: State,
    stats: Stats,
    jitter: Duration,
    last_rx: Option<Instant>,
    ping_out: Option<Instant>,
    dead_at: Option<Instant>,
    /// Our last PING is queued, not completely written yet.
    ping_queued: bool,
    drained_at: Option<Instant>,
    probe: Option<(u64, Instant)>,
    first_blocked: Option<Instant>,
    last_progress: Option<Instant>,
    established_at: Option<Instant>,
    frame_after_handshake: bool,
    connected: bool,
    attempt: u32,
    rtt_samples: u32,
}

/// What a step did.
#[derive(Default)]
struct Step {
    timers: bool,
    delivery: Option<Delivery>,
}

struct Delivery {
    len: usize,
    reading: bool,
    /// The frames these bytes completed, as the harness decodes them.
    frames: Vec<Frame>,
    /// Our stream offset when they arrived.
    out_at: u64,
}

struct World {
    config: Arc<Config>,
    /// The configuration has a huge duration (see `Bug::ConfigOverflow`).
    huge: bool,
    role: Role,
    tolerate: Tolerate,
    t0: Instant,
    now: Instant,
    conn: Connection,
    sock: Option<Sock>,
    sends: u64,
    /// The connection's view of its socket: it refused output and has not
    /// taken any since; when a full socket last took output after our
    /// PING was completely written, through `advance_transmit` (the peer
    /// acknowledged data: life, which may extend a death deadline to `T`
    /// after it).
    socket_full: bool,
    drained_at: Option<Instant>,
    peak_pending: usize,
    peak_read: usize,
    trace: VecDeque<String>,
    steps: usize,
}

/// Runs one input with the known bugs `TETHER_FUZZ_TOLERATE` names.
///
/// After every step (see [`Op`]) it checks:
///
/// - nothing panics (a validated `Config` included), and `handle_input`
///   consumes all it is given; `role`, `is_closed` and `last_recv` agree;
/// - the connection holds a socket exactly while the driver does, and asks
///   for a new one only after closing the old; each state has the timer
///   that ends it (Connecting: connect; Handshaking: handshake; Closing:
///   linger; Backoff: reconnect), Idle, Backoff and Closed keep no timer of
///   a socket, and Closed has no timer and no output at all;
/// - `pending_output() <= max_outbound + CTRL_SLACK`; `send` accepts or
///   refuses exactly by its documented rules; `transmit` offers output
///   whenever some is pending;
/// - everything written is well-formed frames: HELLO first (client), or
///   WELCOME or CLOSE first (server), announcing our `I` and `T`, HELLO
///   with session id 0; nothing after CLOSE, whose code is the one
///   `close_reason` says we send; DATA exactly the accepted messages in
///   order; each PONG answers the oldest unanswered PING received, and no
///   DATA frame that had not started when that PING arrived goes out before
///   its PONG; an ACK counts at most the messages received on the socket;
/// - message events are exactly the DATA frames delivered, in order, and
///   only between Connected and Disconnected; one Connected per socket; a
///   PONG echoing our outstanding PING gives exactly one RTT sample of the
///   right value; a peer CLOSE leaves no output and no socket; the
///   reconnect attempt counter resets only after the healthy period with a
///   frame received after the handshake;
/// - probes (PINGs): only when established, from a timer, one at a time,
///   after `I + jitter` of silence (jitter at most `I/10`); a second one
///   without a byte received in between only as stall forgiveness, when
///   the death deadline was handled more than a timer grain
///   (`Config::timer_grain`) plus `stall_tolerance` late; at most one PING
///   queued: a probe queues a fresh PING only if our last one is
///   completely written, else it reuses that one (same nonce, an RTT
///   sample timed from the reuse); either way the death deadline becomes
///   `now + T`;
/// - heartbeat timeout: only `>= I + T` after the last byte received, at
///   the death deadline (`T` after our probe) or up to a grain plus
///   `stall_tolerance` later, and never with drain evidence (below) in
///   hand; the deadline is armed exactly from a probe until a byte
///   arrives, and moves without a
///   byte received only by stall forgiveness or by a drain extension (a
///   write-blocked socket took output since the PING: our peer's TCP
///   acknowledged data), to `now + T`; and while established with
///   heartbeats the connection always wants to wake up by the next PING or
///   death deadline;
/// - write stall: only after `handle_write_blocked` on this socket and a
///   full timeout without a byte written;
/// - the heap blocks the connection keeps stay within
///   `4·(max_frame + 5 + largest read) + 24·(peak pending output) + 16 KiB`
///   (one partial frame plus one read, and the output queue).
pub fn run(data: &[u8]) {
    run_with(data, Tolerate::from_env());
}

/// [`run`], tolerating the given known bugs.
pub fn run_with(data: &[u8], tolerate: Tolerate) {
    assert!(
        track::installed(),
        "install track::Tracking as the global allocator"
    );
    track::reset();
    let mut input = Input::new(data);
    let mut config = [0; CONFIG_LEN];
    config.iter_mut().for_each(|b| *b = input.u8());
    if tolerate.has(Bug::ConfigOverflow) {
        config[0] &= !flags::HUGE_DURATION;
    }
    let Some(mut world) = World::new(config, tolerate) else {
        return;
    };
    while !input.is_empty() {
        let op = Op::read(&mut input);
        world.apply(&op);
    }
}

impl World {
    fn new(config: [u8; CONFIG_LEN], tolerate: Tolerate) -> Option<World> {
        let huge = config[0] & flags::HUGE_DURATION != 0;
        let (config, role) = self::config(config)?;
        let config = Arc::new(config);
        let t0 = Instant::now();
        let (conn, sock) = {
            let _scope = track::enter();
            match role {
                Role::Client => (Connection::client(config.clone(), 7), None),
                Role::Server => (
                    Connection::server(config.clone(), t0, SERVER_SESSION, 7),
                    Some(Sock::new(true, t0)),
                ),
            }
        };
        Some(World {
            config,
            huge,
            role,
            tolerate,
            t0,
            now: t0,
            conn,
            sock,
            sends: 0,
            socket_full: false,
            drained_at: None,
            peak_pending: 0,
            peak_read: 0,
            trace: VecDeque::new(),
            steps: 0,
        })
    }

    fn heartbeat(&self) -> Option<Heartbeat> {
        self.config.heartbeat
    }

    /// Panics with `what` and the recent steps, unless `bug` is tolerated.
    #[track_caller]
    fn require(&self, bug: Option<Bug>, ok: bool, what: impl FnOnce() -> String) {
        if ok || bug.is_some_and(|b| self.tolerate.has(b)) {
            return;
        }
        let mut msg = String::new();
        let _ = writeln!(msg, "invariant violated: {}", what());
        if let Some(bug) = bug {
            let _ = writeln!(msg, "(known bug `{}`)", bug.name());
        }
        let _ = writeln!(
            msg,
            "{:?} at t+{:?}, state {}, pending {}, step {}; config {:?}",
            self.role,
            self.now - self.t0,
            self.conn.state(),
            self.conn.pending_output(),
            self.steps,
            self.config
        );
        for line in &self.trace {
            let _ = writeln!(msg, "  {line}");
        }
        panic!("{msg}");
    }

    fn apply(&mut self, op: &Op) {
        if *op == Op::Handshake {
            if self.sock.as_ref().is_some_and(|s| !s.open) {
                self.apply(&Op::Connected);
            }
            self.apply(&Op::Transmit(0));
            self.apply(&Op::Peer(PeerFrame::Handshake(1, 100)));
            self.apply(&Op::Deliver(0));
            return;
        }
        self.steps += 1;
        if self.trace.len() == 24 {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("t+{:?} {op:?}", self.now - self.t0));
        let before = Before {
            state: self.conn.state(),
            stats: *self.conn.stats(),
            jitter: self.conn.ping_jitter(),
            last_rx: self.sock.as_ref().and_then(|s| s.last_rx),
            ping_out: self.sock.as_ref().and_then(|s| s.ping_out),
            dead_at: self.sock.as_ref().and_then(|s| s.dead_at),
            ping_queued: self
                .sock
                .as_ref()
                .is_some_and(|s| !s.pings_queued.is_empty()),
            drained_at: self.drained_at,
            probe: self.sock.as_ref().and_then(|s| s.probe),
            first_blocked: self.sock.as_ref().and_then(|s| s.first_blocked),
            last_progress: self.sock.as_ref().map(|s| s.last_progress),
            established_at: self.sock.as_ref().and_then(|s| s.established_at),
            frame_after_handshake: self.sock.as_ref().is_some_and(|s| s.frame_after_handshake),
            connected: self.sock.as_ref().is_some_and(|s| s.connected),
            attempt: self.conn.reconnect_attempt(),
            rtt_samples: self.conn.rtt().samples(),
        };
        let mut events = Vec::new();
        let mut step = Step::default();
        let now = self.now;
        match *op {
            Op::Advance(b) => self.now += span(b),
            Op::FireDue(b) => {
                // A driver waits for a deadline; one years away (a huge
                // configured duration) is not waited for.
                if let Some(due) = self.conn.poll_timeout().filter(|&d| d <= self.t0 + HORIZON) {
                    self.now = self.now.max(due);
                }
                self.now += lateness(b);
                step.timers = true;
                let _scope = track::enter();
                self.conn.handle_timeout(self.now, &mut events);
            }
            Op::Timeout => {
                step.timers = true;
                let _scope = track::enter();
                self.conn.handle_timeout(now, &mut events);
            }
            Op::Peer(frame) => {
                if let Some(s) = self.sock.as_mut() {
                    frame.encode(self.role, s.our_ping, &mut s.peer);
                }
            }
            Op::Raw(ref bytes) => {
                if let Some(s) = self.sock.as_mut() {
                    s.peer.extend_from_slice(bytes);
                }
            }
            Op::Deliver(n) => step.delivery = self.deliver(n, &mut events),
            Op::Send(len) => self.send(len),
            Op::Close(code, len) => {
                let code = [1000, 1001, 1002, 1011, 3000, 4000, 4999, 0][usize::from(code % 8)];
                let reason = reason(usize::from(len % 140));
                let _scope = track::enter();
                self.conn.close(now, CloseCode(code), &reason, &mut events);
            }
            Op::Connected => {
                if let Some(s) = self.sock.as_mut().filter(|s| !s.open) {
                    s.open = true;
                    s.last_progress = now;
                    let _scope = track::enter();
                    self.conn.handle_connected(now);
                }
            }
            Op::ConnectFailed(k) => {
                if self.sock.as_ref().is_some_and(|s| !s.open) {
                    let _scope = track::enter();
                    self.conn
                        .handle_connect_failed(now, io_kind(k), &mut events);
                }
            }
            Op::Eof => {
                if self.sock.as_ref().is_some_and(|s| s.open) {
                    let _scope = track::enter();
                    self.conn.handle_eof(now, &mut events);
                }
            }
            Op::IoError(k) => {
                if self.sock.is_some() {
                    let _scope = track::enter();
                    self.conn.handle_io_error(now, io_kind(k), &mut events);
                }
            }
            Op::WriteBlocked => {
                if let Some(s) = self.sock.as_mut().filter(|s| s.open) {
                    let pending = self.conn.pending_output() > 0;
                    if pending && self.config.write_stall_timeout.is_some() {
                        s.first_blocked.get_or_insert(now);
                    }
                    self.socket_full = true;
                    let _scope = track::enter();
                    self.conn.handle_write_blocked(now);
                }
            }
            Op::Transmit(n) => self.transmit(n, &mut events),
            Op::Start => {
                let _scope = track::enter();
                self.conn.start(now);
            }
            Op::Handshake => unreachable!("expanded above"),
        }
        self.actions();
        self.check(&before, &events, &step);
        drop(events);
        drop(step);
        self.check_memory();
    }

    fn deliver(&mut self, max: u8, events: &mut Vec<Event>) -> Option<Delivery> {
        let reading = is_reading(self.conn.state());
        let s = self.sock.as_mut().filter(|s| s.open)?;
        let n = match max {
            0 => s.peer.len(),
            n => s.peer.len().min(usize::from(n)),
        };
        if n == 0 {
            return None;
        }
        let mut data = s.peer.split_to(n);
        let mut frames = Vec::new();
        if let Some(shadow) = s.shadow.as_mut().filter(|_| reading) {
            shadow.extend_from_slice(&data);
            let decoder = Decoder::new(self.config.max_frame);
            loop {
                match decoder.decode(shadow) {
                    Ok(Some(frame)) => {
                        let last = matches!(frame, Frame::Close { .. });
                        frames.push(frame);
                        if last {
                            s.shadow = None;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        s.shadow = None;
                        break;
                    }
                }
            }
        }
        let out_at = s.out_total;
        if reading {
            s.last_rx = Some(self.now);
            s.ping_out = None;
            s.dead_at = None;
        }
        self.peak_read = self.peak_read.max(n);
        {
            let _scope = track::enter();
            self.conn.handle_input(self.now, &mut data, events);
        }
        self.require(None, data.is_empty(), || {
            format!("handle_input left {} of {n} bytes unconsumed", data.len())
        });
        Some(Delivery {
            len: n,
            reading,
            frames,
            out_at,
        })
    }

    fn send(&mut self, len: u16) {
        let max = self.config.max_frame;
        let len = match max {
            0..=65_533 => usize::from(len) % (max + 2),
            _ => usize::from(len),
        };
        self.sends += 1;
        let payload = Bytes::from(pattern(self.sends, len));
        let state = self.conn.state();
        let queued = self.conn.pending_output();
        let result = {
            let _scope = track::enter();
            self.conn.send(payload.clone())
        };
        let limit = self.config.max_outbound;
        match result {
            Ok(()) => {
                self.require(None, state == State::Established, || {
                    format!("send accepted in {state}")
                });
                self.require(None, queued + 5 + len <= limit && len <= max, || {
                    format!("send of {len} accepted with {queued} queued")
                });
                self.require(None, self.conn.pending_output() == queued + 5 + len, || {
                    "an accepted send did not queue 5 + len bytes".into()
                });
                if let Some(s) = self.sock.as_mut() {
                    s.sent.push_back(payload);
                }
            }
            Err(SendError::NotConnected) => self.require(None, state != State::Established, || {
                "send refused as not connected while established".into()
            }),
            Err(SendError::TooLarge { len: l, max: m }) => {
                self.require(None, l == len && m == max && len > max, || {
                    format!("TooLarge for {len} bytes, max {max}")
                })
            }
            Err(SendError::Backpressure {
                queued: q,
                limit: l,
            }) => self.require(None, q == queued && l == limit && q + 5 + len > l, || {
                format!("backpressure for {len} bytes with {queued} queued, limit {limit}")
            }),
            Err(e) => self.require(None, false, || format!("unexpected send error {e:?}")),
        }
    }

    fn transmit(&mut self, max: u8, events: &mut Vec<Event>) {
        if !self.sock.as_ref().is_some_and(|s| s.open) {
            return;
        }
        if max == u8::MAX {
            let mut out = BytesMut::new();
            {
                let _scope = track::enter();
                self.conn.transmit_into(&mut out, events);
            }
            self.require(None, self.conn.pending_output() == 0, || {
                "transmit_into left output pending".into()
            });
            return self.wrote(&out, false);
        }
        let mut budget = match max {
            0 => usize::MAX,
            n => usize::from(n),
        };
        while budget > 0 {
            let pending = self.conn.pending_output();
            let mut chunk = Vec::new();
            let (slices, offered) = {
                let mut iov = [IoSlice::new(&[]); 4];
                let n = self.conn.transmit(&mut iov);
                for slice in &iov[..n] {
                    let take = slice.len().min(budget - chunk.len());
                    chunk.extend_from_slice(&slice[..take]);
                }
                (n, iov[..n].iter().map(|s| s.len()).sum::<usize>())
            };
            self.require(
                None,
                (slices > 0) == (pending > 0) && offered <= pending,
                || {
                    format!(
                        "transmit offered {slices} slices, {offered} bytes, with {pending} pending"
                    )
                },
            );
            if chunk.is_empty() {
                break;
            }
            budget -= chunk.len();
            {
                let _scope = track::enter();
                self.conn.advance_transmit(self.now, chunk.len(), events);
            }
            self.wrote(&chunk, true);
        }
    }

    /// Records bytes written to the socket and checks the frames they end.
    /// `timed`: written through `advance_transmit` (with the time), not
    /// `transmit_into`.
    fn wrote(&mut self, bytes: &[u8], timed: bool) {
        if bytes.is_empty() {
            return;
        }
        // Our PING completely written before these bytes (the frames they
        // end are parsed below).
        let ping_was_out = self
            .sock
            .as_ref()
            .map_or(true, |s| s.pings_queued.is_empty());
        if std::mem::take(&mut self.socket_full) && timed && ping_was_out {
            self.drained_at = Some(self.now);
        }
        let s = self.sock.as_mut().expect("the socket is open");
        s.out_total += bytes.len() as u64;
        s.last_progress = self.now;
        s.out.extend_from_slice(bytes);
        self.parse_output();
    }

    /// Plays the driver's part for the connection's socket actions.
    fn actions(&mut self) {
        loop {
            let action = {
                let _scope = track::enter();
                self.conn.poll_action()
            };
            match action {
                None => return,
                Some(Action::Connect) => {
                    self.require(
                        None,
                        self.role == Role::Client && self.sock.is_none(),
                        || "Connect asked for while a socket is held".into(),
                    );
                    self.sock = Some(Sock::new(false, self.now));
                }
                Some(Action::CloseSocket) => {
                    self.require(None, self.sock.is_some(), || {
                        "CloseSocket without a socket".into()
                    });
                    self.sock = None;
                }
            }
        }
    }
}
