//! Negotiated liveness (LIVENESS) in virtual time: the client pings at the
//! pace the server sets, a client that pings faster is a ping flood, a
//! redial negotiates again, and a server that does not set it leaves the
//! client its own.

use std::sync::Arc;
use std::time::Duration;

use super::{config, ms, Pair};
use crate::config::{ClientLiveness, Config, Heartbeat};
use crate::error::DisconnectReason;
use crate::proto::codec::{self, Frame, Handshake};
use crate::proto::conn::{Event, State};

/// A client with I = T = 1 s that adopts the server's liveness.
fn adopting() -> Config {
    Config {
        adopt_liveness: true,
        ..config()
    }
}

/// A server with its own I = T = 3 s and, if given, a client range.
fn server(range: Option<ClientLiveness>) -> Config {
    Config {
        heartbeat: Some(Heartbeat {
            interval: ms(3000),
            timeout: ms(3000),
        }),
        client_liveness: range,
        ..config()
    }
}

fn range(min_i: u64, max_i: u64, min_t: u64, max_t: u64) -> ClientLiveness {
    ClientLiveness {
        min_interval: ms(min_i),
        max_interval: ms(max_i),
        min_timeout: ms(min_t),
        max_timeout: ms(max_t),
    }
}

/// The gaps between the client's PINGs over `span` of idleness with the
/// server frozen after its WELCOME (so only the client pings).
fn client_ping_gaps(pair: &mut Pair, span: Duration) -> Vec<Duration> {
    pair.run_for(span);
    let pings = pair.client_pings();
    pings.windows(2).map(|w| w[1] - w[0]).collect()
}

fn welcome(pair: &Pair) -> Handshake {
    match pair.server_sent.first() {
        Some((_, Frame::Welcome(w))) => *w,
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

#[test]
fn the_client_pings_at_the_pace_the_server_clamps_its_proposal_to() {
    let mut pair = Pair::new(adopting(), server(Some(range(2000, 5000, 500, 4000))));
    pair.run_until_established();
    match &pair.client_sent[0].1 {
        Frame::Hello(h) => {
            assert!(h.has(Handshake::LIVENESS));
            assert_eq!((h.interval_ms, h.timeout_ms), (1000, 1000), "its proposal");
        }
        other => panic!("{other:?}"),
    }
    let w = welcome(&pair);
    assert!(w.has(Handshake::LIVENESS));
    assert_eq!((w.interval_ms, w.timeout_ms), (2000, 1000), "clamped");
    // Answer-only server: the client's PINGs come every 2 s (+ jitter up
    // to 10 %), its own 1 s no longer.
    let gaps = client_ping_gaps(&mut pair, ms(20_000));
    assert!(gaps.len() >= 5, "{gaps:?}");
    assert!(
        gaps.iter()
            .all(|g| *g >= ms(2000) && *g <= ms(2200) + ms(16)),
        "{gaps:?}"
    );
    assert_eq!(pair.client.state(), State::Established);
}

#[test]
fn a_server_without_a_range_gives_its_own_settings() {
    let mut pair = Pair::new(adopting(), server(None));
    pair.run_until_established();
    let w = welcome(&pair);
    assert!(w.has(Handshake::LIVENESS));
    assert_eq!((w.interval_ms, w.timeout_ms), (3000, 3000));
    // The server pings every 3 s too: whoever pings first resets the
    // other; each side's pings come at least 3 s apart.
    pair.run_for(ms(20_000));
    let pings: Vec<Duration> = pair.client_pings();
    assert!(!pings.is_empty());
    assert!(
        pings.windows(2).all(|w| w[1] - w[0] >= ms(3000)),
        "{pings:?}"
    );
}

#[test]
fn a_client_that_does_not_offer_or_a_welcome_without_the_flag_keeps_its_own() {
    // Not offered: the server answers as without the extension.
    let mut pair = Pair::new(config(), server(Some(range(2000, 5000, 500, 4000))));
    pair.run_until_established();
    let w = welcome(&pair);
    assert!(!w.has(Handshake::LIVENESS));
    assert_eq!(
        (w.interval_ms, w.timeout_ms),
        (3000, 3000),
        "the server's own"
    );
    // Offered, but a WELCOME without the flag (a server without the
    // extension): the client keeps I = 1 s.
    let mut pair = Pair::new(adopting(), config());
    pair.client_mute = true;
    pair.run_for(ms(1));
    let mut wire = bytes::BytesMut::new();
    codec::encode_welcome(
        &Handshake {
            interval_ms: 5000,
            timeout_ms: 5000,
            session_id: 9,
            ..Handshake::default()
        },
        &mut wire,
    );
    pair.inject_to_client(&wire);
    assert_eq!(pair.client.state(), State::Established);
    let ping_at = pair
        .client
        .timer(crate::proto::conn::Timer::Ping)
        .expect("armed");
    let after = ping_at - pair.now;
    assert!(
        after >= ms(1000) && after <= ms(1100),
        "its own 1 s, not 5 s: {after:?}"
    );
}

#[test]
fn a_client_pinging_faster_than_it_was_set_is_a_ping_flood() {
    // The server set I = 2 s; PINGs 1 s apart are strikes, and more than
    // five in a row close the connection (1008).
    let mut pair = Pair::new(adopting(), server(Some(range(2000, 5000, 500, 4000))));
    pair.run_until_established();
    pair.client_mute = true;
    let ping = |n: u64| {
        let mut b = bytes::BytesMut::new();
        codec::encode_ping(n, &mut b);
        b
    };
    for n in 0..7 {
        pair.inject_to_server(&ping(n));
        pair.run_for(ms(1000));
        if pair.server().state() != State::Established {
            break;
        }
    }
    assert_eq!(
        pair.server().close_reason(),
        Some(&DisconnectReason::PolicyViolation {
            detail: "too many pings"
        })
    );
    // At the pace it was set (2 s apart, less 10 %), no strikes.
    let mut pair = Pair::new(adopting(), server(Some(range(2000, 5000, 500, 4000))));
    pair.run_until_established();
    pair.client_mute = true;
    for n in 0..10 {
        pair.inject_to_server(&ping(n));
        pair.run_for(ms(1850));
    }
    assert_eq!(pair.server().state(), State::Established);
}

#[test]
fn a_redial_negotiates_again() {
    let mut pair = Pair::new(adopting(), server(Some(range(2000, 5000, 500, 4000))));
    pair.run_until_established();
    assert_eq!(welcome(&pair).interval_ms, 2000);
    // The server's policy changes; the link breaks and comes back.
    pair.server_config = Arc::new(server(Some(range(4000, 5000, 500, 4000))));
    pair.client.handle_io_error(
        pair.now,
        std::io::ErrorKind::ConnectionReset,
        &mut Vec::new(),
    );
    pair.server_sent.clear();
    pair.client_sent.clear();
    pair.run_until_established();
    assert_eq!(welcome(&pair).interval_ms, 4000);
    let connected: Vec<&Event> = pair
        .client_events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::Connected(_)))
        .collect();
    assert_eq!(connected.len(), 2);
    let gaps = client_ping_gaps(&mut pair, ms(30_000));
    assert!(
        gaps.iter().all(|g| *g >= ms(4000)),
        "the new pace: {gaps:?}"
    );
}
