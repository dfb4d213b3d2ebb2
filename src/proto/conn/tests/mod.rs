//! Virtual-time tests of the connection state machine.
//!
//! A [`Pair`] wires a client and a server through an in-memory link with a
//! configurable one-way latency; time jumps straight to the next deadline or
//! delivery, so every test states exact instants.

mod close;
mod counters;
mod handshake;
mod input;
mod liveness;
mod negotiated;
mod policy;
mod queue_lifetime;
mod reconnect;
mod resume;
mod undelivered;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Action, Connection, Event, State};
use crate::config::Config;
use crate::proto::codec::{Decoder, Frame};

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A test config: heartbeat I = 1 s, T = 1 s, handshake 500 ms, connect
/// 300 ms, backoff 100 ms ×2 up to 1.6 s without jitter, linger 200 ms, no
/// session resume, no negotiated liveness.
pub(super) fn config() -> Config {
    Config {
        heartbeat: Some(crate::config::Heartbeat {
            interval: ms(1000),
            timeout: ms(1000),
        }),
        handshake_timeout: ms(500),
        connect_timeout: ms(300),
        backoff: crate::config::BackoffConfig {
            initial: ms(100),
            multiplier: 2.0,
            max: ms(1600),
            jitter: 0.0,
            max_attempts: None,
        },
        close_linger: ms(200),
        // The rules without resume and without negotiated liveness;
        // `tests/resume.rs` and `tests/negotiated.rs` turn them on.
        resume: None,
        adopt_liveness: false,
        ..Config::default()
    }
}

/// What is in flight on one direction of the link.
#[derive(Default)]
struct Wire {
    /// (delivery time, bytes or EOF).
    queue: VecDeque<(Instant, Option<Bytes>)>,
}

/// What happens to a client's dial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listener {
    /// Accepts, and a server connection answers.
    Accepting,
    /// Refuses at once.
    Refusing,
    /// Never answers (the connect times out).
    Blackhole,
}

/// A client and the server connection it is currently talking to.
pub(super) struct Pair {
    pub(super) t0: Instant,
    pub(super) now: Instant,
    pub(super) latency: Duration,
    pub(super) client: Connection,
    pub(super) server: Option<Connection>,
    pub(super) server_config: Arc<Config>,
    pub(super) client_events: Vec<(Duration, Event)>,
    pub(super) server_events: Vec<(Duration, Event)>,
    /// Times (since t0) at which the client asked to connect.
    pub(super) dials: Vec<Duration>,
    pub(super) listener: Listener,
    /// A frozen server (power loss): processes nothing, sends nothing.
    pub(super) server_frozen: bool,
    /// The client's output and socket closes never reach the server: it
    /// plays a raw TCP peer whose bytes the test injects by hand.
    pub(super) client_mute: bool,
    /// Bytes the client wrote, as decoded frames with their send time.
    pub(super) client_sent: Vec<(Duration, Frame)>,
    pub(super) server_sent: Vec<(Duration, Frame)>,
    c2s: Wire,
    s2c: Wire,
    pending_connect: Option<Instant>,
    sessions: u64,
    scratch: Vec<Event>,
    /// How many times each side's timers came due (`handle_timeout`
    /// calls): client, server.
    pub(super) wakeups: [u32; 2],
}

impl Pair {
    /// A pair with the same config on both sides, connected (after one
    /// round trip).
    pub(super) fn connected(config: Config) -> Pair {
        let mut pair = Pair::new(config.clone(), config);
        pair.run_until_established();
        pair
    }

    /// A pair whose client has asked to dial; nothing has run yet, so a
    /// test can set latency, mute or freeze a side first.
    pub(super) fn new(client: Config, server: Config) -> Pair {
        let t0 = Instant::now();
        let mut client = Connection::client(Arc::new(client), 11);
        client.start(t0);
        Pair {
            t0,
            now: t0,
            latency: ms(0),
            client,
            server: None,
            server_config: Arc::new(server),
            client_events: Vec::new(),
            server_events: Vec::new(),
            dials: Vec::new(),
            listener: Listener::Accepting,
            server_frozen: false,
            client_mute: false,
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            c2s: Wire::default(),
            s2c: Wire::default(),
            pending_connect: None,
            sessions: 0,
            scratch: Vec::new(),
            wakeups: [0; 2],
        }
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    pub(super) fn run_until_established(&mut self) {
        self.settle();
        let limit = self.now + Duration::from_secs(60);
        while self.client.state() != State::Established && self.now < limit {
            if !self.step(limit) {
                break;
            }
        }
        assert_eq!(self.client.state(), State::Established);
    }

    /// Runs until `now + d`.
    pub(super) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
    }

    /// Runs until `pred` holds (checked after every step) or `limit` has
    /// passed; returns whether it held.
    pub(super) fn run_until(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Pair) -> bool,
    ) -> bool {
        let until = self.now + limit;
        loop {
            if pred(self) {
                return true;
            }
            if !self.step(until) {
                return pred(self);
            }
        }
    }

    /// Advances to the next thing that happens (not past `until`) and
    /// processes everything due then. Returns false once at `until`.
    fn step(&mut self, until: Instant) -> bool {
        self.settle();
        let next = [
            self.client.poll_timeout(),
            self.server_timeout(),
            self.c2s.queue.front().map(|(at, _)| *at),
            self.s2c.queue.front().map(|(at, _)| *at),
            self.pending_connect,
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(at) if at <= until => {
                self.now = self.now.max(at);
                self.settle();
                true
            }
            _ => {
                self.now = until;
                self.settle();
                false
            }
        }
    }

    fn server_timeout(&self) -> Option<Instant> {
        if self.server_frozen {
            return None;
        }
        self.server.as_ref().and_then(Connection::poll_timeout)
    }

    /// Processes everything due at `now` until nothing changes.
    pub(super) fn settle(&mut self) {
        for _ in 0..1000 {
            let mut progressed = false;
            progressed |= self.deliver();
            progressed |= self.fire_timers();
            progressed |= self.client_actions();
            progressed |= self.flush();
            if !progressed {
                return;
            }
        }
        panic!("the pair did not settle: a busy loop");
    }

    fn fire_timers(&mut self) -> bool {
        let now = self.now;
        let mut fired = false;
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now, &mut self.scratch);
            self.wakeups[0] += 1;
            fired = true;
        }
        self.drain_client_events();
        if let Some(server) = self.server.as_mut().filter(|_| !self.server_frozen) {
            if server.poll_timeout().is_some_and(|t| t <= now) {
                server.handle_timeout(now, &mut self.scratch);
                self.wakeups[1] += 1;
                fired = true;
            }
        }
        self.drain_server_events();
        fired
    }

    fn deliver(&mut self) -> bool {
        let now = self.now;
        let mut any = false;
        while self.c2s.queue.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, chunk)) = self.c2s.queue.pop_front() else {
                break;
            };
            any = true;
            if self.server_frozen {
                continue;
            }
            let Some(server) = self.server.as_mut() else {
                continue;
            };
            match chunk {
                Some(bytes) => {
                    server.handle_input(now, &mut BytesMut::from(&bytes[..]), &mut self.scratch);
                    // A new server connection per dial holds no earlier
                    // session: a resume begins a new one.
                    if server.resume_request().is_some() {
                        server.grant_new_session(now, &mut self.scratch);
                    }
                }
                None => server.handle_eof(now, &mut self.scratch),
            }
            self.drain_server_events();
        }
        while self.s2c.queue.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, chunk)) = self.s2c.queue.pop_front() else {
                break;
            };
            any = true;
            match chunk {
                Some(bytes) => self.client.handle_input(
                    now,
                    &mut BytesMut::from(&bytes[..]),
                    &mut self.scratch,
                ),
                None => self.client.handle_eof(now, &mut self.scratch),
            }
            self.drain_client_events();
        }
        if self.pending_connect.is_some_and(|at| at <= now) {
            self.pending_connect = None;
            any = true;
            self.complete_connect();
        }
        any
    }

    fn complete_connect(&mut self) {
        let now = self.now;
        match self.listener {
            Listener::Accepting => {
                self.sessions += 1;
                self.server = Some(Connection::server(
                    self.server_config.clone(),
                    now,
                    self.sessions,
                    100 + self.sessions,
                ));
                self.client.handle_connected(now);
            }
            Listener::Refusing => {
                self.client.handle_connect_failed(
                    now,
                    io::ErrorKind::ConnectionRefused,
                    &mut self.scratch,
                );
                self.drain_client_events();
            }
            Listener::Blackhole => {}
        }
    }

    fn client_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.client.poll_action() {
            any = true;
            match action {
                Action::Connect if self.client_mute && self.server.is_some() => {}
                Action::Connect => {
                    self.dials.push(self.elapsed());
                    self.c2s.queue.clear();
                    self.s2c.queue.clear();
                    self.pending_connect = Some(self.now + self.latency);
                }
                Action::CloseSocket if self.client_mute => self.pending_connect = None,
                Action::CloseSocket => {
                    self.pending_connect = None;
                    // The server side sees EOF after the bytes in flight.
                    let at = self.now + self.latency;
                    self.c2s.queue.push_back((at, None));
                }
            }
        }
        if let Some(server) = self.server.as_mut().filter(|_| !self.server_frozen) {
            while let Some(action) = server.poll_action() {
                any = true;
                if action == Action::CloseSocket {
                    let at = self.now + self.latency;
                    self.s2c.queue.push_back((at, None));
                }
            }
        }
        any
    }

    /// Moves each side's output onto the wire.
    fn flush(&mut self) -> bool {
        let now = self.now;
        let at = now + self.latency;
        let mut any = false;
        let mut buf = BytesMut::new();
        self.client.transmit_into(&mut buf, &mut self.scratch);
        self.drain_client_events();
        if self.client_mute {
            buf.clear();
        }
        if !buf.is_empty() {
            any = true;
            record(&mut self.client_sent, now - self.t0, &buf);
            self.c2s.queue.push_back((at, Some(buf.split().freeze())));
        }
        if let Some(server) = self.server.as_mut().filter(|_| !self.server_frozen) {
            server.transmit_into(&mut buf, &mut self.scratch);
            self.drain_server_events();
            if !buf.is_empty() {
                any = true;
                record(&mut self.server_sent, now - self.t0, &buf);
                self.s2c.queue.push_back((at, Some(buf.split().freeze())));
            }
        }
        any
    }

    fn drain_client_events(&mut self) {
        let at = self.elapsed();
        self.client_events
            .extend(self.scratch.drain(..).map(|e| (at, e)));
    }

    fn drain_server_events(&mut self) {
        let at = self.elapsed();
        self.server_events
            .extend(self.scratch.drain(..).map(|e| (at, e)));
    }

    /// Injects raw bytes from the "server" to the client now.
    pub(super) fn inject_to_client(&mut self, bytes: &[u8]) {
        let at = self.now;
        self.s2c
            .queue
            .push_back((at, Some(Bytes::copy_from_slice(bytes))));
        self.settle();
    }

    /// Injects raw bytes from the "client" to the server now.
    pub(super) fn inject_to_server(&mut self, bytes: &[u8]) {
        let at = self.now;
        self.c2s
            .queue
            .push_back((at, Some(Bytes::copy_from_slice(bytes))));
        self.settle();
    }

    pub(super) fn server(&self) -> &Connection {
        self.server.as_ref().expect("a server connection exists")
    }

    pub(super) fn server_mut(&mut self) -> &mut Connection {
        self.server.as_mut().expect("a server connection exists")
    }

    /// Frames of a kind the client sent, with times.
    pub(super) fn client_pings(&self) -> Vec<Duration> {
        pings(&self.client_sent)
    }

    pub(super) fn server_pings(&self) -> Vec<Duration> {
        pings(&self.server_sent)
    }
}

fn pings(sent: &[(Duration, Frame)]) -> Vec<Duration> {
    sent.iter()
        .filter(|(_, f)| matches!(f, Frame::Ping(_)))
        .map(|(t, _)| *t)
        .collect()
}

/// Decodes a chunk the harness saw written. Chunks written by a
/// [`Connection`] always hold whole frames, since `transmit_into` drains
/// everything.
fn record(log: &mut Vec<(Duration, Frame)>, at: Duration, chunk: &[u8]) {
    let decoder = Decoder::new(usize::MAX >> 1);
    let mut buf = BytesMut::from(chunk);
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        log.push((at, frame));
    }
    assert!(
        buf.is_empty(),
        "a connection wrote a partial or malformed frame"
    );
}

/// The events of one side without their times.
pub(super) fn kinds(events: &[(Duration, Event)]) -> Vec<&Event> {
    events.iter().map(|(_, e)| e).collect()
}

#[test]
fn a_connection_fits_its_memory_budget() {
    // The per-connection budget of an idle connection is 512 bytes of
    // user-space memory all told (slot, wheel entry, socket bookkeeping);
    // the state machine's share is this. Growing it is a decision, not an
    // accident.
    let size = std::mem::size_of::<Connection>();
    // (The session is one pointer, its buffers allocated only while it
    // holds unacknowledged messages; negotiated liveness is two u32s; the
    // queue lifetime is one deadline in the timer table, its marks in the
    // box of rarely needed state.)
    assert!(size <= 368, "Connection grew to {size} bytes");
    // An idle connection holds no heap buffers besides the shared config.
    let mut pair = Pair::connected(config());
    pair.run_for(ms(5_000)); // heartbeats exchanged, PING timer ran
    assert!(pair.client.sock.recv.is_empty() && pair.client.sock.recv.capacity() == 0);
    assert_eq!(pair.client.sock.outbox.len(), 0);
    assert!(pair.client.sock.outbox.is_unallocated());
}

#[test]
fn both_sides_give_back_their_output_buffers_once_they_stop_sending() {
    // On an idle link only one side's PING timer fires (the one that
    // pings); the other only answers. Both must let go of the buffers
    // their messages left behind, within about one interval.
    let mut pair = Pair::connected(config());
    for _ in 0..10 {
        pair.client.send(Bytes::from_static(b"up")).unwrap();
        pair.server_mut().send(Bytes::from_static(b"down")).unwrap();
        pair.run_for(ms(50));
    }
    // Each message written: its queue went to the thread's spare at once.
    assert!(pair.client.sock.outbox.is_unallocated());
    assert!(pair.server().sock.outbox.is_unallocated());
    pair.run_for(ms(2_500));
    assert!(
        pair.client.sock.outbox.is_unallocated(),
        "the client kept its buffers"
    );
    assert!(
        pair.server().sock.outbox.is_unallocated(),
        "the server kept its buffers"
    );
    // Heartbeats went on meanwhile: whichever side pinged, the other
    // answered without taking buffers for good.
    assert!(!pair.client_pings().is_empty() || !pair.server_pings().is_empty());
}

#[test]
fn a_sender_that_never_hears_back_holds_no_queue_and_no_trim_timer_without_a_session() {
    // No heartbeats and a peer that says nothing: the last receipt (the
    // handshake) falls ever further behind. Sending every 100 ms for 10 s,
    // each message written at once, must leave the queue with the thread's
    // spare after every write and arm no trim timer (which, counted from
    // that old receipt, would come due at every send).
    let quiet = Config {
        heartbeat: None,
        ..config()
    };
    let mut pair = Pair::connected(quiet);
    for _ in 0..100 {
        let server = pair.server_mut();
        server.send(Bytes::from_static(b"tick")).unwrap();
        assert!(!server.sock.outbox.is_unallocated(), "queued");
        // Written at once, before the timers are looked at, as the reactor
        // does (the bytes go nowhere: only the server's buffers matter).
        server.transmit_into(&mut BytesMut::new(), &mut Vec::new());
        assert!(server.sock.outbox.is_unallocated(), "given up when written");
        assert!(!server.timers.is_armed(super::Timer::Trim));
        pair.run_for(ms(100));
    }
    assert_eq!(pair.server().stats().messages_sent, 100);
}

#[test]
fn what_a_read_touches_comes_first_and_the_rest_last() {
    use super::socket::Socket;
    use std::mem::{offset_of, size_of};
    // The fields the per-read path reads or writes (state, config,
    // session, last_recv, the timer table, the moving counters, the
    // socket's first line) lie in one span at the front; the socket's
    // probe bookkeeping, the RTT estimate, the random source and the
    // session id after it. A field added in the middle shows up here.
    let sock = offset_of!(Connection, sock);
    let hot_end = sock + offset_of!(Socket, probe_nonce);
    assert!(offset_of!(Socket, flags) < 64 && offset_of!(Socket, ping_strikes) < 64);
    assert!(
        offset_of!(Socket, probe_nonce) >= 56,
        "the socket's hot line"
    );
    for (name, at) in [
        ("state", offset_of!(Connection, state)),
        ("config", offset_of!(Connection, config)),
        ("session", offset_of!(Connection, session)),
        ("last_recv", offset_of!(Connection, last_recv)),
        ("timers", offset_of!(Connection, timers)),
        ("stats", offset_of!(Connection, stats)),
    ] {
        assert!(at < sock, "{name} at {at} is not in front of the socket");
    }
    for (name, at) in [
        ("rtt", offset_of!(Connection, rtt)),
        ("rng", offset_of!(Connection, rng)),
        ("session_id", offset_of!(Connection, session_id)),
    ] {
        assert!(
            at >= sock + size_of::<Socket>(),
            "{name} at {at} is in the hot span"
        );
    }
    assert!(hot_end <= 296, "the hot span grew to {hot_end} bytes");
    // The counters a read or a write moves or reads, in the first line of
    // the stats.
    use crate::proto::conn::Stats;
    for at in [
        offset_of!(Stats, messages_received),
        offset_of!(Stats, messages_sent),
        offset_of!(Stats, bytes_received),
        offset_of!(Stats, bytes_sent),
        offset_of!(Stats, pongs_received),
        offset_of!(Stats, acks_received),
        offset_of!(Stats, disconnects),
    ] {
        assert!(at < 64, "a hot counter at {at}");
    }
}
