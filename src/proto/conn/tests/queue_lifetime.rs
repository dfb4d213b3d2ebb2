//! The queue lifetime, with exact instants: a message waiting behind a full
//! socket or (with resume) on a link that is down is handed back once it
//! has waited the lifetime, never before; a message that started onto the
//! wire never is; what is withdrawn leaves the session's numbering.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::resume::{connected_status, data, payloads, resume_config, Client, RESUME};
use super::{config, ms};
use crate::config::Config;
use crate::proto::codec::Frame;
use crate::proto::conn::{Event, ResumeStatus, State, Timer, UndeliveredCause};

const LIFETIME: Duration = Duration::from_millis(80);

/// Runs the client's timers millisecond by millisecond for `d`, and
/// returns each hand-back with the time (since `from`) it came at.
fn run(c: &mut Client, d: Duration, from: Instant) -> Vec<(Duration, Vec<Bytes>)> {
    let mut handed = Vec::new();
    let end = c.now + d;
    while c.now < end {
        c.now += ms(1);
        c.conn.handle_timeout(c.now, &mut c.events);
        for event in c.events.drain(..) {
            if let Event::Undelivered { messages, cause } = event {
                assert_eq!(cause, UndeliveredCause::Expired);
                handed.push((c.now - from, messages));
            }
        }
    }
    handed
}

/// Writes `n` bytes of the client's output, as a socket that then fills.
fn write_then_block(c: &mut Client, n: usize) {
    let mut iov = [IoSlice::new(&[]); 16];
    let count = c.conn.transmit(&mut iov);
    let total: usize = iov[..count].iter().map(|s| s.len()).sum();
    assert!(total > n, "more is queued than the socket takes");
    c.conn.advance_transmit(c.now, n, &mut c.events);
    c.conn.handle_write_blocked(c.now);
}

/// The wire length of one test message's DATA frame.
fn frame_len() -> usize {
    let mut wire = bytes::BytesMut::new();
    data(0..1)[0].encode(&mut wire);
    wire.len()
}

fn with_lifetime(base: Config) -> Config {
    Config {
        queue_lifetime: Some(LIFETIME),
        ..base
    }
}

#[test]
fn messages_waiting_behind_a_full_socket_are_handed_back_a_lifetime_after_their_send() {
    let mut c = Client::new(with_lifetime(config()));
    c.connect();
    c.welcome(0, 0, 0);
    assert_eq!(connected_status(&c.take_events()), Some(ResumeStatus::Off));
    let t0 = c.now;
    c.send(0..3);
    // The socket takes message 0 and half of message 1, then is full.
    write_then_block(&mut c, frame_len() + frame_len() / 2);
    let mut handed = run(&mut c, ms(45), t0);
    c.send(3..5);
    handed.extend(run(&mut c, ms(155), t0));
    // Message 2 waited from t0; 3 and 4 from 45 ms, seen at the round at
    // 50 ms. Message 1 had started onto the wire: it stays.
    assert_eq!(
        handed,
        vec![(ms(80), payloads(2..3)), (ms(130), payloads(3..5))]
    );
    assert_eq!(c.conn.stats().messages_undelivered, 3);
    assert_eq!(c.conn.timer(Timer::QueueLifetime), None, "nothing waits");
    // What is left to write: the rest of message 1, nothing after it.
    let mut out = bytes::BytesMut::new();
    c.conn.transmit_into(&mut out, &mut c.events);
    assert_eq!(out.len(), frame_len() - frame_len() / 2);
    assert_eq!(c.conn.state(), State::Established);
}

#[test]
fn a_message_written_in_time_is_never_handed_back() {
    let mut c = Client::new(with_lifetime(config()));
    c.connect();
    c.welcome(0, 0, 0);
    let t0 = c.now;
    c.send(0..4);
    write_then_block(&mut c, frame_len());
    c.now += ms(79);
    // The socket takes the rest 79 ms after the send: in time.
    assert_eq!(c.written(), data(1..4));
    assert!(run(&mut c, ms(200), t0).is_empty());
    assert_eq!(c.conn.stats().messages_undelivered, 0);
    assert_eq!(c.conn.timer(Timer::QueueLifetime), None);
}

#[test]
fn messages_kept_while_the_link_is_down_expire_and_leave_the_session_numbering() {
    let mut c = Client::new(with_lifetime(resume_config()));
    c.connect();
    c.welcome(RESUME, 77, 0);
    c.send(0..3);
    assert_eq!(c.written(), data(0..3));
    c.conn
        .handle_io_error(c.now, std::io::ErrorKind::ConnectionReset, &mut c.events);
    assert_eq!(c.conn.state(), State::Backoff);
    c.take_events();
    let t1 = c.now;
    c.send(3..6);
    c.conn.handle_queued_while_down(c.now);
    // The redial fails into the silence meanwhile: a connect timeout.
    let handed = run(&mut c, ms(120), t1);
    assert_eq!(handed, vec![(ms(80), payloads(3..6))]);
    assert_eq!(
        c.conn.session_stats().unacked_messages,
        3,
        "the three sent before the break stay"
    );
    // The redial goes through; the server got message 0 before the break.
    while c.conn.poll_action().is_some() {}
    let hello = c.connect();
    assert_eq!(hello.session_id, 77);
    c.welcome(RESUME, 77, 1);
    assert_eq!(
        connected_status(&c.take_events()),
        Some(ResumeStatus::Resumed { resent: 2 })
    );
    assert_eq!(c.written(), data(1..3), "the withdrawn are not sent");
    c.send(6..7);
    assert_eq!(c.written(), data(6..7));
    // Message 6 is the session's fourth frame: an ACK of 4 frees all.
    c.receive(&[Frame::Ack(4)]);
    assert_eq!(c.conn.session_stats().unacked_messages, 0);
    assert_eq!(c.conn.state(), State::Established);
}

#[test]
fn messages_behind_a_full_socket_leave_the_session_log_too() {
    let mut c = Client::new(with_lifetime(resume_config()));
    c.connect();
    c.welcome(RESUME, 77, 0);
    let t0 = c.now;
    c.send(0..4);
    write_then_block(&mut c, frame_len());
    let handed = run(&mut c, ms(100), t0);
    assert_eq!(handed, vec![(ms(80), payloads(1..4))]);
    assert_eq!(c.conn.session_stats().unacked_messages, 1);
    c.send(4..6);
    assert_eq!(c.written(), data(4..6));
    // Messages 0, 4 and 5 are the session's three frames.
    c.receive(&[Frame::Ack(3)]);
    assert_eq!(c.conn.session_stats().unacked_messages, 0);
    assert_eq!(c.conn.state(), State::Established);
}

#[test]
fn without_a_lifetime_waiting_messages_stay() {
    let mut c = Client::new(config());
    c.connect();
    c.welcome(0, 0, 0);
    let t0 = c.now;
    c.send(0..3);
    write_then_block(&mut c, frame_len());
    assert!(run(&mut c, ms(500), t0).is_empty());
    assert_eq!(c.written(), data(1..3));
}

#[test]
fn a_session_begun_afresh_counts_its_waiting_messages_from_zero() {
    let mut c = Client::new(with_lifetime(resume_config()));
    c.connect();
    c.welcome(RESUME, 77, 0);
    c.take_events();
    c.send(0..3);
    assert_eq!(c.written(), data(0..3));
    c.conn
        .handle_io_error(c.now, std::io::ErrorKind::ConnectionReset, &mut c.events);
    // The redial finds a server that does not resume: the session begins
    // afresh (what the old one held is handed back as not resumable).
    c.now += ms(200);
    c.conn.handle_timeout(c.now, &mut c.events);
    while c.conn.poll_action().is_some() {}
    c.connect();
    c.welcome(0, 0, 0);
    assert_eq!(
        connected_status(&c.take_events()),
        Some(ResumeStatus::Refused)
    );
    c.written();
    c.conn
        .handle_io_error(c.now, std::io::ErrorKind::ConnectionReset, &mut c.events);
    c.take_events();
    // Kept while down, in the new session: they age from here.
    let t1 = c.now;
    c.send(3..5);
    c.conn.handle_queued_while_down(c.now);
    let handed = run(&mut c, ms(90), t1);
    assert_eq!(handed, vec![(ms(80), payloads(3..5))]);
}
