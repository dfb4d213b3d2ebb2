//! Nothing lost silently: messages a connection accepted and then cannot
//! send are handed back in order, and a sender refused with backpressure
//! hears when there is room again.

use std::io;

use bytes::{Bytes, BytesMut};

use super::{config, ms, Pair};
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::conn::{Event, SendError, State, UndeliveredCause};

fn msg(tag: u8, len: usize) -> Bytes {
    Bytes::from(vec![tag; len])
}

fn undelivered(events: &[Event]) -> Vec<Bytes> {
    events
        .iter()
        .flat_map(|e| match e {
            Event::Undelivered {
                messages,
                cause: UndeliveredCause::Dropped,
            } => messages.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// A server connection with three messages queued, the first partly
/// written, and its client muted (the test plays the peer).
fn loaded() -> (Pair, Vec<Bytes>) {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    let sent = vec![msg(1, 2000), msg(2, 10), msg(3, 3000)];
    let server = pair.server_mut();
    for m in &sent {
        server.send(m.clone()).unwrap();
    }
    server.send_slice(b"four").unwrap();
    let now = pair.now;
    pair.server_mut()
        .advance_transmit(now, 100, &mut Vec::new());
    (pair, sent)
}

#[test]
fn a_reset_hands_back_every_message_not_written_whole() {
    let (mut pair, mut sent) = loaded();
    sent.push(Bytes::from_static(b"four"));
    let now = pair.now;
    let mut events = Vec::new();
    let server = pair.server_mut();
    server.handle_io_error(now, io::ErrorKind::ConnectionReset, &mut events);
    assert_eq!(
        events[0],
        Event::Disconnected {
            reason: DisconnectReason::Io(io::ErrorKind::ConnectionReset)
        }
    );
    assert_eq!(
        undelivered(&events),
        sent,
        "all of them, the partly written one first"
    );
    assert_eq!(server.stats().messages_undelivered, 4);
    assert_eq!(server.pending_output(), 0);
}

#[test]
fn a_protocol_error_hands_back_what_it_will_not_send_and_finishes_the_rest() {
    let (mut pair, sent) = loaded();
    // A frame of an unknown kind: CLOSE 1002 goes out after the frame
    // partly written, the rest is dropped.
    let now = pair.now;
    let mut events = Vec::new();
    let server = pair.server_mut();
    server.handle_input(
        now,
        &mut BytesMut::from(&[0, 0, 0, 1, 0x7F][..]),
        &mut events,
    );
    assert_eq!(server.state(), State::Closing);
    // The rest of the first message (1905 bytes), then CLOSE (7 bytes and
    // its reason).
    let close = server.pending_output() - 1905;
    assert!((7..=7 + 123).contains(&close), "{close}");
    // The rest are withheld until the socket goes, so that, should the
    // first not be finished, it comes back ahead of them.
    assert!(undelivered(&events).is_empty());
    // It is finished: the socket closes and the rest come back, in order.
    let mut wire = BytesMut::new();
    server.transmit_into(&mut wire, &mut events);
    assert!(server.is_closed());
    let mut want = sent[1..].to_vec();
    want.push(Bytes::from_static(b"four"));
    assert_eq!(undelivered(&events), want);
}

#[test]
fn a_close_whose_linger_runs_out_hands_back_what_is_still_queued() {
    let (mut pair, mut sent) = loaded();
    sent.push(Bytes::from_static(b"four"));
    let now = pair.now;
    let mut events = Vec::new();
    let server = pair.server_mut();
    server.close(now, CloseCode::NORMAL, "bye", &mut events);
    assert!(undelivered(&events).is_empty(), "a close flushes first");
    // The peer reads nothing; the linger (200 ms) ends it.
    server.handle_timeout(now + ms(200), &mut events);
    assert!(server.is_closed());
    assert_eq!(undelivered(&events), sent);
}

#[test]
fn an_abort_hands_back_what_is_queued() {
    let (mut pair, mut sent) = loaded();
    sent.push(Bytes::from_static(b"four"));
    let now = pair.now;
    let mut events = Vec::new();
    let server = pair.server_mut();
    server.abort(now, &mut events);
    assert!(server.is_closed());
    assert_eq!(undelivered(&events), sent);
}

#[test]
fn a_refused_sender_hears_once_when_the_output_falls_to_half() {
    let cfg = crate::Config {
        max_outbound: 10_000,
        ..config()
    };
    let mut pair = Pair::connected(cfg);
    pair.client_mute = true;
    let t = pair.now;
    let server = pair.server_mut();
    let mut events = Vec::new();
    server.send(msg(1, 4000)).unwrap();
    server.send(msg(2, 4000)).unwrap();
    server.poll_drain(&mut events);
    assert!(events.is_empty(), "nothing was refused");
    assert!(matches!(
        server.send(msg(3, 4000)),
        Err(SendError::Backpressure { .. })
    ));
    // 8010 queued; 5000 is half the mark.
    server.advance_transmit(t, 3000, &mut Vec::new());
    server.poll_drain(&mut events);
    assert!(events.is_empty(), "5010 bytes still queued");
    server.advance_transmit(t, 10, &mut Vec::new());
    server.poll_drain(&mut events);
    assert_eq!(events, [Event::Drained]);
    server.advance_transmit(t, 1000, &mut Vec::new());
    server.poll_drain(&mut events);
    assert_eq!(events.len(), 1, "once per refusal");
    let mut out = BytesMut::new();
    server.transmit_into(&mut out, &mut Vec::new());
    assert_eq!(server.pending_output(), 0);
    server.poll_drain(&mut events);
    assert_eq!(events.len(), 1);
}

#[test]
fn a_refusal_ended_by_a_disconnect_brings_no_drain() {
    let mut pair = Pair::connected(crate::Config {
        max_outbound: 100,
        ..config()
    });
    pair.client_mute = true;
    let now = pair.now;
    let server = pair.server_mut();
    let mut events = Vec::new();
    assert!(server.send(msg(1, 200)).is_err());
    server.handle_io_error(now, io::ErrorKind::ConnectionReset, &mut events);
    events.clear();
    server.poll_drain(&mut events);
    assert!(events.is_empty());
}
