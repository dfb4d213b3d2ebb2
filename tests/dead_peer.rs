//! Dead-peer detection on real loopback sockets: a peer that completes the
//! handshake and then goes silent is closed within I + T, on both sides.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::*;
use tether::proto::codec::{Frame, Handshake};
use tether::{CloseCode, DisconnectReason};

const I: u64 = 300;
const T: u64 = 300;
/// Ping jitter (≤ 10 % of I) plus scheduling slack on a loaded machine.
const SLACK: u64 = I / 10 + 400;

#[test]
fn server_closes_a_raw_client_that_says_hello_then_goes_silent() {
    init_logs();
    let server = echo_server(config(I, T), None);
    let addr = server.addr.expect("bound");
    let mut raw = RawPeer::connect(addr);
    raw.hello(0, 0);
    let welcomed = Instant::now();
    let Some(Frame::Welcome(w)) = raw.next_frame(ms(2000)) else {
        panic!("no WELCOME");
    };
    assert_eq!((w.interval_ms, w.timeout_ms), (I as u32, T as u32));
    // From here on the raw client never writes: a powered-off peer.
    let (frames, eof) = raw.read_until_eof(ms(I + T + SLACK + 2000));
    let eof = eof.expect("the server never closed the silent client");
    let took = eof - welcomed;
    assert!(
        took >= ms(I + T - 20) && took <= ms(I + T + SLACK),
        "closed {took:?} after the last frame; expected I + T = {:?}",
        ms(I + T)
    );
    // Exactly one PING (never a second while one is outstanding), then
    // CLOSE 1001.
    let kinds: Vec<&Frame> = frames.iter().map(|(_, f)| f).collect();
    assert!(
        matches!(kinds[..], [Frame::Ping(_), Frame::Close { code, .. }] if *code == CloseCode::GOING_AWAY),
        "{kinds:?}"
    );
    let (_, seen) = server
        .wait_for(ms(1000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("server reported the disconnect");
    assert_eq!(
        seen,
        Seen::Disconnected(seen.id(), DisconnectReason::HeartbeatTimeout)
    );
    let reactor = server.stop();
    assert_eq!(reactor.stats().closes.heartbeat_timeout, 1);
}

#[test]
fn client_drops_a_raw_server_that_welcomes_then_goes_silent_and_redials() {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = dialer(config(I, T), addr);
    let (stream, _) = listener.accept().expect("accept");
    let mut raw = RawPeer::from_stream(stream);
    let Some(Frame::Hello(h)) = raw.next_frame(ms(2000)) else {
        panic!("no HELLO");
    };
    assert_eq!((h.interval_ms, h.timeout_ms), (I as u32, T as u32));
    raw.send_frame(&Frame::Welcome(Handshake {
        session_id: 7,
        ..Handshake::default()
    }));
    let welcomed = Instant::now();
    let (_, seen) = client
        .wait_for(ms(2000), |s| matches!(s, Seen::Connected(..)))
        .expect("client connected");
    let Seen::Connected(_, peer) = seen else {
        unreachable!()
    };
    assert_eq!(peer.session_id, 7);

    // Silent from now on: the client must give up on it within I + T...
    let (lost_at, seen) = client
        .wait_for(ms(I + T + SLACK + 2000), |s| {
            matches!(s, Seen::Disconnected(..))
        })
        .expect("client never noticed the silent server");
    assert!(matches!(
        seen,
        Seen::Disconnected(_, DisconnectReason::HeartbeatTimeout)
    ));
    let took = lost_at - welcomed;
    assert!(
        took >= ms(I + T - 20) && took <= ms(I + T + SLACK),
        "declared dead {took:?} after WELCOME"
    );
    // ...say so on the wire...
    let (frames, eof) = raw.read_until_eof(ms(2000));
    assert!(eof.is_some(), "client kept the dead socket open");
    assert!(frames
        .iter()
        .any(|(_, f)| matches!(f, Frame::Close { code, .. } if *code == CloseCode::GOING_AWAY)));
    // ...and redial after the backoff's first delay.
    listener.set_nonblocking(false).expect("blocking");
    let (_, seen) = client
        .wait_for(ms(1000), |s| matches!(s, Seen::Reconnecting(..)))
        .expect("no reconnect scheduled");
    assert!(matches!(seen, Seen::Reconnecting(_, 1, d, _) if d == ms(50)));
    let start = Instant::now();
    let (stream, _) = listener.accept().expect("redial");
    assert!(start.elapsed() < Duration::from_secs(2));
    let mut raw = RawPeer::from_stream(stream);
    assert!(matches!(raw.next_frame(ms(2000)), Some(Frame::Hello(_))));
    client.stop();
}

#[test]
fn garbage_or_an_oversized_frame_costs_only_that_connection() {
    init_logs();
    let mut cfg = config(I, T);
    cfg.max_frame = 1024;
    let server = echo_server(cfg, None);
    let addr = server.addr.expect("bound");
    let mut good = RawPeer::connect(addr);
    good.hello(0, 0);
    assert!(matches!(good.next_frame(ms(2000)), Some(Frame::Welcome(_))));

    for (bad_bytes, code) in [
        (vec![0, 0, 0, 0], CloseCode::PROTOCOL_ERROR),
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            CloseCode::PROTOCOL_ERROR,
        ),
        (
            [hello_bytes(0, 0), vec![0, 0, 4, 2, 3]].concat(),
            CloseCode::TOO_LARGE,
        ),
        (
            [hello_bytes(0, 0), vec![0, 0, 0, 2, 0x09, 0]].concat(),
            CloseCode::PROTOCOL_ERROR,
        ),
    ] {
        let mut bad = RawPeer::connect(addr);
        bad.send_raw(&bad_bytes).expect("write");
        let (frames, eof) = bad.read_until_eof(ms(2000));
        assert!(eof.is_some(), "bad peer not closed: {frames:?}");
        let last = frames.last().map(|(_, f)| f.clone());
        assert!(
            matches!(last, Some(Frame::Close { code: c, .. }) if c == code),
            "{bad_bytes:?}: {last:?}"
        );
        // The good connection still echoes.
        good.send_frame(&Frame::Data(bytes::Bytes::from_static(b"still here")));
        let mut echoed = None;
        while let Some(f) = good.next_frame(ms(2000)) {
            if let Frame::Data(d) = f {
                echoed = Some(d);
                break;
            }
            if let Frame::Ping(n) = f {
                good.send_frame(&Frame::Pong(n));
            }
        }
        assert_eq!(echoed.as_deref(), Some(&b"still here"[..]));
    }
    let reactor = server.stop();
    assert_eq!(reactor.stats().closes.protocol_error, 4);
}

/// Records what `conn_stats` says from inside `on_disconnected`.
struct AddressBook {
    tx: std::sync::mpsc::Sender<Option<std::net::SocketAddr>>,
}

impl tether::Handler for AddressBook {
    fn on_disconnected(
        &mut self,
        cx: &mut tether::Context<'_>,
        id: tether::ConnId,
        _: &DisconnectReason,
    ) {
        let _ = self.tx.send(cx.conn_stats(id).map(|s| s.peer_addr));
    }
}

#[test]
fn conn_stats_still_answer_inside_on_disconnected_for_a_dead_peer() {
    init_logs();
    let mut reactor = tether::Reactor::with_config(config(I, T)).expect("reactor");
    let l = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let addr = reactor.local_addr(l).expect("bound");
    let handle = reactor.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || reactor.run(&mut AddressBook { tx }));
    let mut raw = RawPeer::connect(addr);
    raw.hello(0, 0);
    let local = raw.stream.local_addr().expect("local addr");
    let seen = rx
        .recv_timeout(ms(I + T + SLACK + 2000))
        .expect("the silent peer was not closed");
    assert_eq!(
        seen,
        Some(local),
        "no stats for the connection being reported"
    );
    handle.shutdown().expect("shutdown");
    server.join().expect("server").expect("run");
}
