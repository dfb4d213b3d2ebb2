//! Closing: by the application, by the peer, and what may be sent.

use bytes::{Bytes, BytesMut};

use super::{config, kinds, ms, Pair};
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{self, Frame};
use crate::proto::conn::{Action, Connection, Event, SendError, State};

#[test]
fn an_application_close_flushes_messages_then_sends_close_and_never_redials() {
    let mut pair = Pair::connected(config());
    for m in [&b"one"[..], b"two", b"three"] {
        pair.client.send(Bytes::copy_from_slice(m)).unwrap();
    }
    let now = pair.now;
    let mut events = Vec::new();
    pair.client
        .close(now, CloseCode::NORMAL, "bye", &mut events);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::LocalClose(CloseCode::NORMAL)
        }]
    );
    assert_eq!(pair.client.send(Bytes::new()), Err(SendError::NotConnected));
    pair.run_for(ms(10_000));
    let server: Vec<&Event> = kinds(&pair.server_events);
    assert_eq!(
        server[1..],
        [
            &Event::Message(Bytes::from_static(b"one")),
            &Event::Message(Bytes::from_static(b"two")),
            &Event::Message(Bytes::from_static(b"three")),
            &Event::Disconnected {
                reason: DisconnectReason::PeerClosed {
                    code: CloseCode::NORMAL,
                    reason: "bye".into()
                }
            },
        ]
    );
    assert!(pair.client.is_closed());
    assert!(pair.server().is_closed());
    assert_eq!(pair.dials.len(), 1);
    // CLOSE was the last thing the client wrote.
    let Some((_, Frame::Close { code, .. })) = pair.client_sent.last() else {
        panic!("{:?}", pair.client_sent.last());
    };
    assert_eq!(*code, CloseCode::NORMAL);
}

#[test]
fn a_client_closed_by_its_server_reconnects() {
    let mut pair = Pair::connected(config());
    let now = pair.now;
    let mut scratch = Vec::new();
    pair.server_mut()
        .close(now, CloseCode::GOING_AWAY, "shutdown", &mut scratch);
    pair.run_for(ms(100));
    assert_eq!(pair.client.state(), State::Established);
    assert_eq!(pair.dials, vec![ms(0), ms(100)]);
}

#[test]
fn nothing_is_sent_after_receiving_close() {
    let mut pair = Pair::connected(config());
    pair.server_mut().send(Bytes::from_static(b"late")).unwrap();
    let now = pair.now;
    let mut raw = bytes::BytesMut::new();
    crate::proto::codec::encode_close(CloseCode::NORMAL, "", &mut raw);
    let mut events = Vec::new();
    let server = pair.server_mut();
    server.handle_input(now, &mut raw, &mut events);
    assert_eq!(server.pending_output(), 0, "queued DATA must not follow");
    assert_eq!(server.poll_action(), Some(Action::CloseSocket));
    assert!(server.is_closed());
}

#[test]
fn a_peer_that_does_not_read_is_closed_after_the_linger() {
    let t0 = std::time::Instant::now();
    let cfg = std::sync::Arc::new(config());
    let mut conn = Connection::client(cfg, 3);
    let mut events = Vec::new();
    conn.start(t0);
    assert_eq!(conn.poll_action(), Some(Action::Connect));
    conn.handle_connected(t0);
    let mut welcome = bytes::BytesMut::new();
    crate::proto::codec::encode_welcome(&crate::proto::codec::Handshake::default(), &mut welcome);
    conn.handle_input(t0, &mut welcome, &mut events);
    assert_eq!(conn.state(), State::Established);
    conn.send(Bytes::from(vec![0u8; 1000])).unwrap();
    // Nothing is ever written: the peer's window is shut.
    conn.close(t0, CloseCode::NORMAL, "", &mut events);
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(200)));
    conn.handle_timeout(t0 + ms(199), &mut events);
    assert_eq!(conn.state(), State::Closing);
    conn.handle_timeout(t0 + ms(200), &mut events);
    assert_eq!(conn.poll_action(), Some(Action::CloseSocket));
    assert!(conn.is_closed());
    assert_eq!(conn.pending_output(), 0);
}

#[test]
fn a_closing_connection_ignores_further_input() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    let now = pair.now;
    let mut events = Vec::new();
    pair.server_mut().send(Bytes::from(vec![1u8; 10])).unwrap();
    pair.server_mut()
        .close(now, CloseCode::NORMAL, "", &mut events);
    // The close is still flushing on the server; bytes keep coming.
    let server = pair.server_mut();
    assert_eq!(server.state(), State::Closing);
    let mut data = bytes::BytesMut::new();
    crate::proto::codec::encode_data(b"ignored", &mut data);
    server.handle_input(now, &mut data, &mut events);
    assert!(data.is_empty());
    assert_eq!(events.len(), 1, "{events:?}");
}

#[test]
fn send_refuses_when_not_connected_too_large_or_backed_up() {
    let cfg = crate::Config {
        max_frame: 100,
        max_outbound: 250,
        ..config()
    };
    let mut conn = Connection::client(std::sync::Arc::new(cfg.clone()), 1);
    assert_eq!(conn.send(Bytes::new()), Err(SendError::NotConnected));
    let mut pair = Pair::connected(cfg);
    assert_eq!(
        pair.client.send(Bytes::from(vec![0u8; 101])),
        Err(SendError::TooLarge { len: 101, max: 100 })
    );
    pair.client_mute = true; // keep the output queued
    pair.client.send(Bytes::from(vec![0u8; 100])).unwrap();
    pair.client.send(Bytes::from(vec![0u8; 100])).unwrap();
    assert_eq!(pair.client.pending_output(), 210);
    assert_eq!(
        pair.client.send(Bytes::from(vec![0u8; 40])),
        Err(SendError::Backpressure {
            queued: 210,
            limit: 250
        })
    );
    pair.client.send(Bytes::from(vec![0u8; 35])).unwrap();
}

#[test]
fn eof_and_io_errors_are_reported_as_such() {
    for (eof, want) in [
        (true, DisconnectReason::PeerEof),
        (
            false,
            DisconnectReason::Io(std::io::ErrorKind::ConnectionReset),
        ),
    ] {
        let mut pair = Pair::connected(config());
        let now = pair.now;
        let mut events = Vec::new();
        let server = pair.server_mut();
        if eof {
            server.handle_eof(now, &mut events);
        } else {
            server.handle_io_error(now, std::io::ErrorKind::ConnectionReset, &mut events);
        }
        assert_eq!(events, vec![Event::Disconnected { reason: want }]);
        assert_eq!(server.poll_action(), Some(Action::CloseSocket));
        assert!(server.is_closed());
        assert_eq!(server.poll_timeout(), None);
    }
}

#[test]
fn a_fresh_reply_run_is_sent_counted_and_trimmed_like_queued_messages() {
    // The reactor lends a fresh run for the first answer of a read; what it
    // appends must leave as `send` would have queued it: in order, counted,
    // logged by a resumed session, with the trim timer armed to give the
    // log's buffer back once idle.
    let mut pair = Pair::connected(super::resume::resume_config());
    let c = &mut pair.client;
    assert_eq!(
        c.timer(crate::proto::conn::Timer::Trim),
        None,
        "nothing sent yet"
    );
    let sent = c.stats().messages_sent;
    let (mut run, room, max_payload) = c.lend_fresh_run().expect("established, nothing queued");
    assert!(room >= 2 * 69 && max_payload >= 64, "{room} {max_payload}");
    for byte in [1u8, 2] {
        run.extend_from_slice(&codec::data_header(64));
        run.extend_from_slice(&[byte; 64]);
    }
    c.return_run(run, 0, 2);
    assert_eq!(c.stats().messages_sent, sent + 2);
    assert!(
        c.timer(crate::proto::conn::Timer::Trim).is_some(),
        "trim timer armed"
    );
    // With DATA queued, a fresh run is refused (the open run is lent instead).
    assert!(c.lend_fresh_run().is_none());
    let mut wire = BytesMut::new();
    c.transmit_into(&mut wire, &mut Vec::new());
    let d = codec::Decoder::new(1024);
    for byte in [1u8, 2] {
        match d.decode(&mut wire) {
            Ok(Some(Frame::Data(p))) => assert_eq!(&p[..], &[byte; 64][..]),
            other => panic!("{other:?}"),
        }
    }
    assert!(wire.is_empty());
}

/// A server connection, established, with `replies` queued for its peer
/// and nothing written yet.
fn server_with_replies(t0: std::time::Instant, replies: &[&'static [u8]]) -> Connection {
    let mut conn = Connection::server(std::sync::Arc::new(config()), t0, 9, 2);
    let mut hello = BytesMut::new();
    codec::encode_hello(&codec::Handshake::default(), &mut hello);
    conn.handle_input(t0, &mut hello, &mut Vec::new());
    conn.transmit_into(&mut BytesMut::new(), &mut Vec::new()); // the WELCOME
    for reply in replies {
        conn.send(Bytes::from_static(reply)).unwrap();
    }
    conn
}

#[test]
fn a_peer_that_half_closes_gets_the_replies_queued_for_it_then_the_close() {
    let t0 = std::time::Instant::now();
    let mut conn = server_with_replies(t0, &[b"one", b"two"]);
    let mut events = Vec::new();
    conn.handle_eof(t0, &mut events);
    // Reported at once, as ever; the socket stays for the replies only.
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::PeerEof
        }]
    );
    assert_eq!(conn.state(), State::Closing);
    assert!(conn.is_read_closed());
    assert_eq!(conn.poll_action(), None);
    assert_eq!(
        conn.send(Bytes::from_static(b"more")),
        Err(SendError::NotConnected)
    );
    // The end of stream again (a driver that reads once more): nothing.
    conn.handle_eof(t0 + ms(1), &mut events);
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(conn.poll_action(), None);
    // Written in two goes; the socket closes after the last byte.
    let mut iov = [std::io::IoSlice::new(&[]); 4];
    let n = conn.transmit(&mut iov);
    let mut out: BytesMut = iov[..n].iter().flat_map(|s| s.to_vec()).collect();
    conn.advance_transmit(t0 + ms(1), 5, &mut Vec::new());
    assert_eq!(conn.state(), State::Closing);
    conn.advance_transmit(t0 + ms(1), out.len() - 5, &mut Vec::new());
    assert_eq!(conn.poll_action(), Some(Action::CloseSocket));
    assert!(conn.is_closed());
    assert!(!conn.is_read_closed());
    // The replies and nothing else: no CLOSE after a peer's EOF.
    let decoder = codec::Decoder::new(1024);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = decoder.decode(&mut out) {
        frames.push(frame);
    }
    assert_eq!(
        frames,
        vec![
            Frame::Data(Bytes::from_static(b"one")),
            Frame::Data(Bytes::from_static(b"two"))
        ]
    );
    assert_eq!(events.len(), 1, "{events:?}");
}

#[test]
fn replies_a_half_closed_peer_does_not_take_are_dropped_at_the_linger() {
    let t0 = std::time::Instant::now();
    let mut conn = server_with_replies(t0, &[b"stuck"]);
    let mut events = Vec::new();
    conn.handle_eof(t0, &mut events);
    assert_eq!(conn.state(), State::Closing);
    // Nothing is ever written: the linger (200 ms) ends it.
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(200)));
    conn.handle_timeout(t0 + ms(199), &mut events);
    assert_eq!(conn.state(), State::Closing);
    conn.handle_timeout(t0 + ms(200), &mut events);
    assert_eq!(conn.poll_action(), Some(Action::CloseSocket));
    assert!(conn.is_closed());
    assert_eq!(conn.pending_output(), 0);
    // The end once, and the reply handed back.
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1],
        Event::Undelivered {
            messages: vec![bytes::Bytes::from_static(b"stuck")],
            cause: crate::proto::conn::UndeliveredCause::Dropped,
        }
    );
}

#[test]
fn a_write_that_fails_after_a_half_close_closes_at_once() {
    let t0 = std::time::Instant::now();
    let mut conn = server_with_replies(t0, &[b"reply"]);
    let mut events = Vec::new();
    conn.handle_eof(t0, &mut events);
    conn.handle_io_error(t0, std::io::ErrorKind::BrokenPipe, &mut events);
    assert_eq!(conn.poll_action(), Some(Action::CloseSocket));
    assert!(conn.is_closed());
    // Reported once, as the end of stream it was; the reply it could
    // not write is handed back.
    assert_eq!(
        events,
        vec![
            Event::Disconnected {
                reason: DisconnectReason::PeerEof
            },
            Event::Undelivered {
                messages: vec![bytes::Bytes::from_static(b"reply")],
                cause: crate::proto::conn::UndeliveredCause::Dropped,
            }
        ]
    );
}
