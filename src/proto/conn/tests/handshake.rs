//! HELLO/WELCOME, handshake timeouts and malformed input before and after.

use super::{config, kinds, ms, Pair};
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{self, Frame, Handshake};
use crate::proto::conn::{Event, State};

#[test]
fn hello_then_welcome_connects_both_sides_with_the_session_id() {
    let pair = Pair::connected(config());
    let hello = &pair.client_sent[0].1;
    assert_eq!(
        *hello,
        Frame::Hello(Handshake {
            flags: 0,
            interval_ms: 1000,
            timeout_ms: 1000,
            session_id: 0,
            recv_seq: 0,
        })
    );
    let Frame::Welcome(welcome) = &pair.server_sent[0].1 else {
        panic!("server's first frame was {:?}", pair.server_sent[0]);
    };
    assert_eq!(welcome.session_id, 1);
    assert_eq!(pair.client.session_id(), 1);
    assert_eq!(pair.server().state(), State::Established);
    let Event::Connected(info) = &pair.client_events[0].1 else {
        panic!("{:?}", pair.client_events);
    };
    assert_eq!(info.session_id, 1);
    assert_eq!(info.interval, ms(1000));
    assert!(matches!(pair.server_events[0].1, Event::Connected(_)));
}

#[test]
fn server_closes_a_client_that_never_says_hello() {
    let mut pair = Pair::new(config(), config());
    // A raw TCP client that connects and stays silent.
    pair.client_mute = true;
    pair.run_for(ms(0));
    let accepted = pair.elapsed();
    pair.run_for(ms(499));
    assert_eq!(pair.server().state(), State::Handshaking);
    pair.run_for(ms(1));
    assert_eq!(pair.elapsed() - accepted, ms(500));
    assert!(pair.server().is_closed());
    assert_eq!(
        pair.server().close_reason(),
        Some(&DisconnectReason::HandshakeTimeout)
    );
    let (at, close) = pair.server_sent.last().unwrap();
    assert_eq!(*at - accepted, ms(500));
    assert!(matches!(close, Frame::Close { code, .. } if *code == CloseCode::PROTOCOL_ERROR));
    // The application never heard of a connection that never handshook.
    assert!(pair.server_events.is_empty());
}

#[test]
fn a_trickled_hello_does_not_extend_the_handshake_timeout() {
    let mut pair = Pair::new(config(), config());
    pair.client_mute = true;
    pair.run_for(ms(0));
    let mut hello = bytes::BytesMut::new();
    codec::encode_hello(&Handshake::default(), &mut hello);
    // One byte every 100 ms: 35 bytes would take 3.5 s; the limit is 500 ms.
    for b in hello.iter().take(5) {
        pair.inject_to_server(&[*b]);
        pair.run_for(ms(100));
    }
    assert!(pair.server().is_closed());
    assert_eq!(
        pair.server().close_reason(),
        Some(&DisconnectReason::HandshakeTimeout)
    );
}

#[test]
fn client_times_out_a_server_that_never_welcomes_and_redials() {
    let mut pair = Pair::new(config(), config());
    pair.server_frozen = true;
    pair.run_for(ms(0));
    pair.run_for(ms(500));
    assert_eq!(pair.client.state(), State::Backoff);
    assert_eq!(
        kinds(&pair.client_events),
        vec![&Event::Reconnecting {
            attempt: 1,
            delay: ms(100),
            reason: DisconnectReason::HandshakeTimeout
        }]
    );
    let last = pair.client_sent.last().unwrap();
    assert!(matches!(last.1, Frame::Close { code, .. } if code == CloseCode::PROTOCOL_ERROR));
    pair.run_for(ms(100));
    assert_eq!(pair.dials, vec![ms(0), ms(600)]);
}

#[test]
fn server_rejects_anything_but_hello_first() {
    for first in [
        Frame::Ping(1),
        Frame::Data(bytes::Bytes::from_static(b"x")),
        Frame::Welcome(Handshake::default()),
        Frame::Ack(0),
    ] {
        let mut pair = Pair::new(config(), config());
        pair.client_mute = true;
        pair.run_for(ms(0));
        let mut raw = bytes::BytesMut::new();
        first.encode(&mut raw);
        pair.inject_to_server(&raw);
        assert!(pair.server().is_closed(), "{first:?}");
        assert!(
            matches!(
                pair.server().close_reason(),
                Some(DisconnectReason::ProtocolError { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
            ),
            "{first:?}: {:?}",
            pair.server().close_reason()
        );
        let sent = &pair.server_sent;
        assert_eq!(sent.len(), 1, "{first:?}: only CLOSE goes out");
        assert!(
            matches!(sent[0].1, Frame::Close { code, .. } if code == CloseCode::PROTOCOL_ERROR)
        );
    }
}

#[test]
fn bad_magic_or_version_is_a_protocol_error() {
    let mut good = bytes::BytesMut::new();
    codec::encode_hello(&Handshake::default(), &mut good);
    for (offset, value) in [(5usize, b'X'), (9, 2u8)] {
        let mut pair = Pair::new(config(), config());
        pair.client_mute = true;
        pair.run_for(ms(0));
        let mut raw = good.to_vec();
        raw[offset] = value;
        pair.inject_to_server(&raw);
        assert!(pair.server().is_closed());
        assert!(matches!(
            pair.server_sent[0].1,
            Frame::Close { code, .. } if code == CloseCode::PROTOCOL_ERROR
        ));
    }
}

#[test]
fn client_rejects_a_ping_before_welcome_but_accepts_a_close() {
    let mut pair = Pair::new(config(), config());
    pair.server_frozen = true;
    pair.run_for(ms(0));
    let mut raw = bytes::BytesMut::new();
    codec::encode_ping(3, &mut raw);
    pair.inject_to_client(&raw);
    assert!(matches!(
        pair.client.close_reason(),
        Some(DisconnectReason::ProtocolError { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
    ));

    // A server refusing us with CLOSE 1008 instead of WELCOME.
    let mut pair = Pair::new(config(), config());
    pair.server_frozen = true;
    pair.run_for(ms(0));
    let mut raw = bytes::BytesMut::new();
    codec::encode_close(CloseCode::POLICY_VIOLATION, "full", &mut raw);
    pair.inject_to_client(&raw);
    assert_eq!(
        pair.client.close_reason(),
        Some(&DisconnectReason::PeerClosed {
            code: CloseCode::POLICY_VIOLATION,
            reason: "full".into()
        })
    );
    assert_eq!(pair.client.state(), State::Backoff);
}

#[test]
fn client_refuses_a_ping_or_data_header_before_welcome_at_once() {
    for header in [
        [0u8, 0, 0, 9, codec::Kind::Ping as u8],
        [0, 0, 0, 100, codec::Kind::Data as u8],
    ] {
        let mut pair = Pair::new(config(), config());
        pair.server_frozen = true;
        pair.run_for(ms(0));
        pair.inject_to_client(&header);
        assert!(
            matches!(
                pair.client.close_reason(),
                Some(DisconnectReason::ProtocolError { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
            ),
            "{header:?}: {:?}",
            pair.client.close_reason()
        );
        assert!(matches!(
            pair.client_sent.last(),
            Some((_, Frame::Close { code, .. })) if *code == CloseCode::PROTOCOL_ERROR
        ));
        assert_eq!(pair.client.state(), State::Backoff);
    }
}

#[test]
fn client_takes_a_close_before_welcome_byte_by_byte_and_reports_its_code() {
    // tether's own server refuses with CLOSE before any WELCOME (server
    // full, handshake timeout): the client must hear the reason, however
    // the frame is cut.
    let mut pair = Pair::new(config(), config());
    pair.server_frozen = true;
    pair.run_for(ms(0));
    let mut raw = bytes::BytesMut::new();
    codec::encode_close(CloseCode::POLICY_VIOLATION, "server full", &mut raw);
    for b in &raw[..] {
        assert_eq!(pair.client.state(), State::Handshaking);
        pair.inject_to_client(&[*b]);
    }
    assert_eq!(
        pair.client.close_reason(),
        Some(&DisconnectReason::PeerClosed {
            code: CloseCode::POLICY_VIOLATION,
            reason: "server full".into()
        })
    );
    assert_eq!(pair.client.state(), State::Backoff);
    // Nothing was sent back after the HELLO.
    assert_eq!(pair.client_sent.len(), 1);
}

#[test]
fn server_refuses_a_close_before_hello_with_1002() {
    let mut pair = Pair::new(config(), config());
    pair.client_mute = true;
    pair.run_for(ms(0));
    let mut raw = bytes::BytesMut::new();
    codec::encode_close(CloseCode::NORMAL, "", &mut raw);
    pair.inject_to_server(&raw);
    assert!(pair.server().is_closed());
    assert!(matches!(
        pair.server().close_reason(),
        Some(DisconnectReason::ProtocolError { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
    ));
    assert!(matches!(
        pair.server_sent[..],
        [(_, Frame::Close { code, .. })] if code == CloseCode::PROTOCOL_ERROR
    ));
}

#[test]
fn a_second_hello_after_the_handshake_is_a_protocol_error() {
    let mut pair = Pair::connected(config());
    let mut raw = bytes::BytesMut::new();
    codec::encode_hello(&Handshake::default(), &mut raw);
    pair.inject_to_server(&raw);
    assert!(matches!(
        pair.server().close_reason(),
        Some(DisconnectReason::ProtocolError { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
    ));
    assert!(matches!(
        pair.server_events.last().unwrap().1,
        Event::Disconnected { .. }
    ));
}

#[test]
fn an_oversized_frame_is_closed_with_1009_from_its_header_alone() {
    let small = crate::Config {
        max_frame: 1024,
        ..config()
    };
    let mut pair = Pair::new(config(), small);
    pair.run_until_established();
    // Only the 5-byte header of a 1025-byte DATA frame.
    pair.inject_to_server(&[0, 0, 4, 2, 3]);
    assert!(matches!(
        pair.server().close_reason(),
        Some(DisconnectReason::ProtocolError { code, .. }) if *code == CloseCode::TOO_LARGE
    ));
    assert!(matches!(
        pair.server_sent.last().unwrap().1,
        Frame::Close { code, .. } if code == CloseCode::TOO_LARGE
    ));
}

#[test]
fn random_garbage_never_panics_and_ends_in_a_protocol_close_or_a_wait() {
    let mut rng = crate::rng::Rng::new(99);
    for _ in 0..300 {
        let mut pair = Pair::connected(config());
        let len = rng.below_inclusive(64) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        pair.inject_to_server(&junk);
        match pair.server().state() {
            State::Established => {} // waiting for more bytes (or junk was valid)
            State::Closed => {
                let reason = pair.server().close_reason().cloned();
                assert!(
                    matches!(
                        reason,
                        Some(DisconnectReason::ProtocolError { .. })
                            | Some(DisconnectReason::PeerClosed { .. })
                    ),
                    "{reason:?}"
                );
            }
            other => panic!("unexpected state {other}"),
        }
    }
}
