//! What session resume costs in memory on a server, counted with a
//! counting global allocator (live heap bytes of the server's thread, as
//! the layouts asked): an idle attached session with nothing
//! unacknowledged, and a busy session's replay log (echo, 100 connections
//! × 16 messages of 64 B in flight), each against the same connections
//! without resume. Alone in its own test binary, since the allocator is
//! process-wide. Run with `--nocapture` to see the figures.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use counting_alloc::{live, Counting};
use support::*;
use tether::{Config, ConnId, Context, Handler, Message, PeerInfo, Reactor, ResumeStatus};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heartbeat interval and timeout of both ends, in ms.
const I: u64 = 200;
/// Idle connections measured.
const IDLE_CONNS: usize = 200;
/// Busy connections, messages in flight on each, message size.
const BUSY_CONNS: usize = 100;
const WINDOW: usize = 16;
const SIZE: usize = 64;

/// Both ends: heartbeat `I`/`I`, time for many handshakes at once, and
/// session resume on or off (on a server, "on" only grants it to clients
/// that ask).
fn cfg(resume: bool) -> Config {
    let mut c = config(I, I);
    c.handshake_timeout = ms(10_000);
    c.connect_timeout = ms(10_000);
    if !resume {
        c.resume = None;
    }
    c
}

/// The server's handler: on `greet`, three messages to each client as it
/// connects (so that each session's replay log is used, then emptied by
/// the client's ACK, then given back when the connection goes quiet);
/// echoes every message.
#[derive(Default)]
struct Server {
    greet: bool,
    connected: usize,
    resumable: usize,
    echoed: u64,
}

impl Handler for Server {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        self.connected += 1;
        if peer.resume == ResumeStatus::New {
            self.resumable += 1;
        }
        if self.greet {
            for _ in 0..3 {
                let _ = cx.send(id, Bytes::from_static(&[1; SIZE]));
            }
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        if cx.forward(id, message).is_ok() {
            self.echoed += 1;
        }
    }
}

/// A client reactor on its own thread with `n` links, each keeping
/// `window` messages in flight (0: silent).
fn clients(addr: std::net::SocketAddr, n: usize, window: usize, resume: bool) -> Running {
    struct Window(usize);
    impl Handler for Window {
        fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
            for _ in 0..self.0 {
                let _ = cx.send(id, Bytes::from_static(&[2; SIZE]));
            }
        }
        fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
            if self.0 > 0 && message[0] == 2 {
                let _ = cx.send(id, Bytes::from_static(&[2; SIZE]));
            }
        }
    }
    let (tx, events) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut reactor = Reactor::with_config(cfg(resume)).expect("reactor");
        for _ in 0..n {
            reactor.dial(addr);
        }
        ready_tx.send(reactor.handle()).expect("test waiting");
        drop(tx);
        reactor.run(&mut Window(window)).expect("run");
        reactor
    });
    Running {
        handle: ready_rx.recv().expect("clients started"),
        events,
        addr: None,
        thread: Some(thread),
    }
}

/// Turns the server until `n` connections are up.
fn until_connected(reactor: &mut Reactor, server: &mut Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.connected < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} connected",
            server.connected
        );
        reactor.poll_once(server, Some(ms(10))).expect("poll");
    }
}

fn turn_for(reactor: &mut Reactor, server: &mut Server, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        reactor.poll_once(server, Some(ms(10))).expect("poll");
    }
}

fn listening_server(resume: bool) -> (Reactor, std::net::SocketAddr) {
    let mut reactor = Reactor::with_config(cfg(resume)).expect("reactor");
    let l = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let addr = reactor.local_addr(l).expect("bound");
    (reactor, addr)
}

/// Live bytes per idle connection on the server, its clients asking for
/// resume or not; each connection got three messages and acknowledged
/// them, then went quiet for five heartbeat intervals.
fn bytes_per_idle_connection(resume: bool) -> i64 {
    let (mut reactor, addr) = listening_server(true);
    let mut server = Server {
        greet: true,
        ..Server::default()
    };
    // One connection first: the reactor-wide buffers are in the baseline.
    let first = clients(addr, 1, 0, resume);
    until_connected(&mut reactor, &mut server, 1);
    turn_for(&mut reactor, &mut server, ms(5 * I));
    let base = live();
    let rest = clients(addr, IDLE_CONNS, 0, resume);
    until_connected(&mut reactor, &mut server, IDLE_CONNS + 1);
    turn_for(&mut reactor, &mut server, ms(5 * I));
    let per = (live() - base) / IDLE_CONNS as i64;
    assert_eq!(
        server.resumable,
        if resume { IDLE_CONNS + 1 } else { 0 },
        "sessions granted"
    );
    eprintln!(
        "idle, resume {}: {per} bytes per connection on the server ({IDLE_CONNS} connections, \
         {} sessions started)",
        if resume { "on" } else { "off" },
        reactor.stats().sessions_started
    );
    drop(rest.stop());
    drop(first.stop());
    per
}

#[test]
fn an_idle_session_costs_about_a_hundred_bytes_over_an_idle_connection_without_one() {
    init_logs();
    let without = bytes_per_idle_connection(false);
    let with = bytes_per_idle_connection(true);
    let cost = with - without;
    eprintln!("an idle attached session costs {cost} bytes of heap over a connection without");
    // The session's box (80 B), its share of the reactor's session table,
    // and what its trim timer (which gives the replay log's buffer back,
    // and which a connection without a session does not arm) costs the
    // timer wheel, ~25 B; the pointer and the ACK deadline (16 B) are in
    // every connection's slot, resumed or not.
    assert!(cost > 0, "a session costs something: {cost}");
    assert!(cost <= 136, "an idle session costs {cost} bytes");
}

/// The server's live bytes while 100 clients each keep 16 messages of
/// 64 B in flight, sampled every turn over a second after a warm-up:
/// (median, max) per connection above the idle baseline.
fn bytes_per_busy_connection(resume: bool) -> (i64, i64) {
    let (mut reactor, addr) = listening_server(true);
    let mut server = Server::default();
    let first = clients(addr, 1, 0, resume);
    until_connected(&mut reactor, &mut server, 1);
    turn_for(&mut reactor, &mut server, ms(2 * I));
    let base = live();
    let busy = clients(addr, BUSY_CONNS, WINDOW, resume);
    until_connected(&mut reactor, &mut server, BUSY_CONNS + 1);
    turn_for(&mut reactor, &mut server, ms(500));
    let echoed = server.echoed;
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        reactor.poll_once(&mut server, Some(ms(10))).expect("poll");
        samples.push((live() - base) / BUSY_CONNS as i64);
    }
    let echoed = server.echoed - echoed;
    samples.sort_unstable();
    let (median, max) = (samples[samples.len() / 2], samples[samples.len() - 1]);
    eprintln!(
        "busy, resume {}: {median} bytes per connection on the server (median of {} samples, \
         max {max}), {echoed} messages echoed in the second",
        if resume { "on" } else { "off" },
        samples.len()
    );
    assert!(echoed > 1000, "the echo ran: {echoed} messages");
    drop(busy.stop());
    drop(first.stop());
    (median, max)
}

#[test]
fn a_busy_session_s_replay_log_holds_one_buffer() {
    init_logs();
    let (without, without_max) = bytes_per_busy_connection(false);
    let (with, with_max) = bytes_per_busy_connection(true);
    let log = with - without;
    eprintln!(
        "the replay log of a busy session (100 × 16 × 64 B echo): {log} bytes per connection \
         (median; max {} over max)",
        with_max - without_max
    );
    // At most 80 frames of 69 B unacknowledged (the client acknowledges
    // every 64) in the log's one 16 KiB buffer, which the frames freed
    // from its front make room in: it never has to grow (32 KiB if it
    // did).
    assert!(log > 0, "the log holds something: {log}");
    assert!(log <= 24 * 1024, "{log} bytes per busy connection");
}
