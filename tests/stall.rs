//! A reactor that stalls (a long callback, SIGSTOP, a suspended VM) must
//! not blame its peers for its own delay. Both reactors run on the test
//! thread, driven turn by turn with `poll_once`, so the stall is exact.

mod support;

use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use tether::{ConnId, Reactor};

struct Side {
    reactor: Reactor,
    handler: Recorder,
    events: Receiver<(Instant, Seen)>,
}

impl Side {
    fn new(config: tether::Config) -> Side {
        let (tx, events) = mpsc::channel();
        Side {
            reactor: Reactor::with_config(config).expect("reactor"),
            handler: Recorder { tx, echo: false },
            events,
        }
    }

    fn turn(&mut self, timeout: Duration) {
        self.reactor
            .poll_once(&mut self.handler, Some(timeout))
            .expect("poll");
    }

    fn connected(&self) -> Option<ConnId> {
        self.events.try_iter().find_map(|(_, s)| match s {
            Seen::Connected(id, _) => Some(id),
            _ => None,
        })
    }
}

/// A server with I = T = 200 ms and a client that never pings (so every
/// PING on the link is the server's), connected.
fn pair(stall_tolerance: Duration) -> (Side, Side, ConnId) {
    init_logs();
    let mut server_config = config(200, 200);
    server_config.stall_tolerance = stall_tolerance;
    let mut server = Side::new(server_config);
    let l = server
        .reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let addr = server.reactor.local_addr(l).expect("bound");
    let mut client = Side::new(config(60_000, 60_000));
    client.reactor.dial(addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut at_server = None;
    let mut at_client = None;
    while (at_server.is_none() || at_client.is_none()) && Instant::now() < deadline {
        server.turn(ms(1));
        client.turn(ms(1));
        at_server = at_server.or_else(|| server.connected());
        at_client = at_client.or_else(|| client.connected());
    }
    (server, client, at_server.expect("connected"))
}

/// Turns the server (answering with the client) until the server has just
/// sent a PING on `link`.
fn until_server_pings(server: &mut Side, client: &mut Side, link: ConnId) {
    let before = server.reactor.conn_stats(link).expect("link").pings_sent;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        server.turn(ms(5));
        if server.reactor.conn_stats(link).expect("link").pings_sent > before {
            return;
        }
        client.turn(Duration::ZERO);
    }
    panic!("the server never pinged");
}

#[test]
fn after_a_stall_the_reactor_reads_before_it_convicts() {
    // Forgiveness is turned off here (tolerance 10 s) to isolate the order
    // of a turn: what arrived during the stall is read before any timer.
    let (mut server, mut client, link) = pair(Duration::from_secs(10));
    until_server_pings(&mut server, &mut client, link);
    client.turn(Duration::ZERO); // the client answers PONG at once
    thread::sleep(ms(1000)); // the server's own stall: 5 × T
    server.turn(Duration::ZERO);
    let stats = server.reactor.conn_stats(link).expect("still there");
    assert_eq!(stats.state, tether::proto::conn::State::Established);
    assert_eq!(server.reactor.stats().closes.total(), 0);
    assert!(stats.pongs_received >= 1);
}

#[test]
fn a_deadline_that_passed_during_a_stall_gets_a_fresh_ping_and_t() {
    let (mut server, mut client, link) = pair(ms(250));
    until_server_pings(&mut server, &mut client, link);
    // The server stalls before the client has even seen the PING: when it
    // wakes, the death deadline is 800 ms overdue with nothing to read.
    thread::sleep(ms(1000));
    server.turn(Duration::ZERO);
    assert_eq!(
        server.reactor.stats().closes.total(),
        0,
        "convicted for our stall"
    );
    let lag = server.reactor.stats().max_lag;
    assert!(
        lag >= ms(700),
        "the reactor did not notice its own lag: {lag:?}"
    );
    let pings = server.reactor.conn_stats(link).expect("link").pings_sent;
    assert!(pings >= 2, "no fresh PING after the stall");
    // The client, alive all along, answers both PINGs.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        client.turn(ms(1));
        server.turn(ms(1));
    }
    assert_eq!(server.reactor.stats().closes.total(), 0);
    assert_eq!(
        server.reactor.conn_stats(link).expect("link").state,
        tether::proto::conn::State::Established
    );
}
