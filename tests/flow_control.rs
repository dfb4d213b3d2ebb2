//! Flow control an application can use: a paused connection is not read
//! (TCP pushes back on its peer), a resumed one reads what waited, and the
//! echo server of the examples never drops an echo to a peer that does not
//! read.

mod support;

#[path = "../examples/common/echo.rs"]
mod echo;

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::proto::codec::Frame;
use tether::{ConnId, Context, Handler, Message};

/// Pauses a connection at its message "pause" and records every message.
#[derive(Default)]
struct Pauser {
    got: Vec<(ConnId, Bytes)>,
}

impl Handler for Pauser {
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        if message[..] == b"pause"[..] {
            assert!(cx.pause_reading(id));
        }
        self.got.push((id, message.into_bytes()));
    }
}

fn data(payload: &[u8]) -> Vec<u8> {
    frame_bytes(&Frame::Data(Bytes::copy_from_slice(payload)))
}

#[test]
fn a_paused_connection_is_not_read_until_resumed_then_reads_what_waited() {
    let (mut reactor, addr, _) = listening(config(60_000, 60_000));
    let mut paused = RawPeer::connect(addr);
    paused.hello(60_000, 60_000);
    let mut other = RawPeer::connect(addr);
    other.hello(60_000, 60_000);
    let mut h = Pauser::default();
    paused.send_raw(&data(b"pause")).expect("write");
    turn_until(&mut reactor, &mut h, |h| h.got.len() == 1);
    let id = h.got[0].0;
    // Written while paused, then the end of the stream.
    paused.send_raw(&data(b"one")).expect("write");
    paused.send_raw(&data(b"two")).expect("write");
    paused
        .stream
        .shutdown(std::net::Shutdown::Write)
        .expect("FIN");
    // The other connection, written after, is read: the paused one's bytes
    // (written before, on loopback) were there to read too.
    other.send_raw(&data(b"other")).expect("write");
    turn_until(&mut reactor, &mut h, |h| h.got.len() == 2);
    assert_ne!(h.got[1].0, id, "only the other connection was read");
    for _ in 0..10 {
        reactor
            .poll_once(&mut h, Some(Duration::from_millis(5)))
            .expect("poll");
    }
    assert_eq!(h.got.len(), 2, "nothing read from the paused connection");
    assert!(reactor.conn_stats(id).is_some(), "its FIN not read either");

    assert!(reactor.context().resume_reading(id));
    turn_until(&mut reactor, &mut h, |h| h.got.len() == 4);
    let from_paused: Vec<&[u8]> = h.got[2..].iter().map(|(_, m)| &m[..]).collect();
    assert_eq!(from_paused, [&b"one"[..], b"two"]);
    // ... and its end, which raised no edge of its own while paused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while reactor.conn_stats(id).is_some() {
        assert!(Instant::now() < deadline, "the FIN read on resume");
        reactor
            .poll_once(&mut h, Some(Duration::from_millis(10)))
            .expect("poll");
    }
}

#[test]
fn the_echo_server_never_drops_an_echo_to_a_peer_that_does_not_read() {
    let mut cfg = config(60_000, 60_000);
    cfg.max_outbound = 64 * 1024;
    let (mut reactor, addr, _) = listening(cfg);
    let mut echo = echo::Echo::default();
    let mut peer = RawPeer::connect(addr);
    peer.hello(60_000, 60_000);
    // Writes numbered 512-byte messages without reading, until TCP pushes
    // back (the server stopped reading it).
    let mut writer = peer.stream.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let writing = std::thread::spawn(move || {
        let mut n: u32 = 0;
        loop {
            let mut payload = vec![(n % 251) as u8; 512];
            payload[..4].copy_from_slice(&n.to_be_bytes());
            match writer.write_all(&data(&payload)) {
                Ok(()) => n += 1,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    // A write timed out part way: the message it cut is
                    // not counted; nothing more is written.
                    return (n, writer);
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !writing.is_finished() {
        assert!(Instant::now() < deadline, "TCP never pushed back");
        reactor
            .poll_once(&mut echo, Some(Duration::from_millis(10)))
            .expect("poll");
    }
    let (written, _writer) = writing.join().expect("writer");
    assert!(written > 1000, "{written} messages before the push-back");
    // Now the peer reads: every whole message it wrote comes back, in
    // order, none missing.
    let reading = std::thread::spawn(move || {
        let mut next = 0u32;
        while next < written {
            match peer.next_frame(Duration::from_secs(5)) {
                Some(Frame::Data(m)) => {
                    assert_eq!(m.len(), 512);
                    assert_eq!(u32::from_be_bytes([m[0], m[1], m[2], m[3]]), next);
                    next += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        next
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reading.is_finished() {
        assert!(Instant::now() < deadline, "echoes did not come back");
        reactor
            .poll_once(&mut echo, Some(Duration::from_millis(10)))
            .expect("poll");
    }
    assert_eq!(
        reading.join().expect("reader"),
        written,
        "every echo, in order"
    );
}
