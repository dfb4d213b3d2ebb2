//! Nothing lost silently, through the reactor: messages it accepted and
//! cannot send are handed back to the handler, handle sends are bounded at
//! the call site, and a refused sender hears when there is room again.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::{
    ConnId, Context, Handle, HandleError, Handler, PeerInfo, Reactor, SendError, UndeliveredCause,
};

/// Records what the reactor hands back.
#[derive(Default)]
struct Seen {
    connected: Vec<ConnId>,
    undelivered: Vec<(ConnId, Vec<Bytes>, UndeliveredCause)>,
    drained: Vec<ConnId>,
    handle_drains: u32,
    /// On connect: send numbered 1 KiB messages until refused.
    flood_on_connect: bool,
    sent: Vec<Bytes>,
    refused: Option<SendError>,
    refusals: usize,
}

impl Handler for Seen {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        self.connected.push(id);
        if self.flood_on_connect {
            self.flood(id, cx);
        }
    }
    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        messages: Vec<Bytes>,
        cause: UndeliveredCause,
    ) {
        self.undelivered.push((id, messages, cause));
    }
    fn on_drain(&mut self, _: &mut Context<'_>, id: ConnId) {
        self.drained.push(id);
    }
    fn on_handle_drain(&mut self, _: &mut Context<'_>) {
        self.handle_drains += 1;
    }
}

impl Seen {
    /// Sends numbered 1 KiB messages until refused.
    fn flood(&mut self, id: ConnId, cx: &mut Context<'_>) {
        loop {
            let mut m = vec![0u8; 1024];
            m[..4].copy_from_slice(&(self.sent.len() as u32).to_be_bytes());
            let m = Bytes::from(m);
            match cx.send(id, m.clone()) {
                Ok(()) => self.sent.push(m),
                Err(e) => {
                    self.refused = Some(e);
                    self.refusals += 1;
                    return;
                }
            }
        }
    }
}

#[test]
fn a_handle_send_the_reactor_refuses_is_handed_back() {
    // Without resume: a link that is down refuses (with resume it keeps
    // the message for its session).
    let mut cfg = config(60_000, 60_000);
    cfg.resume = None;
    let mut reactor = Reactor::with_config(cfg).expect("reactor");
    let link = reactor.dial(free_addr()); // never connects
    let handle = reactor.handle();
    handle.send(link, &b"lost?"[..]).expect("queued");
    let mut seen = Seen::default();
    turn_until(&mut reactor, &mut seen, |s| !s.undelivered.is_empty());
    assert_eq!(
        seen.undelivered,
        [(
            link,
            vec![Bytes::from_static(b"lost?")],
            UndeliveredCause::Refused(SendError::NotConnected)
        )]
    );
}

#[test]
fn handle_sends_are_bounded_at_the_call_site_and_a_drain_follows() {
    let mut cfg = config(60_000, 60_000);
    cfg.max_outbound = 64 * 1024;
    // Without resume, so that the link that is down refuses each message.
    cfg.resume = None;
    let mut reactor = Reactor::with_config(cfg).expect("reactor");
    let link = reactor.dial(free_addr());
    let handle: Handle = reactor.handle();
    // The reactor is not turning: the queue fills.
    let mut accepted = 0usize;
    let refused = loop {
        match handle.send(link, vec![0u8; 1000]) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "the handle queue is unbounded");
    };
    assert_eq!(refused, HandleError::Backpressure);
    assert_eq!(accepted, 64 * 1024 / 1005, "as many as the bound holds");
    let mut seen = Seen::default();
    turn_until(&mut reactor, &mut seen, |s| s.handle_drains > 0);
    assert_eq!(seen.handle_drains, 1);
    // Every accepted message came back (the link is not connected).
    assert_eq!(seen.undelivered.len(), accepted);
    handle.send(link, vec![0u8; 1000]).expect("room again");
}

#[test]
fn a_refused_sender_is_told_when_the_peer_has_read_enough() {
    let mut cfg = config(60_000, 60_000);
    cfg.max_outbound = 256 * 1024;
    let (mut reactor, addr, _) = listening(cfg);
    let mut peer = RawPeer::connect(addr);
    peer.hello(60_000, 60_000);
    let mut seen = Seen {
        flood_on_connect: true,
        ..Seen::default()
    };
    // Sends until refused, again on every drain, until the socket's
    // buffers are full and the output stays above half the mark.
    turn_until(&mut reactor, &mut seen, |s| s.refused.is_some());
    let id = seen.connected[0];
    let full = |r: &Reactor| r.conn_stats(id).expect("conn").pending_output > 128 * 1024;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !full(&reactor) {
        assert!(Instant::now() < deadline, "the socket never filled");
        if seen.drained.len() >= seen.refusals {
            seen.flood(id, &mut reactor.context());
        }
        reactor
            .poll_once(&mut seen, Some(Duration::from_millis(10)))
            .expect("poll");
    }
    let drains = seen.drained.len();
    // The peer reads: the output falls and the sender hears of it.
    let reader =
        std::thread::spawn(move || while peer.next_frame(Duration::from_secs(5)).is_some() {});
    turn_until(&mut reactor, &mut seen, |s| s.drained.len() > drains);
    assert_eq!(seen.drained[drains], id);
    assert!(!full(&reactor));
    drop(reactor);
    reader.join().expect("reader");
}

#[test]
fn messages_queued_when_the_peer_resets_are_handed_back_in_order() {
    let mut cfg = config(60_000, 60_000);
    cfg.max_outbound = 8 << 20;
    let (mut reactor, addr, _) = listening(cfg);
    let mut peer = RawPeer::connect(addr);
    peer.hello(60_000, 60_000);
    let mut seen = Seen {
        flood_on_connect: true,
        ..Seen::default()
    };
    turn_until(&mut reactor, &mut seen, |s| s.refused.is_some());
    // Read a little, then reset (linger 0): what the reactor still holds
    // must come back.
    let mut some = [0u8; 1000];
    peer.stream.read_exact(&mut some).expect("read");
    socket2::SockRef::from(&peer.stream)
        .set_linger(Some(Duration::ZERO))
        .expect("linger 0");
    drop(peer);
    turn_until(&mut reactor, &mut seen, |s| !s.undelivered.is_empty());
    let (id, messages, cause) = &seen.undelivered[0];
    assert_eq!(*id, seen.connected[0]);
    assert_eq!(*cause, UndeliveredCause::Dropped);
    // A suffix of what was sent, in order, ending with the last one.
    assert!(!messages.is_empty());
    let from = seen.sent.len() - messages.len();
    assert_eq!(&seen.sent[from..], &messages[..]);
    let stats = reactor.conn_stats(*id);
    assert!(stats.is_none_or(|s| s.messages_undelivered == messages.len() as u64));
}

#[test]
fn messages_kept_for_a_link_that_stays_down_are_handed_back_after_their_queue_lifetime() {
    // With resume, a link that is down keeps what is sent for its session;
    // under a queue lifetime it hands it back once it has waited that long.
    let lifetime = ms(150);
    let mut cfg = config(60_000, 60_000);
    cfg.queue_lifetime = Some(lifetime);
    let mut reactor = Reactor::with_config(cfg).expect("reactor");
    let link = reactor.dial(free_addr()); // refused, redialled, never up
    let sent = [
        Bytes::from_static(b"stale"),
        Bytes::from(vec![7u8; 4000]),
        Bytes::from_static(b"data"),
    ];
    let sent_at = Instant::now();
    for m in &sent {
        reactor
            .context()
            .send(link, m.clone())
            .expect("kept for the session");
    }
    let mut seen = Seen::default();
    let deadline = sent_at + Duration::from_secs(10);
    while seen.undelivered.is_empty() && Instant::now() < deadline {
        reactor.poll_once(&mut seen, Some(ms(10))).expect("poll");
    }
    let waited = sent_at.elapsed();
    assert_eq!(
        seen.undelivered,
        vec![(link, sent.to_vec(), UndeliveredCause::Expired)]
    );
    assert!(waited >= lifetime, "handed back early, after {waited:?}");
    // The link goes on redialling; later sends wait again.
    assert!(reactor
        .context()
        .send(link, Bytes::from_static(b"next"))
        .is_ok());
}
