//! Soak: several tether clients send messages of random sizes at random
//! intervals to a tether echo server through the fault-injecting proxy,
//! which switches to a random fault at random times. Runs 30 s by default;
//! `TETHER_SOAK_SECS=600` runs ten minutes, `TETHER_SOAK_SEED=n` replays a
//! fault schedule (the seed is printed):
//!
//! ```text
//! TETHER_SOAK_SECS=600 cargo test --release --test soak -- --nocapture
//! ```
//!
//! Asserted: no panic on any thread; every echo comes back whole and in
//! order (or its connection is reported lost); after every fault, once the
//! proxy is pass-through again, every client is connected; at the end every
//! client is connected, the server holds exactly one connection per client
//! (no leak, nothing half-closed left behind) and so does the proxy; the
//! process's resident memory did not grow between one third of the run and
//! its end by more than [`RSS_GROWTH_LIMIT`].

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use proxy::{Mode, Proxy};
use support::{config, init_logs, ms};
use tether::proto::conn::SendError;
use tether::{
    ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor, ReactorStats,
};

const LINKS: usize = 8;
const I: u64 = 300;
const T: u64 = 300;
/// Echoes a link may await at once (bytes): keeps every outbox far below
/// `max_outbound` (4 MiB), so backpressure never drops an echo.
const MAX_INFLIGHT: usize = 1 << 20;
/// A client is back within this after a fault is lifted: the backoff cap
/// (400 ms), a handshake begun during the fault timing out (1 s), a delayed
/// chunk still due (≤ 2T) and a redial, with slack for a loaded machine.
const RECOVER: Duration = Duration::from_secs(6);
/// Allowed growth of VmRSS from one third of the run to its end.
///
/// What legitimately moves RSS after warm-up: glibc keeps freed memory in
/// its per-thread arenas (the proxy starts two threads per proxied
/// connection, so new arenas, up to 8 × cores of them, appear over time and
/// each keeps its high-water mark of 16 KiB read chunks and queued
/// messages); a proxied direction may hold 16 × 16 KiB; each link may have
/// 1 MiB of echoes in flight in three places (client outbox, proxy, server
/// outbox) at the moment of the reading. That is a few MiB in the worst
/// case. A real leak — one 64 KiB read block or one connection's buffers
/// per reconnect — grows with the hundreds of reconnects of a run and
/// crosses 20 MiB within a ten-minute soak (and usually within 30 s).
const RSS_GROWTH_LIMIT: u64 = 20 << 20;

/// xorshift64*: deterministic per seed, good enough for schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

// ----- the server -------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct ServerView {
    stats: ReactorStats,
    live: usize,
    echo_errors: u64,
}

#[derive(Default)]
struct EchoServer {
    live: HashSet<ConnId>,
    echo_errors: u64,
}

impl Handler for EchoServer {
    fn on_connected(&mut self, _: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        assert!(self.live.insert(id), "{id} connected twice");
    }
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        match cx.send(id, message) {
            // A message can arrive right ahead of the peer's CLOSE.
            Ok(()) | Err(SendError::NotConnected) => {}
            Err(e) => {
                log::error!("{id}: echo refused: {e}");
                self.echo_errors += 1;
            }
        }
    }
    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, _: &DisconnectReason) {
        assert!(
            self.live.remove(&id),
            "{id} disconnected but was not connected"
        );
    }
}

fn start_server(
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<ServerView>>,
) -> (SocketAddr, JoinHandle<ServerView>) {
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut reactor = Reactor::with_config(config(I, T)).expect("server reactor");
        let l = reactor
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        tx.send(reactor.local_addr(l).expect("bound"))
            .expect("test waiting");
        let mut server = EchoServer::default();
        let publish = |reactor: &Reactor, server: &EchoServer| {
            let v = ServerView {
                stats: reactor.stats(),
                live: server.live.len(),
                echo_errors: server.echo_errors,
            };
            *view.lock().expect("view") = v.clone();
            v
        };
        while !stop.load(Ordering::SeqCst) {
            reactor
                .poll_once(&mut server, Some(ms(10)))
                .expect("server poll");
            publish(&reactor, &server);
        }
        let last = publish(&reactor, &server);
        reactor.handle().shutdown().expect("shutdown");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !reactor.is_shut_down() && Instant::now() < deadline {
            reactor
                .poll_once(&mut server, Some(ms(10)))
                .expect("server poll");
        }
        last
    });
    (rx.recv().expect("server started"), thread)
}

// ----- the clients ------------------------------------------------------------

struct Link {
    id: ConnId,
    connected: bool,
    inflight: VecDeque<Bytes>,
    inflight_bytes: usize,
    next_send: Instant,
    seq: u64,
    connects: u64,
    disconnects: u64,
    echoed: u64,
}

#[derive(Clone, Debug, Default)]
struct LinkView {
    connected: bool,
    inflight: usize,
    connects: u64,
    disconnects: u64,
    echoed: u64,
}

#[derive(Clone, Debug, Default)]
struct ClientView {
    links: Vec<LinkView>,
    errors: Vec<String>,
    reasons: BTreeMap<String, u64>,
    sent: u64,
}

impl ClientView {
    fn all_connected(&self) -> bool {
        self.links.len() == LINKS && self.links.iter().all(|l| l.connected)
    }
}

struct Clients {
    links: Vec<Link>,
    by_id: HashMap<ConnId, usize>,
    errors: Vec<String>,
    reasons: BTreeMap<String, u64>,
    sent: u64,
}

impl Clients {
    fn link(&mut self, id: ConnId) -> &mut Link {
        let i = self.by_id[&id];
        &mut self.links[i]
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }

    fn view(&self) -> ClientView {
        ClientView {
            links: self
                .links
                .iter()
                .map(|l| LinkView {
                    connected: l.connected,
                    inflight: l.inflight.len(),
                    connects: l.connects,
                    disconnects: l.disconnects,
                    echoed: l.echoed,
                })
                .collect(),
            errors: self.errors.clone(),
            reasons: self.reasons.clone(),
            sent: self.sent,
        }
    }
}

impl Handler for Clients {
    fn on_connected(&mut self, _: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        let link = self.link(id);
        link.connected = true;
        link.connects += 1;
        if !matches!(peer.resume, tether::ResumeStatus::Resumed { .. }) {
            // Not a resumed session: whatever was in flight went down
            // with the last connection. (Resumed, every echo still comes,
            // exactly once and in order.)
            link.inflight.clear();
            link.inflight_bytes = 0;
        }
    }

    fn on_message(&mut self, _: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let link = self.link(id);
        match link.inflight.pop_front() {
            Some(expected) if expected == message => {
                link.inflight_bytes -= expected.len();
                link.echoed += 1;
            }
            expected => {
                let e = format!(
                    "{id}: echo of {} bytes does not match the oldest message awaited ({:?} bytes)",
                    message.len(),
                    expected.map(|m| m.len())
                );
                self.error(e);
            }
        }
    }

    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        let link = self.link(id);
        link.connected = false;
        link.disconnects += 1;
        let kind = format!("{reason:?}");
        let kind = kind.split(['(', ' ']).next().unwrap_or("?").to_string();
        *self.reasons.entry(kind).or_default() += 1;
    }
}

/// A message of random size: mostly small, some medium, a few large.
fn message(rng: &mut Rng, link: usize, seq: u64) -> Bytes {
    let len = match rng.below(100) {
        0..=69 => rng.range(0, 512),
        70..=94 => rng.range(513, 16 * 1024),
        _ => rng.range(16 * 1024 + 1, 128 * 1024),
    } as usize;
    let mut m = Vec::with_capacity(len);
    let tag = (seq as u8) ^ (link as u8).wrapping_mul(37);
    m.extend((0..len).map(|i| tag.wrapping_add((i as u8).wrapping_mul(7))));
    if len >= 9 {
        m[0] = link as u8;
        m[1..9].copy_from_slice(&seq.to_le_bytes());
    }
    m.into()
}

fn start_clients(
    target: SocketAddr,
    seed: u64,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<ClientView>>,
) -> JoinHandle<(ClientView, ReactorStats)> {
    thread::spawn(move || {
        let mut rng = Rng(seed | 1);
        let mut reactor = Reactor::with_config(config(I, T)).expect("client reactor");
        let now = Instant::now();
        let links: Vec<Link> = (0..LINKS)
            .map(|_| Link {
                id: reactor.dial(target),
                connected: false,
                inflight: VecDeque::new(),
                inflight_bytes: 0,
                next_send: now,
                seq: 0,
                connects: 0,
                disconnects: 0,
                echoed: 0,
            })
            .collect();
        let by_id = links.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
        let mut clients = Clients {
            links,
            by_id,
            errors: Vec::new(),
            reasons: BTreeMap::new(),
            sent: 0,
        };
        let mut published = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            reactor
                .poll_once(&mut clients, Some(ms(5)))
                .expect("client poll");
            let now = Instant::now();
            if sending.load(Ordering::SeqCst) {
                for i in 0..LINKS {
                    let link = &mut clients.links[i];
                    if !link.connected || now < link.next_send || link.inflight_bytes > MAX_INFLIGHT
                    {
                        continue;
                    }
                    link.next_send = now + ms(rng.range(2, 150));
                    link.seq += 1;
                    let m = message(&mut rng, i, link.seq);
                    match reactor.context().send(link.id, m.clone()) {
                        Ok(()) => {
                            link.inflight_bytes += m.len();
                            link.inflight.push_back(m);
                            clients.sent += 1;
                        }
                        Err(e) => {
                            let id = link.id;
                            clients.error(format!("{id}: send on a connected link refused: {e}"));
                        }
                    }
                }
            }
            if now - published >= ms(20) {
                *view.lock().expect("view") = clients.view();
                published = now;
            }
        }
        let last = clients.view();
        *view.lock().expect("view") = last.clone();
        let stats = reactor.stats();
        reactor.handle().shutdown().expect("shutdown");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !reactor.is_shut_down() && Instant::now() < deadline {
            reactor
                .poll_once(&mut clients, Some(ms(10)))
                .expect("client poll");
        }
        (last, stats)
    })
}

// ----- the schedule -----------------------------------------------------------

fn random_fault(rng: &mut Rng) -> Mode {
    match rng.below(10) {
        0 => Mode::Blackhole,
        1 => Mode::BlackholeUp,
        2 => Mode::BlackholeDown,
        3 => Mode::Delay(ms(rng.range(5, T / 2))),
        4 => Mode::Delay(ms(rng.range(T, 2 * T))),
        5 => Mode::Throttle(rng.range(32, 1024) * 1024),
        6 => Mode::Reset,
        7 => Mode::CloseToClient,
        8 => Mode::CloseToServer,
        _ => Mode::Blackhole, // the case heartbeats exist for: twice as likely
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(ms(10));
    }
}

#[test]
fn soak_mixed_traffic_through_random_faults() {
    init_logs();
    let secs = env_u64("TETHER_SOAK_SECS").unwrap_or(30).max(3);
    let seed = env_u64("TETHER_SOAK_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("soak: {secs} s, {LINKS} clients, TETHER_SOAK_SEED={seed}");
    let mut rng = Rng(seed | 1);

    let stop_server = Arc::new(AtomicBool::new(false));
    let server_view = Arc::new(Mutex::new(ServerView::default()));
    let (server_addr, server) = start_server(stop_server.clone(), server_view.clone());
    let proxy = Proxy::start(server_addr);
    let sending = Arc::new(AtomicBool::new(true));
    let stop_clients = Arc::new(AtomicBool::new(false));
    let client_view = Arc::new(Mutex::new(ClientView::default()));
    let clients = start_clients(
        proxy.addr(),
        rng.next(),
        sending.clone(),
        stop_clients.clone(),
        client_view.clone(),
    );
    let clients_now = || client_view.lock().expect("view").clone();
    let server_now = || server_view.lock().expect("view").clone();
    assert!(
        wait_until(Duration::from_secs(10), || clients_now().all_connected()),
        "not every client connected at the start: {:?}",
        clients_now()
    );

    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut rss_third = None;
    let mut faults: BTreeMap<String, u32> = BTreeMap::new();
    let mut slowest_recovery = Duration::ZERO;
    // Bounded in count as well as in time.
    for round in 0..100_000u32 {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let fault = random_fault(&mut rng);
        let hold = ms(rng.range(100, 1500)).min(end - now);
        *faults
            .entry(format!("{fault:?}").split('(').next().unwrap_or("?").into())
            .or_default() += 1;
        proxy.set_mode(fault);
        thread::sleep(hold);
        proxy.set_mode(Mode::PassThrough);
        let lifted = Instant::now();
        assert!(
            wait_until(RECOVER, || clients_now().all_connected()),
            "round {round}: clients not all back {RECOVER:?} after {fault:?} for {hold:?}: {:?}",
            clients_now().links
        );
        slowest_recovery = slowest_recovery.max(lifted.elapsed());
        let view = clients_now();
        assert!(view.errors.is_empty(), "round {round}: {:?}", view.errors);
        assert_eq!(server_now().echo_errors, 0, "round {round}");
        // Traffic on a clean link for a while.
        thread::sleep(ms(rng.range(200, 1500)).min(end.saturating_duration_since(Instant::now())));
        if rss_third.is_none() && Instant::now() >= started + Duration::from_secs(secs) / 3 {
            rss_third = Some(rss_bytes());
        }
    }
    let rss_third = rss_third.unwrap_or_else(rss_bytes);

    // Quiet period: no more traffic, no more faults. Everything settles to
    // one connection per client everywhere.
    sending.store(false, Ordering::SeqCst);
    proxy.set_mode(Mode::PassThrough);
    let settled = |c: &ClientView, s: &ServerView, active: usize| {
        c.all_connected()
            && c.links.iter().all(|l| l.inflight == 0)
            && s.live == LINKS
            && s.stats.connections == LINKS
            && active == LINKS
    };
    assert!(
        wait_until(Duration::from_secs(10), || settled(
            &clients_now(),
            &server_now(),
            proxy.active()
        )),
        "did not settle: clients {:?}, server {:?}, proxied connections {}",
        clients_now(),
        server_now(),
        proxy.active()
    );
    // And it stays so over more than a heartbeat round (idle links live).
    thread::sleep(ms(2 * (I + T)));
    let (c, s) = (clients_now(), server_now());
    assert!(
        settled(&c, &s, proxy.active()),
        "unsettled again: clients {c:?}, server {s:?}, proxied connections {}",
        proxy.active()
    );
    let rss_end = rss_bytes();

    stop_clients.store(true, Ordering::SeqCst);
    let (client_final, client_stats) = clients.join().expect("client thread panicked");
    stop_server.store(true, Ordering::SeqCst);
    let server_final = server.join().expect("server thread panicked");
    let accepted = proxy.accepted();
    drop(proxy);

    let echoed: u64 = client_final.links.iter().map(|l| l.echoed).sum();
    eprintln!(
        "soak: {:?}, faults {faults:?}, slowest recovery {slowest_recovery:?}",
        started.elapsed()
    );
    eprintln!(
        "soak: {} messages sent, {echoed} echoed whole and in order; disconnects by reason {:?}",
        client_final.sent, client_final.reasons
    );
    eprintln!(
        "soak: per client (connects, disconnects): {:?}",
        client_final
            .links
            .iter()
            .map(|l| (l.connects, l.disconnects))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "soak: proxy accepted {accepted}; client connects {}; server accepted {}, closes {:?}",
        client_stats.connects, server_final.stats.accepted, server_final.stats.closes
    );
    eprintln!(
        "soak: VmRSS {} KiB at 1/3, {} KiB at the end",
        rss_third / 1024,
        rss_end / 1024
    );

    assert!(client_final.errors.is_empty(), "{:?}", client_final.errors);
    assert_eq!(server_final.echo_errors, 0);
    assert!(echoed > 0, "no traffic got through");
    for (i, l) in client_final.links.iter().enumerate() {
        // Every loss was followed by a comeback.
        assert_eq!(l.connects, l.disconnects + 1, "client {i}: {l:?}");
    }
    assert!(
        client_final
            .links
            .iter()
            .map(|l| l.disconnects)
            .sum::<u64>()
            > 0,
        "no fault ever cost a connection: the faults did not bite"
    );
    assert!(
        rss_end <= rss_third + RSS_GROWTH_LIMIT,
        "VmRSS grew from {} KiB to {} KiB",
        rss_third / 1024,
        rss_end / 1024
    );
}
