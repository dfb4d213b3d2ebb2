//! Input in steps (`start_input`, `next_message`, `finish_input`), driven
//! as the reactor drives it — messages read in place and stepped over, or
//! split off — against the one-call `handle_input`, for every way the
//! bytes can be cut into reads.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::config;
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{self, Frame, Handshake, HEADER_LEN};
use crate::proto::conn::{Connection, Event, State};

fn hello() -> BytesMut {
    let mut b = BytesMut::new();
    codec::encode_hello(
        &Handshake {
            flags: 0,
            interval_ms: 1000,
            timeout_ms: 1000,
            session_id: 0,
            recv_seq: 0,
        },
        &mut b,
    );
    b
}

fn established_server(t0: Instant) -> Connection {
    let mut s = Connection::server(Arc::new(config()), t0, 7, 1);
    let mut events = Vec::new();
    s.handle_input(t0, &mut hello(), &mut events);
    assert!(matches!(events[..], [Event::Connected(_)]));
    s
}

/// Empty, tiny, medium and larger-than-one-read DATA frames between
/// control frames.
fn stream(big: usize) -> (BytesMut, Vec<Vec<u8>>) {
    let messages: Vec<Vec<u8>> = vec![
        vec![],
        b"abc".to_vec(),
        (0..2000).map(|i| i as u8).collect(),
        vec![b'x'; big],
        b"z".to_vec(),
    ];
    let mut wire = BytesMut::new();
    codec::encode_data(&messages[0], &mut wire);
    codec::encode_ping(1, &mut wire);
    codec::encode_data(&messages[1], &mut wire);
    codec::encode_data(&messages[2], &mut wire);
    codec::encode_ack(5, &mut wire);
    codec::encode_data(&messages[3], &mut wire);
    codec::encode_ping(2, &mut wire);
    codec::encode_data(&messages[4], &mut wire);
    (wire, messages)
}

/// What the reactor does with one read: each message read in place and
/// stepped over, or (when `take` says so for its length) split off.
fn feed_stepwise_taking(
    conn: &mut Connection,
    now: Instant,
    read: &[u8],
    got: &mut Vec<Vec<u8>>,
    events: &mut Vec<Event>,
    take: impl Fn(usize) -> bool,
) {
    let mut input = conn.start_input(now, BytesMut::from(read));
    while let Some(len) = conn.next_message(now, &mut input, events) {
        if take(len) {
            got.push(input.take_message(len).to_vec());
        } else {
            input.deliver(len, |buf, start| got.push(buf[start..start + len].to_vec()));
        }
    }
    let spent = conn.finish_input(input);
    assert!(
        spent.len() <= read.len(),
        "only bytes of this read come back"
    );
}

/// [`feed_stepwise_taking`], every message read in place.
fn feed_stepwise(
    conn: &mut Connection,
    now: Instant,
    read: &[u8],
    got: &mut Vec<Vec<u8>>,
    events: &mut Vec<Event>,
) {
    feed_stepwise_taking(conn, now, read, got, events, |_| false);
}

#[test]
fn every_cut_into_two_and_three_reads_gives_the_same_messages() {
    let t0 = Instant::now();
    let (wire, messages) = stream(3000);
    let mut whole = established_server(t0);
    let mut events = Vec::new();
    whole.handle_input(t0, &mut wire.clone(), &mut events);
    let want: Vec<Event> = messages
        .iter()
        .map(|m| Event::Message(m.clone().into()))
        .collect();
    assert_eq!(events, want);
    let mut rng = crate::rng::Rng::new(9);
    for cut in 0..=wire.len() {
        // Two reads cut at `cut`, and three with a second cut drawn after it.
        let second = cut + rng.below_inclusive((wire.len() - cut) as u64) as usize;
        for reads in [
            vec![&wire[..cut], &wire[cut..]],
            vec![&wire[..cut], &wire[cut..second], &wire[second..]],
        ] {
            for take_odd in [false, true] {
                let mut conn = established_server(t0);
                let (mut got, mut events) = (Vec::new(), Vec::new());
                for read in &reads {
                    // In place, or the messages of odd length split off.
                    let take = |len: usize| take_odd && len % 2 == 1;
                    feed_stepwise_taking(&mut conn, t0, read, &mut got, &mut events, take);
                }
                assert_eq!(
                    got, messages,
                    "cut at {cut}/{second}, taking odd: {take_odd}"
                );
                assert!(events.is_empty(), "{events:?}");
                assert_eq!(conn.stats().messages_received, 5);
                assert_eq!(conn.stats().pings_received, 2);
                assert_eq!(conn.stats().acks_received, 1);
                assert_eq!(conn.stats().bytes_received, wire.len() as u64 + 35);
                assert_eq!(conn.pending_output(), whole.pending_output(), "the PONGs");
                assert_eq!(conn.state(), State::Established);
            }
        }
    }
}

#[test]
fn a_frame_larger_than_a_read_grows_in_place_and_arrives_whole() {
    let t0 = Instant::now();
    let (wire, messages) = stream(1 << 20);
    let mut conn = established_server(t0);
    let (mut got, mut events) = (Vec::new(), Vec::new());
    let mut peak = 0;
    for read in wire.chunks(64 * 1024) {
        feed_stepwise(&mut conn, t0, read, &mut got, &mut events);
        peak = peak.max(conn.sock.recv.capacity());
    }
    assert_eq!(got, messages);
    assert!(conn.sock.recv.is_empty());
    // The kept frame grew to its length, not to a multiple of it (a copy
    // back and forth per read would also show here as time, not memory).
    assert!(peak <= (1 << 20) + HEADER_LEN + 64 * 1024, "peak {peak}");
}

/// The one error path that depends on how reads are cut: a bad header
/// split across reads is rejected as soon as its bytes are in.
#[test]
fn a_split_bad_header_is_rejected_as_soon_as_its_bytes_are_in() {
    let t0 = Instant::now();
    let data = codec::Kind::Data as u8;
    for (bytes, code) in [
        (&[0u8, 0, 0, 0][..], CloseCode::PROTOCOL_ERROR),
        (&[0, 0, 0, 2, 0x7f][..], CloseCode::PROTOCOL_ERROR),
        (&[0x10, 0, 0, 0, data][..], CloseCode::TOO_LARGE),
    ] {
        for cut in 1..bytes.len() {
            let mut conn = established_server(t0);
            let (mut got, mut events) = (Vec::new(), Vec::new());
            feed_stepwise(&mut conn, t0, &bytes[..cut], &mut got, &mut events);
            assert_eq!(conn.state(), State::Established, "{bytes:?} cut {cut}");
            feed_stepwise(&mut conn, t0, &bytes[cut..], &mut got, &mut events);
            assert_eq!(conn.state(), State::Closing, "{bytes:?} cut {cut}");
            assert!(
                matches!(
                    events[..],
                    [Event::Disconnected {
                        reason: DisconnectReason::ProtocolError { code: c, .. }
                    }] if c == code
                ),
                "{bytes:?} cut {cut}: {events:?}"
            );
            assert!(got.is_empty() && conn.sock.recv.is_empty());
        }
    }
}

#[test]
fn data_before_the_handshake_is_a_protocol_error_not_a_message() {
    let t0 = Instant::now();
    let mut conn = Connection::server(Arc::new(config()), t0, 7, 1);
    let (mut got, mut events) = (Vec::new(), Vec::new());
    let mut wire = BytesMut::new();
    codec::encode_data(b"too soon", &mut wire);
    wire.extend_from_slice(&hello());
    feed_stepwise(&mut conn, t0, &wire, &mut got, &mut events);
    assert!(got.is_empty());
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(conn.stats().messages_received, 0);
    assert!(events.is_empty(), "never connected, so nothing to report");
    // What it sent: the CLOSE, no WELCOME.
    let mut out = BytesMut::new();
    conn.transmit_into(&mut out, &mut Vec::new());
    assert_eq!(out[4], codec::Kind::Close as u8);
    assert_eq!(&out[..4], &[0, 0, 0, out.len() as u8 - 4]);
}

#[test]
fn closing_between_messages_stops_the_input_and_keeps_nothing() {
    let t0 = Instant::now();
    let (wire, _) = stream(100);
    let mut conn = established_server(t0);
    let mut events = Vec::new();
    let data = BytesMut::from(&wire[..wire.len() - 3]); // the last frame cut
    let mut input = conn.start_input(t0, data);
    assert_eq!(conn.next_message(t0, &mut input, &mut events), Some(0));
    input.deliver(0, |_, _| ());
    conn.close(t0, CloseCode::NORMAL, "enough", &mut events);
    assert_eq!(conn.next_message(t0, &mut input, &mut events), None);
    assert!(conn.finish_input(input).is_empty());
    assert!(conn.sock.recv.is_empty());
    assert_eq!(conn.stats().messages_received, 1);
}

/// What `conn` queued for the wire, decoded (and taken).
fn sent(conn: &mut Connection) -> Vec<Frame> {
    let mut out = BytesMut::new();
    conn.transmit_into(&mut out, &mut Vec::new());
    let decoder = codec::Decoder::new(1 << 20);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = decoder.decode(&mut out) {
        frames.push(frame);
    }
    assert!(out.is_empty(), "a partial frame was queued");
    frames
}

fn refused(detail: &'static str) -> Vec<Frame> {
    vec![Frame::Close {
        code: CloseCode::PROTOCOL_ERROR,
        reason: detail.into(),
    }]
}

/// The header of a DATA frame of 1 MiB less one byte.
const BIG_DATA_HEADER: [u8; HEADER_LEN] = [0, 0x10, 0, 0, codec::Kind::Data as u8];

#[test]
fn a_data_header_before_hello_is_refused_with_its_fifth_byte() {
    let t0 = Instant::now();
    for stepwise in [false, true] {
        let mut conn = Connection::server(Arc::new(config()), t0, 7, 1);
        let (mut got, mut events) = (Vec::new(), Vec::new());
        let mut feed = |conn: &mut Connection, read: &[u8]| {
            if stepwise {
                feed_stepwise(conn, t0, read, &mut got, &mut events);
            } else {
                conn.handle_input(t0, &mut BytesMut::from(read), &mut events);
            }
        };
        for (i, b) in BIG_DATA_HEADER.iter().enumerate() {
            assert_eq!(conn.state(), State::Handshaking, "before byte {i}");
            assert_eq!(conn.pending_output(), 0, "before byte {i}");
            feed(&mut conn, &[*b]);
            assert!(conn.sock.recv.len() <= HEADER_LEN);
        }
        assert_eq!(conn.state(), State::Closing, "stepwise: {stepwise}");
        assert!(conn.sock.recv.is_empty());
        // The trickle goes on: ignored, kept nowhere.
        for _ in 0..10 {
            feed(&mut conn, &[7; 100]);
            assert!(conn.sock.recv.is_empty());
        }
        assert_eq!(sent(&mut conn), refused("expected HELLO first"));
        assert!(conn.is_closed());
        assert!(matches!(
            conn.close_reason(),
            Some(DisconnectReason::ProtocolError { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
        ));
        assert!(got.is_empty() && events.is_empty(), "{events:?}");
    }
}

#[test]
fn no_byte_past_the_header_of_a_refused_first_frame_is_kept() {
    // All but one byte of a 1 MiB DATA frame, cut into reads every way
    // the header can be split: after the read that completes the header,
    // the server is closing and holds none of the payload.
    let t0 = Instant::now();
    let mut wire = BIG_DATA_HEADER.to_vec();
    wire.resize(HEADER_LEN + (1 << 20) - 2, 7);
    for cut in 0..=HEADER_LEN {
        let mut conn = Connection::server(Arc::new(config()), t0, 7, 1);
        let (mut got, mut events) = (Vec::new(), Vec::new());
        let mut reads = vec![&wire[..cut]];
        reads.extend(wire[cut..].chunks(64 * 1024));
        let mut peak = 0;
        for read in reads {
            feed_stepwise(&mut conn, t0, read, &mut got, &mut events);
            peak = peak.max(conn.sock.recv.len());
        }
        assert!(peak < HEADER_LEN, "cut {cut}: {peak} bytes kept");
        assert_eq!(conn.state(), State::Closing, "cut {cut}");
        assert_eq!(
            sent(&mut conn),
            refused("expected HELLO first"),
            "cut {cut}"
        );
    }
}

#[test]
fn every_first_frame_but_hello_is_refused_at_its_header() {
    let t0 = Instant::now();
    let data = codec::Kind::Data as u8;
    let ping = codec::Kind::Ping as u8;
    let close = codec::Kind::Close as u8;
    let welcome = codec::Kind::Welcome as u8;
    let ack = codec::Kind::Ack as u8;
    for header in [
        [0u8, 0, 0, 1, data],
        [0, 0, 0, 9, ping],
        [0, 0, 0, 9, ack],
        [0, 0, 0, 3, close],
        [0, 0, 0, 31, welcome],
    ] {
        let mut conn = Connection::server(Arc::new(config()), t0, 7, 1);
        let mut events = Vec::new();
        conn.handle_input(t0, &mut BytesMut::from(&header[..]), &mut events);
        assert_eq!(conn.state(), State::Closing, "{header:?}");
        assert_eq!(
            sent(&mut conn),
            refused("expected HELLO first"),
            "{header:?}"
        );
    }
}

#[test]
fn finishing_gives_back_the_bytes_gone_through_in_place_only_on_a_frame_boundary() {
    let t0 = Instant::now();
    let mut wire = BytesMut::new();
    for m in [&b"one"[..], b"two", b"three"] {
        codec::encode_data(m, &mut wire);
    }
    let frame = |n: usize| HEADER_LEN + n;

    // All read in place: the whole read comes back.
    let mut conn = established_server(t0);
    let (mut got, mut events) = (Vec::new(), Vec::new());
    let mut input = conn.start_input(t0, wire.clone());
    while let Some(len) = conn.next_message(t0, &mut input, &mut events) {
        input.deliver(len, |buf, start| got.push(buf[start..start + len].to_vec()));
    }
    assert_eq!(&conn.finish_input(input)[..], &wire[..]);
    assert_eq!(got.len(), 3);

    // The second taken: what follows it comes back.
    let mut conn = established_server(t0);
    let mut input = conn.start_input(t0, wire.clone());
    let mut taken = Vec::new();
    while let Some(len) = conn.next_message(t0, &mut input, &mut events) {
        if len == 3 && taken.len() == 1 {
            taken.push(input.take_message(len));
        } else {
            input.deliver(len, |_, _| taken.push(bytes::Bytes::new()));
        }
    }
    assert_eq!(&taken[1][..], b"two");
    let tail = &wire[frame(3) + frame(3)..];
    assert_eq!(&conn.finish_input(input)[..], tail);

    // Ending in an incomplete frame: nothing comes back, the start of the
    // frame is kept.
    let mut conn = established_server(t0);
    let cut = wire.len() - 2;
    let mut input = conn.start_input(t0, BytesMut::from(&wire[..cut]));
    let mut n = 0;
    while let Some(len) = conn.next_message(t0, &mut input, &mut events) {
        input.deliver(len, |_, _| n += 1);
    }
    assert_eq!(n, 2);
    assert!(conn.finish_input(input).is_empty());
    assert_eq!(&conn.sock.recv[..], &wire[frame(3) + frame(3)..cut]);
    assert!(events.is_empty(), "{events:?}");
}
