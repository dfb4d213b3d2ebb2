//! Thousands of random configurations, built through the public API (the
//! builder and the public fields) from extreme values: each is either
//! refused by `Config::validate`, by every path that takes one alike, or
//! runs without a panic — the sans-IO `Connection` on an injected clock
//! through a failed connect, backoff, handshake, heartbeats, a dead peer,
//! a close and huge jumps of time, and for a share of them a real reactor
//! on loopback: listening, dialing itself and a closed port.
//!
//! The seed is printed; `TETHER_PROPTEST_SEED=<n>` reruns one,
//! `TETHER_PROPTEST_CASES=<n>` runs more (or fewer) configurations.

mod support;

use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use support::Rng;
use tether::proto::conn::{Action, Connection, Event, State};
use tether::BackoffConfig;
use tether::{CloseCode, Config, ConnId, Context, DisconnectReason, HandleError, Handler, Reactor};
use tether::{ConfigError, Heartbeat, PingFlood, MAX_DURATION};
use tether::{Keepalive, SocketOptions, UserTimeout};

/// Configurations per run, unless `TETHER_PROPTEST_CASES` says otherwise.
const CASES: u64 = 3_000;
/// One accepted configuration in this many also runs on a real reactor.
const REACTOR_SHARE: u64 = 5;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A duration from the edges: zero, a nanosecond, around a millisecond,
/// the minimum stall tolerance, `u32::MAX` and `i32::MAX` ms, a year and
/// just past it, `Duration::MAX`, or something ordinary.
fn duration(rng: &mut Rng) -> Duration {
    let year = MAX_DURATION;
    match rng.below(16) {
        0 => Duration::ZERO,
        1 => Duration::from_nanos(1),
        2 => Duration::from_micros(999),
        3 => ms(1),
        4 => ms(9),
        5 => ms(10),
        6 => ms(16),
        7 => ms(u32::MAX.into()),
        8 => ms(i32::MAX as u64),
        9 => year,
        10 => year + Duration::from_secs(1),
        11 => Duration::MAX,
        12 => Duration::from_secs(rng.below(40_000)),
        13 => Duration::from_secs(32_767) + ms(rng.below(1_000)),
        _ => Duration::from_nanos(rng.below(2_000_000_000)),
    }
}

fn float(rng: &mut Rng) -> f64 {
    rng.pick(&[
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        -0.0,
        0.0,
        f64::MIN_POSITIVE,
        0.2,
        0.999_999_999,
        1.0,
        1.5,
        2.0,
        1e300,
        f64::MAX,
    ])
}

fn size(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => 13,
        3 => 1 << 20,
        4 => u32::MAX as usize - 1,
        5 => u32::MAX as usize,
        6 => usize::MAX,
        7 => usize::MAX - 1,
        _ => rng.below(1 << 24) as usize,
    }
}

fn count(rng: &mut Rng) -> u32 {
    rng.pick(&[0, 1, 3, 5, 127, 128, 254, 255, 1_000, u32::MAX])
}

fn keepalive(rng: &mut Rng) -> Option<Keepalive> {
    rng.one_in(4).then(|| Keepalive {
        idle: duration(rng),
        interval: duration(rng),
        count: count(rng),
    })
}

fn user_timeout(rng: &mut Rng) -> UserTimeout {
    match rng.below(3) {
        0 => UserTimeout::Auto,
        1 => UserTimeout::Off,
        _ => UserTimeout::Fixed(duration(rng)),
    }
}

/// A base to mutate: the defaults, or one with short timers (so that a
/// reactor run of a few milliseconds sees heartbeats and redials).
fn base(rng: &mut Rng) -> Config {
    if rng.one_in(2) {
        return Config::default();
    }
    let mut c = Config::default();
    c.heartbeat = Some(Heartbeat {
        interval: ms(5),
        timeout: ms(5),
    });
    c.handshake_timeout = ms(50);
    c.connect_timeout = ms(50);
    c.close_linger = ms(5);
    c.backoff = BackoffConfig {
        initial: ms(1),
        max: ms(4),
        ..BackoffConfig::default()
    };
    c
}

/// Sets one field (or part of one) to an extreme value, through the public
/// field.
fn mutate_field(rng: &mut Rng, c: &mut Config) {
    match rng.below(23) {
        0 => c.heartbeat = None,
        1 => {
            c.heartbeat = Some(Heartbeat {
                interval: duration(rng),
                timeout: duration(rng),
            })
        }
        2 => c.max_frame = size(rng),
        3 => c.handshake_timeout = duration(rng),
        4 => c.connect_timeout = duration(rng),
        5 => c.backoff.initial = duration(rng),
        6 => c.backoff.max = duration(rng),
        7 => c.backoff.multiplier = float(rng),
        8 => c.backoff.jitter = float(rng),
        9 => c.backoff.max_attempts = rng.pick(&[None, Some(0), Some(1), Some(3), Some(u32::MAX)]),
        10 => c.healthy_after = rng.one_in(3).then(|| duration(rng)),
        11 => c.max_outbound = size(rng),
        12 => c.close_linger = duration(rng),
        13 => c.ping_flood = None,
        14 => {
            c.ping_flood = Some(PingFlood {
                min_interval: duration(rng),
                max_strikes: count(rng),
            })
        }
        15 => c.write_stall_timeout = rng.one_in(3).then(|| duration(rng)),
        16 => c.stall_tolerance = duration(rng),
        17 => c.socket.nodelay = rng.one_in(2),
        18 => c.socket.keepalive = keepalive(rng),
        19 => c.socket.user_timeout = user_timeout(rng),
        20 => c.seed = rng.next_u64(),
        21 => c.queue_lifetime = rng.one_in(3).then(|| duration(rng)),
        _ => {
            // Both ends of the kernel's keepalive ranges at once.
            c.socket.keepalive = Some(Keepalive {
                idle: rng.pick(&[ms(1_000), Keepalive::MAX_TIME]),
                interval: rng.pick(&[ms(1_999), Keepalive::MAX_TIME + ms(999)]),
                count: rng.pick(&[1, Keepalive::MAX_COUNT]),
            })
        }
    }
}

/// `config` rebuilt through the builder, every field by its setter.
fn through_the_builder(config: &Config) -> Result<Config, ConfigError> {
    let mut b = Config::builder()
        .max_frame(config.max_frame)
        .handshake_timeout(config.handshake_timeout)
        .connect_timeout(config.connect_timeout)
        .backoff(config.backoff)
        .max_outbound(config.max_outbound)
        .close_linger(config.close_linger)
        .ping_flood(config.ping_flood)
        .write_stall_timeout(config.write_stall_timeout)
        .stall_tolerance(config.stall_tolerance)
        .queue_lifetime(config.queue_lifetime)
        .socket(
            SocketOptions::default()
                .nodelay(config.socket.nodelay)
                .keepalive(config.socket.keepalive)
                .user_timeout(config.socket.user_timeout),
        )
        .seed(config.seed);
    b = match config.heartbeat {
        Some(hb) => b.heartbeat(hb.interval, hb.timeout),
        None => b.no_heartbeat(),
    };
    if let Some(period) = config.healthy_after {
        b = b.healthy_after(period);
    }
    b.build()
}

/// A random configuration: a base with one to five fields set to extreme
/// values.
fn random_config(rng: &mut Rng) -> Config {
    let mut config = base(rng);
    for _ in 0..1 + rng.below(5) {
        mutate_field(rng, &mut config);
    }
    config
}

// ----- the sans-IO run ----------------------------------------------------

/// A client and a server `Connection` on an injected clock.
struct Sim {
    now: Instant,
    /// How far the clock has been moved (kept below a century, well
    /// inside what an `Instant` and the timer table hold).
    moved: Duration,
    client: Connection,
    server: Option<Connection>,
    config: Arc<Config>,
    events: Vec<Event>,
    /// Bytes from the server are lost (a silent peer).
    server_silent: bool,
    sessions: u64,
    seen: Seen,
}

/// What the sans-IO runs went through, to show they reach every stage.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    connected: u64,
    reconnecting: u64,
    gave_up: u64,
    heartbeat_timeouts: u64,
    messages: u64,
}

impl Seen {
    fn add(&mut self, other: Seen) {
        self.connected += other.connected;
        self.reconnecting += other.reconnecting;
        self.gave_up += other.gave_up;
        self.heartbeat_timeouts += other.heartbeat_timeouts;
        self.messages += other.messages;
    }

    fn note(&mut self, event: &Event) {
        match event {
            Event::Connected(_) => self.connected += 1,
            Event::Reconnecting { .. } => self.reconnecting += 1,
            Event::GaveUp { .. } => self.gave_up += 1,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout,
            } => self.heartbeat_timeouts += 1,
            Event::Message(_) => self.messages += 1,
            _ => {}
        }
    }
}

const MAX_MOVED: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Sim {
    fn advance(&mut self, by: Duration) {
        if self.moved.saturating_add(by) > MAX_MOVED {
            return;
        }
        if let Some(now) = self.now.checked_add(by) {
            self.now = now;
            self.moved += by;
        }
    }

    /// Moves the clock to the earliest deadline of either side.
    fn jump_to_next_deadline(&mut self) {
        let next = [
            self.client.poll_timeout(),
            self.server.as_ref().and_then(Connection::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = next {
            self.advance(at.saturating_duration_since(self.now));
        }
    }

    fn timers(&mut self) {
        let now = self.now;
        self.client.handle_timeout(now, &mut self.events);
        if let Some(server) = self.server.as_mut() {
            server.handle_timeout(now, &mut self.events);
        }
    }

    /// Carries out the client's socket actions: a connect succeeds (a
    /// fresh server connection answers) or fails, as `refuse` says.
    fn actions(&mut self, refuse: bool) {
        let now = self.now;
        while let Some(action) = self.client.poll_action() {
            match action {
                Action::Connect if refuse => {
                    self.client.handle_connect_failed(
                        now,
                        io::ErrorKind::ConnectionRefused,
                        &mut self.events,
                    );
                }
                Action::Connect => {
                    self.sessions += 1;
                    self.server = Some(Connection::server(
                        self.config.clone(),
                        now,
                        self.sessions,
                        self.sessions ^ 0x5EED,
                    ));
                    self.client.handle_connected(now);
                }
                Action::CloseSocket => {
                    if let Some(server) = self.server.as_mut() {
                        server.handle_eof(now, &mut self.events);
                    }
                }
            }
        }
        if let Some(server) = self.server.as_mut() {
            while let Some(action) = server.poll_action() {
                if action == Action::CloseSocket && self.client.state() != State::Connecting {
                    self.client.handle_eof(now, &mut self.events);
                }
            }
        }
    }

    /// Moves each side's output to the other.
    fn exchange(&mut self) {
        let now = self.now;
        let mut wire = BytesMut::new();
        let Some(server) = self.server.as_mut() else {
            self.client.transmit_into(&mut wire, &mut Vec::new());
            return;
        };
        for _ in 0..4 {
            self.client.transmit_into(&mut wire, &mut Vec::new());
            if !wire.is_empty() && server.state().has_socket() {
                server.handle_input(now, &mut wire, &mut self.events);
            }
            wire.clear();
            server.transmit_into(&mut wire, &mut Vec::new());
            if !self.server_silent && !wire.is_empty() && self.client.state().has_socket() {
                self.client.handle_input(now, &mut wire, &mut self.events);
            }
            wire.clear();
        }
    }

    fn step(&mut self, refuse: bool) {
        self.timers();
        self.actions(refuse);
        self.exchange();
        self.actions(refuse);
        for event in self.events.drain(..) {
            self.seen.note(&event);
        }
    }
}

/// Drives a client and a server through everything the state machine
/// does, with `config` on both ends.
fn sans_io(config: &Config, rng: &mut Rng) -> Seen {
    let config = Arc::new(config.clone());
    let t0 = Instant::now();
    let mut sim = Sim {
        now: t0,
        moved: Duration::ZERO,
        client: Connection::client(config.clone(), rng.next_u64()),
        server: None,
        config,
        events: Vec::new(),
        server_silent: false,
        sessions: 0,
        seen: Seen::default(),
    };
    sim.client.start(sim.now);
    // Refused dials: the backoff schedule, huge delays included.
    for _ in 0..4 {
        sim.step(true);
        sim.jump_to_next_deadline();
    }
    // Connected: handshake, messages, heartbeats.
    for round in 0..40 {
        sim.step(false);
        if sim.client.state() == State::Established {
            let max = sim.config.max_frame.min(70_000);
            for len in [0, 1, max, max.saturating_add(1)] {
                let _ = sim.client.send(Bytes::from(vec![7u8; len]));
                let _ = sim.client.send_slice(&[1, 2, 3][..len.min(3)]);
            }
            if let Some(server) = sim.server.as_mut() {
                let _ = server.send(Bytes::from_static(b"down"));
            }
            if round % 5 == 0 {
                sim.client.handle_write_blocked(sim.now);
            }
        }
        match rng.below(8) {
            0 => sim.advance(rng.pick(&[ms(1), Duration::from_secs(1), Duration::from_secs(3600)])),
            1 => sim.advance(MAX_DURATION),
            2 => sim.server_silent = !sim.server_silent,
            _ => sim.jump_to_next_deadline(),
        }
    }
    // A silent peer is declared dead (or the clock ran out).
    sim.server_silent = true;
    for _ in 0..10 {
        sim.step(false);
        sim.jump_to_next_deadline();
    }
    sim.server_silent = false;
    let now = sim.now;
    sim.client
        .close(now, CloseCode::NORMAL, "bye", &mut sim.events);
    if let Some(server) = sim.server.as_mut() {
        server.close(now, CloseCode::GOING_AWAY, "also bye", &mut sim.events);
    }
    for _ in 0..6 {
        sim.step(false);
        sim.jump_to_next_deadline();
    }
    sim.seen
}

// ----- the reactor run ----------------------------------------------------

/// Fails on a connect the kernel refused for its options: a configuration
/// that passed validation must be applicable to every socket.
struct Watch {
    events: usize,
    connected: usize,
}

impl Watch {
    fn check(&mut self, reason: &DisconnectReason) {
        self.events += 1;
        assert_ne!(
            *reason,
            DisconnectReason::ConnectFailed(io::ErrorKind::InvalidInput),
            "the kernel refused the options of a valid configuration"
        );
    }
}

impl Handler for Watch {
    fn on_connected(&mut self, _: &mut Context<'_>, _: ConnId, _: &tether::PeerInfo) {
        self.connected += 1;
    }
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: tether::Message<'_>) {
        let _ = cx.forward(id, message);
    }
    fn on_disconnected(&mut self, _: &mut Context<'_>, _: ConnId, reason: &DisconnectReason) {
        self.check(reason);
    }
    fn on_reconnecting(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        _: u32,
        _: Duration,
        reason: &DisconnectReason,
    ) {
        self.check(reason);
    }
    fn on_gave_up(&mut self, _: &mut Context<'_>, _: ConnId, _: u32, reason: &DisconnectReason) {
        self.check(reason);
    }
}

/// A reactor with `config` listening on loopback, dialing itself and a
/// closed port with it, for a few short turns.
fn on_a_reactor(config: &Config, closed: SocketAddr) -> usize {
    let mut reactor = Reactor::with_config(config.clone()).expect("a valid config makes a reactor");
    let l = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("a valid config listens");
    let addr = reactor.local_addr(l).expect("bound");
    let link = reactor
        .dial_with(addr, config.clone())
        .expect("a valid config dials");
    reactor
        .dial_with(closed, config.clone())
        .expect("a valid config dials");
    let mut watch = Watch {
        events: 0,
        connected: 0,
    };
    for turn in 0..8 {
        reactor
            .poll_once(&mut watch, Some(ms(1 + turn % 3)))
            .expect("turn");
        let _ = reactor.context().send(link, &b"hello"[..]);
    }
    // The handle validates on the calling thread before anything else:
    // here, the reactor's own, a valid config is refused only for that.
    assert_eq!(
        reactor.handle().dial_with(addr, config.clone()),
        Err(HandleError::OnReactorThread)
    );
    reactor.context().close(link, CloseCode::NORMAL, "done");
    reactor.context().shutdown();
    for _ in 0..3 {
        reactor.poll_once(&mut watch, Some(ms(1))).expect("turn");
    }
    watch.connected
}

// ----- the property -------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

#[test]
fn every_config_is_refused_or_runs_without_panic() {
    let seed = env_u64("TETHER_PROPTEST_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let cases = env_u64("TETHER_PROPTEST_CASES").unwrap_or(CASES);
    println!(
        "config property: seed {seed:#x}, {cases} cases (TETHER_PROPTEST_SEED={seed:#x} reruns it)"
    );
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("bound")
    };
    let (mut accepted, mut on_reactors) = (0u64, 0u64);
    let mut total = Seen::default();
    let mut reactor_connects = 0u64;
    let started = Instant::now();
    for case in 0..cases {
        let mut rng = Rng::new(seed ^ case.wrapping_mul(0xA076_1D64_78BD_642F));
        let config = random_config(&mut rng);
        let verdict = config.validate();
        let what = format!("case {case} of seed {seed:#x}: {config:?} ({verdict:?})");
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            // Every path that takes a configuration agrees with `validate`.
            let built = through_the_builder(&config);
            assert_eq!(
                built.as_ref().map(|_| ()).map_err(|e| *e),
                verdict,
                "the builder disagrees"
            );
            if let Ok(built) = built {
                assert_eq!(built, config, "the builder built another config");
            }
            if let Err(e) = verdict {
                assert!(!e.0.is_empty());
                let refused = Reactor::with_config(config.clone()).map(|_| ());
                let kind = refused.map_err(|e| e.kind()).err();
                assert_eq!(kind, Some(io::ErrorKind::InvalidInput));
                return (None, Seen::default());
            }
            let seen = sans_io(&config, &mut rng);
            let reactor = (accepted % REACTOR_SHARE == 0).then(|| on_a_reactor(&config, closed));
            (reactor, seen)
        }));
        match result {
            Ok((reactor, seen)) => {
                accepted += u64::from(verdict.is_ok());
                if let Some(connected) = reactor {
                    on_reactors += 1;
                    reactor_connects += connected as u64;
                }
                total.add(seen);
            }
            Err(_) => panic!("panicked (message above) on {what}"),
        }
    }
    println!(
        "config property: {accepted} of {cases} accepted, {on_reactors} run on a reactor ({reactor_connects} handshakes there), in {:?}; \
         sans-IO runs saw {total:?}",
        started.elapsed()
    );
    // The generator reaches both sides of `validate`, and the runs every
    // stage of a connection's life.
    assert!(
        accepted > cases / 10,
        "only {accepted} configurations accepted"
    );
    assert!(accepted < cases, "every configuration accepted");
    let enough = accepted / 4;
    assert!(total.connected > enough, "{total:?}");
    assert!(total.reconnecting > enough, "{total:?}");
    assert!(total.heartbeat_timeouts > enough / 4, "{total:?}");
    assert!(total.messages > enough, "{total:?}");
    assert!(total.gave_up > 0, "{total:?}");
    assert!(
        reactor_connects > on_reactors / 2,
        "{reactor_connects} handshakes"
    );
}
