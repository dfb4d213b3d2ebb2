//! Session resume on real sockets: two ends stream numbered messages (1 B
//! to 64 KiB, see `support::numbered`) both ways through a proxy that
//! resets the link again and again and blackholes it past `I + T`, and
//! each checks that it received every number exactly once and in order;
//! the server's `ConnId` of the client stays the same throughout.
//!
//! Scale: `TETHER_RESUME_MESSAGES=N` sets the messages each way of the
//! fault runs (default 20 000). The long run, `cargo test --release
//! --test resume long_run -- --ignored --nocapture`, sends at least
//! 10^6 each way through a reset every few hundred milliseconds and a
//! blackhole past `I + T` every eighth fault, and prints its figures.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy::{Mode, Proxy};
use support::numbered::{self, Received};
use support::{config, init_logs, ms, Rng};
use tether::{
    ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor, ResumeStatus, SendError,
};

/// Messages each way in the fault runs, unless `TETHER_RESUME_MESSAGES`
/// says otherwise.
const CI_MESSAGES: u64 = 20_000;
/// Messages each way in the long run, at least.
const LONG_MESSAGES: u64 = 1_000_000;

fn messages_each_way(at_least: u64) -> u64 {
    std::env::var("TETHER_RESUME_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_MESSAGES)
        .max(at_least)
}

/// One end's view of a stream of numbered messages.
#[derive(Default)]
struct Stream {
    /// The next number to send.
    next_out: u64,
    /// What arrived of the other end's stream.
    rx: Received,
}

#[derive(Default)]
struct Ends {
    /// The client link's id (set when dialled).
    client: Option<ConnId>,
    /// The server's id of the client, and every id it ever had.
    server_ids: Vec<ConnId>,
    client_stream: Stream,
    server_stream: Stream,
    statuses: Vec<(bool, ResumeStatus)>,
    undelivered: usize,
    handed_back: Vec<Bytes>,
    disconnects: HashMap<String, u32>,
}

impl Ends {
    fn stream(&mut self, id: ConnId) -> &mut Stream {
        if Some(id) == self.client {
            &mut self.client_stream
        } else {
            &mut self.server_stream
        }
    }
}

impl Handler for Ends {
    fn on_connected(&mut self, _: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        let client = Some(id) == self.client;
        if !client && !self.server_ids.contains(&id) {
            self.server_ids.push(id);
        }
        self.statuses.push((client, peer.resume));
    }

    fn on_message(&mut self, _: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        self.stream(id).rx.receive(&message);
    }

    fn on_disconnected(&mut self, _: &mut Context<'_>, _: ConnId, reason: &DisconnectReason) {
        let key = format!("{reason:?}");
        *self
            .disconnects
            .entry(key[..key.find(['(', ' ']).unwrap_or(key.len())].to_owned())
            .or_default() += 1;
    }

    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        messages: Vec<Bytes>,
        _: tether::UndeliveredCause,
    ) {
        self.undelivered += messages.len();
        self.handed_back.extend(messages);
    }
}

/// Sends the next numbers on `id` until the session pushes back or
/// `upto` are sent.
fn pump(cx: &mut Context<'_>, id: ConnId, stream: &mut Stream, upto: u64) {
    while stream.next_out < upto {
        match cx.send(id, numbered::message(stream.next_out)) {
            Ok(()) => stream.next_out += 1,
            Err(SendError::Backpressure { .. } | SendError::NotConnected) => return,
            Err(e) => panic!("send {}: {e}", stream.next_out),
        }
    }
}

/// The receiver's check itself: a message lost, repeated, swapped or
/// damaged (a 1-byte one included) breaks the single run 0..n.
#[test]
fn the_exactly_once_check_catches_a_lost_a_repeated_a_swapped_and_a_damaged_message() {
    let total = 3000;
    let received = |order: &[u64], damage: Option<u64>| {
        let mut rx = Received::default();
        for &n in order {
            let mut m = numbered::message(n).to_vec();
            if damage == Some(n) {
                let last = m.len() - 1;
                m[last] ^= 1;
            }
            rx.receive(&m);
        }
        rx
    };
    let all: Vec<u64> = (0..total).collect();
    assert!(received(&all, None).exactly(total));
    assert!(!received(&all, None).exactly(total - 1));
    let tiny = (0..total)
        .find(|&n| numbered::size(n) == 1)
        .expect("a 1-byte message");
    let large = (0..total)
        .find(|&n| numbered::size(n) > 1024)
        .expect("a large message");
    for n in [0, tiny, large, total - 1] {
        let lost: Vec<u64> = all.iter().copied().filter(|&m| m != n).collect();
        assert!(!received(&lost, None).exactly(total), "{n} lost");
        let mut twice = all.clone();
        twice.insert(n as usize, n);
        assert!(!received(&twice, None).exactly(total), "{n} twice");
        assert!(!received(&all, Some(n)).exactly(total), "{n} damaged");
    }
    let mut swapped = all.clone();
    swapped.swap(tiny as usize, tiny as usize + 1);
    assert!(!received(&swapped, None).exactly(total));
}

#[test]
fn every_message_arrives_exactly_once_and_in_order_across_repeated_resets() {
    // Ten resets (RST both ways), about 20 ms each.
    stream_through(&Plan {
        messages: messages_each_way(0),
        faults: 10,
        blackhole_every: 0,
        min_resumes: 3,
    });
}

#[test]
fn every_message_arrives_exactly_once_and_in_order_across_blackholes_past_i_plus_t() {
    // Three silences of 700 ms, past I + T (400 ms): both ends declare the
    // other dead, the server holds the session, the client redials into
    // the silence until it lifts, then resumes.
    stream_through(&Plan {
        messages: messages_each_way(0),
        faults: 3,
        blackhole_every: 1,
        min_resumes: 2,
    });
}

#[test]
fn every_message_arrives_exactly_once_and_in_order_across_resets_and_blackholes_together() {
    // Twelve faults in one run: resets, and every fourth a blackhole.
    stream_through(&Plan {
        messages: messages_each_way(0),
        faults: 12,
        blackhole_every: 4,
        min_resumes: 6,
    });
}

/// The long run: at least 10^6 messages each way, a fault every few
/// hundred milliseconds (a reset, every eighth a blackhole past `I + T`).
#[test]
#[ignore = "long (minutes in a release build): cargo test --release --test resume long_run -- --ignored --nocapture"]
fn long_run_a_million_messages_each_way_through_resets_and_blackholes() {
    let messages = messages_each_way(LONG_MESSAGES);
    stream_through(&Plan {
        messages,
        faults: u32::try_from(messages / 4000).unwrap_or(u32::MAX).max(16),
        blackhole_every: 8,
        min_resumes: 8,
    });
}

/// A fault run: how many messages each way, how many faults (every
/// `blackhole_every`-th a blackhole past `I + T`, the others resets; 0:
/// none), and how many resumes each end must have seen at least.
struct Plan {
    messages: u64,
    faults: u32,
    blackhole_every: u32,
    min_resumes: usize,
}

/// Both ends stream `plan.messages` numbered messages while the proxy
/// faults the link `plan.faults` times; each end may send its share
/// `k + 1` of `faults + 1` only once `k` faults have passed, so the faults
/// fall across the whole stream. Then both must have received every
/// number exactly once, in order, with nothing handed back.
fn stream_through(plan: &Plan) {
    init_logs();
    let total = plan.messages;
    let mut cfg = config(200, 200);
    cfg.max_outbound = 256 * 1024;
    let mut reactor = Reactor::with_config(cfg).expect("reactor");
    let listener = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let target = reactor.local_addr(listener).expect("bound");
    let proxy = Proxy::start(target);
    let mut ends = Ends {
        client: Some(reactor.dial(proxy.addr())),
        ..Ends::default()
    };
    let client = ends.client.expect("dialled");
    let mut rng = Rng::new(7);
    let started = Instant::now();
    let limit = Duration::from_secs(60 + total / 2000);
    let mut next_fault = started + ms(150);
    let (mut faults, mut blackholes) = (0u32, 0u32);
    let mut statuses_at_fault = 0;
    let stuck = |ends: &Ends, faults: u32| {
        format!(
            "stuck: server got {} ({}), client got {} ({}); {faults} faults; {:?}",
            ends.server_stream.rx.messages,
            ends.server_stream.rx.diagnose(total),
            ends.client_stream.rx.messages,
            ends.client_stream.rx.diagnose(total),
            ends.disconnects
        )
    };
    let turn = |reactor: &mut Reactor, ends: &mut Ends, faults: u32| {
        reactor.poll_once(ends, Some(ms(5))).expect("poll");
        let allowed =
            (u128::from(total) * u128::from(faults + 1) / u128::from(plan.faults + 1)) as u64;
        let mut cx = reactor.context();
        pump(&mut cx, client, &mut ends.client_stream, allowed);
        if let Some(&server) = ends.server_ids.first() {
            pump(&mut cx, server, &mut ends.server_stream, allowed);
        }
    };
    while ends.client_stream.rx.messages < total
        || ends.server_stream.rx.messages < total
        || faults < plan.faults
    {
        assert!(started.elapsed() < limit, "{}", stuck(&ends, faults));
        turn(&mut reactor, &mut ends, faults);
        // The next fault comes once both ends are back from the last (or
        // 5 s after it lifted): on a loaded machine a fault that lands on
        // a redial still in flight would merge two outages into one.
        let both_back = ends.statuses.len() >= statuses_at_fault + 2
            || Instant::now() >= next_fault + Duration::from_secs(5);
        if Instant::now() >= next_fault && both_back && faults < plan.faults {
            statuses_at_fault = ends.statuses.len();
            let blackhole = plan.blackhole_every != 0 && (faults + 1) % plan.blackhole_every == 0;
            let (mode, hold) = if blackhole {
                blackholes += 1;
                (Mode::Blackhole, ms(700))
            } else {
                (Mode::Reset, ms(20))
            };
            proxy.set_mode(mode);
            let until = Instant::now() + hold;
            while Instant::now() < until {
                // Keep sending into the fault: it is kept for the session.
                turn(&mut reactor, &mut ends, faults);
            }
            proxy.set_mode(Mode::PassThrough);
            faults += 1;
            next_fault = Instant::now() + ms(100 + rng.next() % 300);
        }
    }
    let wall = started.elapsed();
    let server = *ends.server_ids.first().expect("the client was accepted");
    let (cs, ss) = (
        reactor.conn_stats(client).expect("client link"),
        reactor.conn_stats(server).expect("server's connection"),
    );
    eprintln!(
        "{total} messages each way ({} B client to server, {} B back) in {:.1} s; \
         {faults} faults ({} resets, {blackholes} blackholes past I + T); resumes: client {}, \
         server {}; messages sent again: client {}, server {}; exactly once: client {}, \
         server {}; disconnects {:?}; {:?}",
        ends.server_stream.rx.bytes,
        ends.client_stream.rx.bytes,
        wall.as_secs_f64(),
        faults - blackholes,
        cs.resumes,
        ss.resumes,
        cs.messages_resent,
        ss.messages_resent,
        ends.client_stream.rx.exactly(total),
        ends.server_stream.rx.exactly(total),
        ends.disconnects,
        reactor.stats()
    );
    assert!(
        ends.client_stream.rx.exactly(total),
        "client: {}",
        ends.client_stream.rx.diagnose(total)
    );
    assert!(
        ends.server_stream.rx.exactly(total),
        "server: {}",
        ends.server_stream.rx.diagnose(total)
    );
    assert_eq!(ends.undelivered, 0, "nothing handed back");
    assert_eq!(
        ends.server_ids.len(),
        1,
        "one server ConnId for the client throughout"
    );
    let resumed = |client: bool| {
        ends.statuses
            .iter()
            .filter(|(c, s)| *c == client && matches!(s, ResumeStatus::Resumed { .. }))
            .count()
    };
    assert!(
        resumed(true) >= plan.min_resumes && resumed(false) >= plan.min_resumes,
        "{:?}",
        ends.statuses
    );
    assert!(
        !ends.statuses.iter().any(|(_, s)| *s == ResumeStatus::Lost),
        "no session lost"
    );
    let stats = reactor.stats();
    assert!(
        stats.sessions_resumed >= plan.min_resumes as u64 && stats.sessions_lost == 0,
        "{stats:?}"
    );
}

/// A client that resumes while the server still holds its old socket
/// (a takeover): the old socket gets CLOSE 1001 and is closed, the new one
/// stays open and carries the session (no heartbeats: nothing else would
/// notice a wrongly closed socket).
#[test]
fn a_takeover_keeps_the_resumed_socket_open() {
    use std::thread;
    use support::{echo_server, RawPeer};
    use tether::proto::codec::{Frame, Handshake};

    let mut cfg = tether::Config::builder()
        .no_heartbeat()
        .build()
        .expect("config");
    cfg.handshake_timeout = ms(2000);
    let server = echo_server(cfg, None);
    let addr = server.addr.expect("listening");
    let hello = |session_id: u64, recv_seq: u64| {
        Frame::Hello(Handshake {
            flags: Handshake::RESUME,
            session_id,
            recv_seq,
            ..Handshake::default()
        })
    };
    let mut old = RawPeer::connect(addr);
    old.send_frame(&hello(0, 0));
    let session = match old.next_frame(ms(2000)) {
        Some(Frame::Welcome(w)) if w.has(Handshake::RESUME) => w.session_id,
        other => panic!("expected a resuming WELCOME, got {other:?}"),
    };
    old.send_frame(&Frame::Data(Bytes::from_static(b"one")));
    assert_eq!(
        old.next_frame(ms(2000)),
        Some(Frame::Data(Bytes::from_static(b"one")))
    );

    // The same session from a new socket, the old one still open.
    let mut new = RawPeer::connect(addr);
    new.send_frame(&hello(session, 1));
    match new.next_frame(ms(2000)) {
        Some(Frame::Welcome(w)) => {
            assert!(w.has(Handshake::RESUME));
            assert_eq!((w.session_id, w.recv_seq), (session, 1));
        }
        other => panic!("expected WELCOME, got {other:?}"),
    }
    let (frames, eof) = old.read_until_eof(ms(2000));
    assert!(
        frames
            .iter()
            .any(|(_, f)| matches!(f, Frame::Close { code, .. } if code.0 == 1001)),
        "{frames:?}"
    );
    assert!(eof.is_some(), "the old socket is closed");
    // The resumed socket carries on.
    thread::sleep(ms(50));
    new.send_frame(&Frame::Data(Bytes::from_static(b"two")));
    assert_eq!(
        new.next_frame(ms(2000)),
        Some(Frame::Data(Bytes::from_static(b"two")))
    );
}

/// The server restarts (shut down, a new one on the same port): the client
/// hears its session was lost and gets back exactly the messages the old
/// server had not acknowledged, in order — no gap before them — and the
/// new session carries on exactly once.
#[test]
fn a_restarted_server_loses_the_session_and_the_client_gets_back_what_was_not_acknowledged() {
    use support::{spawn, Seen};

    init_logs();
    let server_config = || config(200, 200);
    let listen_on = |addr: std::net::SocketAddr| {
        move |r: &mut Reactor| {
            let l = r.listen(addr).expect("listen");
            r.local_addr(l)
        }
    };
    let mut old = spawn(
        server_config(),
        false,
        listen_on("127.0.0.1:0".parse().expect("addr")),
    );
    let addr = old.addr.expect("listening");
    let mut reactor = Reactor::with_config(config(200, 200)).expect("reactor");
    let mut ends = Ends {
        client: Some(reactor.dial(addr)),
        ..Ends::default()
    };
    let client = ends.client.expect("dialled");
    let messages = |running: &support::Running| -> Vec<Bytes> {
        running
            .events
            .try_iter()
            .filter_map(|(_, seen)| match seen {
                Seen::Message(_, m) => Some(m),
                _ => None,
            })
            .collect()
    };
    // Each of `ms` is the message numbered from `first` on, in order.
    let numbered_from =
        |first: u64, ms: &[Bytes]| ms.iter().zip(first..).all(|(m, n)| numbered::is(n, m));
    // Stream for a while, then restart the server under load.
    let until = Instant::now() + ms(300);
    while Instant::now() < until {
        reactor.poll_once(&mut ends, Some(ms(2))).expect("poll");
        let mut cx = reactor.context();
        pump(&mut cx, client, &mut ends.client_stream, u64::MAX);
    }
    old.handle.shutdown().expect("server alive");
    if let Some(thread) = old.thread.take() {
        thread.join().expect("server thread");
    }
    let received_before = messages(&old);
    let new = spawn(server_config(), false, listen_on(addr));
    let started = Instant::now();
    let lost = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never reconnected"
        );
        reactor.poll_once(&mut ends, Some(ms(5))).expect("poll");
        if ends.statuses.iter().any(|(_, s)| *s == ResumeStatus::Lost) {
            break ends.client_stream.next_out;
        }
        // Sends while down are kept for the session (and come back with it).
        let mut cx = reactor.context();
        pump(&mut cx, client, &mut ends.client_stream, u64::MAX);
    };
    // The old server got 0..r exactly once, in order.
    let r = received_before.len() as u64;
    assert!(r > 0, "nothing reached the old server");
    assert!(
        numbered_from(0, &received_before),
        "the old server got 0..{r}"
    );
    // Handed back: a contiguous run up to the last number sent, starting
    // no later than what the old server received (nothing missing).
    let back = &ends.handed_back;
    assert!(!back.is_empty(), "something was not acknowledged");
    let h = lost - back.len() as u64;
    eprintln!("old server received {r}, handed back {h}..{lost}");
    assert!(numbered_from(h, back), "in order, up to the last sent");
    assert!(
        h <= r,
        "numbers {r}..{h} were neither received nor handed back"
    );
    // The new session carries on from the next number, exactly once.
    let target = lost + 200;
    while ends.client_stream.next_out < target {
        reactor.poll_once(&mut ends, Some(ms(5))).expect("poll");
        let mut cx = reactor.context();
        pump(&mut cx, client, &mut ends.client_stream, target);
    }
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while after.len() < 200 && Instant::now() < deadline {
        reactor.poll_once(&mut ends, Some(ms(5))).expect("poll");
        after.extend(messages(&new));
    }
    assert_eq!(after.len(), 200);
    assert!(
        numbered_from(lost, &after),
        "the new server got {lost}..{target}"
    );
    assert_eq!(reactor.stats().sessions_lost, 1);
}
