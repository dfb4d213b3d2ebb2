//! Routed dials on a reactor core with an injected clock: lookups that
//! fail follow the backoff in virtual time, and an answer reaches only the
//! attempt that asked for it. The resolver runs on its real thread; the
//! tests wait for its answers (a condition, with a generous deadline),
//! never for time to pass.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::Core;
use crate::config::{BackoffConfig, Config};
use crate::endpoint::{Endpoint, Endpoints};
use crate::error::{CloseCode, DisconnectReason};
use crate::handle::Command;
use crate::proto::conn::{Event, State};
use crate::reactor::ConnId;

/// The longest a test waits for the resolver thread.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Connect timeout 1 s; backoff 100 ms doubling to 1 s, no jitter.
fn config() -> Config {
    Config::builder()
        .heartbeat(ms(1000), ms(1000))
        .connect_timeout(ms(1000))
        .backoff(BackoffConfig {
            initial: ms(100),
            multiplier: 2.0,
            max: ms(1000),
            jitter: 0.0,
            max_attempts: None,
        })
        .build()
        .expect("valid config")
}

fn name(text: &str) -> Endpoints {
    text.parse::<Endpoint>().expect("endpoint").into()
}

/// A core whose resolver counts its lookups and answers "not found".
fn core_that_finds_nothing() -> (Core, Arc<AtomicUsize>) {
    let mut core = Core::new(config()).expect("core");
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = lookups.clone();
    core.set_resolver(Arc::new(move |_: &str, _: u16| {
        counted.fetch_add(1, Ordering::SeqCst);
        Err(io::Error::new(io::ErrorKind::NotFound, "no such host"))
    }));
    (core, lookups)
}

/// A core whose resolver holds each lookup until the test releases it
/// (sending the answer), and reports each lookup it starts.
fn core_with_held_lookups() -> (Core, Receiver<String>, Sender<Vec<SocketAddr>>) {
    let mut core = Core::new(config()).expect("core");
    let (started_tx, started) = mpsc::channel();
    let (release, answers) = mpsc::channel::<Vec<SocketAddr>>();
    let answers = Mutex::new(answers);
    let started_tx = Mutex::new(started_tx);
    core.set_resolver(Arc::new(move |host: &str, _: u16| {
        let _ = started_tx.lock().expect("lock").send(host.to_owned());
        match answers.lock().expect("lock").recv_timeout(ANSWER_WAIT) {
            Ok(addrs) => Ok(addrs),
            Err(_) => Err(io::Error::other("the test never answered")),
        }
    }));
    (core, started, release)
}

/// Waits for the resolver thread's next answer and hands it to the core,
/// as the reactor's loop does on the waker.
fn apply_next_answer(core: &mut Core) {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match core.commands.recv_timeout(left) {
            Ok(Command::Resolved(answer)) => return core.on_resolved(*answer),
            Ok(_) => {}
            Err(e) => panic!("no answer from the resolver thread: {e}"),
        }
    }
}

/// Nothing more from the resolver thread for a moment (the test checks
/// that a state asks for no lookup; the window only bounds the check).
fn no_answer_pending(core: &Core) -> bool {
    core.commands.recv_timeout(ms(100)).is_err()
}

fn state(core: &Core, id: ConnId) -> State {
    let idx = core.slot_index(id).expect("live link");
    core.slots.get(idx).expect("slot").conn.state()
}

/// The link has a lookup in flight.
fn waits_for_lookup(core: &Core, id: ConnId) -> bool {
    let idx = core.slot_index(id).expect("live link");
    let slot = core.slots.get(idx).expect("slot");
    slot.peer.route().is_some_and(|r| r.lookup.is_some())
}

/// Moves the virtual clock to `at` and runs the timers due.
fn advance(core: &mut Core, at: Instant) {
    core.set_clock(at);
    core.fire_timers();
}

#[test]
fn an_unresolvable_name_backs_off_like_a_refused_connect_and_never_spins() {
    let (mut core, lookups) = core_that_finds_nothing();
    let t0 = core.now;
    let config = core.config.clone();
    let id = core.dial(name("nowhere.test:7000"), config);
    let mut schedule = Vec::new();
    let mut attempt_at = Vec::new();
    // Ten seconds of virtual time in 5 ms steps: each lookup answered as
    // it comes, each redial when its timer is due.
    let mut now = t0;
    while now < t0 + Duration::from_secs(10) {
        if waits_for_lookup(&core, id) {
            attempt_at.push(now - t0);
            apply_next_answer(&mut core);
        }
        for (at, event) in core.pending.drain(..) {
            assert_eq!(at, id);
            match event {
                Event::Reconnecting {
                    attempt,
                    delay,
                    reason,
                } => {
                    let DisconnectReason::Resolve { kind, detail } = &reason else {
                        panic!("{reason:?}");
                    };
                    assert_eq!(
                        (*kind, detail.as_str()),
                        (io::ErrorKind::NotFound, "nowhere.test: no such host")
                    );
                    assert_eq!(
                        reason.to_string(),
                        "cannot resolve nowhere.test: no such host"
                    );
                    schedule.push((attempt, delay));
                }
                other => panic!("{other:?}"),
            }
        }
        now += ms(5);
        advance(&mut core, now);
    }
    // 100 ms doubling to the 1 s cap: attempts at 0, 0.1, 0.3, 0.7, 1.5,
    // 2.5, … 9.5 s (each a grid step later at most).
    let want: Vec<(u32, Duration)> = (1..=attempt_at.len() as u32)
        .map(|a| (a, ms(100 << (a - 1).min(4)).min(ms(1000))))
        .collect();
    assert_eq!(schedule, want);
    assert_eq!(attempt_at.len(), 13, "attempts at {attempt_at:?}");
    assert_eq!(lookups.load(Ordering::SeqCst), 13, "one lookup per attempt");
    for (pair, &(_, delay)) in attempt_at.windows(2).zip(&schedule) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= delay && gap <= delay + ms(30),
            "redial after {gap:?}, backoff {delay:?} ({attempt_at:?})"
        );
    }
    assert_eq!(core.stats.connects, 0, "no socket for a name that has none");
    assert_eq!(core.stats.closes.resolve_failed, 13);
    assert_eq!(state(&core, id), State::Backoff);
}

#[test]
fn a_lookup_answered_after_its_link_closed_reaches_nothing() {
    let (mut core, started, release) = core_with_held_lookups();
    let config = core.config.clone();
    let old = core.dial(name("old.test:7000"), config.clone());
    assert_eq!(started.recv_timeout(ANSWER_WAIT).as_deref(), Ok("old.test"));
    assert!(core.close(old, CloseCode::NORMAL, "bye"));
    core.service(old.index());
    core.reap_closed();
    assert_eq!(core.slot_index(old), None, "closed and freed");
    // A new link takes the freed slot and asks for its own name.
    let new = core.dial(name("new.test:7000"), config);
    assert_eq!(new.index(), old.index(), "the slot is reused");
    core.pending.clear();

    // The old lookup's answer: an address that would connect.
    release
        .send(vec!["127.0.0.1:9".parse().expect("addr")])
        .expect("resolver waiting");
    apply_next_answer(&mut core);
    assert_eq!(core.stats.connects, 0, "applied to nobody");
    assert_eq!(state(&core, new), State::Connecting);
    assert!(core.pending.is_empty(), "{:?}", core.pending);

    // The new link's own lookup is still the one it waits for.
    assert_eq!(started.recv_timeout(ANSWER_WAIT).as_deref(), Ok("new.test"));
    release.send(Vec::new()).expect("resolver waiting");
    apply_next_answer(&mut core);
    let ended: Vec<_> = core.pending.drain(..).collect();
    assert!(
        matches!(
            &ended[..],
            [(id, Event::Reconnecting { reason: DisconnectReason::Resolve { kind: io::ErrorKind::NotFound, detail }, .. })]
                if *id == new && detail == "new.test: no address"
        ),
        "{ended:?}"
    );
}

#[test]
fn a_slow_lookup_ends_its_attempt_at_the_connect_timeout_and_serves_the_next_one() {
    let (mut core, started, release) = core_with_held_lookups();
    let t0 = core.now;
    let config = core.config.clone();
    let id = core.dial(name("slow.test:7000"), config);
    assert_eq!(
        started.recv_timeout(ANSWER_WAIT).as_deref(),
        Ok("slow.test")
    );

    // The connect timeout (1 s) passes with the lookup still running.
    advance(&mut core, t0 + ms(1020));
    let reasons: Vec<_> = core.pending.drain(..).map(|(_, e)| e).collect();
    assert!(
        matches!(
            &reasons[..],
            [Event::Reconnecting {
                attempt: 1,
                reason: DisconnectReason::ConnectTimeout,
                ..
            }]
        ),
        "{reasons:?}"
    );
    // The redial, 100 ms later, waits for the same lookup: a hung
    // resolver gets one lookup per link, not one per attempt.
    advance(&mut core, t0 + ms(1140));
    assert_eq!(state(&core, id), State::Connecting);
    assert!(waits_for_lookup(&core, id));
    assert_eq!(core.lookups.asked(), 1, "no second lookup");

    // Its answer, late for the first attempt, serves the second.
    release
        .send(vec!["127.0.0.1:9".parse().expect("addr")])
        .expect("resolver waiting");
    apply_next_answer(&mut core);
    assert_eq!(core.stats.connects, 1, "the second attempt connects");
    let idx = core.slot_index(id).expect("live");
    let slot = core.slots.get(idx).expect("slot");
    assert!(slot.stream.is_some());
    assert_eq!(slot.peer.addr(), "127.0.0.1:9".parse().expect("addr"));
    assert_eq!(
        core.conn_stats(id).map(|s| (s.endpoint, s.peer_addr)),
        Some((0, "127.0.0.1:9".parse().expect("addr")))
    );
    assert_eq!(
        core.endpoint(id).map(|e| e.to_string()),
        Some("slow.test:7000".into())
    );
}

#[test]
fn an_answer_arriving_in_backoff_is_dropped_and_the_redial_asks_again() {
    let (mut core, started, release) = core_with_held_lookups();
    let t0 = core.now;
    let config = core.config.clone();
    let id = core.dial(name("late.test:7000"), config);
    assert_eq!(
        started.recv_timeout(ANSWER_WAIT).as_deref(),
        Ok("late.test")
    );
    advance(&mut core, t0 + ms(1020));
    assert_eq!(state(&core, id), State::Backoff);

    // Answered during the backoff: no socket for an attempt that ended.
    release
        .send(vec!["127.0.0.1:9".parse().expect("addr")])
        .expect("resolver waiting");
    apply_next_answer(&mut core);
    assert_eq!(core.stats.connects, 0);
    assert_eq!(state(&core, id), State::Backoff);
    assert!(no_answer_pending(&core));

    // The redial resolves again (a server that moved is found).
    advance(&mut core, t0 + ms(1140));
    assert_eq!(
        started.recv_timeout(ANSWER_WAIT).as_deref(),
        Ok("late.test")
    );
    release
        .send(vec!["127.0.0.2:9".parse().expect("addr")])
        .expect("resolver waiting");
    apply_next_answer(&mut core);
    assert_eq!(core.stats.connects, 1);
    assert_eq!(
        core.conn_stats(id).map(|s| s.peer_addr),
        Some("127.0.0.2:9".parse().expect("addr"))
    );
}

#[test]
fn a_plain_address_never_asks_the_resolver() {
    let (mut core, lookups) = core_that_finds_nothing();
    let config = core.config.clone();
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let id = core.dial(addr.into(), config.clone());
    let literal = core.dial(name("[::1]:9"), config);
    assert_eq!(core.stats.connects, 2);
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
    assert!(core.lookups_idle(), "no resolver thread for addresses");
    for id in [id, literal] {
        let idx = core.slot_index(id).expect("live");
        assert!(core.slots.get(idx).expect("slot").peer.route().is_none());
    }
}

#[test]
fn a_lookup_hung_in_a_replaced_resolver_is_not_waited_for() {
    let (mut core, started, release) = core_with_held_lookups();
    let t0 = core.now;
    let config = core.config.clone();
    let id = core.dial(name("stuck.test:7000"), config);
    assert_eq!(
        started.recv_timeout(ANSWER_WAIT).as_deref(),
        Ok("stuck.test")
    );
    core.set_resolver(Arc::new(|_: &str, port: u16| {
        Ok(vec![SocketAddr::from(([127, 0, 0, 3], port))])
    }));
    advance(&mut core, t0 + ms(1020)); // the attempt times out
    advance(&mut core, t0 + ms(1140)); // the redial asks the new resolver
    assert_eq!(core.lookups.asked(), 2);
    apply_next_answer(&mut core);
    assert_eq!(
        core.conn_stats(id).map(|s| s.peer_addr),
        Some(SocketAddr::from(([127, 0, 0, 3], 7000)))
    );
    // The old thread's answer, when it comes, is for a lookup nobody
    // waits for any more.
    release.send(Vec::new()).expect("resolver waiting");
    apply_next_answer(&mut core);
    assert_eq!(core.stats.connects, 1);
    assert_eq!(state(&core, id), State::Connecting);
}
