//! Two orderings the chaos test (`tests/chaos.rs`) once found broken,
//! as deterministic checks: no message reaches the handler after its
//! connection's `on_disconnected`, and messages handed back come back in
//! send order, the one partly written first.

mod support;

use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use support::*;
use tether::proto::codec::Frame;
use tether::{
    CloseCode, ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, UndeliveredCause,
};

/// Logs what it sees. On the message "close the other", closes the other
/// connection; on any `on_disconnected`, closes every other connection.
#[derive(Default)]
struct CloseChain {
    ids: Vec<ConnId>,
    log: Vec<String>,
}

impl Handler for CloseChain {
    fn on_connected(&mut self, _: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        self.ids.push(id);
    }
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, m: Message<'_>) {
        self.log
            .push(format!("message {id} {}", String::from_utf8_lossy(&m)));
        if m[..] == b"close the other"[..] {
            for &other in self.ids.iter().filter(|&&o| o != id) {
                cx.close(other, CloseCode::NORMAL, "");
            }
        }
    }
    fn on_disconnected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &DisconnectReason) {
        self.log.push(format!("disconnected {id}"));
        for &other in self.ids.iter().filter(|&&o| o != id) {
            cx.close(other, CloseCode::NORMAL, "");
        }
    }
}

/// A message read while its connection was established waits in the read
/// buffer while the events queued before it are dispatched; when one of
/// those callbacks closes the connection, the message is still delivered,
/// after `on_disconnected` (`deliver_frames` in `src/reactor/mod.rs`
/// takes the message, dispatches, then delivers it without looking again).
/// Found by the chaos test, e.g. seeds 701484792774893821 and
/// 2228937533687712369 (about one round in six before it was tolerated;
/// a seed replays the choices, not the timing).
#[test]
fn no_message_after_on_disconnected() {
    let (mut reactor, addr, _) = listening(config(60_000, 60_000));
    let mut a = RawPeer::connect(addr);
    a.hello(60_000, 60_000);
    let mut b = RawPeer::connect(addr);
    b.hello(60_000, 60_000);
    let mut h = CloseChain::default();
    turn_until(&mut reactor, &mut h, |h| h.ids.len() == 2);
    // Two messages in one read: the first closes `b`, whose
    // on_disconnected (dispatched before the second is delivered) closes
    // `a`.
    let mut two = frame_bytes(&Frame::Data(Bytes::from_static(b"close the other")));
    two.extend(frame_bytes(&Frame::Data(Bytes::from_static(b"after"))));
    a.send_raw(&two).expect("write");
    turn_until(&mut reactor, &mut h, |h| {
        h.log
            .iter()
            .filter(|l| l.starts_with("disconnected"))
            .count()
            == 2
    });
    for _ in 0..5 {
        reactor
            .poll_once(&mut h, Some(Duration::from_millis(10)))
            .expect("poll");
    }
    let a_id = h.ids[0];
    let gone = h
        .log
        .iter()
        .position(|l| *l == format!("disconnected {a_id}"));
    let after = h.log.iter().position(|l| l.ends_with(" after"));
    assert!(
        after.is_none() || after < gone,
        "a message after on_disconnected: {:?}",
        h.log
    );
}

/// Sends one large message and a few small ones on connect; records what
/// comes back.
#[derive(Default)]
struct BigThenSmall {
    sent: Vec<Bytes>,
    undelivered: Vec<Vec<Bytes>>,
    gone: bool,
}

impl Handler for BigThenSmall {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        let mut messages = vec![Bytes::from(vec![7u8; 8 << 20])];
        messages.extend((0..5u8).map(|i| Bytes::from(vec![i; 10])));
        for m in messages {
            cx.send(id, m.clone()).expect("room");
            self.sent.push(m);
        }
    }
    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        m: Vec<Bytes>,
        c: UndeliveredCause,
    ) {
        assert_eq!(c, UndeliveredCause::Dropped);
        self.undelivered.push(m);
    }
    fn on_disconnected(&mut self, _: &mut Context<'_>, _: ConnId, _: &DisconnectReason) {
        self.gone = true;
    }
}

/// A connection that fails (here: the peer stops reading and answering,
/// a heartbeat timeout) hands its unstarted messages back at once and
/// keeps the one partly on the wire to finish it; when the close linger
/// runs out first, that one is handed back alone, after the messages
/// sent behind it — not "in send order" as README and RELIABILITY.md say.
/// Found by the chaos test: seed 1686047473791135983 failed on it five
/// runs out of five before it was tolerated.
#[test]
fn undelivered_messages_come_back_in_send_order() {
    let mut cfg = config(100, 100);
    cfg.max_frame = 16 << 20;
    cfg.max_outbound = 32 << 20;
    cfg.close_linger = Duration::from_millis(100);
    let (mut reactor, addr, _) = listening(cfg);
    // A peer with a tiny window that says HELLO and then nothing, and
    // reads nothing.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let mut peer = RawPeer::from_stream(socket.into());
    peer.hello(60_000, 60_000);
    let mut h = BigThenSmall::default();
    turn_until(&mut reactor, &mut h, |h| {
        h.gone && h.undelivered.iter().map(Vec::len).sum::<usize>() == h.sent.len()
    });
    let back: Vec<Bytes> = h.undelivered.concat();
    assert_eq!(back.len(), h.sent.len(), "every message came back");
    assert!(
        back == h.sent,
        "handed back out of send order: batches of {:?} bytes",
        h.undelivered
            .iter()
            .map(|b| b.iter().map(Bytes::len).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    drop(peer);
}
