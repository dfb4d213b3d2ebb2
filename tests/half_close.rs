//! A peer that half-closes — sends its requests, then ends its side of the
//! stream — still gets every reply already queued for it before the socket
//! closes.

mod support;

use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::proto::codec::Frame;
use tether::{Config, DisconnectReason};

/// `count` DATA frames of `size` bytes, each telling its number.
fn requests(count: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for n in 0..count {
        let mut payload = vec![(n % 251) as u8; size];
        payload[..8].copy_from_slice(&(n as u64).to_be_bytes());
        out.extend(frame_bytes(&Frame::Data(Bytes::from(payload))));
    }
    out
}

/// The DATA frames among `frames`, checked to be the echoes of
/// `requests(count, size)` in order.
fn echoes(frames: &[(Instant, Frame)], size: usize) -> usize {
    let mut n = 0u64;
    for (_, frame) in frames {
        if let Frame::Data(payload) = frame {
            assert_eq!(payload.len(), size);
            assert_eq!(payload[..8], n.to_be_bytes(), "echo out of order");
            n += 1;
        }
    }
    n as usize
}

#[test]
fn replies_queued_when_the_peer_half_closes_are_delivered_before_the_close() {
    init_logs();
    let config = Config::builder().no_heartbeat().build().expect("config");
    let (mut reactor, addr, _handle) = listening(config);
    let (tx, events) = mpsc::channel();
    let mut echo = Recorder { tx, echo: true };
    let mut raw = RawPeer::connect(addr);
    raw.hello(0, 0);
    // The requests and the FIN are all in before the server reads: the
    // read that delivers them is followed at once by the one that finds
    // the end of the stream, with the replies still queued.
    const COUNT: usize = 200;
    raw.send_raw(&requests(COUNT, 100)).expect("write");
    raw.stream.shutdown(Shutdown::Write).expect("shutdown");
    thread::sleep(ms(50));
    let deadline = Instant::now() + ms(2000);
    let mut ended = None;
    while (ended.is_none() || reactor.stats().connections > 0) && Instant::now() < deadline {
        reactor.poll_once(&mut echo, Some(ms(10))).expect("poll");
        while let Ok((_, seen)) = events.try_recv() {
            if let Seen::Disconnected(_, reason) = seen {
                ended = Some(reason);
            }
        }
    }
    // Reported as the peer's end of stream, as ever.
    assert_eq!(ended, Some(DisconnectReason::PeerEof));
    assert_eq!(
        reactor.stats().connections,
        0,
        "the socket was never closed"
    );
    let (frames, eof) = raw.read_until_eof(ms(2000));
    assert!(eof.is_some(), "no EOF");
    assert_eq!(echoes(&frames, 100), COUNT, "replies lost");
    assert!(matches!(frames.first(), Some((_, Frame::Welcome(_)))));
    // Nothing but the replies: the peer ended without CLOSE, so no CLOSE.
    assert_eq!(frames.len(), COUNT + 1, "{:?}", frames.last());
    assert_eq!(reactor.stats().closes.peer_eof, 1);
}

#[test]
fn a_half_closing_peer_gets_megabytes_of_replies_through_a_full_socket() {
    init_logs();
    let server = echo_server(config(60_000, 60_000), None);
    let mut raw = RawPeer::connect(server.addr.expect("bound"));
    raw.hello(0, 0);
    // 2 MiB of requests, then the FIN, before reading any reply: the
    // replies back up in the server's output and drain only as this
    // client reads, long after the server saw the end of the stream.
    const COUNT: usize = 64;
    const SIZE: usize = 32 * 1024;
    raw.send_raw(&requests(COUNT, SIZE)).expect("write");
    raw.stream.shutdown(Shutdown::Write).expect("shutdown");
    let (frames, eof) = raw.read_until_eof(Duration::from_secs(5));
    assert!(eof.is_some(), "no EOF");
    assert_eq!(echoes(&frames, SIZE), COUNT, "replies lost");
    assert_eq!(frames.len(), COUNT + 1);
    let (_, seen) = server
        .wait_for(ms(1000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("reported");
    assert!(matches!(
        seen,
        Seen::Disconnected(_, DisconnectReason::PeerEof)
    ));
    assert_eq!(server.stop().stats().closes.peer_eof, 1);
}
