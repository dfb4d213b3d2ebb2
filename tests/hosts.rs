//! Dialing by name and failover lists on real loopback sockets, with a
//! resolver the test controls: a name that moves is found at the next
//! redial, a name with two addresses connects within one attempt (and
//! starts at the one that worked), an unresolvable name backs off, a slow
//! lookup holds up no other link, a failover list skips a server that is
//! down and comes back to the preferred one, and the resolver thread ends
//! with its reactor.

mod support;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::*;
use tether::{
    CloseCode, ConnId, Context, DisconnectReason, Endpoint, Endpoints, Handler, Message, PeerInfo,
    Reactor, Resolver,
};

/// How long a test waits for anything to happen.
const WAIT: Duration = Duration::from_secs(10);

/// Names the test points at loopback addresses, and the lookups made.
#[derive(Clone, Default)]
struct Names {
    map: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    lookups: Arc<AtomicUsize>,
}

impl Names {
    fn set(&self, host: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().expect("ip")).collect();
        self.map.lock().expect("lock").insert(host.into(), ips);
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    fn resolver(&self) -> impl Resolver {
        let names = self.clone();
        move |host: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            names.lookups.fetch_add(1, Ordering::SeqCst);
            match names.map.lock().expect("lock").get(host) {
                Some(ips) => Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
            }
        }
    }
}

fn endpoint(text: &str) -> Endpoint {
    text.parse().expect("endpoint")
}

/// A client handler that keeps every event, for a reactor the test polls
/// itself (so it can read `conn_stats` between turns).
#[derive(Default)]
struct Log {
    seen: Vec<(Instant, Seen)>,
}

impl Handler for Log {
    fn on_connected(&mut self, _: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        self.seen.push((Instant::now(), Seen::Connected(id, *peer)));
    }
    fn on_message(&mut self, _: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let message = message.into_bytes();
        self.seen.push((Instant::now(), Seen::Message(id, message)));
    }
    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, why: &DisconnectReason) {
        self.seen
            .push((Instant::now(), Seen::Disconnected(id, why.clone())));
    }
    fn on_reconnecting(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        attempt: u32,
        delay: Duration,
        why: &DisconnectReason,
    ) {
        self.seen.push((
            Instant::now(),
            Seen::Reconnecting(id, attempt, delay, why.clone()),
        ));
    }
}

/// Polls `reactor` until `done` holds (checked after every turn), for at
/// most [`WAIT`].
fn poll_until(reactor: &mut Reactor, log: &mut Log, mut done: impl FnMut(&Reactor, &Log) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(reactor, log) {
        assert!(
            Instant::now() < deadline,
            "gave up waiting; saw {:?}",
            log.seen
        );
        reactor
            .poll_once(log, Some(Duration::from_millis(10)))
            .expect("poll");
    }
}

/// The connections the log saw, in order.
fn connects(log: &Log) -> Vec<PeerInfo> {
    log.seen
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::Connected(_, peer) => Some(*peer),
            _ => None,
        })
        .collect()
}

fn redials(log: &Log) -> Vec<DisconnectReason> {
    log.seen
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::Reconnecting(_, _, _, why) => Some(why.clone()),
            _ => None,
        })
        .collect()
}

/// A loopback listener that never accepts, with its accept queue full:
/// a connect to it gets no answer at all (the SYN is dropped), like a
/// server behind a black hole. Keep the value alive while it is used.
struct BlackHole {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<socket2::Socket>,
}

fn black_hole() -> BlackHole {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    // Fill the accept queue: these are accepted by the kernel (queued),
    // everything after them waits in SYN_SENT.
    let queued = (0..3)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            s.set_nonblocking(true).expect("nonblocking");
            let _ = s.connect(&addr.into());
            s
        })
        .collect();
    BlackHole {
        addr,
        _listener: listener,
        _queued: queued,
    }
}

#[test]
fn a_name_that_moves_to_another_address_is_found_at_the_next_redial() {
    init_logs();
    let first = echo_server(config(200, 200), Some("127.0.0.1:0".parse().expect("addr")));
    let port = first.addr.expect("bound").port();
    let second = echo_server(
        config(200, 200),
        Some(SocketAddr::from(([127, 0, 0, 2], port))),
    );
    let names = Names::default();
    names.set("svc.test", &["127.0.0.1"]);
    let mut client = Reactor::with_config(config(200, 200)).expect("reactor");
    client.set_resolver(names.resolver());
    let link = client.dial(endpoint(&format!("svc.test:{port}")));
    let mut log = Log::default();
    poll_until(&mut client, &mut log, |_, log| connects(log).len() == 1);
    let stats = client.conn_stats(link).expect("live");
    assert_eq!(stats.peer_addr, SocketAddr::from(([127, 0, 0, 1], port)));
    first
        .wait_for(WAIT, |s| matches!(s, Seen::Connected(..)))
        .expect("the first server has the link");

    // The service moves: the name says so, the old server goes away.
    names.set("svc.test", &["127.0.0.2"]);
    let moved = Instant::now();
    first.stop();
    poll_until(&mut client, &mut log, |_, log| connects(log).len() == 2);
    println!(
        "moved server: connected at its new address {:?} after its old one closed",
        moved.elapsed()
    );
    let stats = client.conn_stats(link).expect("live");
    assert_eq!(stats.peer_addr, SocketAddr::from(([127, 0, 0, 2], port)));
    assert_eq!(stats.endpoint, 0);
    second
        .wait_for(WAIT, |s| matches!(s, Seen::Connected(..)))
        .expect("the second server has the link");
    assert!(names.lookups() >= 2, "looked up again at the redial");
    assert_eq!(
        client.endpoint(link),
        Some(endpoint(&format!("svc.test:{port}")))
    );
    second.stop();
}

#[test]
fn a_name_with_two_addresses_connects_in_one_attempt_and_starts_next_time_where_it_worked() {
    init_logs();
    let server = echo_server(config(200, 200), None);
    let port = server.addr.expect("bound").port();
    let names = Names::default();
    // IPv6 first, as a resolver may prefer it; nothing listens there.
    names.set("dual.test", &["::1", "127.0.0.1"]);
    let mut client = Reactor::with_config(config(200, 200)).expect("reactor");
    client.set_resolver(names.resolver());
    let link = client.dial(endpoint(&format!("dual.test:{port}")));
    let mut log = Log::default();
    poll_until(&mut client, &mut log, |_, log| !connects(log).is_empty());
    assert_eq!(
        redials(&log),
        [],
        "one attempt: the refused address was skipped"
    );
    assert_eq!(client.stats().connects, 2, "[::1] refused, then 127.0.0.1");
    assert_eq!(
        client.conn_stats(link).map(|s| s.peer_addr),
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    );

    // The server ends the link; the redial starts at the address that
    // worked.
    let (_, Seen::Connected(server_side, _)) = server
        .wait_for(WAIT, |s| matches!(s, Seen::Connected(..)))
        .expect("server side")
    else {
        unreachable!()
    };
    server
        .handle
        .close(server_side, CloseCode::GOING_AWAY, "move along")
        .expect("server alive");
    poll_until(&mut client, &mut log, |_, log| connects(log).len() == 2);
    assert_eq!(client.stats().connects, 3, "straight to 127.0.0.1");
    server.stop();
}

#[test]
fn an_address_that_does_not_answer_gets_its_share_of_the_connect_timeout() {
    init_logs();
    let hole = black_hole();
    let server = echo_server(config(200, 200), None);
    let good = server.addr.expect("bound");
    // Both loopback; the resolver gives the ports too (it ignores the
    // name's): the silent one first.
    let silent = hole.addr;
    let resolver = move |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Ok(vec![silent, good]) };
    // A heartbeat long enough that TCP_USER_TIMEOUT (I + T) does not end
    // the silent connect first.
    let config = tether::Config::builder()
        .heartbeat(ms(5000), ms(5000))
        .connect_timeout(ms(2000))
        .build()
        .expect("config");
    let mut client = Reactor::with_config(config).expect("reactor");
    client.set_resolver(resolver);
    let started = Instant::now();
    let link = client.dial(endpoint("hole.test:1"));
    let mut log = Log::default();
    poll_until(&mut client, &mut log, |_, log| !connects(log).is_empty());
    let took = started.elapsed();
    println!("silent address: connected to the next one after {took:?}");
    // Half the connect timeout on the silent address, then the good one,
    // within the same attempt: no redial, no connect timeout.
    assert_eq!(redials(&log), []);
    assert!(took >= ms(950), "moved on after {took:?}");
    assert_eq!(client.conn_stats(link).map(|s| s.peer_addr), Some(good));
    assert_eq!(client.stats().connects, 2);
    server.stop();
}

#[test]
fn an_unresolvable_name_backs_off_with_a_clear_reason_and_never_spins() {
    init_logs();
    let names = Names::default();
    let mut client = Reactor::with_config(config(200, 200)).expect("reactor");
    client.set_resolver(names.resolver());
    client.dial(endpoint("nowhere.test:7000"));
    let mut log = Log::default();
    poll_until(&mut client, &mut log, |_, log| redials(log).len() >= 6);
    let mut schedule = Vec::new();
    let mut times = Vec::new();
    for (at, seen) in &log.seen {
        let Seen::Reconnecting(_, attempt, delay, why) = seen else {
            panic!("{seen:?}");
        };
        assert!(
            matches!(why, DisconnectReason::Resolve { kind: io::ErrorKind::NotFound, detail } if detail == "nowhere.test: no such host"),
            "{why:?}"
        );
        schedule.push((*attempt, *delay));
        times.push(*at);
    }
    // The test config's backoff: 50 ms doubling to 400 ms, no jitter.
    assert_eq!(
        &schedule[..6],
        [
            (1, ms(50)),
            (2, ms(100)),
            (3, ms(200)),
            (4, ms(400)),
            (5, ms(400)),
            (6, ms(400))
        ]
    );
    for (pair, &(_, delay)) in times.windows(2).zip(&schedule) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= delay - ms(2),
            "redial after {gap:?}, backoff {delay:?}"
        );
    }
    let stats = client.stats();
    assert_eq!(stats.connects, 0);
    assert_eq!(stats.closes.resolve_failed, schedule.len() as u64);
    // One lookup per attempt (the next one may be in flight).
    let lookups = names.lookups();
    assert!(
        lookups == schedule.len() || lookups == schedule.len() + 1,
        "{lookups} lookups for {} attempts",
        schedule.len()
    );
}

#[test]
fn a_lookup_that_hangs_holds_up_no_other_link() {
    init_logs();
    let server = echo_server(config(200, 200), None);
    // The resolver blocks on "slow.test" until the test opens the gate.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let resolver = {
        let (gate, entered) = (gate.clone(), entered.clone());
        move |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> {
            entered.fetch_add(1, Ordering::SeqCst);
            let (open, cv) = &*gate;
            let guard = open.lock().expect("lock");
            let _ = cv
                .wait_timeout_while(guard, Duration::from_secs(30), |open| !*open)
                .expect("lock");
            Err(io::Error::new(io::ErrorKind::TimedOut, "too slow"))
        }
    };
    let mut client = Reactor::with_config(config(200, 200)).expect("reactor");
    client.set_resolver(resolver);
    let slow = client.dial(endpoint("slow.test:7000"));
    let fast = client.dial(server.addr.expect("bound"));
    let mut log = Log::default();
    poll_until(&mut client, &mut log, |_, log| {
        connects(log).len() == 1 && entered.load(Ordering::SeqCst) == 1
    });
    // 100 round trips on the other link while the lookup hangs.
    let mut slowest = Duration::ZERO;
    for i in 0..100u32 {
        let sent = Instant::now();
        client
            .context()
            .send(fast, i.to_be_bytes().to_vec())
            .expect("queued");
        let before = log.seen.len();
        poll_until(&mut client, &mut log, |_, log| {
            log.seen[before..]
                .iter()
                .any(|(_, s)| matches!(s, Seen::Message(id, _) if *id == fast))
        });
        slowest = slowest.max(sent.elapsed());
    }
    println!("hung lookup: 100 round trips on another link, slowest {slowest:?}");
    assert!(slowest < ms(1000), "a round trip took {slowest:?}");
    assert_eq!(entered.load(Ordering::SeqCst), 1, "the lookup still hangs");
    // Meanwhile the slow link's attempts ended at the connect timeout
    // (1 s), and its redials wait for the same lookup.
    poll_until(&mut client, &mut log, |_, log| {
        redials(log)
            .iter()
            .filter(|why| **why == DisconnectReason::ConnectTimeout)
            .count()
            >= 2
    });
    assert_eq!(entered.load(Ordering::SeqCst), 1, "one lookup per link");
    assert!(log
        .seen
        .iter()
        .all(|(_, s)| s.id() == slow || s.id() == fast));
    *gate.0.lock().expect("lock") = true;
    gate.1.notify_all();
    server.stop();
}

#[test]
fn a_failover_list_skips_a_server_that_is_down_and_comes_back_to_the_preferred_one() {
    init_logs();
    let preferred = free_addr(); // nothing listens here yet
    let backup = echo_server(config(200, 200), None);
    let backup_addr = backup.addr.expect("bound");
    let last = echo_server(config(200, 200), None);
    let last_addr = last.addr.expect("bound");
    let mut client = Reactor::with_config(config(200, 200)).expect("reactor");
    let list = Endpoints::new([preferred, backup_addr, last_addr]).expect("three endpoints");
    let link = client.dial(list);
    let mut log = Log::default();
    poll_until(&mut client, &mut log, |_, log| !connects(log).is_empty());
    assert!(
        matches!(redials(&log)[..], [DisconnectReason::ConnectFailed(_)]),
        "{:?}",
        log.seen
    );
    let peer = connects(&log)[0];
    assert_eq!((peer.endpoint, peer.moved), (1, false));
    let stats = client.conn_stats(link).expect("live");
    assert_eq!((stats.endpoint, stats.peer_addr), (1, backup_addr));
    assert_eq!(client.endpoint(link), Some(Endpoint::from(backup_addr)));

    // The preferred server comes up; the link stays where it works until
    // that connection is lost, healthy (the backoff reset): then it goes
    // back to the preferred one, not on to the next.
    let first = echo_server(config(200, 200), Some(preferred));
    poll_until(&mut client, &mut log, |c, _| {
        c.conn_stats(link).is_some_and(|s| s.reconnect_attempt == 0)
    });
    assert_eq!(client.conn_stats(link).map(|s| s.endpoint), Some(1));
    let lost = Instant::now();
    backup.stop();
    poll_until(&mut client, &mut log, |_, log| connects(log).len() == 2);
    println!(
        "failover: back on the preferred endpoint {:?} after the backup closed",
        lost.elapsed()
    );
    let peer = connects(&log)[1];
    assert_eq!(
        (peer.endpoint, peer.moved),
        (0, true),
        "back on the preferred one"
    );
    assert_eq!(
        client.conn_stats(link).map(|s| (s.endpoint, s.peer_addr)),
        Some((0, preferred))
    );
    first.stop();
    last.stop();
}

#[test]
fn a_handle_dials_a_name_from_another_thread() {
    init_logs();
    let server = echo_server(config(200, 200), None);
    let port = server.addr.expect("bound").port();
    let names = Names::default();
    names.set("svc.test", &["127.0.0.1"]);
    let mut client = Reactor::with_config(config(200, 200)).expect("reactor");
    client.set_resolver(names.resolver());
    let handle = client.handle();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.dial(endpoint(&format!("svc.test:{port}"))));
    });
    let mut log = Log::default();
    let mut link = None;
    poll_until(&mut client, &mut log, |_, log| {
        if let Ok(id) = rx.try_recv() {
            link = Some(id.expect("dialed"));
        }
        link.is_some() && !connects(log).is_empty()
    });
    assert_eq!(
        log.seen.iter().map(|(_, s)| s.id()).next(),
        link,
        "the handle's link connected"
    );
    server.stop();
}

#[test]
fn the_resolver_thread_ends_with_its_reactor() {
    /// A resolver that reports when it is dropped: the resolver thread
    /// holds it until it ends.
    struct Watched {
        dropped: Mutex<mpsc::Sender<()>>,
    }
    impl Resolver for Watched {
        fn resolve(&self, _: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        }
    }
    impl Drop for Watched {
        fn drop(&mut self) {
            let _ = self.dropped.lock().map(|tx| tx.send(()));
        }
    }
    init_logs();
    let (tx, dropped) = mpsc::channel();
    let mut client = Reactor::with_config(config(200, 200)).expect("reactor");
    client.set_resolver(Watched {
        dropped: Mutex::new(tx),
    });
    let link = client.dial(endpoint("watched.test:9"));
    let mut log = Log::default();
    // The lookup went through the thread: the attempt has an address.
    poll_until(&mut client, &mut log, |c, _| {
        c.conn_stats(link)
            .is_some_and(|s| s.peer_addr.port() == 9 && !s.peer_addr.ip().is_unspecified())
    });
    assert!(
        dropped.try_recv().is_err(),
        "in use while the reactor lives"
    );
    drop(client);
    dropped
        .recv_timeout(WAIT)
        .expect("the resolver thread ended and dropped its resolver");
}
