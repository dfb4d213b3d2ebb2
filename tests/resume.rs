//! Session resume on real sockets: two ends stream numbered messages both
//! ways through a proxy that resets the link again and again, and each
//! checks that it received every number exactly once and in order; the
//! server's `ConnId` of the client stays the same throughout.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy::{Mode, Proxy};
use support::{config, init_logs, ms, Rng};
use tether::{
    ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor, ResumeStatus, SendError,
};

/// One end's view of a stream of numbered messages.
#[derive(Default)]
struct Stream {
    /// The next number to send.
    next_out: u64,
    /// The next number expected.
    next_in: u64,
    /// Numbers received out of order or twice.
    wrong: Vec<(u64, u64)>,
}

impl Stream {
    fn receive(&mut self, m: &[u8]) {
        let n = u64::from_be_bytes(m[..8].try_into().expect("8 bytes"));
        if n != self.next_in {
            self.wrong.push((self.next_in, n));
        }
        self.next_in = n + 1;
        // The rest of the message says the number again.
        assert!(m[8..].iter().all(|&b| b == n as u8), "message {n} damaged");
    }
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
        self.stream(id).receive(&message);
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

fn message(n: u64, size: usize) -> Bytes {
    let mut m = n.to_be_bytes().to_vec();
    m.resize(size.max(8), n as u8);
    Bytes::from(m)
}

/// Sends the next numbers on `id` until the session pushes back or `total`
/// are sent.
fn pump(cx: &mut Context<'_>, id: ConnId, stream: &mut Stream, total: u64, rng: &mut Rng) {
    while stream.next_out < total {
        let size = if rng.next() % 64 == 0 {
            20_000
        } else {
            8 + (rng.next() % 200) as usize
        };
        match cx.send(id, message(stream.next_out, size)) {
            Ok(()) => stream.next_out += 1,
            Err(SendError::Backpressure { .. } | SendError::NotConnected) => return,
            Err(e) => panic!("send {}: {e}", stream.next_out),
        }
    }
}

#[test]
fn every_message_arrives_exactly_once_and_in_order_across_repeated_resets() {
    // Ten resets (RST both ways), about 20 ms each.
    stream_through(Mode::Reset, 10, ms(20), 3);
}

#[test]
fn every_message_arrives_exactly_once_and_in_order_across_blackholes_past_i_plus_t() {
    // Three silences of 700 ms, past I + T (400 ms): both ends declare the
    // other dead, the server holds the session, the client redials into
    // the silence until it lifts, then resumes.
    stream_through(Mode::Blackhole, 3, ms(700), 2);
}

/// Both ends stream numbered messages while the proxy applies `fault` for
/// `hold`, `faults` times, then wait for everything sent to arrive; each
/// end must have resumed at least `min_resumes` times.
fn stream_through(fault: Mode, faults: u32, hold: Duration, min_resumes: usize) {
    init_logs();
    let mut total = u64::MAX;
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
    let mut rng = Rng::new(7);
    let started = Instant::now();
    let mut next_reset = started + ms(150);
    let mut resets = 0;
    let mut statuses_at_fault = 0;
    while ends.client_stream.next_in < total || ends.server_stream.next_in < total {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stuck: server got {}, client got {}; {} resets; {:?}",
            ends.server_stream.next_in,
            ends.client_stream.next_in,
            resets,
            ends.disconnects
        );
        reactor.poll_once(&mut ends, Some(ms(5))).expect("poll");
        let mut cx = reactor.context();
        let client = ends.client.expect("dialled");
        pump(&mut cx, client, &mut ends.client_stream, total, &mut rng);
        if let Some(&server) = ends.server_ids.first() {
            pump(&mut cx, server, &mut ends.server_stream, total, &mut rng);
        }
        if resets == faults && total == u64::MAX {
            // Both ends send the same count: the larger of the two so far.
            total = ends.client_stream.next_out.max(ends.server_stream.next_out);
        }
        // The next fault comes once both ends are back from the last (or
        // 5 s after it lifted): on a loaded machine a fault that lands on
        // a redial still in flight would merge two outages into one.
        let both_back = ends.statuses.len() >= statuses_at_fault + 2
            || Instant::now() >= next_reset + Duration::from_secs(5);
        if Instant::now() >= next_reset && both_back && resets < faults {
            statuses_at_fault = ends.statuses.len();
            proxy.set_mode(fault);
            let until = Instant::now() + hold;
            while Instant::now() < until {
                reactor.poll_once(&mut ends, Some(ms(5))).expect("poll");
                // Keep sending into the fault: it is kept for the session.
                let mut cx = reactor.context();
                let client = ends.client.expect("dialled");
                pump(&mut cx, client, &mut ends.client_stream, total, &mut rng);
            }
            proxy.set_mode(Mode::PassThrough);
            resets += 1;
            next_reset = Instant::now() + ms(100 + rng.next() % 200);
        }
    }
    eprintln!(
        "{fault:?} x{resets}, statuses {:?}, disconnects {:?}, stats {:?}",
        ends.statuses,
        ends.disconnects,
        reactor.stats()
    );
    assert!(
        ends.client_stream.wrong.is_empty(),
        "client got {:?}",
        &ends.client_stream.wrong[..ends.client_stream.wrong.len().min(5)]
    );
    assert!(
        ends.server_stream.wrong.is_empty(),
        "server got {:?}",
        &ends.server_stream.wrong[..ends.server_stream.wrong.len().min(5)]
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
        resumed(true) >= min_resumes && resumed(false) >= min_resumes,
        "{:?}",
        ends.statuses
    );
    assert!(
        !ends.statuses.iter().any(|(_, s)| *s == ResumeStatus::Lost),
        "no session lost"
    );
    let stats = reactor.stats();
    assert!(
        stats.sessions_resumed >= min_resumes as u64 && stats.sessions_lost == 0,
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
    let mut rng = Rng::new(3);
    let numbers = |running: &support::Running| -> Vec<u64> {
        running
            .events
            .try_iter()
            .filter_map(|(_, seen)| match seen {
                Seen::Message(_, m) => Some(u64::from_be_bytes(m[..8].try_into().expect("8"))),
                _ => None,
            })
            .collect()
    };
    // Stream for a while, then restart the server under load.
    let until = Instant::now() + ms(300);
    while Instant::now() < until {
        reactor.poll_once(&mut ends, Some(ms(2))).expect("poll");
        let mut cx = reactor.context();
        pump(&mut cx, client, &mut ends.client_stream, u64::MAX, &mut rng);
    }
    old.handle.shutdown().expect("server alive");
    if let Some(thread) = old.thread.take() {
        thread.join().expect("server thread");
    }
    let received_before = numbers(&old);
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
        pump(&mut cx, client, &mut ends.client_stream, u64::MAX, &mut rng);
    };
    // The old server got 0..r exactly once, in order.
    let r = received_before.len() as u64;
    assert!(r > 0, "nothing reached the old server");
    assert_eq!(received_before, (0..r).collect::<Vec<_>>());
    // Handed back: a contiguous run up to the last number sent, starting
    // no later than what the old server received (nothing missing).
    let back: Vec<u64> = ends
        .handed_back
        .iter()
        .map(|m| u64::from_be_bytes(m[..8].try_into().expect("8")))
        .collect();
    let h = *back.first().expect("something was not acknowledged");
    eprintln!("old server received {r}, handed back {h}..{lost}");
    assert_eq!(
        back,
        (h..lost).collect::<Vec<_>>(),
        "in order, up to the last sent"
    );
    assert!(
        h <= r,
        "numbers {r}..{h} were neither received nor handed back"
    );
    // The new session carries on from the next number, exactly once.
    let target = lost + 200;
    while ends.client_stream.next_out < target {
        reactor.poll_once(&mut ends, Some(ms(5))).expect("poll");
        let mut cx = reactor.context();
        pump(&mut cx, client, &mut ends.client_stream, target, &mut rng);
    }
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while after.len() < 200 && Instant::now() < deadline {
        reactor.poll_once(&mut ends, Some(ms(5))).expect("poll");
        after.extend(numbers(&new));
    }
    assert_eq!(after, (lost..target).collect::<Vec<_>>());
    assert_eq!(reactor.stats().sessions_lost, 1);
}
