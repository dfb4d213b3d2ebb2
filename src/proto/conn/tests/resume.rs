//! Session resume by the contract's rules, with exact counts: the client
//! driven by hand against a scripted server (its WELCOMEs, ACKs and
//! resets), and a client and a tether server through the [`Pair`].

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{config, ms, Pair};
use crate::config::{Config, ResumeConfig};
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{Decoder, Frame, Handshake};
use crate::proto::conn::{Action, Connection, Event, ResumeStatus, State, UndeliveredCause};

pub(super) fn resume_config() -> Config {
    Config {
        resume: Some(ResumeConfig {
            max_unacked: Some(64 * 1024),
            ..ResumeConfig::default()
        }),
        max_frame: 16 * 1024,
        ..config()
    }
}

/// A client driven by hand: what it wrote, decoded, and its events.
pub(super) struct Client {
    pub(super) conn: Connection,
    pub(super) now: Instant,
    pub(super) events: Vec<Event>,
}

impl Client {
    pub(super) fn new(config: Config) -> Client {
        let now = Instant::now();
        let mut conn = Connection::client(Arc::new(config), 5);
        conn.start(now);
        assert_eq!(conn.poll_action(), Some(Action::Connect));
        Client {
            conn,
            now,
            events: Vec::new(),
        }
    }

    /// The TCP connect completes: the HELLO it sends.
    pub(super) fn connect(&mut self) -> Handshake {
        self.conn.handle_connected(self.now);
        match &self.written()[..] {
            [Frame::Hello(hello)] => *hello,
            other => panic!("expected HELLO, got {other:?}"),
        }
    }

    /// Everything it wrote since last asked.
    pub(super) fn written(&mut self) -> Vec<Frame> {
        let mut out = BytesMut::new();
        self.conn.transmit_into(&mut out, &mut self.events);
        let decoder = Decoder::new(1 << 20);
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = decoder.decode(&mut out) {
            frames.push(frame);
        }
        assert!(out.is_empty());
        frames
    }

    pub(super) fn receive(&mut self, frames: &[Frame]) {
        let mut wire = BytesMut::new();
        for f in frames {
            f.encode(&mut wire);
        }
        self.conn
            .handle_input(self.now, &mut wire, &mut self.events);
    }

    pub(super) fn welcome(&mut self, flags: u8, session_id: u64, recv_seq: u64) {
        self.receive(&[Frame::Welcome(Handshake {
            flags,
            interval_ms: 1000,
            timeout_ms: 1000,
            session_id,
            recv_seq,
        })]);
    }

    /// The socket breaks (a reset); the redial is made at once.
    fn reset_and_redial(&mut self) {
        self.conn.handle_io_error(
            self.now,
            std::io::ErrorKind::ConnectionReset,
            &mut self.events,
        );
        assert_eq!(self.conn.state(), State::Backoff);
        self.now += ms(2000);
        self.conn.handle_timeout(self.now, &mut self.events);
        while let Some(action) = self.conn.poll_action() {
            let _ = action;
        }
        assert_eq!(self.conn.state(), State::Connecting);
    }

    pub(super) fn send(&mut self, n: std::ops::Range<u32>) {
        for i in n {
            self.conn
                .send(Bytes::from(i.to_be_bytes().to_vec()))
                .expect("accepted");
        }
    }

    pub(super) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

pub(super) fn data(n: std::ops::Range<u32>) -> Vec<Frame> {
    n.map(|i| Frame::Data(Bytes::from(i.to_be_bytes().to_vec())))
        .collect()
}

pub(super) fn connected_status(events: &[Event]) -> Option<ResumeStatus> {
    events.iter().find_map(|e| match e {
        Event::Connected(peer) => Some(peer.resume),
        _ => None,
    })
}

pub(super) fn undelivered(events: &[Event]) -> Vec<(Vec<Bytes>, UndeliveredCause)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Undelivered { messages, cause } => Some((messages.clone(), *cause)),
            _ => None,
        })
        .collect()
}

pub(super) fn payloads(n: std::ops::Range<u32>) -> Vec<Bytes> {
    n.map(|i| Bytes::from(i.to_be_bytes().to_vec())).collect()
}

pub(super) const RESUME: u8 = Handshake::RESUME;

#[test]
fn a_resumed_session_sends_again_exactly_what_the_server_did_not_receive() {
    let mut c = Client::new(resume_config());
    let hello = c.connect();
    assert!(hello.has(RESUME));
    assert_eq!((hello.session_id, hello.recv_seq), (0, 0));
    c.welcome(RESUME, 77, 0);
    assert_eq!(connected_status(&c.take_events()), Some(ResumeStatus::New));
    c.send(0..10);
    assert_eq!(c.written(), data(0..10));
    c.receive(&data(100..103));
    c.receive(&[Frame::Ack(4)]);
    assert_eq!(c.conn.session_stats().unacked_messages, 6);

    c.reset_and_redial();
    // Sent while the link is down: kept for the session.
    c.send(10..12);
    assert!(c.written().is_empty());
    let hello = c.connect();
    assert!(hello.has(RESUME));
    assert_eq!((hello.session_id, hello.recv_seq), (77, 3), "its receipts");
    // The server got 7 of the 10 before the break.
    c.welcome(RESUME, 77, 7);
    let events = c.take_events();
    assert_eq!(
        connected_status(&events),
        Some(ResumeStatus::Resumed { resent: 5 })
    );
    assert!(undelivered(&events).is_empty());
    assert_eq!(c.written(), data(7..12), "8, 9, 10 again, then 11 and 12");
    let stats = c.conn.session_stats();
    assert_eq!((stats.messages_resent, stats.resumes), (5, 1));
    c.receive(&[Frame::Ack(12)]);
    assert_eq!(c.conn.session_stats().unacked_messages, 0);
    assert_eq!(c.conn.state(), State::Established);
}

#[test]
fn a_lost_session_hands_back_what_it_held_in_order_and_counts_start_over() {
    let mut c = Client::new(resume_config());
    c.connect();
    c.welcome(RESUME, 77, 0);
    c.send(0..6);
    c.written();
    c.receive(&[Frame::Ack(2)]);
    c.receive(&data(100..101));
    c.reset_and_redial();
    c.send(6..8);
    let hello = c.connect();
    assert_eq!((hello.session_id, hello.recv_seq), (77, 1));
    c.take_events();
    // A restarted server: a new session.
    c.welcome(RESUME, 99, 0);
    let events = c.take_events();
    assert_eq!(connected_status(&events), Some(ResumeStatus::Lost));
    assert_eq!(
        undelivered(&events),
        vec![(payloads(2..8), UndeliveredCause::SessionLost)]
    );
    assert!(c.written().is_empty(), "nothing sent again");
    c.send(8..9);
    assert_eq!(c.written(), data(8..9));
    // Numbering restarted: an ACK of 1 is the first frame of the new
    // session; 2 would be above what was sent in it.
    c.receive(&[Frame::Ack(1)]);
    assert_eq!(c.conn.state(), State::Established);
    assert_eq!(c.conn.session_id(), 99);
}

#[test]
fn a_server_without_resume_is_reported_and_what_it_did_not_acknowledge_handed_back() {
    let mut c = Client::new(resume_config());
    // Queued before the first connect: sent on it, with no guarantee.
    c.send(0..2);
    c.connect();
    c.welcome(0, 5, 0);
    let events = c.take_events();
    assert_eq!(connected_status(&events), Some(ResumeStatus::Refused));
    assert!(undelivered(&events).is_empty());
    assert_eq!(c.written(), data(0..2));
    c.send(2..4);
    assert_eq!(c.written(), data(2..4));
    assert_eq!(c.conn.session_stats().unacked_messages, 0, "nothing logged");
    // What was queued on the broken socket is handed back as dropped
    // (it never was in a session).
    c.send(4..5);
    c.reset_and_redial();
    assert_eq!(
        undelivered(&c.take_events()),
        vec![(payloads(4..5), UndeliveredCause::Dropped)]
    );
}

#[test]
fn acks_and_resume_counts_that_break_the_contract_are_protocol_errors() {
    for (ack, detail) in [(3, "ACK went backwards"), (9, "ACK above the DATA sent")] {
        let mut c = Client::new(resume_config());
        c.connect();
        c.welcome(RESUME, 77, 0);
        c.send(0..5);
        c.written();
        c.receive(&[Frame::Ack(4)]);
        c.receive(&[Frame::Ack(ack)]);
        assert_eq!(c.conn.state(), State::Closing, "ACK {ack}: CLOSE queued");
        assert!(
            c.take_events().iter().any(|e| matches!(
                e,
                Event::Disconnected {
                    reason: DisconnectReason::ProtocolError { code, detail: d }
                } if *code == CloseCode::PROTOCOL_ERROR && *d == detail
            )),
            "ACK {ack}"
        );
    }
    for recv_seq in [1, 6] {
        let mut c = Client::new(resume_config());
        c.connect();
        c.welcome(RESUME, 77, 0);
        c.send(0..5);
        c.written();
        c.receive(&[Frame::Ack(2)]);
        c.reset_and_redial();
        c.connect();
        c.take_events();
        c.welcome(RESUME, 77, recv_seq);
        assert_ne!(c.conn.state(), State::Established, "recv_seq {recv_seq}");
        assert!(connected_status(&c.take_events()).is_none());
    }
}

#[test]
fn the_unacknowledged_bound_pushes_back_and_an_ack_that_frees_half_drains() {
    let mut c = Client::new(Config {
        resume: Some(ResumeConfig {
            max_unacked: Some(4 * 1024),
            ..ResumeConfig::default()
        }),
        max_frame: 1024,
        ..config()
    });
    c.connect();
    c.welcome(RESUME, 1, 0);
    c.take_events();
    let msg = Bytes::from(vec![1u8; 1019]); // 1 KiB on the wire
    for _ in 0..4 {
        c.conn.send(msg.clone()).expect("within the bound");
    }
    c.written();
    assert!(matches!(
        c.conn.send(msg.clone()),
        Err(crate::proto::conn::SendError::Backpressure { .. })
    ));
    c.receive(&[Frame::Ack(1)]);
    assert!(
        !c.take_events().contains(&Event::Drained),
        "3 KiB still held"
    );
    c.receive(&[Frame::Ack(2)]);
    assert!(c.take_events().contains(&Event::Drained));
    c.conn.send(msg).expect("room again");
}

#[test]
fn a_client_closed_for_good_hands_back_what_its_session_still_held() {
    let mut c = Client::new(resume_config());
    c.connect();
    c.welcome(RESUME, 7, 0);
    c.send(0..3);
    c.written();
    c.receive(&[Frame::Ack(1)]);
    c.reset_and_redial();
    c.take_events();
    c.conn.close(c.now, CloseCode::NORMAL, "bye", &mut c.events);
    assert!(c.conn.is_closed());
    assert_eq!(
        undelivered(&c.take_events()),
        vec![(payloads(1..3), UndeliveredCause::SessionEnded)]
    );
}

#[test]
fn a_tether_server_acknowledges_every_sixty_four_messages_and_soon_after_data_stops() {
    let mut pair = Pair::connected(resume_config());
    assert_eq!(
        connected_status(
            &super::kinds(&pair.client_events)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        ),
        Some(ResumeStatus::New)
    );
    let t = pair.elapsed();
    for i in 0..70u32 {
        pair.client
            .send(Bytes::from(i.to_be_bytes().to_vec()))
            .expect("sent");
    }
    pair.settle();
    let acks_at = |pair: &Pair| -> Vec<(std::time::Duration, u64)> {
        pair.server_sent
            .iter()
            .filter_map(|(at, f)| match f {
                Frame::Ack(n) => Some((*at, *n)),
                _ => None,
            })
            .collect()
    };
    // One read of 70: one ACK at once (64 or more), the rest by the delay.
    assert_eq!(acks_at(&pair), vec![(t, 70)]);
    assert_eq!(pair.client.session_stats().unacked_messages, 0);
    for i in 0..3u32 {
        pair.client
            .send(Bytes::from(i.to_be_bytes().to_vec()))
            .expect("sent");
    }
    pair.settle();
    assert_eq!(pair.client.session_stats().unacked_messages, 3);
    pair.run_for(ms(30));
    assert_eq!(acks_at(&pair), vec![(t, 70), (t + ms(20), 73)]);
    assert_eq!(pair.client.session_stats().unacked_messages, 0);
    // An idle session gives its log's buffers back with the output's.
    pair.run_for(ms(3000));
    assert!(pair
        .client
        .session
        .as_deref()
        .is_some_and(|s| s.log.is_unallocated()));
}

#[test]
fn a_server_that_does_not_hold_the_session_begins_a_new_one_and_the_client_hears_it_was_lost() {
    // The pair's server is a new connection for every dial that answers
    // a resume with a new session (as a restarted server does).
    let mut pair = Pair::connected(resume_config());
    let first = pair.client.session_id();
    assert_eq!(pair.server().session_id(), first);
    for i in 0..3u32 {
        pair.client
            .send(Bytes::from(i.to_be_bytes().to_vec()))
            .expect("sent");
    }
    pair.settle();
    // The link breaks before the server's ACK delay passes: the server
    // holds the session detached, the client redials.
    pair.client.handle_io_error(
        pair.now,
        std::io::ErrorKind::ConnectionReset,
        &mut Vec::new(),
    );
    pair.settle();
    pair.run_for(ms(5));
    assert_eq!(pair.server().state(), State::Detached);
    pair.client_events.clear();
    pair.run_until_established();
    let events: Vec<Event> = super::kinds(&pair.client_events)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(connected_status(&events), Some(ResumeStatus::Lost));
    assert_eq!(
        undelivered(&events),
        vec![(payloads(0..3), UndeliveredCause::SessionLost)]
    );
    assert_ne!(pair.client.session_id(), first);
}

/// A server connection driven by hand.
struct Server {
    conn: Connection,
    now: Instant,
    events: Vec<Event>,
}

impl Server {
    fn new(session_id: u64) -> Server {
        let now = Instant::now();
        Server {
            conn: Connection::server(Arc::new(resume_config()), now, session_id, session_id),
            now,
            events: Vec::new(),
        }
    }

    fn hello(&mut self, session_id: u64, recv_seq: u64) {
        self.receive(&[Frame::Hello(Handshake {
            flags: RESUME,
            interval_ms: 1000,
            timeout_ms: 1000,
            session_id,
            recv_seq,
        })]);
    }

    fn receive(&mut self, frames: &[Frame]) {
        let mut wire = BytesMut::new();
        for f in frames {
            f.encode(&mut wire);
        }
        self.conn
            .handle_input(self.now, &mut wire, &mut self.events);
    }

    fn written(&mut self) -> Vec<Frame> {
        let mut out = BytesMut::new();
        self.conn.transmit_into(&mut out, &mut self.events);
        let decoder = Decoder::new(1 << 20);
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = decoder.decode(&mut out) {
            frames.push(frame);
        }
        frames
    }

    fn send(&mut self, n: std::ops::Range<u32>) {
        for i in n {
            self.conn
                .send(Bytes::from(i.to_be_bytes().to_vec()))
                .expect("accepted");
        }
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Established in a new session, `sent` messages out, `acked` of them
    /// acknowledged, `received` received from the client.
    fn with_session(session_id: u64, sent: u32, acked: u64, received: u32) -> Server {
        let mut s = Server::new(session_id);
        s.hello(0, 0);
        assert_eq!(connected_status(&s.take_events()), Some(ResumeStatus::New));
        s.send(0..sent);
        s.receive(&data(100..100 + received));
        s.receive(&[Frame::Ack(acked)]);
        s.written();
        s.take_events();
        s
    }
}

fn welcome_of(frames: &[Frame]) -> Handshake {
    match frames.first() {
        Some(Frame::Welcome(w)) => *w,
        other => panic!("expected WELCOME first, got {other:?}"),
    }
}

#[test]
fn a_server_holds_a_detached_session_queues_for_it_and_expires_it_with_a_hand_back() {
    let mut s = Server::with_session(42, 3, 1, 0);
    s.conn
        .handle_io_error(s.now, std::io::ErrorKind::ConnectionReset, &mut s.events);
    assert_eq!(s.conn.state(), State::Detached);
    let expiry = s.now + ResumeConfig::default().session_expiry;
    assert_eq!(
        s.conn.timer(crate::proto::conn::Timer::Reconnect),
        Some(expiry)
    );
    assert!(
        undelivered(&s.take_events()).is_empty(),
        "held, not handed back"
    );
    // Sent while detached: kept for the session.
    s.send(3..4);
    assert_eq!(s.conn.session_stats().unacked_messages, 3);
    s.now = expiry;
    s.conn.handle_timeout(s.now, &mut s.events);
    let events = s.take_events();
    assert!(events.contains(&Event::Disconnected {
        reason: DisconnectReason::SessionExpired
    }));
    assert_eq!(
        undelivered(&events),
        vec![(payloads(1..4), UndeliveredCause::SessionEnded)]
    );
    assert!(s.conn.is_closed());
}

#[test]
fn a_resume_moves_the_new_socket_to_the_held_session_which_sends_again_what_was_missed() {
    let mut held = Server::with_session(42, 5, 1, 2);
    held.conn.handle_io_error(
        held.now,
        std::io::ErrorKind::ConnectionReset,
        &mut held.events,
    );
    held.take_events();
    // The client comes back on a new socket, accepted as connection 43.
    let mut fresh = Server::new(43);
    fresh.hello(42, 3);
    assert_eq!(
        fresh.conn.resume_request(),
        Some(crate::proto::conn::ResumeRequest {
            session_id: 42,
            recv_seq: 3
        })
    );
    assert!(fresh.written().is_empty(), "no WELCOME yet");
    assert!(
        !held.conn.can_resume(0),
        "below what the client acknowledged"
    );
    assert!(!held.conn.can_resume(6), "above what was sent");
    assert!(held.conn.can_resume(3));
    let moved = fresh.conn.take_socket(&mut fresh.events).expect("pending");
    assert!(fresh.conn.is_closed());
    assert!(fresh.take_events().is_empty(), "it never connected");
    held.conn.resume_on(held.now, moved, &mut held.events);
    let out = held.written();
    let welcome = welcome_of(&out);
    assert!(welcome.has(RESUME));
    assert_eq!((welcome.session_id, welcome.recv_seq), (42, 2));
    assert_eq!(out[1..], data(3..5));
    assert_eq!(
        connected_status(&held.take_events()),
        Some(ResumeStatus::Resumed { resent: 2 })
    );
    assert_eq!(held.conn.state(), State::Established);
}

#[test]
fn a_takeover_closes_the_old_socket_with_1001_and_the_session_goes_on() {
    let mut held = Server::with_session(42, 2, 0, 0);
    let mut fresh = Server::new(43);
    fresh.hello(42, 2);
    let moved = fresh.conn.take_socket(&mut fresh.events).expect("pending");
    held.conn.yield_socket(held.now, &mut held.events);
    let old = held.written();
    assert!(matches!(
        old.last(),
        Some(Frame::Close { code, .. }) if *code == CloseCode::GOING_AWAY
    ));
    held.conn.resume_on(held.now, moved, &mut held.events);
    assert_eq!(
        held.conn.poll_action(),
        Some(Action::CloseSocket),
        "the old one"
    );
    let events = held.take_events();
    assert!(events.contains(&Event::Disconnected {
        reason: DisconnectReason::TakenOver
    }));
    assert_eq!(
        connected_status(&events),
        Some(ResumeStatus::Resumed { resent: 0 })
    );
    assert!(undelivered(&events).is_empty());
    let welcome = welcome_of(&held.written());
    assert_eq!((welcome.session_id, welcome.recv_seq), (42, 0));
}

#[test]
fn a_resume_of_a_session_not_held_begins_a_new_one_and_a_bad_recv_seq_is_refused() {
    let mut fresh = Server::new(43);
    fresh.hello(42, 3);
    fresh.conn.grant_new_session(fresh.now, &mut fresh.events);
    let welcome = welcome_of(&fresh.written());
    assert!(welcome.has(RESUME));
    assert_eq!((welcome.session_id, welcome.recv_seq), (43, 0));
    assert_eq!(
        connected_status(&fresh.take_events()),
        Some(ResumeStatus::New)
    );

    let mut refused = Server::new(44);
    refused.hello(42, 9);
    refused.conn.refuse_resume(refused.now, &mut refused.events);
    assert!(matches!(
        refused.written().last(),
        Some(Frame::Close { code, .. }) if *code == CloseCode::PROTOCOL_ERROR
    ));
    assert_ne!(refused.conn.state(), State::Established);
}

#[test]
fn a_client_that_closes_with_1000_ends_its_session_on_the_server() {
    let mut s = Server::with_session(42, 3, 1, 0);
    s.receive(&[Frame::Close {
        code: CloseCode::NORMAL,
        reason: Bytes::from_static(b"bye"),
    }]);
    assert_ne!(s.conn.state(), State::Detached);
    assert!(s.conn.is_closed(), "{:?}", s.conn.state());
    assert_eq!(
        undelivered(&s.take_events()),
        vec![(payloads(1..3), UndeliveredCause::SessionEnded)]
    );
    // Any other close (a heartbeat timeout's 1001) leaves it held.
    let mut s = Server::with_session(43, 3, 1, 0);
    s.receive(&[Frame::Close {
        code: CloseCode::GOING_AWAY,
        reason: Bytes::new(),
    }]);
    assert_eq!(s.conn.state(), State::Detached);
}

/// ACK traffic for 64-byte messages, counted in virtual time: a stream of
/// 16 messages a millisecond (each burst one read) is acknowledged once
/// per 64 messages, 13 bytes per 64 DATA frames of 69 (0.29 %); a trickle
/// of one a millisecond once per `ACK_DELAY` (20 ms: 0.94 %). Slower than
/// ~470 messages a second on a connection, the delay's 50 ACKs a second
/// (650 B/s) bound it instead of the share.
#[test]
fn acks_for_64_byte_messages_stay_under_two_percent_of_the_data_bytes() {
    for (per_ms, want_acks) in [(16u64, 250u32), (1, 50)] {
        let mut pair = Pair::connected(resume_config());
        let before = pair.server().stats().acks_sent;
        for _ in 0..1000 {
            for _ in 0..per_ms {
                pair.client
                    .send(Bytes::from_static(&[7; 64]))
                    .expect("sent");
            }
            pair.run_for(ms(1));
        }
        pair.run_for(ms(100));
        let acks = pair.server().stats().acks_sent - before;
        let data_bytes = per_ms * 1000 * 69;
        let share = f64::from(acks) * 13.0 / data_bytes as f64;
        assert_eq!(pair.client.session_stats().unacked_messages, 0);
        assert_eq!(
            acks, want_acks,
            "{per_ms} a millisecond: {share:.4} of the DATA bytes"
        );
        assert!(share <= 0.02, "{per_ms} a millisecond: {share:.4}");
    }
}
