//! The `feed_relay` example's handler (`examples/common/relay.rs`) at work:
//! a UDP feed relayed to every connected client, with its stats timer
//! re-armed drift-free — the relay, its clients and the feed's sender all
//! on this one thread.

#[path = "../examples/common/relay.rs"]
mod relay;
mod support;

use std::net::UdpSocket as StdUdpSocket;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::mio::net::UdpSocket;
use tether::mio::Interest;
use tether::{ConnId, Reactor};

use relay::{Relay, STATS};

const PERIOD: Duration = Duration::from_millis(20);

/// The relay's reactor and the clients' reactor, turned in alternation.
struct World {
    relay: Reactor,
    relay_handler: Relay,
    clients: Reactor,
    client_handler: Recorder,
    seen: Receiver<(Instant, Seen)>,
    /// Messages each client link got, in order.
    got: Vec<(ConnId, Bytes)>,
    connected: usize,
}

impl World {
    fn turn(&mut self) {
        self.relay
            .poll_once(&mut self.relay_handler, Some(ms(1)))
            .expect("relay poll");
        self.clients
            .poll_once(&mut self.client_handler, Some(ms(1)))
            .expect("clients poll");
        while let Ok((_, seen)) = self.seen.try_recv() {
            match seen {
                Seen::Message(id, m) => self.got.push((id, m)),
                Seen::Connected(..) => self.connected += 1,
                other => panic!("unexpected: {other:?}"),
            }
        }
    }

    fn turn_until(&mut self, what: &str, mut done: impl FnMut(&World) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(self) {
            assert!(Instant::now() < deadline, "{what}: not within 5 s");
            self.turn();
        }
    }
}

#[test]
fn every_datagram_of_the_feed_reaches_every_client_in_order() {
    init_logs();
    let local = "127.0.0.1:0".parse().expect("addr");
    let (mut relay, addr, _) = listening(config(200, 400));
    let feed = UdpSocket::bind(local).expect("udp");
    let feed_addr = feed.local_addr().expect("addr");
    let mut relay_handler = Relay::new(feed, PERIOD);
    let id = relay
        .register(&mut relay_handler.feed, Interest::READABLE)
        .expect("register");
    relay_handler.feed_id = Some(id);
    let first = relay_handler.start(Instant::now());
    relay.set_timer_at(first, STATS);

    let (tx, seen) = std::sync::mpsc::channel();
    let mut clients = Reactor::with_config(config(200, 400)).expect("reactor");
    let links = [clients.dial(addr), clients.dial(addr)];
    let mut world = World {
        relay,
        relay_handler,
        clients,
        client_handler: Recorder { tx, echo: false },
        seen,
        got: Vec::new(),
        connected: 0,
    };
    world.turn_until("connected", |w| {
        w.connected == 2 && w.relay_handler.clients() == 2
    });

    // Bursts of ten (well within a loopback socket's buffer), each
    // relayed before the next is sent.
    let sender = StdUdpSocket::bind(local).expect("udp");
    let mut sent = Vec::new();
    for burst in 0..10 {
        for i in 0..10 {
            let datagram = format!("tick {burst}.{i} {}", "x".repeat(burst * 100));
            sender
                .send_to(datagram.as_bytes(), feed_addr)
                .expect("send");
            sent.push(Bytes::from(datagram));
        }
        let want = 2 * sent.len();
        world.turn_until("relayed", |w| w.got.len() >= want);
    }
    for link in links {
        let got: Vec<Bytes> = world
            .got
            .iter()
            .filter(|(id, _)| *id == link)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(got, sent, "{link}");
    }
    let stats = world.relay_handler.stats();
    assert_eq!(
        (stats.datagrams, stats.relayed, stats.missed),
        (100, 200, 0)
    );

    // The stats timer: re-armed from its deadline, so after k reports the
    // next is exactly k + 1 periods after the first deadline's start.
    world.turn_until("three reports", |w| w.relay_handler.stats().reports >= 3);
    let reports = world.relay_handler.stats().reports;
    assert_eq!(
        world.relay_handler.next_report(),
        first + PERIOD * reports as u32
    );
}
