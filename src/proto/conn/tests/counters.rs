//! Counters never overflow: those a peer drives frame by frame count on
//! past `u32::MAX`, the others stop at their maximum (or, for
//! `disconnects`, wrap) instead of panicking.

use bytes::{Bytes, BytesMut};

use super::{config, ms, Pair};
use crate::proto::codec;
use crate::proto::conn::{State, Timer};

#[test]
fn counters_of_frames_received_go_past_u32_max() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    let max = u64::from(u32::MAX);
    let server = pair.server_mut();
    server.stats.pings_received = u32::MAX.into();
    server.stats.pongs_received = u32::MAX.into();
    server.stats.acks_received = u32::MAX.into();
    let mut wire = BytesMut::new();
    codec::encode_ping(1, &mut wire);
    codec::encode_pong(2, &mut wire);
    codec::encode_ack(3, &mut wire);
    pair.inject_to_server(&wire);
    let s = pair.server().stats();
    assert_eq!(s.pings_received, max + 1);
    assert_eq!(s.pongs_received, max + 1);
    assert_eq!(s.acks_received, max + 1);
    assert_eq!(pair.server().state(), State::Established);
}

#[test]
fn pings_and_acks_sent_stop_at_the_maximum() {
    let mut pair = Pair::connected(config());
    pair.client.stats.pings_sent = u32::MAX;
    pair.server_mut().stats.acks_sent = u32::MAX;
    // The client talks once, the server ACKs it; then both go idle and
    // the client pings first (the server's pings are not counted here).
    pair.client.send(Bytes::from_static(b"hello?")).unwrap();
    pair.run_for(ms(3000));
    assert!(!pair.client_pings().is_empty(), "the client never pinged");
    assert!(
        pair.server_sent
            .iter()
            .any(|(_, f)| matches!(f, codec::Frame::Ack(_))),
        "the server never ACKed"
    );
    assert_eq!(pair.client.stats().pings_sent, u32::MAX);
    assert_eq!(pair.server().stats().acks_sent, u32::MAX);
    assert_eq!(pair.client.state(), State::Established);
}

#[test]
fn stalls_forgiven_and_drain_extensions_stop_at_the_maximum() {
    // A late deadline, forgiven.
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    pair.run_for(ms(1500));
    let server = pair.server_mut();
    server.stats.stalls_forgiven = u32::MAX;
    let dead_at = server.timer(Timer::Dead).unwrap();
    server.handle_timeout(dead_at + ms(2000), &mut Vec::new());
    assert_eq!(server.stats().stalls_forgiven, u32::MAX);
    assert_eq!(server.state(), State::Established);

    // A deadline extended because the peer keeps taking our output.
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    let now = pair.now;
    let server = pair.server_mut();
    server.stats.drain_extensions = u32::MAX;
    server.send(Bytes::from(vec![1u8; 100_000])).unwrap();
    server.send(Bytes::from(vec![2u8; 100_000])).unwrap();
    server.advance_transmit(now, 20_000, &mut Vec::new());
    server.handle_write_blocked(now);
    let ping_at = server.timer(Timer::Ping).unwrap();
    server.handle_timeout(ping_at, &mut Vec::new());
    // The first message and the PING out, then more taken after it.
    server.advance_transmit(ping_at + ms(300), 80_005 + 13, &mut Vec::new());
    server.handle_write_blocked(ping_at + ms(300));
    server.advance_transmit(ping_at + ms(500), 20_000, &mut Vec::new());
    server.handle_write_blocked(ping_at + ms(500));
    server.handle_timeout(ping_at + ms(1000), &mut Vec::new());
    assert_eq!(
        server.timer(Timer::Dead),
        Some(ping_at + ms(1500)),
        "extended"
    );
    assert_eq!(server.stats().drain_extensions, u32::MAX);
    assert_eq!(server.state(), State::Established);
}

#[test]
fn handshakes_stop_at_the_maximum_and_disconnects_wrap() {
    let mut pair = Pair::connected(config());
    pair.client.stats.handshakes = u32::MAX;
    pair.client.stats.disconnects = u32::MAX;
    // The server hangs up; the client redials and handshakes again.
    let mut scratch = Vec::new();
    let now = pair.now;
    pair.server_mut().handle_eof(now, &mut scratch);
    pair.run_until(ms(5000), |p| {
        p.client.stats().disconnects != u32::MAX && p.client.state() == State::Established
    });
    assert_eq!(pair.client.state(), State::Established);
    assert_eq!(pair.dials.len(), 2);
    assert_eq!(pair.client.stats().handshakes, u32::MAX);
    // Compared for change by the reactor, which counts closes by reason:
    // wrapping keeps every ending visible.
    assert_eq!(pair.client.stats().disconnects, 0);
}
