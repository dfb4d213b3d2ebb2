//! How the reactor files a connection's wheel entry when traffic moves its
//! deadlines, on real loopback sockets: a deadline pushed later by the
//! peer's traffic is re-filed while the read is handled, so the entry does
//! not come due early, wake the reactor and find nothing due
//! (`ReactorStats::early_timers`). Correctness (nothing fires late) is
//! covered by the heartbeat tests; these count the wasted wake-ups.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::proto::codec::Frame;

const I: u64 = 200;
const T: u64 = 1000;

/// Handshakes a raw client with the server at `addr` (heartbeat I/T).
fn welcomed(addr: std::net::SocketAddr) -> RawPeer {
    let mut raw = RawPeer::connect(addr);
    raw.hello(I as u32, T as u32);
    assert!(
        matches!(raw.next_frame(ms(2000)), Some(Frame::Welcome(_))),
        "no WELCOME"
    );
    raw
}

/// Reads frames until `want` returns true for one, answering the server's
/// PINGs on the way; panics after `limit`.
fn read_until(raw: &mut RawPeer, limit: Duration, mut want: impl FnMut(&Frame) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match raw.next_frame(left) {
            Some(Frame::Ping(nonce)) => raw.send_frame(&Frame::Pong(nonce)),
            Some(frame) if want(&frame) => return,
            Some(_) => {}
            None => panic!("the server went quiet or closed"),
        }
    }
}

#[test]
fn a_peer_pinging_every_interval_never_wakes_the_server_early() {
    // The load bench's idle workload in small: the client PINGs one
    // interval after each PONG, so the server's idle deadline
    // (last read + I + jitter) is always pushed later just before it
    // would come due. Filed lazily, the server's entry came due early once
    // per PING; re-filed on the read, never.
    init_logs();
    let server = echo_server(config(I, T), None);
    let mut raw = welcomed(server.addr.expect("bound"));
    const PINGS: u64 = 12;
    for nonce in 1..=PINGS {
        std::thread::sleep(ms(I));
        raw.send_frame(&Frame::Ping(nonce));
        read_until(&mut raw, ms(2000), |f| *f == Frame::Pong(nonce));
    }
    let stats = server.stop().stats();
    assert!(
        stats.early_timers <= 2,
        "{} of {PINGS} intervals woke the server for a deadline the PING had moved",
        stats.early_timers
    );
}

#[test]
fn a_busy_connection_is_refiled_on_the_way_not_woken_early() {
    // A message every 10 ms for 12 intervals: the idle deadline moves on
    // every read. Left alone, the entry came due early about once per
    // interval; re-filed once 3/4 of the way there, it never does.
    init_logs();
    let server = echo_server(config(I, T), None);
    let mut raw = welcomed(server.addr.expect("bound"));
    let start = Instant::now();
    let mut sent = 0u32;
    while start.elapsed() < ms(12 * I) {
        sent += 1;
        let body = Bytes::from(sent.to_be_bytes().to_vec());
        raw.send_frame(&Frame::Data(body.clone()));
        read_until(&mut raw, ms(2000), |f| *f == Frame::Data(body.clone()));
        std::thread::sleep(ms(10));
    }
    let stats = server.stop().stats();
    assert!(sent > 50, "only {sent} messages in {:?}", start.elapsed());
    assert!(
        stats.early_timers <= 2,
        "{} early wake-ups in 12 intervals of steady traffic",
        stats.early_timers
    );
}
