//! Fault injection: a tether client and a tether server talk through the
//! fault-injecting proxy of `support/proxy.rs`, which blackholes, delays,
//! throttles, resets or half-closes their connection at run time.
//!
//! Timing notation: I and T are both sides' heartbeat interval and timeout,
//! J = I/10 the largest ping jitter. A side that last received a byte at
//! `r` pings at `r + I + j` and convicts at `r + I + j + T`. When a fault
//! starts at `s`, the last byte arrived at most about one interval before
//! `s` (or a PING was sent and its PONG is caught by the fault), so the
//! detection lies in `[s + T, s + I + J + T]`, plus scheduling slack.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy::{Dir, Mode, Proxy};
use support::*;
use tether::{CloseCode, Config, ConnId, DisconnectReason};

const I: u64 = 300;
const T: u64 = 300;
/// The largest ping jitter: 10 % of I.
const J: u64 = I / 10;
/// Scheduling slack on a loaded two-core machine (tests run in parallel).
const SLACK: u64 = 400;
/// The last PING may have left up to one proxied round trip before the
/// fault began (its PONG is then caught by the fault): a lower bound of
/// exactly T, less this.
const RTT_SLOP: u64 = 20;
/// "Promptly": an RST or FIN is reported well under I + T.
const PROMPT: u64 = 250;

// ----- the proxy on its own ------------------------------------------------

/// A raw client connected through `proxy` to `target`, and the target's
/// side of that connection.
fn raw_pair(proxy: &Proxy, target: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(proxy.addr()).expect("connect to proxy");
    target.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + ms(3000);
    let server = loop {
        match target.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(ms(2)),
            Err(e) => panic!("the proxy never connected to the target: {e}"),
        }
    };
    server.set_nonblocking(false).expect("blocking");
    (client, server)
}

/// Reads whatever arrives within `limit` (until `want` bytes, EOF or error).
fn read_for(stream: &mut TcpStream, want: usize, limit: Duration) -> (Vec<u8>, Option<String>) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, None);
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (got, Some("eof".into())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return (got, Some(format!("{:?}", e.kind()))),
        }
    }
    (got, None)
}

#[test]
fn proxy_pass_through_carries_bytes_both_ways() {
    let target = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = Proxy::start(target.local_addr().expect("addr"));
    let (mut c, mut s) = raw_pair(&proxy, &target);
    let up: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.write_all(&up).expect("write up");
    assert_eq!(read_for(&mut s, up.len(), ms(3000)).0, up);
    s.write_all(b"and back").expect("write down");
    assert_eq!(read_for(&mut c, 8, ms(3000)).0, b"and back");
    // (The counters are bumped just after the write the peer already read.)
    let deadline = Instant::now() + ms(1000);
    while proxy.delivered(Dir::Down) < 8 && Instant::now() < deadline {
        std::thread::sleep(ms(1));
    }
    assert_eq!(proxy.delivered(Dir::Up), up.len() as u64);
    assert_eq!(proxy.delivered(Dir::Down), 8);
    // A FIN crosses too, and the proxied connection then ends.
    drop(c);
    assert_eq!(read_for(&mut s, 1, ms(3000)).1.as_deref(), Some("eof"));
    drop(s);
    let deadline = Instant::now() + ms(3000);
    while proxy.active() > 0 && Instant::now() < deadline {
        std::thread::sleep(ms(5));
    }
    assert_eq!(
        proxy.active(),
        0,
        "the proxied connection outlived both ends"
    );
}

#[test]
fn proxy_blackhole_carries_nothing_until_lifted_and_one_way_holds_one_way() {
    let target = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = Proxy::start(target.local_addr().expect("addr"));
    let (mut c, mut s) = raw_pair(&proxy, &target);

    proxy.set_mode(Mode::Blackhole);
    c.write_all(b"up").expect("write");
    s.write_all(b"down").expect("write");
    assert_eq!(read_for(&mut s, 2, ms(300)), (vec![], None));
    assert_eq!(read_for(&mut c, 4, ms(300)), (vec![], None));
    // Held, not dropped: lifting the blackhole delivers it.
    proxy.set_mode(Mode::PassThrough);
    assert_eq!(read_for(&mut s, 2, ms(3000)).0, b"up");
    assert_eq!(read_for(&mut c, 4, ms(3000)).0, b"down");

    proxy.set_mode(Mode::BlackholeUp);
    c.write_all(b"held").expect("write");
    s.write_all(b"flows").expect("write");
    assert_eq!(read_for(&mut c, 5, ms(3000)).0, b"flows");
    assert_eq!(read_for(&mut s, 4, ms(300)), (vec![], None));
    proxy.set_mode(Mode::BlackholeDown);
    assert_eq!(read_for(&mut s, 4, ms(3000)).0, b"held");
    s.write_all(b"held").expect("write");
    c.write_all(b"flows").expect("write");
    assert_eq!(read_for(&mut s, 5, ms(3000)).0, b"flows");
    assert_eq!(read_for(&mut c, 4, ms(300)), (vec![], None));
    proxy.set_mode(Mode::PassThrough);
    assert_eq!(read_for(&mut c, 4, ms(3000)).0, b"held");
}

#[test]
fn proxy_delay_and_throttle_shape_delivery_in_order() {
    let target = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = Proxy::start(target.local_addr().expect("addr"));
    let (mut c, mut s) = raw_pair(&proxy, &target);

    proxy.set_mode(Mode::Delay(ms(200)));
    let start = Instant::now();
    for i in 0..10u8 {
        c.write_all(&[i]).expect("write");
        std::thread::sleep(ms(10));
    }
    let (got, _) = read_for(&mut s, 10, ms(3000));
    let took = start.elapsed();
    assert_eq!(got, (0..10).collect::<Vec<u8>>(), "order kept");
    assert!(
        took >= ms(200 + 90) && took <= ms(200 + 90 + 300),
        "last byte {took:?}"
    );

    // 64 KiB at 64 KiB/s: about one second.
    proxy.set_mode(Mode::Throttle(64 * 1024));
    let big = vec![7u8; 64 * 1024];
    let start = Instant::now();
    c.write_all(&big).expect("write");
    let (got, _) = read_for(&mut s, big.len(), ms(5000));
    let took = start.elapsed();
    assert_eq!(got.len(), big.len());
    assert!(
        took >= ms(900) && took <= ms(1600),
        "64 KiB at 64 KiB/s took {took:?}"
    );
}

#[test]
fn proxy_reset_sends_rst_both_ways_and_close_sends_fin_one_way() {
    let target = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = Proxy::start(target.local_addr().expect("addr"));
    let (mut c, mut s) = raw_pair(&proxy, &target);
    proxy.set_mode(Mode::Reset);
    assert_eq!(
        read_for(&mut c, 1, ms(2000)).1.as_deref(),
        Some("ConnectionReset")
    );
    assert_eq!(
        read_for(&mut s, 1, ms(2000)).1.as_deref(),
        Some("ConnectionReset")
    );

    proxy.set_mode(Mode::PassThrough);
    let (mut c, mut s) = raw_pair(&proxy, &target);
    proxy.set_mode(Mode::CloseToClient);
    assert_eq!(read_for(&mut c, 1, ms(2000)).1.as_deref(), Some("eof"));
    // The other direction still flows.
    c.write_all(b"still up").expect("write");
    assert_eq!(read_for(&mut s, 8, ms(2000)).0, b"still up");
}

// ----- tether through the proxy ---------------------------------------------

/// A tether server, the proxy in front of it, and a tether client dialed
/// through the proxy, connected.
struct Rig {
    proxy: Proxy,
    server: Running,
    client: Running,
    link: ConnId,
}

fn rig() -> Rig {
    rig_with(config(I, T), config(I, T), true)
}

fn rig_with(server_config: Config, client_config: Config, echo: bool) -> Rig {
    init_logs();
    let server = spawn(server_config, echo, |r| {
        let l = r
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        r.local_addr(l)
    });
    let proxy = Proxy::start(server.addr.expect("bound"));
    let addr = proxy.addr();
    let client = spawn(client_config, false, move |r| {
        r.dial(addr);
        None
    });
    let (_, link) = connected(&client, ms(3000)).expect("client connected through the proxy");
    connected(&server, ms(3000)).expect("server saw the client");
    Rig {
        proxy,
        server,
        client,
        link,
    }
}

fn connected(side: &Running, limit: Duration) -> Option<(Instant, ConnId)> {
    side.wait_for(limit, |s| matches!(s, Seen::Connected(..)))
        .map(|(at, s)| (at, s.id()))
}

fn disconnected(side: &Running, limit: Duration) -> Option<(Instant, DisconnectReason)> {
    match side.wait_for(limit, |s| matches!(s, Seen::Disconnected(..)))? {
        (at, Seen::Disconnected(_, reason)) => Some((at, reason)),
        _ => unreachable!(),
    }
}

fn within(took: Duration, lo: u64, hi: u64) -> bool {
    took >= ms(lo) && took <= ms(hi)
}

impl Rig {
    /// Sends a message and waits for its echo; returns the round trip.
    fn echo(&self, tag: &str, limit: Duration) -> Option<Duration> {
        let message = Bytes::copy_from_slice(tag.as_bytes());
        let sent = Instant::now();
        self.client.handle.send(self.link, message.clone()).ok()?;
        let (at, _) = self
            .client
            .wait_for(limit, |s| matches!(s, Seen::Message(_, m) if *m == message))?;
        Some(at - sent)
    }

    /// Lifts the fault and waits for the client to be back (reconnected,
    /// when the fault cost it its connection) and echoing.
    fn recover(&self, reconnects: bool) {
        self.proxy.set_mode(Mode::PassThrough);
        let lifted = Instant::now();
        if reconnects {
            connected(&self.client, ms(5000)).expect("the client never came back after the fault");
        }
        // The first connection after the fault may still be one that was
        // set up during it; a few tries ride that out.
        for attempt in 0..5 {
            if self.echo(&format!("back {attempt}"), ms(1500)).is_some() {
                return;
            }
        }
        panic!(
            "the client reconnected but nothing echoes {:?} after the fault was lifted",
            lifted.elapsed()
        );
    }

    fn stop(self) {
        self.client.stop();
        self.server.stop();
        drop(self.proxy);
    }
}

#[test]
fn blackhole_is_detected_by_both_sides_within_i_plus_t_and_the_client_comes_back() {
    let rig = rig();
    assert!(rig.echo("before", ms(2000)).is_some());
    // Idle: heartbeats in their steady state. The fault then starts at a
    // different phase of the ping cycle in each test (here mid-cycle).
    std::thread::sleep(ms(2 * I + I / 2));
    let started = Instant::now();
    rig.proxy.set_mode(Mode::Blackhole);

    let (client_at, why) = disconnected(&rig.client, ms(I + T + J + SLACK + 2000))
        .expect("the client never noticed the blackhole");
    assert_eq!(why, DisconnectReason::HeartbeatTimeout);
    let (server_at, why) = disconnected(&rig.server, ms(I + T + J + SLACK + 2000))
        .expect("the server never noticed the blackhole");
    assert_eq!(why, DisconnectReason::HeartbeatTimeout);

    for (side, at, dir) in [
        ("client", client_at, Dir::Down),
        ("server", server_at, Dir::Up),
    ] {
        let took = at - started;
        eprintln!("blackhole: {side} detected {took:?} after the blackhole began");
        assert!(
            within(took, T - RTT_SLOP, I + T + J + SLACK),
            "{side} detected the blackhole {took:?} after it began; expected T..I+T+J = {T}..{} ms",
            I + T + J
        );
        // Exactly: I + j + T after the last byte the proxy handed it.
        let last = rig.proxy.last_delivery(dir).expect("bytes flowed before");
        assert!(
            last <= started + ms(RTT_SLOP),
            "{side} was fed during the blackhole"
        );
        let since_last = at - last;
        eprintln!("blackhole: {side} detected {since_last:?} after its last byte");
        assert!(
            within(since_last, I + T - 1, I + T + J + SLACK),
            "{side} detected {since_last:?} after its last byte; expected I+T..I+T+J"
        );
    }
    // Neither CLOSE 1001 crossed the blackhole, nor does it later: once the
    // blackhole is lifted the held CLOSE frames (and FINs) meet sockets
    // tether has already closed, and the new connection is not disturbed.
    rig.recover(true);
    for (side, running) in [("client", &rig.client), ("server", &rig.server)] {
        let late = running.collect_for(ms(300));
        assert!(
            !late.iter().any(|(_, s)| matches!(
                s,
                Seen::Disconnected(_, DisconnectReason::PeerClosed { code, .. })
                    if *code == CloseCode::GOING_AWAY
            )),
            "{side}: {late:?}"
        );
    }
    rig.stop();
}

#[test]
fn client_to_server_blackhole_is_detected_by_the_server_and_its_close_reaches_the_client() {
    // The server hears nothing: PING, T, CLOSE 1001. The client meanwhile
    // still hears the server (its PING resets the client's idle clock, and
    // the client's PONG is held), so the client does not time out: it gets
    // the server's CLOSE 1001 over the open direction.
    one_way_blackhole(Mode::BlackholeUp, ms(2 * I + I / 3));
}

#[test]
fn server_to_client_blackhole_is_detected_by_the_client_and_its_close_reaches_the_server() {
    one_way_blackhole(Mode::BlackholeDown, ms(2 * I + 2 * I / 3));
}

/// Blackholes one direction (after `settle`, so it starts at a different
/// point of the ping cycle for each direction): the side that stops
/// receiving detects it within I + T of its last byte, and its CLOSE 1001
/// reaches the other side over the open direction.
fn one_way_blackhole(mode: Mode, settle: Duration) {
    let rig = rig();
    assert!(rig.echo("before", ms(2000)).is_some());
    std::thread::sleep(settle);
    let started = Instant::now();
    rig.proxy.set_mode(mode);
    let (deaf, told, dir, name) = match mode {
        Mode::BlackholeUp => (&rig.server, &rig.client, Dir::Up, "server"),
        _ => (&rig.client, &rig.server, Dir::Down, "client"),
    };

    let (detected_at, why) =
        disconnected(deaf, ms(I + T + J + SLACK + 2000)).expect("the deaf side never noticed");
    assert_eq!(why, DisconnectReason::HeartbeatTimeout);
    let took = detected_at - started;
    let since_last = detected_at - rig.proxy.last_delivery(dir).expect("bytes flowed");
    eprintln!(
        "{mode:?}: the {name} detected {took:?} after it began, {since_last:?} after its last byte"
    );
    assert!(within(took, T - RTT_SLOP, I + T + J + SLACK), "{took:?}");
    assert!(
        within(since_last, I + T - 1, I + T + J + SLACK),
        "{since_last:?}"
    );

    let (told_at, why) = disconnected(told, ms(2000)).expect("the other side never told");
    assert!(
        matches!(&why, DisconnectReason::PeerClosed { code, .. } if *code == CloseCode::GOING_AWAY),
        "the other side should get CLOSE 1001, got {why:?}"
    );
    let lag = told_at.saturating_duration_since(detected_at);
    eprintln!("{mode:?}: CLOSE 1001 arrived {lag:?} after the detection");
    assert!(lag <= ms(PROMPT), "{lag:?}");
    rig.recover(true);
    rig.stop();
}

#[test]
fn a_delay_below_t_causes_no_false_timeout_over_many_intervals() {
    const D: u64 = T / 3;
    let rig = rig();
    rig.proxy.set_mode(Mode::Delay(ms(D)));
    let rtt = rig.echo("delayed", ms(3000)).expect("echo under delay");
    eprintln!("delay {D} ms: echo round trip {rtt:?}");
    assert!(
        within(rtt, 2 * D, 2 * D + SLACK),
        "round trip {rtt:?} under {D} ms each way"
    );
    let (up, down) = (rig.proxy.delivered(Dir::Up), rig.proxy.delivered(Dir::Down));
    // Twelve intervals of silence but for heartbeats, each answered 2D late.
    let window = ms(12 * I);
    let client_events = rig.client.collect_for(window);
    let server_events = rig.server.collect_for(ms(10));
    for (side, events) in [("client", &client_events), ("server", &server_events)] {
        assert!(
            !events
                .iter()
                .any(|(_, s)| matches!(s, Seen::Disconnected(..) | Seen::Reconnecting(..))),
            "{side} dropped a live, slow link: {events:?}"
        );
    }
    // Heartbeats did flow through the delay: at least a PING or PONG
    // (13 bytes) every I + J + 2D in each direction.
    let beats = 12 * I / (I + J + 2 * D);
    let (up, down) = (
        rig.proxy.delivered(Dir::Up) - up,
        rig.proxy.delivered(Dir::Down) - down,
    );
    eprintln!("delay {D} ms: {up} bytes up, {down} bytes down in {window:?}");
    assert!(
        up >= 13 * (beats - 1) && down >= 13 * (beats - 1),
        "{up} / {down}"
    );
    assert!(rig.echo("still", ms(3000)).is_some());
    rig.recover(false);
    rig.stop();
}

#[test]
fn a_delay_above_t_is_detected_by_both_sides() {
    const D: u64 = 2 * T;
    let rig = rig();
    assert!(rig.echo("before", ms(2000)).is_some());
    std::thread::sleep(ms(2 * I + I / 4));
    let started = Instant::now();
    rig.proxy.set_mode(Mode::Delay(ms(D)));
    for (side, running) in [("client", &rig.client), ("server", &rig.server)] {
        let (at, why) = disconnected(running, ms(I + T + J + SLACK + 2000))
            .unwrap_or_else(|| panic!("{side} never noticed a {D} ms delay"));
        assert_eq!(why, DisconnectReason::HeartbeatTimeout, "{side}");
        let took = at - started;
        eprintln!("delay {D} ms: {side} detected {took:?} after it began");
        assert!(
            within(took, T - RTT_SLOP, I + T + J + SLACK),
            "{side}: {took:?}"
        );
    }
    rig.recover(true);
    rig.stop();
}

#[test]
fn a_large_message_trickling_over_a_thin_link_is_not_mistaken_for_silence() {
    const SIZE: usize = 512 * 1024;
    const RATE: u64 = 256 * 1024;
    // The receiver (the server) runs the short heartbeat under test. The
    // sender's own PING would sit behind the message on the thin link (see
    // `a_sender_behind_a_thin_link_convicts_its_receiver`), so it gets a
    // heartbeat longer than the transfer.
    let sender = config(3000, 3000);
    let rig = rig_with(config(I, T), sender, false);
    rig.proxy.set_mode(Mode::Throttle(RATE));
    let message: Bytes = (0..SIZE)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    let sent = Instant::now();
    rig.client
        .handle
        .send(rig.link, message.clone())
        .expect("send");
    let got = rig.server.wait_for(ms(10_000), |s| {
        matches!(s, Seen::Message(..) | Seen::Disconnected(..))
    });
    let took = sent.elapsed();
    match got {
        Some((_, Seen::Message(_, m))) => assert!(m == message, "the message arrived damaged"),
        other => panic!("the receiver gave up on a trickling message: {other:?}"),
    }
    eprintln!("{SIZE} B at {RATE} B/s arrived whole after {took:?}");
    assert!(took >= ms(1800), "the throttle did not throttle: {took:?}");
    assert!(
        took > ms(2 * (I + T)),
        "the transfer must outlast I + T many times over"
    );
    // Neither end dropped the link meanwhile, nor in the next I + T.
    let events = [
        rig.client.collect_for(ms(I + T)),
        rig.server.collect_for(ms(10)),
    ];
    assert!(
        !events
            .iter()
            .flatten()
            .any(|(_, s)| matches!(s, Seen::Disconnected(..))),
        "{events:?}"
    );
    rig.proxy.set_mode(Mode::PassThrough);
    rig.stop();
}

#[test]
fn resetting_both_sides_is_reported_promptly_and_the_client_redials() {
    let rig = rig();
    assert!(rig.echo("before", ms(2000)).is_some());
    let started = Instant::now();
    rig.proxy.set_mode(Mode::Reset);
    for (side, running) in [("client", &rig.client), ("server", &rig.server)] {
        let (at, why) = disconnected(running, ms(2000))
            .unwrap_or_else(|| panic!("{side} never noticed the reset"));
        let took = at - started;
        eprintln!("reset: {side} reported {why:?} after {took:?}");
        assert!(
            matches!(why, DisconnectReason::Io(_) | DisconnectReason::PeerEof),
            "{side}: {why:?}"
        );
        assert!(took <= ms(PROMPT), "{side} took {took:?}");
    }
    rig.recover(true);
    rig.stop();
}

#[test]
fn closing_one_direction_ends_the_link_on_both_sides_and_the_client_redials() {
    let rig = rig();
    for (mode, first, second) in [
        (Mode::CloseToClient, "client", "server"),
        (Mode::CloseToServer, "server", "client"),
    ] {
        assert!(rig.echo("before", ms(2000)).is_some());
        let started = Instant::now();
        rig.proxy.set_mode(mode);
        // The side that reads EOF closes at once; its FIN then reaches the
        // other side through the direction that still flows.
        for side in [first, second] {
            let running = if side == "client" {
                &rig.client
            } else {
                &rig.server
            };
            let (at, why) = disconnected(running, ms(2000))
                .unwrap_or_else(|| panic!("{mode:?}: {side} never noticed"));
            let took = at - started;
            eprintln!("{mode:?}: {side} reported {why:?} after {took:?}");
            assert_eq!(why, DisconnectReason::PeerEof, "{mode:?}: {side}");
            assert!(took <= ms(PROMPT), "{mode:?}: {side} took {took:?}");
        }
        rig.recover(true);
    }
    rig.stop();
}

/// The same thin link with the short heartbeat on the *sending* side too:
/// the link must survive on both ends. The sender's own PING sits in the
/// kernel behind the message (it can jump tether's queue, not the
/// network's), so its PONG cannot come back within T; what keeps the
/// sender from convicting a receiver that is alive and busy reading is the
/// receiver's write-idle ACK: receiving but silent for I/2, it sends an
/// ACK, which reaches the sender over the uncongested return path.
#[test]
fn a_sender_behind_a_thin_link_keeps_its_link() {
    const SIZE: usize = 512 * 1024;
    let rig = rig_with(config(I, T), config(I, T), false);
    rig.proxy.set_mode(Mode::Throttle(256 * 1024));
    let message: Bytes = (0..SIZE)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    let sent = Instant::now();
    rig.client
        .handle
        .send(rig.link, message.clone())
        .expect("send");
    let got = rig.server.wait_for(ms(10_000), |s| {
        matches!(s, Seen::Message(..) | Seen::Disconnected(..))
    });
    match got {
        Some((_, Seen::Message(_, m))) => assert!(m == message, "the message arrived damaged"),
        other => panic!("the receiver gave up on a trickling message: {other:?}"),
    }
    let took = sent.elapsed();
    let sender = rig.client.collect_for(ms(10));
    let lost = sender
        .iter()
        .find(|(_, s)| matches!(s, Seen::Disconnected(..)));
    assert!(
        lost.is_none(),
        "the sender dropped its live receiver {:?} into a {took:?} transfer: {lost:?}",
        lost.map(|(at, _)| at.saturating_duration_since(sent))
    );
    rig.proxy.set_mode(Mode::PassThrough);
    rig.stop();
}
