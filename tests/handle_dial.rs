//! `Handle::dial` never waits for an answer that cannot come: refused at
//! once on the thread that owns the reactor (from its construction on) and
//! after a shutdown, withdrawn after `DIAL_WAIT` from a reactor nobody
//! polls.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;
use tether::{HandleError, Reactor, DIAL_WAIT};

/// Runs `f` on a thread of its own and returns its result, or fails the
/// test if it takes longer than `limit` (a dial that blocks forever).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the call returned within the limit")
}

#[test]
fn a_dial_on_the_constructing_thread_before_any_poll_is_refused_at_once() {
    let result = within(Duration::from_secs(3), || {
        let reactor = Reactor::new().expect("reactor");
        let handle = reactor.handle();
        let result = handle.dial(free_addr());
        drop(reactor);
        result
    });
    assert_eq!(result, Err(HandleError::OnReactorThread));
}

#[test]
fn a_dial_or_a_send_after_the_reactor_shut_down_is_refused_at_once() {
    let mut reactor = Reactor::new().expect("reactor");
    let link = reactor.dial(free_addr());
    let handle = reactor.handle();
    handle.shutdown().expect("alive");
    reactor.run(&mut ()).expect("run");
    let other = handle.clone();
    let result = within(Duration::from_secs(3), move || other.dial(free_addr()));
    assert_eq!(result, Err(HandleError::ReactorGone));
    // Nor does it take a message that nothing would ever send or hand
    // back.
    assert_eq!(
        handle.send(link, &b"late"[..]),
        Err(HandleError::ReactorGone)
    );
    drop(reactor);
}

#[test]
fn a_dial_to_a_reactor_nobody_polls_is_withdrawn_after_the_wait() {
    let mut reactor = Reactor::new().expect("reactor");
    let handle = reactor.handle();
    let started = Instant::now();
    let result = within(DIAL_WAIT + Duration::from_secs(5), move || {
        handle.dial(free_addr())
    });
    assert_eq!(result, Err(HandleError::Timeout));
    assert!(started.elapsed() >= DIAL_WAIT);
    // Polled afterwards, the reactor does not make the withdrawn link.
    reactor
        .poll_once(&mut (), Some(Duration::from_millis(50)))
        .expect("poll");
    let stats = reactor.stats();
    assert_eq!((stats.connections, stats.connects), (0, 0));
}

#[test]
fn a_dial_to_a_polled_reactor_from_another_thread_gets_its_id() {
    let mut reactor = Reactor::with_config(config(60_000, 60_000)).expect("reactor");
    let handle = reactor.handle();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.dial(free_addr()));
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let id = loop {
        reactor
            .poll_once(&mut (), Some(Duration::from_millis(10)))
            .expect("poll");
        if let Ok(result) = rx.try_recv() {
            break result.expect("dialed");
        }
        assert!(Instant::now() < deadline, "no answer");
    };
    assert!(reactor.conn_stats(id).is_some());
}
