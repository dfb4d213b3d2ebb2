//! Limits against abusive peers: ping floods and peers that do not read.

use bytes::{Bytes, BytesMut};

use super::{config, ms, Pair};
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{self, Frame};
use crate::proto::conn::{Action, Event, State, Timer};

fn ping(nonce: u64) -> BytesMut {
    let mut b = BytesMut::new();
    codec::encode_ping(nonce, &mut b);
    b
}

#[test]
fn a_ping_flood_is_closed_with_1008() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    // Five strikes are tolerated: PINGs 10 ms apart.
    for n in 0..6 {
        pair.inject_to_server(&ping(n));
        pair.run_for(ms(10));
        assert_eq!(
            pair.server().state(),
            State::Established,
            "closed after {n} pings"
        );
    }
    pair.inject_to_server(&ping(6));
    assert_eq!(
        pair.server().close_reason(),
        Some(&DisconnectReason::PolicyViolation {
            detail: "too many pings"
        })
    );
    let (_, last) = pair.server_sent.last().unwrap();
    assert!(matches!(last, Frame::Close { code, .. } if *code == CloseCode::POLICY_VIOLATION));
    let pongs = pair
        .server_sent
        .iter()
        .filter(|(_, f)| matches!(f, Frame::Pong(_)))
        .count();
    assert_eq!(pongs, 6, "the flooding PING itself is not answered");
}

#[test]
fn pings_at_a_sane_rate_are_never_strikes() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    for n in 0..50 {
        pair.inject_to_server(&ping(n));
        pair.run_for(ms(100));
    }
    assert_eq!(pair.server().state(), State::Established);
    // And a burst that stays within the strikes is forgiven by one
    // well-spaced PING.
    for round in 0..3 {
        for n in 0..5 {
            pair.inject_to_server(&ping(100 + round * 10 + n));
            pair.run_for(ms(1));
        }
        pair.run_for(ms(200));
    }
    assert_eq!(pair.server().state(), State::Established);
}

#[test]
fn the_ping_flood_limit_can_be_turned_off() {
    let cfg = crate::Config {
        ping_flood: None,
        ..config()
    };
    let mut pair = Pair::connected(cfg);
    pair.client_mute = true;
    for n in 0..100 {
        pair.inject_to_server(&ping(n));
    }
    assert_eq!(pair.server().state(), State::Established);
}

#[test]
fn a_peer_that_does_not_read_is_closed_after_the_write_stall_timeout() {
    let cfg = crate::Config {
        write_stall_timeout: Some(ms(3000)),
        heartbeat: None, // the peer keeps talking to us; only writes stall
        ..config()
    };
    let mut pair = Pair::connected(cfg);
    pair.client_mute = true;
    let t0 = pair.now;
    let mut events = Vec::new();
    let server = pair.server_mut();
    server.send(Bytes::from(vec![0u8; 1000])).unwrap();
    // The socket takes 100 bytes, then would block.
    server.advance_transmit(t0, 100, &mut Vec::new());
    server.handle_write_blocked(t0);
    assert_eq!(server.timer(Timer::WriteStall), Some(t0 + ms(3000)));
    // Some progress within the first window: not a stall yet.
    server.advance_transmit(t0, 50, &mut Vec::new());
    server.handle_timeout(t0 + ms(3000), &mut events);
    assert_eq!(server.state(), State::Established);
    assert_eq!(server.timer(Timer::WriteStall), Some(t0 + ms(6000)));
    // Then nothing for a whole window.
    server.handle_timeout(t0 + ms(5999), &mut events);
    assert_eq!(server.state(), State::Established);
    server.handle_timeout(t0 + ms(6000), &mut events);
    assert_eq!(
        events,
        vec![
            Event::Disconnected {
                reason: DisconnectReason::WriteStalled
            },
            // The message partly written is handed back.
            Event::Undelivered {
                messages: vec![Bytes::from(vec![0u8; 1000])],
                cause: crate::proto::conn::UndeliveredCause::Dropped,
            }
        ]
    );
    assert_eq!(server.poll_action(), Some(Action::CloseSocket));
    assert!(server.is_closed());
}

#[test]
fn output_that_drains_disarms_nothing_and_never_stalls() {
    let cfg = crate::Config {
        write_stall_timeout: Some(ms(1000)),
        ..config()
    };
    let mut pair = Pair::connected(cfg);
    let t0 = pair.now;
    let mut events = Vec::new();
    let server = pair.server_mut();
    server.send(Bytes::from(vec![0u8; 10])).unwrap();
    server.handle_write_blocked(t0);
    server.advance_transmit(t0, 15, &mut Vec::new()); // all of it, later
    server.handle_timeout(t0 + ms(1000), &mut events);
    assert!(events.is_empty());
    assert_eq!(server.state(), State::Established);
    assert_eq!(server.timer(Timer::WriteStall), None);
}

#[test]
fn the_largest_strike_limit_is_enforced_exactly() {
    let max_strikes = crate::config::PingFlood::MAX_STRIKES;
    let cfg = crate::Config {
        ping_flood: Some(crate::config::PingFlood {
            min_interval: ms(100),
            max_strikes,
        }),
        ..config()
    };
    assert_eq!(cfg.validate(), Ok(()));
    let mut pair = Pair::connected(cfg);
    pair.client_mute = true;
    // The first PING is no strike; the next `max_strikes` are tolerated.
    for n in 0..=u64::from(max_strikes) {
        pair.inject_to_server(&ping(n));
        assert_eq!(pair.server().state(), State::Established, "after {n}");
    }
    pair.inject_to_server(&ping(1_000));
    assert_eq!(
        pair.server().close_reason(),
        Some(&DisconnectReason::PolicyViolation {
            detail: "too many pings"
        })
    );
}

#[test]
fn the_largest_output_limit_is_usable() {
    // No limit to speak of: a PING is answered and a message queued, with
    // no arithmetic overflow on the way.
    let cfg = crate::Config {
        max_outbound: usize::MAX,
        ..config()
    };
    assert_eq!(cfg.validate(), Ok(()));
    let mut pair = Pair::connected(cfg);
    pair.client_mute = true;
    pair.inject_to_server(&ping(1));
    assert_eq!(pair.server().stats().pings_received, 1);
    assert!(pair.server_sent.iter().any(|(_, f)| *f == Frame::Pong(1)));
    assert_eq!(pair.server_mut().send(Bytes::from_static(b"hi")), Ok(()));
    assert_eq!(pair.client.send(Bytes::from_static(b"hi")), Ok(()));
}
