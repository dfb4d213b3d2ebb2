//! Fuzzing session resume end to end: one client [`Connection`] and a
//! tether-like server — a list of server connections, a map from session
//! id to the connection holding it, and the reactor's `resolve_resume`
//! (`src/reactor/core/sessions.rs`) moving sockets with `take_socket`,
//! `yield_socket`, `resume_on`, `grant_new_session` — over in-memory links,
//! under a fake clock.
//!
//! An input is a [`CONFIG_LEN`]-byte configuration, then a script of
//! [`Op`]s: both applications send numbered messages (an 8-byte sequence
//! number and 0..2000 bytes of filler, so both the copied and the shared
//! paths are used), bytes in flight are written and delivered in arbitrary
//! cuts, links reset, go half-dead (bytes lost, one side notices later),
//! the clock jumps and timers fire, a redial arrives while the server still
//! holds the old socket (takeover), the server restarts (forgets every
//! session), the client application closes. Then a final *heal and settle*
//! phase: every broken link is noticed, dials succeed, everything in flight
//! is delivered and timers run until every message is accounted for and
//! the server's detached sessions expired.
//!
//! Checked after every step (a panic names the broken rule):
//! - each application receives the other's numbers strictly increasing (in
//!   order, never twice), with intact payloads;
//! - a number skipped by the receiver is (by the end) handed back to the
//!   sender's application, or was sent by a server process that restarted;
//! - no number is handed back twice, and none handed back as `Dropped` (never
//!   completely written) is delivered;
//! - `session_stats().unacked_bytes` stays within `max_unacked` on every
//!   connection;
//! - every detached server connection is in the session map, the map points
//!   at live connections only, and a well-behaved client's resume is never
//!   refused;
//! - after a server restart (or the expiry of the client's session) the
//!   client's next handshake reports `Lost`; a `Resumed` one keeps its id.
//!
//! At the end: every number is delivered exactly once or handed back
//! (handed back as `SessionLost`/`NotResumable`/`SessionEnded` it may also
//! have arrived, as the contract says), except for the messages of a server
//! process that restarted and everything on a server without resume (no
//! guarantee there); and the server holds at most the client's live session
//! (none once the client closed).

use std::collections::HashMap;
use std::io::{ErrorKind, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tether::proto::conn::{
    Action, Connection, Event, ResumeStatus, Role, State, Timer, UndeliveredCause,
};
use tether::{BackoffConfig, CloseCode, Config, Heartbeat, ResumeConfig};

use super::input::Input;

/// Configuration bytes at the start of an input: heartbeat, unacknowledged
/// bound, session expiry, switches (see [`config`]).
pub const CONFIG_LEN: usize = 4;

/// Switches in the fourth configuration byte.
pub mod flags {
    /// With [`NO_RESUME_B`]: the server does not hold sessions.
    pub const NO_RESUME_A: u8 = 1;
    /// See [`NO_RESUME_A`].
    pub const NO_RESUME_B: u8 = 2;
    /// The client sends with `send_slice` (a copy) instead of `send`.
    pub const SLICE: u8 = 4;
}

/// The largest payload: sequence number plus filler.
pub const MAX_FRAME: usize = 4096;

/// The session expiries a configuration picks from.
pub const EXPIRIES_MS: [u64; 4] = [150, 400, 1000, 3000];

/// The unacknowledged bounds a configuration picks from (`None`: the output
/// bound, 64 KiB).
pub const MAX_UNACKED: [Option<usize>; 4] = [None, Some(MAX_FRAME + 5), Some(8192), Some(20_000)];

/// The configuration of both sides (the server's resume switched off when
/// asked) from the input's first bytes.
pub fn config(bytes: [u8; CONFIG_LEN]) -> (Config, Config, bool) {
    let [hb, unacked, expiry, switches] = bytes;
    let heartbeat = (hb != 0).then(|| {
        let interval = Duration::from_millis(50 + u64::from(hb % 32) * 10);
        let timeout = Duration::from_millis(50 + u64::from(hb / 32) * 20);
        Heartbeat { interval, timeout }
    });
    let resume = ResumeConfig {
        max_unacked: MAX_UNACKED[usize::from(unacked % 4)],
        session_expiry: Duration::from_millis(EXPIRIES_MS[usize::from(expiry % 4)]),
        ..ResumeConfig::default()
    };
    let mut client = Config::default();
    client.heartbeat = heartbeat;
    client.max_frame = MAX_FRAME;
    client.max_outbound = 64 * 1024;
    client.handshake_timeout = Duration::from_millis(500);
    client.connect_timeout = Duration::from_millis(300);
    client.close_linger = Duration::from_millis(100);
    client.backoff = BackoffConfig {
        initial: Duration::from_millis(10 + u64::from(expiry / 4 % 8) * 10),
        multiplier: 2.0,
        max: Duration::from_millis(400),
        jitter: 0.0,
        max_attempts: None,
    };
    client.resume = Some(resume);
    let no_resume = switches & (flags::NO_RESUME_A | flags::NO_RESUME_B)
        == flags::NO_RESUME_A | flags::NO_RESUME_B;
    let mut server = client.clone();
    if no_resume {
        server.resume = None;
    }
    client.validate().expect("a valid client configuration");
    server.validate().expect("a valid server configuration");
    (client, server, no_resume)
}

/// One step of a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The client's application sends `count % 4 + 1` messages; filler of
    /// `len % 2000` bytes, growing by 500 for each.
    SendClient(u8, u16),
    /// The server's application sends on the connection holding the
    /// client's session (if any).
    SendServer(u8, u16),
    /// On link `link` (among those with something to do), the client
    /// writes up to `write` bytes (0: all) and the server reads up to
    /// `read` of those in flight (0: all).
    ToServer(u8, u16, u16),
    /// The same, server to client.
    ToClient(u8, u16, u16),
    /// Everything written and delivered both ways, a few rounds.
    Exchange,
    /// The client's link resets: both sides see an I/O error.
    Reset,
    /// The client's link goes half-dead: bytes in flight lost, writes
    /// vanish, nobody is told.
    HalfDead,
    /// The client notices its broken link (an I/O error).
    NoticeClient,
    /// A server connection on a broken link notices (an I/O error).
    NoticeServer,
    /// The clock moves `5 ms × n`; due timers fire.
    Advance(u8),
    /// The clock jumps to the earliest deadline; due timers fire.
    FireNext,
    /// A pending dial connects (a server connection accepts it).
    Dial,
    /// A pending dial fails.
    DialFail,
    /// The client's link dies so that only the client notices; it redials
    /// at once while the server still holds the old socket.
    Takeover,
    /// The server process restarts: every session forgotten.
    Restart,
    /// The client's application closes the link.
    CloseClient,
}

impl Op {
    fn encode(self, out: &mut Vec<u8>) {
        let mut op = |code: u8, params: &[u8]| {
            out.push(code);
            out.extend_from_slice(params);
        };
        match self {
            Op::SendClient(n, len) => op(0, &[n, (len >> 8) as u8, len as u8]),
            Op::SendServer(n, len) => op(1, &[n, (len >> 8) as u8, len as u8]),
            Op::ToServer(l, w, r) => op(2, &[l, (w >> 8) as u8, w as u8, (r >> 8) as u8, r as u8]),
            Op::ToClient(l, w, r) => op(3, &[l, (w >> 8) as u8, w as u8, (r >> 8) as u8, r as u8]),
            Op::Exchange => op(4, &[]),
            Op::Reset => op(5, &[]),
            Op::HalfDead => op(6, &[]),
            Op::NoticeClient => op(7, &[]),
            Op::NoticeServer => op(8, &[]),
            Op::Advance(n) => op(9, &[n]),
            Op::FireNext => op(10, &[]),
            Op::Dial => op(11, &[]),
            Op::DialFail => op(12, &[]),
            Op::Takeover => op(13, &[]),
            Op::Restart => op(14, &[]),
            Op::CloseClient => op(15, &[]),
        }
    }

    fn decode(input: &mut Input<'_>) -> Op {
        match input.u8() % 20 {
            0 => Op::SendClient(input.u8(), input.u16()),
            1 => Op::SendServer(input.u8(), input.u16()),
            2 => Op::ToServer(input.u8(), input.u16(), input.u16()),
            3 => Op::ToClient(input.u8(), input.u16(), input.u16()),
            4 | 16 | 17 => Op::Exchange,
            5 => Op::Reset,
            6 => Op::HalfDead,
            7 => Op::NoticeClient,
            8 => Op::NoticeServer,
            9 => Op::Advance(input.u8()),
            10 | 18 => Op::FireNext,
            11 | 19 => Op::Dial,
            12 => Op::DialFail,
            13 => Op::Takeover,
            14 => Op::Restart,
            _ => Op::CloseClient,
        }
    }
}

/// The bytes of an input: `config`, then `ops`.
pub fn script(config: [u8; CONFIG_LEN], ops: &[Op]) -> Vec<u8> {
    let mut out = config.to_vec();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// What one run went through (for the quick test's check that the random
/// inputs reach the interesting cases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Client handshakes that resumed the session.
    pub resumed: u32,
    /// Of those, the ones that sent messages again.
    pub resent: u32,
    /// Client handshakes that found the session lost.
    pub lost: u32,
    /// Resumes that took a session over from a socket still attached.
    pub takeovers: u32,
    /// Server sessions that expired.
    pub expired: u32,
    /// Messages delivered (both ways).
    pub delivered: u64,
    /// Messages handed back (both ways).
    pub handed_back: u64,
    /// Messages above 1 KiB delivered.
    pub large: u64,
}

impl std::ops::AddAssign for Summary {
    fn add_assign(&mut self, o: Summary) {
        self.resumed += o.resumed;
        self.resent += o.resent;
        self.lost += o.lost;
        self.takeovers += o.takeovers;
        self.expired += o.expired;
        self.delivered += o.delivered;
        self.handed_back += o.handed_back;
        self.large += o.large;
    }
}

/// Runs one input with every check on (see the module docs).
pub fn run(data: &[u8]) {
    run_summary(data);
}

/// [`run`], telling what the run went through.
pub fn run_summary(data: &[u8]) -> Summary {
    run_with(data, ActionOrder::Contract)
}

/// When the driver of a resume carries out the socket actions that the
/// holding connection asked for before `resume_on` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionOrder {
    /// Before the resumed socket is installed: the `CloseSocket` that
    /// `yield_socket` (or `resume_on` itself) asks for is the old
    /// socket's, already closed (as `resume_on`'s unit tests read it).
    Contract,
    /// After the resumed socket is installed, so that a pending close
    /// reaches it: what the reactor did before it drained them (kept to
    /// show that the harness catches that mistake).
    CloseLate,
}

/// [`run_summary`] with the socket actions of a resume carried out in
/// `order`.
pub fn run_with(data: &[u8], order: ActionOrder) -> Summary {
    let mut input = Input::new(data);
    let mut config = [0; CONFIG_LEN];
    for b in &mut config {
        *b = input.u8();
    }
    let mut world = World::new(config);
    world.order = order;
    let mut ops = 0;
    while !input.is_empty() && ops < 400 {
        let op = Op::decode(&mut input);
        world.trace.push(op);
        world.step(op);
        world.check();
        ops += 1;
    }
    world.heal_and_settle();
    world.summary
}

/// One message's fate, as the harness saw it.
#[derive(Clone, Copy, Debug, Default)]
struct Fate {
    delivered: u32,
    handed_back: Option<UndeliveredCause>,
    /// Sent by a server process that restarted (its application is gone).
    exempt: bool,
}

/// One direction's messages: numbered from 1 in the order accepted.
struct Ledger {
    name: &'static str,
    sent: Vec<Fate>,
    /// The last number the receiving application got.
    last: u64,
    /// Numbers the receiver skipped.
    skipped: Vec<u64>,
}

impl Ledger {
    fn new(name: &'static str) -> Ledger {
        Ledger {
            name,
            sent: Vec::new(),
            last: 0,
            skipped: Vec::new(),
        }
    }

    fn next(&self) -> u64 {
        self.sent.len() as u64 + 1
    }

    fn fate(&mut self, n: u64, what: &str) -> &mut Fate {
        let name = self.name;
        match n.checked_sub(1).and_then(|i| self.sent.get_mut(i as usize)) {
            Some(fate) => fate,
            None => panic!("{name}: message {n} {what} was never sent"),
        }
    }

    fn delivered(&mut self, payload: &[u8]) {
        let n = number(self.name, payload);
        let last = self.last;
        let name = self.name;
        assert!(
            n > last,
            "{name}: message {n} delivered after {last}: out of order or twice"
        );
        let fate = self.fate(n, "delivered");
        assert!(
            fate.handed_back != Some(UndeliveredCause::Dropped),
            "{name}: message {n} was handed back as Dropped (never written whole) yet delivered"
        );
        fate.delivered += 1;
        self.skipped.extend(last + 1..n);
        self.last = n;
    }

    fn handed_back(&mut self, payload: &[u8], cause: UndeliveredCause) {
        let n = number(self.name, payload);
        let name = self.name;
        let fate = self.fate(n, "handed back");
        if let Some(before) = fate.handed_back {
            panic!("{name}: message {n} handed back twice ({before:?}, then {cause:?})");
        }
        assert!(
            !matches!(cause, UndeliveredCause::Refused(_)),
            "{name}: message {n} handed back as {cause:?}: no Handle here"
        );
        assert!(
            !(cause == UndeliveredCause::Dropped && fate.delivered > 0),
            "{name}: message {n} delivered, then handed back as Dropped"
        );
        fate.handed_back = Some(cause);
    }

    /// Every number accounted for (see the module docs); `guaranteed`
    /// false on a server without resume.
    fn check_complete(&self, guaranteed: bool) {
        let name = self.name;
        for &n in &self.skipped {
            let fate = self.sent[n as usize - 1];
            assert!(
                fate.handed_back.is_some() || fate.exempt || !guaranteed,
                "{name}: message {n} skipped by the receiver and never handed back"
            );
        }
        if !guaranteed {
            return;
        }
        for (i, fate) in self.sent.iter().enumerate() {
            let n = i + 1;
            assert!(
                fate.delivered > 0 || fate.handed_back.is_some() || fate.exempt,
                "{name}: message {n} neither delivered nor handed back ({fate:?})"
            );
        }
    }
}

/// A payload: the number, then filler of bytes derived from it.
fn payload(n: u64, filler: usize) -> Bytes {
    let mut v = Vec::with_capacity(8 + filler);
    v.extend_from_slice(&n.to_be_bytes());
    v.resize(8 + filler, n as u8 ^ 0x5A);
    Bytes::from(v)
}

/// The number of an intact payload.
fn number(name: &str, payload: &[u8]) -> u64 {
    assert!(
        payload.len() >= 8,
        "{name}: a payload of {} bytes",
        payload.len()
    );
    let mut head = [0; 8];
    head.copy_from_slice(&payload[..8]);
    let n = u64::from_be_bytes(head);
    assert!(
        payload[8..].iter().all(|&b| b == n as u8 ^ 0x5A),
        "{name}: message {n}'s filler is damaged"
    );
    n
}

/// One TCP connection between the client and a server connection.
#[derive(Default)]
struct Link {
    c2s: BytesMut,
    s2c: BytesMut,
    /// The client's end is open (the client holds it).
    client_open: bool,
    /// The server connection holding the server's end; `None` once closed.
    server: Option<usize>,
    /// Silently broken: bytes vanish, nothing arrives, nobody is told.
    dead: bool,
    /// The end of stream was reported to the server / client.
    eof_to_server: bool,
    eof_to_client: bool,
}

impl Link {
    /// Nothing more can happen on it.
    fn is_done(&self) -> bool {
        !self.client_open && self.server.is_none()
    }
}

struct World {
    now: Instant,
    client_config: Arc<Config>,
    server_config: Arc<Config>,
    no_resume: bool,
    slice: bool,
    client: Connection,
    client_link: Option<usize>,
    dial_pending: bool,
    client_closed: bool,
    /// Server connections; `None` once gone (a restart, or closed).
    servers: Vec<Option<Connection>>,
    /// Which server connection holds each session id (the reactor's map).
    sessions: HashMap<u64, usize>,
    next_session: u64,
    links: Vec<Link>,
    c2s: Ledger,
    s2c: Ledger,
    /// The client's next handshake must report a lost session.
    expect_lost: bool,
    /// The session id of the client's last handshake.
    last_session: u64,
    summary: Summary,
    order: ActionOrder,
    trace: Vec<Op>,
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("resume script ({} ops): {:?}", self.trace.len(), self.trace);
        }
    }
}

impl World {
    fn new(config_bytes: [u8; CONFIG_LEN]) -> World {
        let (client, server, no_resume) = config(config_bytes);
        let client = Arc::new(client);
        let now = Instant::now();
        let mut conn = Connection::client(client.clone(), 7);
        conn.start(now);
        let mut world = World {
            now,
            client_config: client,
            server_config: Arc::new(server),
            no_resume,
            slice: config_bytes[3] & flags::SLICE != 0,
            client: conn,
            client_link: None,
            dial_pending: false,
            client_closed: false,
            servers: Vec::new(),
            sessions: HashMap::new(),
            next_session: 0x5E55_0000,
            links: Vec::new(),
            c2s: Ledger::new("client to server"),
            s2c: Ledger::new("server to client"),
            expect_lost: false,
            last_session: 0,
            summary: Summary::default(),
            order: ActionOrder::Contract,
            trace: Vec::new(),
        };
        world.pump();
        world
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::SendClient(count, len) => self.send_client(count, len),
            Op::SendServer(count, len) => self.send_server(count, len),
            Op::ToServer(link, write, read) => {
                if let Some(l) = self.pick_link(link) {
                    self.write_client(l, usize::from(write));
                    self.read_server(l, usize::from(read));
                }
            }
            Op::ToClient(link, write, read) => {
                if let Some(l) = self.pick_link(link) {
                    self.write_server(l, usize::from(write));
                    self.read_client(l, usize::from(read));
                }
            }
            Op::Exchange => {
                for _ in 0..3 {
                    self.exchange();
                }
            }
            Op::Reset => {
                if let Some(l) = self.client_link {
                    self.links[l].dead = true;
                    self.client_io_error();
                    if let Some(s) = self.links[l].server {
                        self.server_io_error(s);
                    }
                }
            }
            Op::HalfDead => {
                if let Some(l) = self.client_link {
                    let link = &mut self.links[l];
                    link.dead = true;
                    link.c2s.clear();
                    link.s2c.clear();
                }
            }
            Op::NoticeClient => {
                let broken = self.client_link.is_some_and(|l| {
                    let link = &self.links[l];
                    link.dead || (link.server.is_none() && link.s2c.is_empty())
                });
                if broken {
                    self.client_io_error();
                }
            }
            Op::NoticeServer => {
                let broken = self.links.iter().find_map(|link| {
                    let gone = link.dead || (!link.client_open && link.c2s.is_empty());
                    link.server.filter(|_| gone)
                });
                if let Some(s) = broken {
                    self.server_io_error(s);
                }
            }
            Op::Advance(n) => {
                self.now += Duration::from_millis(5 * u64::from(n));
                self.fire_due();
            }
            Op::FireNext => self.fire_next(),
            Op::Dial => self.dial(),
            Op::DialFail => {
                if self.dial_pending {
                    self.dial_pending = false;
                    let mut events = Vec::new();
                    self.client.handle_connect_failed(
                        self.now,
                        ErrorKind::ConnectionRefused,
                        &mut events,
                    );
                    self.client_events(events);
                }
            }
            Op::Takeover => {
                if let Some(l) = self.client_link {
                    let link = &mut self.links[l];
                    link.dead = true;
                    link.c2s.clear();
                    link.s2c.clear();
                    self.client_io_error();
                    if let Some(at) = self.client.timer(Timer::Reconnect) {
                        self.now = self.now.max(at);
                        self.fire_due();
                    }
                    self.dial();
                }
            }
            Op::Restart => self.restart(),
            Op::CloseClient => {
                self.client_closed = true;
                let mut events = Vec::new();
                self.client
                    .close(self.now, CloseCode::NORMAL, "done", &mut events);
                self.client_events(events);
            }
        }
        self.pump();
    }

    /// The links with something still to do, the client's first.
    fn pick_link(&self, pick: u8) -> Option<usize> {
        let mut live: Vec<usize> = self.client_link.into_iter().collect();
        live.extend(
            (0..self.links.len())
                .rev()
                .filter(|&l| Some(l) != self.client_link && !self.links[l].is_done()),
        );
        if live.is_empty() {
            return None;
        }
        // Mostly the client's current link.
        let i = if pick < 192 {
            0
        } else {
            usize::from(pick) % live.len()
        };
        Some(live[i])
    }

    fn send_client(&mut self, count: u8, len: u16) {
        for k in 0..=count % 4 {
            let n = self.c2s.next();
            let filler = (usize::from(len) + 500 * usize::from(k)) % 2000;
            let message = payload(n, filler);
            let sent = if self.slice {
                self.client.send_slice(&message)
            } else {
                self.client.send(message)
            };
            if sent.is_ok() {
                self.c2s.sent.push(Fate::default());
            }
        }
    }

    fn send_server(&mut self, count: u8, len: u16) {
        // The connection holding the client's session, or (without
        // resume) the one on the client's link.
        let held = self.sessions.get(&self.client.session_id()).copied();
        let Some(s) = held.or_else(|| self.client_link.and_then(|l| self.links[l].server)) else {
            return;
        };
        let Some(conn) = self.servers[s].as_mut() else {
            return;
        };
        for k in 0..=count % 4 {
            let n = self.s2c.next();
            let filler = (usize::from(len) + 700 * usize::from(k)) % 2000;
            let message = payload(n, filler);
            let sent = if k % 2 == 0 {
                conn.send(message)
            } else {
                conn.send_slice(&message)
            };
            if sent.is_ok() {
                self.s2c.sent.push(Fate::default());
            }
        }
    }

    /// Moves up to `max` bytes (0: all) of `conn`'s output to `wire`
    /// (nowhere when `dead`).
    fn write(
        now: Instant,
        conn: &mut Connection,
        wire: &mut BytesMut,
        dead: bool,
        max: usize,
        events: &mut Vec<Event>,
    ) {
        let mut left = if max == 0 { usize::MAX } else { max };
        while left > 0 && conn.pending_output() > 0 && conn.state().has_socket() {
            let mut written = 0;
            {
                let mut iov = [IoSlice::new(&[]); 8];
                let n = conn.transmit(&mut iov);
                for s in &iov[..n] {
                    let take = s.len().min(left - written);
                    if !dead {
                        wire.extend_from_slice(&s[..take]);
                    }
                    written += take;
                    if written == left {
                        break;
                    }
                }
            }
            if written == 0 {
                break;
            }
            left -= written;
            conn.advance_transmit(now, written, events);
        }
    }

    fn write_client(&mut self, l: usize, max: usize) {
        if self.client_link != Some(l) {
            return;
        }
        let mut events = Vec::new();
        let link = &mut self.links[l];
        Self::write(
            self.now,
            &mut self.client,
            &mut link.c2s,
            link.dead,
            max,
            &mut events,
        );
        self.client_events(events);
        self.pump();
    }

    fn write_server(&mut self, l: usize, max: usize) {
        let Some(s) = self.links[l].server else {
            return;
        };
        let Some(conn) = self.servers[s].as_mut() else {
            return;
        };
        let mut events = Vec::new();
        let link = &mut self.links[l];
        Self::write(self.now, conn, &mut link.s2c, link.dead, max, &mut events);
        self.server_events(s, events);
        self.pump();
    }

    /// The server end of link `l` reads up to `max` bytes (0: all), and the
    /// end of stream once everything the closed client end sent is read.
    fn read_server(&mut self, l: usize, max: usize) {
        let link = &mut self.links[l];
        let (Some(s), false) = (link.server, link.dead) else {
            return;
        };
        let take = if max == 0 {
            link.c2s.len()
        } else {
            max.min(link.c2s.len())
        };
        let mut data = link.c2s.split_to(take);
        let eof = !link.client_open && link.c2s.is_empty() && !link.eof_to_server;
        if eof {
            link.eof_to_server = true;
        }
        let Some(conn) = self.servers[s].as_mut() else {
            return;
        };
        let mut events = Vec::new();
        if !data.is_empty() {
            conn.handle_input(self.now, &mut data, &mut events);
        }
        // The reactor answers a resume HELLO right after the read.
        self.server_events(s, events);
        self.pump();
        if eof {
            if let Some(conn) = self.servers[s]
                .as_mut()
                .filter(|_| self.links[l].server == Some(s))
            {
                let mut events = Vec::new();
                conn.handle_eof(self.now, &mut events);
                self.server_events(s, events);
                self.pump();
            }
        }
    }

    fn read_client(&mut self, l: usize, max: usize) {
        if self.client_link != Some(l) || self.links[l].dead {
            return;
        }
        let link = &mut self.links[l];
        let take = if max == 0 {
            link.s2c.len()
        } else {
            max.min(link.s2c.len())
        };
        let mut data = link.s2c.split_to(take);
        let eof = link.server.is_none() && link.s2c.is_empty() && !link.eof_to_client;
        if eof {
            link.eof_to_client = true;
        }
        let mut events = Vec::new();
        if !data.is_empty() {
            self.client.handle_input(self.now, &mut data, &mut events);
        }
        if eof && self.client_link == Some(l) {
            self.client.handle_eof(self.now, &mut events);
        }
        self.client_events(events);
        self.pump();
    }

    /// Writes and delivers everything on every link, once each way.
    fn exchange(&mut self) {
        for l in 0..self.links.len() {
            if self.links[l].is_done() {
                continue;
            }
            self.write_client(l, 0);
            self.read_server(l, 0);
            self.write_server(l, 0);
            self.read_client(l, 0);
        }
    }

    fn client_io_error(&mut self) {
        let mut events = Vec::new();
        self.client
            .handle_io_error(self.now, ErrorKind::ConnectionReset, &mut events);
        self.client_events(events);
        self.pump();
    }

    fn server_io_error(&mut self, s: usize) {
        let Some(conn) = self.servers[s].as_mut() else {
            return;
        };
        let mut events = Vec::new();
        conn.handle_io_error(self.now, ErrorKind::ConnectionReset, &mut events);
        self.server_events(s, events);
        self.pump();
    }

    /// A pending dial connects: a new link, accepted by a new server
    /// connection.
    fn dial(&mut self) {
        if !self.dial_pending {
            return;
        }
        self.dial_pending = false;
        let s = self.servers.len();
        self.next_session += 1;
        self.servers.push(Some(Connection::server(
            self.server_config.clone(),
            self.now,
            self.next_session,
            self.next_session,
        )));
        self.links.push(Link {
            client_open: true,
            server: Some(s),
            ..Link::default()
        });
        self.client_link = Some(self.links.len() - 1);
        self.client.handle_connected(self.now);
        self.pump();
    }

    /// Every connection's due timers, at `now`.
    fn fire_due(&mut self) {
        for _ in 0..4 {
            let mut fired = false;
            if self.client.poll_timeout().is_some_and(|t| t <= self.now) {
                let mut events = Vec::new();
                self.client.handle_timeout(self.now, &mut events);
                self.client_events(events);
                self.pump();
                fired = true;
            }
            for s in 0..self.servers.len() {
                let now = self.now;
                let Some(conn) = self.servers[s].as_mut() else {
                    continue;
                };
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    let mut events = Vec::new();
                    conn.handle_timeout(now, &mut events);
                    self.server_events(s, events);
                    self.pump();
                    fired = true;
                }
            }
            if !fired {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.servers
            .iter()
            .flatten()
            .filter_map(Connection::poll_timeout)
            .chain(self.client.poll_timeout())
            .min()
    }

    fn fire_next(&mut self) {
        if let Some(at) = self.next_deadline() {
            self.now = self.now.max(at);
            self.fire_due();
        }
    }

    /// The server process restarts: its connections and sessions are gone,
    /// their sockets closed (the client reads what was in flight, then the
    /// end), and what its application sent is no one's concern any more.
    fn restart(&mut self) {
        for s in 0..self.servers.len() {
            if self.servers[s].take().is_some() {
                for link in &mut self.links {
                    if link.server == Some(s) {
                        link.server = None;
                    }
                }
            }
        }
        self.sessions.clear();
        for fate in &mut self.s2c.sent {
            if fate.delivered == 0 && fate.handed_back.is_none() {
                fate.exempt = true;
            }
        }
        if self.client.session_id() != 0 && !self.no_resume {
            self.expect_lost = true;
        }
    }

    /// Carries out socket actions and answers resume HELLOs, as the
    /// reactor does, until nothing changes.
    fn pump(&mut self) {
        for _ in 0..16 {
            let mut acted = false;
            while let Some(action) = self.client.poll_action() {
                acted = true;
                match action {
                    Action::CloseSocket => {
                        self.dial_pending = false;
                        if let Some(l) = self.client_link.take() {
                            self.links[l].client_open = false;
                            self.links[l].s2c.clear();
                        }
                    }
                    Action::Connect => {
                        if let Some(l) = self.client_link.take() {
                            self.links[l].client_open = false;
                        }
                        self.dial_pending = true;
                    }
                }
            }
            for s in 0..self.servers.len() {
                acted |= self.server_actions(s);
                let request = self.servers[s]
                    .as_ref()
                    .and_then(Connection::resume_request);
                if let Some(request) = request {
                    self.resolve_resume(s, request.session_id, request.recv_seq);
                    acted = true;
                }
                if self.servers[s].as_ref().is_some_and(Connection::is_closed) {
                    self.servers[s] = None;
                    self.close_server_end(s);
                    acted = true;
                }
            }
            self.sessions
                .retain(|_, s| self.servers.get(*s).is_some_and(Option::is_some));
            if !acted {
                return;
            }
        }
        panic!("socket actions never settle");
    }

    /// Server connection `s`'s socket actions; true if there were any.
    fn server_actions(&mut self, s: usize) -> bool {
        let mut acted = false;
        while let Some(action) = self.servers[s].as_mut().and_then(Connection::poll_action) {
            acted = true;
            match action {
                Action::CloseSocket => self.close_server_end(s),
                Action::Connect => panic!("a server connection asked to connect"),
            }
        }
        acted
    }

    fn close_server_end(&mut self, s: usize) {
        for link in &mut self.links {
            if link.server == Some(s) {
                link.server = None;
                link.c2s.clear();
            }
        }
    }

    fn server_link(&self, s: usize) -> Option<usize> {
        self.links.iter().position(|link| link.server == Some(s))
    }

    /// The reactor's `resolve_resume` for a resume HELLO read on server
    /// connection `idx`.
    fn resolve_resume(&mut self, idx: usize, session_id: u64, recv_seq: u64) {
        let now = self.now;
        let held = self
            .sessions
            .get(&session_id)
            .copied()
            .filter(|&h| h != idx && self.servers[h].is_some());
        let Some(held) = held else {
            let mut events = Vec::new();
            if let Some(conn) = self.servers[idx].as_mut() {
                conn.grant_new_session(now, &mut events);
            }
            self.server_events(idx, events);
            return;
        };
        let resumable = self.servers[held]
            .as_ref()
            .is_some_and(|c| c.can_resume(recv_seq));
        assert!(
            resumable,
            "the server refuses the resume of session {session_id:#x} at recv_seq {recv_seq} \
             from a well-behaved client"
        );
        let mut events = Vec::new();
        let moved = self.servers[idx]
            .as_mut()
            .and_then(|c| c.take_socket(&mut events))
            .expect("a pending resume hands its socket over");
        assert!(
            events.is_empty(),
            "a moved socket's connection ended loudly: {events:?}"
        );
        let new_link = self.server_link(idx).expect("the resuming socket is open");
        self.links[new_link].server = None;
        if let Some(old) = self.server_link(held) {
            // Taken over: CLOSE 1001 on the old socket, written as far as
            // it goes now, then that socket closes.
            self.summary.takeovers += 1;
            let conn = self.servers[held].as_mut().expect("held");
            conn.yield_socket(now, &mut events);
            let link = &mut self.links[old];
            Self::write(now, conn, &mut link.s2c, link.dead, 0, &mut events);
            self.links[old].server = None;
            self.links[old].c2s.clear();
        }
        let conn = self.servers[held].as_mut().expect("held");
        conn.resume_on(now, moved, &mut events);
        // A close asked for until now is the old socket's, already closed
        // above. (`ActionOrder::CloseLate` leaves it pending instead, so
        // that it closes the new socket.)
        let drain = self.order == ActionOrder::Contract;
        while let Some(action) = drain.then(|| conn.poll_action()).flatten() {
            assert_eq!(
                action,
                Action::CloseSocket,
                "a server connection asked to connect"
            );
        }
        self.links[new_link].server = Some(held);
        self.server_events(held, events);
    }

    fn note_delivered(&mut self, m: &[u8]) {
        self.summary.delivered += 1;
        self.summary.large += u64::from(m.len() > 1024);
    }

    fn client_events(&mut self, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Message(m) => {
                    self.note_delivered(&m);
                    self.s2c.delivered(&m);
                }
                Event::Undelivered { messages, cause } => {
                    self.summary.handed_back += messages.len() as u64;
                    for m in &messages {
                        self.c2s.handed_back(m, cause);
                    }
                }
                Event::Connected(peer) => {
                    let want_lost = std::mem::take(&mut self.expect_lost);
                    if self.no_resume {
                        assert!(
                            matches!(peer.resume, ResumeStatus::Refused),
                            "a server without resume, yet the client reports {:?}",
                            peer.resume
                        );
                    } else if want_lost {
                        assert_eq!(
                            peer.resume,
                            ResumeStatus::Lost,
                            "the server forgot the session, yet the client reports"
                        );
                    }
                    assert_eq!(peer.session_id, self.client.session_id());
                    if let ResumeStatus::Resumed { .. } = peer.resume {
                        assert_eq!(
                            peer.session_id, self.last_session,
                            "resumed under another session id"
                        );
                    }
                    self.last_session = peer.session_id;
                    match peer.resume {
                        ResumeStatus::Resumed { resent } => {
                            self.summary.resumed += 1;
                            self.summary.resent += u32::from(resent > 0);
                        }
                        ResumeStatus::Lost => self.summary.lost += 1,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }

    fn server_events(&mut self, s: usize, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Message(m) => {
                    self.note_delivered(&m);
                    self.c2s.delivered(&m);
                }
                Event::Undelivered { messages, cause } => {
                    self.summary.handed_back += messages.len() as u64;
                    for m in &messages {
                        self.s2c.handed_back(m, cause);
                    }
                }
                Event::Connected(peer) => {
                    if peer.resume == ResumeStatus::New {
                        let before = self.sessions.insert(peer.session_id, s);
                        assert!(before.is_none(), "session id {:#x} reused", peer.session_id);
                    }
                    if let ResumeStatus::Resumed { .. } = peer.resume {
                        assert_eq!(self.sessions.get(&peer.session_id), Some(&s));
                    }
                }
                Event::Disconnected {
                    reason: tether::DisconnectReason::SessionExpired,
                } => {
                    self.summary.expired += 1;
                    let sid = self.servers[s].as_ref().map_or(0, Connection::session_id);
                    if sid != 0 && sid == self.client.session_id() {
                        self.expect_lost = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// The invariants that hold after every step.
    fn check(&self) {
        let bound = |config: &Config| config.max_unacked().unwrap_or(usize::MAX);
        let stats = self.client.session_stats();
        assert!(
            stats.unacked_bytes <= bound(&self.client_config),
            "client holds {} unacknowledged bytes, bound {}",
            stats.unacked_bytes,
            bound(&self.client_config)
        );
        for (s, conn) in self.servers.iter().enumerate() {
            let Some(conn) = conn else { continue };
            assert_eq!(conn.role(), Role::Server);
            let stats = conn.session_stats();
            assert!(
                stats.unacked_bytes <= bound(&self.server_config),
                "server connection {s} holds {} unacknowledged bytes",
                stats.unacked_bytes
            );
            if conn.state() == State::Detached {
                assert_eq!(
                    self.sessions.get(&conn.session_id()),
                    Some(&s),
                    "a detached session the server cannot find"
                );
                assert!(
                    conn.timer(Timer::Reconnect).is_some(),
                    "a detached session that never expires"
                );
            }
        }
    }

    /// Links up, every break noticed, dials succeed, bytes delivered and
    /// timers run until every message is accounted for and the server's
    /// orphaned sessions expired; then the final checks.
    fn heal_and_settle(&mut self) {
        for l in 0..self.links.len() {
            if self.links[l].dead {
                if self.client_link == Some(l) {
                    self.client_io_error();
                }
                if let Some(s) = self.links[l].server {
                    self.server_io_error(s);
                }
            }
        }
        self.check();
        let expiry = self
            .server_config
            .resume
            .map_or(Duration::ZERO, |r| r.session_expiry);
        // Long enough for a backoff, a handshake timeout and an expiry.
        let until = self.now + expiry + Duration::from_secs(3);
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 5_000, "heal and settle never settles");
            self.dial();
            let before = self.moved();
            self.exchange();
            self.check();
            if self.moved() != before || self.dial_pending {
                continue;
            }
            // Settled: past the expiries, and the client up or gone.
            let client_settled = matches!(self.client.state(), State::Established | State::Closed);
            if self.now >= until && client_settled {
                break;
            }
            match self.next_deadline() {
                Some(at) if at <= until || !client_settled => {
                    self.now = self.now.max(at);
                    self.fire_due();
                }
                _ => self.now = until,
            }
            self.check();
        }
        let guaranteed = !self.no_resume;
        self.c2s.check_complete(guaranteed);
        self.s2c.check_complete(guaranteed);
        if guaranteed {
            self.check_sessions_held();
        }
    }

    /// A measure of progress: bytes moved and messages accounted for.
    fn moved(&self) -> (u64, u64, usize, usize) {
        let server_bytes: u64 = self
            .servers
            .iter()
            .flatten()
            .map(|c| c.stats().bytes_received + c.stats().bytes_sent)
            .sum();
        let client = self.client.stats().bytes_received + self.client.stats().bytes_sent;
        (client, server_bytes, self.servers.len(), self.links.len())
    }

    /// After the settle: the server holds the client's live session at
    /// most, none once the client closed.
    fn check_sessions_held(&self) {
        let live: Vec<(usize, &Connection)> = self
            .servers
            .iter()
            .enumerate()
            .filter_map(|(s, c)| c.as_ref().map(|c| (s, c)))
            .collect();
        if self.client_closed || self.client.is_closed() {
            assert!(
                live.is_empty(),
                "the client closed, yet the server still holds {} connections ({:?})",
                live.len(),
                live.iter().map(|(_, c)| c.state()).collect::<Vec<_>>()
            );
            return;
        }
        assert_eq!(
            self.client.state(),
            State::Established,
            "the healed client is not established"
        );
        assert!(
            live.len() <= 1,
            "the server holds {} sessions for one client",
            live.len()
        );
        for (_, conn) in live {
            assert_eq!(conn.session_id(), self.client.session_id());
        }
    }
}
