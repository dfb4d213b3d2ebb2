//! Abusive peers on real sockets: each costs only its own connection, with
//! a typed reason and the right CLOSE code, while good peers carry on.

mod support;

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::proto::codec::Frame;
use tether::{CloseCode, ConnId, Context, DisconnectReason, Handler, Message, Reactor};

#[test]
fn a_ping_flood_is_closed_with_1008() {
    init_logs();
    let server = echo_server(config(1000, 1000), None);
    let mut raw = RawPeer::connect(server.addr.expect("bound"));
    raw.hello(0, 0);
    assert!(matches!(raw.next_frame(ms(2000)), Some(Frame::Welcome(_))));
    let mut flood = Vec::new();
    for n in 0..50u64 {
        flood.extend(frame_bytes(&Frame::Ping(n)));
    }
    raw.send_raw(&flood).expect("write");
    let (frames, eof) = raw.read_until_eof(ms(3000));
    assert!(eof.is_some());
    let pongs = frames
        .iter()
        .filter(|(_, f)| matches!(f, Frame::Pong(_)))
        .count();
    assert!(pongs <= 6, "{pongs} pongs answered to a flood");
    assert!(matches!(
        frames.last(),
        Some((_, Frame::Close { code, .. })) if *code == CloseCode::POLICY_VIOLATION
    ));
    let (_, seen) = server
        .wait_for(ms(1000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("reported");
    assert!(matches!(
        seen,
        Seen::Disconnected(_, DisconnectReason::PolicyViolation { .. })
    ));
    assert_eq!(server.stop().stats().closes.policy_violation, 1);
}

/// Echoes, but on backpressure drops the echo and records the high-water
/// mark of the connection's queued output.
struct BoundedEcho {
    max_pending: usize,
    refused: u64,
    gone: mpsc::Sender<DisconnectReason>,
}

impl Handler for BoundedEcho {
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        if cx.send(id, message).is_err() {
            self.refused += 1;
        }
        if let Some(s) = cx.conn_stats(id) {
            self.max_pending = self.max_pending.max(s.pending_output);
        }
    }
    fn on_disconnected(&mut self, _: &mut Context<'_>, _: ConnId, reason: &DisconnectReason) {
        let _ = self.gone.send(reason.clone());
    }
}

#[test]
fn a_peer_that_never_reads_gets_backpressure_then_is_closed() {
    init_logs();
    let mut cfg = config(60_000, 60_000);
    cfg.max_outbound = 256 * 1024;
    cfg.write_stall_timeout = Some(ms(500));
    let mut reactor = Reactor::with_config(cfg).expect("reactor");
    let l = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let addr = reactor.local_addr(l).expect("bound");
    let (gone_tx, gone) = mpsc::channel();
    let handle = reactor.handle();
    let server = thread::spawn(move || {
        let mut h = BoundedEcho {
            max_pending: 0,
            refused: 0,
            gone: gone_tx,
        };
        reactor.run(&mut h).expect("run");
        (h, reactor)
    });

    // The peer writes 64 KiB messages as fast as it can and never reads.
    let mut raw = RawPeer::connect(addr);
    raw.hello(0, 0);
    let chunk = frame_bytes(&Frame::Data(Bytes::from(vec![7u8; 64 * 1024])));
    let writer = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = 0usize;
        while Instant::now() < deadline {
            if raw.stream.write_all(&chunk).is_err() {
                break; // the server closed us
            }
            sent += chunk.len();
        }
        sent
    });
    let reason = gone
        .recv_timeout(Duration::from_secs(20))
        .expect("the server never gave up on the non-reading peer");
    assert_eq!(reason, DisconnectReason::WriteStalled);
    let sent = writer.join().expect("writer");
    handle.shutdown().expect("shutdown");
    let (h, reactor) = server.join().expect("server");
    assert!(h.refused > 0, "the application never saw backpressure");
    assert!(
        h.max_pending <= 256 * 1024,
        "queued output grew to {} bytes past the 256 KiB limit",
        h.max_pending
    );
    assert!(sent > 256 * 1024, "the peer only managed {sent} bytes");
    assert_eq!(reactor.stats().closes.write_stalled, 1);
}

#[test]
fn connections_beyond_the_limit_are_refused_with_1008_and_the_reactor_stays_responsive() {
    init_logs();
    let mut reactor = Reactor::with_config(config(1000, 1000)).expect("reactor");
    reactor.set_max_connections(10);
    let l = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let addr = reactor.local_addr(l).expect("bound");
    let handle = reactor.handle();
    let (tx, events) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut h = Recorder { tx, echo: true };
        reactor.run(&mut h).expect("run");
        reactor
    });
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut p = RawPeer::connect(addr);
        p.hello(0, 0);
        assert!(matches!(p.next_frame(ms(2000)), Some(Frame::Welcome(_))));
        held.push(p);
    }
    let started = Instant::now();
    for _ in 0..50 {
        let mut p = RawPeer::connect(addr);
        let (frames, eof) = p.read_until_eof(ms(2000));
        assert!(eof.is_some());
        assert!(
            matches!(frames.first(), Some((_, Frame::Close { code, reason })) if *code == CloseCode::POLICY_VIOLATION && &reason[..] == b"server full"),
            "{frames:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The held connections still work.
    held[3].send_frame(&Frame::Data(Bytes::from_static(b"ok?")));
    let mut echoed = false;
    while let Some(f) = held[3].next_frame(ms(2000)) {
        if f == Frame::Data(Bytes::from_static(b"ok?")) {
            echoed = true;
            break;
        }
    }
    assert!(echoed);
    drop(events);
    handle.shutdown().expect("shutdown");
    let reactor = server.join().expect("server");
    assert_eq!(reactor.stats().refused, 50);
    assert_eq!(reactor.stats().accepted, 10);
}

#[test]
fn a_data_header_before_hello_is_refused_at_once_not_at_the_handshake_timeout() {
    init_logs();
    let mut cfg = config(1000, 1000);
    cfg.handshake_timeout = ms(5000);
    let server = echo_server(cfg, None);
    let mut raw = RawPeer::connect(server.addr.expect("bound"));
    let started = Instant::now();
    // The header of a DATA frame of 1 MiB less one byte, then a trickle.
    raw.send_raw(&[0, 0x10, 0, 0, 3]).expect("write");
    let mut frames = Vec::new();
    let mut eof = None;
    while eof.is_none() && started.elapsed() < ms(1000) {
        if raw.send_raw(&[7]).is_err() {
            break; // closed
        }
        let (more, at) = raw.read_until_eof(ms(50));
        frames.extend(more.into_iter().map(|(_, f)| f));
        eof = at;
    }
    assert!(
        matches!(
            frames.first(),
            Some(Frame::Close { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
        ),
        "after {:?}: {frames:?}",
        started.elapsed()
    );
    // The application never heard of it.
    let events = server.collect_for(ms(100));
    assert!(events.is_empty(), "{events:?}");
    let reactor = server.stop();
    assert_eq!(reactor.stats().closes.protocol_error, 1);
}
