//! A service's own timers and event sources on a real reactor: timers come
//! in deadline order and never before their deadline, and a UDP socket
//! registered as a source reports its readiness to the handler until it is
//! deregistered. (Exact firing instants, with an injected clock, are
//! tested in `src/reactor/core/app/tests.rs`.)

mod support;

use std::io;
use std::net::UdpSocket as StdUdpSocket;
use std::time::{Duration, Instant};

use support::*;
use tether::mio::net::UdpSocket;
use tether::mio::Interest;
use tether::{Context, Handler, Reactor, Ready, SourceId, TimerId};

/// Polls `reactor` until `done` says so; fails after 5 s.
fn poll_until<H: Handler>(reactor: &mut Reactor, h: &mut H, mut done: impl FnMut(&H) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(h) {
        assert!(Instant::now() < deadline, "not done within 5 s");
        reactor.poll_once(h, Some(ms(100))).expect("poll");
    }
}

#[derive(Default)]
struct Timers {
    fired: Vec<(Instant, TimerId, u64)>,
}

impl Handler for Timers {
    fn on_timer(&mut self, _: &mut Context<'_>, id: TimerId, token: u64) {
        self.fired.push((Instant::now(), id, token));
    }
}

#[test]
fn timers_fire_in_deadline_order_never_early_and_cancelled_ones_never() {
    init_logs();
    let mut reactor = Reactor::new().expect("reactor");
    let start = Instant::now();
    let late = reactor.set_timer(ms(60), 1);
    let early = reactor.set_timer_at(start + ms(20), 2);
    let cancelled = reactor.set_timer(ms(40), 3);
    assert!(reactor.cancel_timer(cancelled));
    let mut h = Timers::default();
    // `None`: the reactor waits for its next timer, not forever.
    while h.fired.len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(5), "timers lost");
        reactor.poll_once(&mut h, None).expect("poll");
    }
    let [(t_early, id_early, 2), (t_late, id_late, 1)] = h.fired[..] else {
        panic!("not in deadline order: {:?}", h.fired);
    };
    assert_eq!((id_early, id_late), (early, late));
    assert!(
        t_early >= start + ms(20),
        "early by {:?}",
        start + ms(20) - t_early
    );
    assert!(
        t_late >= start + ms(60),
        "early by {:?}",
        start + ms(60) - t_late
    );
    assert!(!reactor.cancel_timer(late), "fired: nothing to cancel");
    // Woken by its timers, not spinning: a few turns (a loaded machine
    // adds a few), not one per millisecond.
    let turns = reactor.stats().turns;
    assert!(turns < 30, "{turns} turns for two timers");

    // Nothing pending: `poll_once` with a timeout just returns.
    reactor.poll_once(&mut h, Some(ms(50))).expect("poll");
    assert_eq!(h.fired.len(), 2, "the cancelled timer fired");
}

const REGISTER_B: u64 = 1;
const QUIET: u64 = 2;

/// Drains the UDP sockets it is told of and registers the second one from
/// a timer callback.
struct Feed {
    a: UdpSocket,
    a_id: Option<SourceId>,
    b: UdpSocket,
    b_id: Option<SourceId>,
    /// Datagrams read, with the id whose readiness led to them.
    got: Vec<(SourceId, Vec<u8>)>,
    /// Every readiness reported.
    events: Vec<(SourceId, Ready)>,
    quiet: bool,
}

impl Feed {
    fn drain(socket: &UdpSocket, id: SourceId, got: &mut Vec<(SourceId, Vec<u8>)>) {
        let mut buf = [0; 1500];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => got.push((id, buf[..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
}

impl Handler for Feed {
    fn on_source(&mut self, _: &mut Context<'_>, id: SourceId, ready: Ready) {
        self.events.push((id, ready));
        if !ready.is_readable() {
            return;
        }
        if Some(id) == self.a_id {
            Feed::drain(&self.a, id, &mut self.got);
        } else if Some(id) == self.b_id {
            Feed::drain(&self.b, id, &mut self.got);
        } else {
            panic!("readiness for {id}, which is not registered");
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, _: TimerId, token: u64) {
        match token {
            REGISTER_B => {
                let id = cx
                    .register(&mut self.b, Interest::READABLE)
                    .expect("register");
                self.b_id = Some(id);
            }
            QUIET => self.quiet = true,
            _ => unreachable!(),
        }
    }
}

fn datagrams(got: &[(SourceId, Vec<u8>)]) -> Vec<(SourceId, &[u8])> {
    got.iter().map(|(id, d)| (*id, &d[..])).collect()
}

#[test]
fn a_udp_source_reports_readiness_to_its_handler_until_deregistered() {
    init_logs();
    let local = "127.0.0.1:0".parse().expect("addr");
    let mut reactor = Reactor::new().expect("reactor");
    let mut h = Feed {
        a: UdpSocket::bind(local).expect("udp"),
        a_id: None,
        b: UdpSocket::bind(local).expect("udp"),
        b_id: None,
        got: Vec::new(),
        events: Vec::new(),
        quiet: false,
    };
    let a_addr = h.a.local_addr().expect("addr");
    let b_addr = h.b.local_addr().expect("addr");
    let a = reactor
        .register(&mut h.a, Interest::READABLE)
        .expect("register");
    h.a_id = Some(a);
    let sender = StdUdpSocket::bind(local).expect("udp");

    // Readiness comes to the handler, which drains the socket.
    for d in [&b"one"[..], b"two", b"three"] {
        sender.send_to(d, a_addr).expect("send");
    }
    poll_until(&mut reactor, &mut h, |h| h.got.len() == 3);
    assert_eq!(
        datagrams(&h.got),
        [(a, &b"one"[..]), (a, b"two"), (a, b"three")]
    );
    assert!(h.events.iter().all(|&(id, r)| id == a && r.is_readable()));

    // Re-registering for writable too: the socket is writable at once.
    reactor
        .reregister(&mut h.a, a, Interest::READABLE | Interest::WRITABLE)
        .expect("reregister");
    poll_until(&mut reactor, &mut h, |h| {
        h.events.iter().any(|&(id, r)| id == a && r.is_writable())
    });

    // Deregistered: nothing more is reported, although data waits.
    reactor.deregister(&mut h.a, a).expect("deregister");
    let stale = reactor.deregister(&mut h.a, a).expect_err("stale");
    assert_eq!(stale.kind(), io::ErrorKind::NotFound);
    let stale = reactor
        .reregister(&mut h.a, a, Interest::READABLE)
        .expect_err("stale");
    assert_eq!(stale.kind(), io::ErrorKind::NotFound);
    let seen = h.events.len();
    sender.send_to(b"unseen", a_addr).expect("send");
    // Loopback delivers the datagram at once; a registered socket would
    // be reported in the next turn. Give it 100 ms of turns.
    reactor.set_timer(ms(100), QUIET);
    poll_until(&mut reactor, &mut h, |h| h.quiet);
    assert_eq!(h.events.len(), seen, "readiness after deregister");
    let mut buf = [0; 16];
    let n = h.a.recv(&mut buf).expect("the datagram waited unread");
    assert_eq!(&buf[..n], b"unseen");

    // A source registered from a callback, in the slot `a` left: its
    // readiness comes under its own id, never `a`'s.
    reactor.set_timer(Duration::ZERO, REGISTER_B);
    poll_until(&mut reactor, &mut h, |h| h.b_id.is_some());
    let b = h.b_id.expect("registered");
    assert_ne!(b, a);
    sender.send_to(b"four", b_addr).expect("send");
    poll_until(&mut reactor, &mut h, |h| h.got.len() == 4);
    assert_eq!(datagrams(&h.got[3..]), [(b, &b"four"[..])]);
    assert!(h.events[seen..].iter().all(|&(id, _)| id == b));
}
