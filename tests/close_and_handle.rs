//! CLOSE in both directions, and a `Handle` driving a reactor from another
//! thread.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::{CloseCode, DisconnectReason, HandleError};

#[test]
fn a_client_close_reaches_the_server_and_ends_the_link() {
    init_logs();
    let (server, client) = echo_pair(300, 300);
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected");
    let link = seen.id();
    // A message queued right before the close is still delivered first.
    client.handle.send(link, &b"last words"[..]).expect("send");
    client
        .handle
        .close(link, CloseCode::NORMAL, "bye")
        .expect("close");
    let (_, seen) = server
        .wait_for(ms(3000), |s| matches!(s, Seen::Message(..)))
        .expect("message before close");
    assert!(matches!(seen, Seen::Message(_, ref m) if m == &Bytes::from_static(b"last words")));
    let (_, seen) = server
        .wait_for(ms(3000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("server saw the close");
    assert_eq!(
        seen,
        Seen::Disconnected(
            seen.id(),
            DisconnectReason::PeerClosed {
                code: CloseCode::NORMAL,
                reason: "bye".into()
            }
        )
    );
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("client reports its own close");
    assert_eq!(
        seen,
        Seen::Disconnected(link, DisconnectReason::LocalClose(CloseCode::NORMAL))
    );
    // No redial after an application close.
    let later = client.collect_for(ms(500));
    assert!(
        later
            .iter()
            .all(|(_, s)| !matches!(s, Seen::Reconnecting(..) | Seen::Connected(..))),
        "{later:?}"
    );
    assert_eq!(client.stop().stats().connections, 0);
    server.stop();
}

#[test]
fn a_server_close_makes_the_client_redial() {
    init_logs();
    let (server, client) = echo_pair(300, 300);
    let (_, seen) = server
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("accepted");
    server
        .handle
        .close(seen.id(), CloseCode::GOING_AWAY, "rebalancing")
        .expect("close");
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("client saw the close");
    assert!(matches!(
        seen,
        Seen::Disconnected(_, DisconnectReason::PeerClosed { code, ref reason })
            if code == CloseCode::GOING_AWAY && reason == "rebalancing"
    ));
    let link = seen.id();
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("client redialled");
    assert_eq!(seen.id(), link);
    client.stop();
    server.stop();
}

#[test]
fn a_handle_on_another_thread_dials_sends_closes_and_shuts_down() {
    init_logs();
    let server = echo_server(config(300, 300), None);
    let addr = server.addr.expect("bound");
    let client = spawn(config(300, 300), false, |_| None);
    let handle = client.handle.clone();
    let worker = std::thread::spawn(move || {
        let link = handle.dial(addr).expect("dial through the handle");
        for i in 0..10u8 {
            handle.send(link, vec![i; 100]).expect("send");
        }
        link
    });
    let link = worker.join().expect("worker");
    // Sends made before the link connected were refused (not connected);
    // wait for the connection, then send again from another thread.
    client
        .wait_for(
            ms(3000),
            |s| matches!(s, Seen::Connected(id, _) if *id == link),
        )
        .expect("connected");
    let handle = client.handle.clone();
    std::thread::spawn(move || {
        for i in 0..10u8 {
            handle.send(link, vec![i; 100]).expect("send");
        }
    })
    .join()
    .expect("sender");
    let mut echoed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while echoed.len() < 10 && Instant::now() < deadline {
        if let Some((_, Seen::Message(_, m))) =
            client.wait_for(ms(500), |s| matches!(s, Seen::Message(..)))
        {
            echoed.push(m[0]);
        }
    }
    assert_eq!(echoed, (0..10).collect::<Vec<u8>>());
    let handle = client.handle.clone();
    std::thread::spawn(move || handle.close(link, CloseCode::NORMAL, "done"))
        .join()
        .expect("closer")
        .expect("close");
    server
        .wait_for(ms(3000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("server saw the close");
    let stale = client.handle.clone();
    let reactor = client.stop();
    assert!(reactor.is_shut_down());
    drop(reactor);
    assert_eq!(stale.shutdown(), Err(HandleError::ReactorGone));
    server.stop();
}

#[test]
fn a_send_through_reactor_context_goes_out_on_the_next_poll() {
    init_logs();
    let server = echo_server(config(60_000, 60_000), None);
    let addr = server.addr.expect("bound");
    let (tx, events) = std::sync::mpsc::channel();
    let mut handler = Recorder { tx, echo: false };
    let mut reactor = tether::Reactor::with_config(config(60_000, 60_000)).expect("reactor");
    let link = reactor.dial(addr);
    let deadline = Instant::now() + Duration::from_secs(3);
    while reactor.conn_stats(link).map(|s| s.state) != Some(tether::proto::conn::State::Established)
    {
        assert!(Instant::now() < deadline, "never connected");
        reactor.poll_once(&mut handler, Some(ms(10))).expect("poll");
    }
    // Outside any callback, as a service that owns its loop would.
    reactor.context().send(link, &b"ping?"[..]).expect("send");
    let sent = Instant::now();
    loop {
        reactor
            .poll_once(&mut handler, Some(ms(5000)))
            .expect("poll");
        if events
            .try_iter()
            .any(|(_, s)| matches!(s, Seen::Message(..)))
        {
            break;
        }
        assert!(sent.elapsed() < Duration::from_secs(3), "no echo");
    }
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "the message waited {:?} for the poll timeout",
        sent.elapsed()
    );
    server.stop();
}

/// Reports its first link up, then calls the blocking `Handle::dial`
/// from inside `on_message`: that must be refused (the reactor would wait
/// on itself), not deadlock.
struct DialsFromCallback {
    handle: tether::Handle,
    target: std::net::SocketAddr,
    up: std::sync::mpsc::Sender<tether::ConnId>,
    result: Option<Result<tether::ConnId, HandleError>>,
}

impl tether::Handler for DialsFromCallback {
    fn on_connected(
        &mut self,
        _cx: &mut tether::Context<'_>,
        id: tether::ConnId,
        _peer: &tether::PeerInfo,
    ) {
        let _ = self.up.send(id);
    }

    fn on_message(
        &mut self,
        cx: &mut tether::Context<'_>,
        _id: tether::ConnId,
        _message: tether::Message<'_>,
    ) {
        if self.result.is_none() {
            self.result = Some(self.handle.dial(self.target));
            cx.shutdown();
        }
    }
}

#[test]
fn a_blocking_dial_is_refused_on_whichever_thread_runs_the_reactor() {
    init_logs();
    let server = echo_server(config(300, 300), None);
    let addr = server.addr.expect("bound");
    let mut reactor = tether::Reactor::with_config(config(300, 300)).expect("reactor");
    let handle = reactor.handle();
    let (up, first_up) = std::sync::mpsc::channel();
    let mut handler = DialsFromCallback {
        handle: handle.clone(),
        target: addr,
        up,
        result: None,
    };
    // A few turns on this thread: it is the reactor's thread now.
    for _ in 0..3 {
        reactor.poll_once(&mut handler, Some(ms(1))).expect("turn");
    }
    // Then the reactor moves to another thread.
    let runner = std::thread::spawn(move || {
        reactor.dial(addr);
        reactor.run(&mut handler).expect("run");
        handler.result
    });
    let link = first_up.recv_timeout(ms(5000)).expect("link up");
    // This thread no longer runs the reactor: its blocking dial goes
    // through.
    let from_here = handle.dial(addr);
    assert!(from_here.is_ok(), "{from_here:?}");
    // The runner's own callback may not block on itself.
    handle.send(link, &b"ping"[..]).expect("send");
    let inside = runner.join().expect("runner thread");
    assert_eq!(inside, Some(Err(HandleError::OnReactorThread)));
    drop(server);
}
