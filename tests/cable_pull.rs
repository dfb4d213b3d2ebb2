//! A real cable pull. An echo server and its clients run in two network
//! namespaces joined by a veth pair; once they have exchanged heartbeats,
//! the client's end of the pair is taken down (`ip link set … down`), so
//! neither a FIN nor an RST can pass. Both sides must drop the dead
//! connections within I + T (+ ping jitter + slack), and the clients must be
//! back once the link is up again.
//!
//! The same pull is repeated with application heartbeats off and the
//! kernel's keepalive and TCP_USER_TIMEOUT tuned instead, and once more with
//! neither, which shows the problem tether exists to solve: nothing is
//! noticed at all. With the `tls` feature a fourth run repeats the first
//! with the links over TLS (certificates made by the test, passed to the
//! children in the environment). Each run adds its row to a table of detection times
//! printed on stderr (visible with `--nocapture`). A fifth run
//! (`cable_pull/stream.rs`) pulls the cable twice while both ends stream
//! numbered messages in a resumed session, and checks that each end got
//! every message exactly once, in order.
//!
//! How it is wired: the server and the clients are this test binary itself,
//! re-executed under `ip netns exec NS` with `TETHER_CABLE_ROLE` naming the
//! role (see `cable_child_process`). A child prints one `EV …` line per
//! event on stdout; a reader thread in the test stamps each line as it
//! arrives. Children exit when their stdin closes (when the test finishes,
//! fails or dies) and after `CHILD_LIFETIME` at the latest. Namespaces are
//! named `tether-cp-<pid>-<run>-{s,c}` and deleted by a guard, even when a
//! test fails, after the children in them have been killed and reaped.
//! Leftovers of a run that was itself killed (its pid gone, the namespace
//! older than ten minutes) are deleted at the next run.
//!
//! These tests need root and `ip netns`, so they are ignored by default;
//! `.ci/run` runs them with
//! `cargo test --features tls --test cable_pull -- --ignored --nocapture --test-threads=1`
//! when it can.

#[cfg(feature = "tls")]
#[path = "support/certs.rs"]
mod certs;
#[path = "cable_pull/stream.rs"]
mod stream;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use support::ms;
use tether::BackoffConfig;
use tether::{Config, ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor};
use tether::{Keepalive, SocketOptions, UserTimeout};

/// Heartbeat interval `I` and timeout `T` of the heartbeat run, in ms.
const I: u64 = 1000;
const T: u64 = 1000;
/// Kernel settings of the second run.
const KA_IDLE: Duration = Duration::from_secs(1);
const KA_INTERVAL: Duration = Duration::from_secs(1);
const KA_COUNT: u32 = 2;
const USER_TIMEOUT: Duration = Duration::from_secs(2);
/// Client links across the veth.
const LINKS: usize = 4;
/// Addresses inside our own namespaces only.
const SERVER_IP: &str = "10.231.7.1";
const CLIENT_IP: &str = "10.231.7.2";
const PREFIX_LEN: u8 = 30;
const PORT: u16 = 7000;
/// Scheduling slack on top of each detection bound, in ms.
const SLACK: u64 = 400;
/// How long the run without any liveness check watches for a detection.
const NOTHING_WINDOW: Duration = Duration::from_secs(8);
/// How long past its bound a late detection is still waited for (to report
/// how late it was rather than only that it was late).
const GRACE: Duration = Duration::from_secs(3);
/// Children exit by themselves after this, whatever happens.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
/// Namespaces of this test are named `{NS_PREFIX}{pid}-{run}-{s,c}`.
const NS_PREFIX: &str = "tether-cp-";

const ROLE_ENV: &str = "TETHER_CABLE_ROLE";
const MODE_ENV: &str = "TETHER_CABLE_MODE";
const ADDR_ENV: &str = "TETHER_CABLE_ADDR";
/// The TLS run's CA certificate, server certificate and key (PEM).
#[cfg(feature = "tls")]
const TLS_ENV: [&str; 3] = [
    "TETHER_CABLE_TLS_CA",
    "TETHER_CABLE_TLS_CERT",
    "TETHER_CABLE_TLS_KEY",
];
/// The name on the TLS run's server certificate.
#[cfg(feature = "tls")]
const TLS_NAME: &str = "cable.tether.test";
/// The test that turns into a child process when `ROLE_ENV` is set.
const CHILD_TEST: &str = "cable_child_process";

/// Which liveness mechanism a run relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// tether's heartbeats (with its default socket options).
    Heartbeat,
    /// No heartbeats; the kernel's keepalive and TCP_USER_TIMEOUT, tuned.
    Kernel,
    /// No heartbeats, no keepalive, no user timeout.
    Nothing,
    /// tether's heartbeats, over TLS.
    #[cfg(feature = "tls")]
    HeartbeatTls,
    /// tether's heartbeats, one resuming link, both ends streaming
    /// numbered messages (see `stream.rs`).
    Stream,
}

impl Mode {
    fn env(self) -> &'static str {
        match self {
            Mode::Heartbeat => "heartbeat",
            Mode::Kernel => "kernel",
            Mode::Nothing => "nothing",
            #[cfg(feature = "tls")]
            Mode::HeartbeatTls => "heartbeat-tls",
            Mode::Stream => "stream",
        }
    }

    fn from_env(name: &str) -> Mode {
        match name {
            "heartbeat" => Mode::Heartbeat,
            "kernel" => Mode::Kernel,
            "nothing" => Mode::Nothing,
            #[cfg(feature = "tls")]
            "heartbeat-tls" => Mode::HeartbeatTls,
            "stream" => Mode::Stream,
            other => panic!("unknown mode {other:?}"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Heartbeat => "I + T heartbeat",
            Mode::Kernel => "kernel-tuned",
            Mode::Nothing => "nothing",
            #[cfg(feature = "tls")]
            Mode::HeartbeatTls => "I + T heartbeat, TLS",
            Mode::Stream => "I + T heartbeat, streaming, resume",
        }
    }

    fn settings(self) -> String {
        match self {
            Mode::Heartbeat | Mode::Stream => format!("I = {I} ms, T = {T} ms"),
            Mode::Kernel => format!(
                "keepalive {}/{}/{}, user timeout {} s",
                KA_IDLE.as_secs(),
                KA_INTERVAL.as_secs(),
                KA_COUNT,
                USER_TIMEOUT.as_secs()
            ),
            Mode::Nothing => "no heartbeat/keepalive/UTO".to_string(),
            #[cfg(feature = "tls")]
            Mode::HeartbeatTls => format!("I = {I} ms, T = {T} ms, over TLS"),
        }
    }

    /// The earliest a dead link may be noticed after the pull (anything
    /// sooner means something got through), and the latest.
    fn window(self) -> Option<(Duration, Duration)> {
        match self {
            // The last frame arrived at most I + jitter before the pull and
            // the PING that convicts was sent at most a few ms before it.
            Mode::Heartbeat | Mode::Stream => Some((ms(T - 100), ms(I + T + I / 10 + SLACK))),
            #[cfg(feature = "tls")]
            Mode::HeartbeatTls => Mode::Heartbeat.window(),
            // Last byte (a probe or its ACK) at most one idle period before
            // the pull; dead after the user timeout with a probe out, or
            // after idle + count × interval without a user timeout.
            Mode::Kernel => Some((
                ms(500),
                KA_IDLE + KA_INTERVAL * KA_COUNT + ms(SLACK) + ms(600),
            )),
            Mode::Nothing => None,
        }
    }

    fn config(self) -> Config {
        let mut socket = SocketOptions::default();
        let builder = Config::builder()
            .handshake_timeout(ms(2000))
            .connect_timeout(ms(1000))
            .backoff(BackoffConfig {
                initial: ms(100),
                multiplier: 2.0,
                max: ms(500),
                jitter: 0.2,
                max_attempts: None,
            });
        let builder = match self {
            Mode::Heartbeat | Mode::Stream => builder.heartbeat(ms(I), ms(T)),
            #[cfg(feature = "tls")]
            Mode::HeartbeatTls => builder.heartbeat(ms(I), ms(T)),
            Mode::Kernel => {
                socket.keepalive = Some(Keepalive {
                    idle: KA_IDLE,
                    interval: KA_INTERVAL,
                    count: KA_COUNT,
                });
                socket.user_timeout = UserTimeout::Fixed(USER_TIMEOUT);
                builder.no_heartbeat().socket(socket)
            }
            Mode::Nothing => {
                socket.keepalive = None;
                socket.user_timeout = UserTimeout::Off;
                builder.no_heartbeat().socket(socket)
            }
        };
        builder.build().expect("valid config")
    }
}

fn server_addr() -> SocketAddr {
    format!("{SERVER_IP}:{PORT}").parse().expect("address")
}

// ----- the child processes ------------------------------------------------

/// Not a test: the body of the server and client processes. Without
/// `TETHER_CABLE_ROLE` it returns at once.
#[test]
#[ignore = "entry point of the child processes the cable-pull tests start"]
fn cable_child_process() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let mode = Mode::from_env(&std::env::var(MODE_ENV).expect("mode"));
    let addr: SocketAddr = std::env::var(ADDR_ENV)
        .expect("address")
        .parse()
        .expect("address");
    // The test holds our stdin: once it lets go (finished, failed, died),
    // we go too. A line "stop" ends a streaming child's sending.
    thread::spawn(|| {
        for line in std::io::stdin().lines() {
            match line {
                Ok(line) if line.trim() == "stop" => stream::STOP.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
    let mut reactor = Reactor::with_config(mode.config()).expect("reactor");
    if mode == Mode::Stream {
        stream::child(reactor, role == "server", addr, mode.config());
    }
    let mut node = Node {
        server: role == "server",
        start: Instant::now(),
        live: BTreeSet::new(),
    };
    #[cfg(feature = "tls")]
    if mode == Mode::HeartbeatTls {
        let [ca, cert, key] = TLS_ENV.map(|name| std::env::var(name).expect("TLS PEM"));
        if node.server {
            let tls = tether::tls::server_config_from_pem(cert.as_bytes(), key.as_bytes(), None)
                .expect("server TLS config");
            let listener = reactor.listen_tls(addr, tls).expect("listen");
            let bound = reactor.local_addr(listener).expect("bound");
            node.say(format_args!("listening {bound}"));
        } else {
            let tls =
                tether::tls::client_config_from_pem(ca.as_bytes(), None).expect("client config");
            for _ in 0..LINKS {
                let name = tether::tls::server_name(TLS_NAME).expect("name");
                reactor
                    .dial_tls_with(addr, name, tls.clone(), mode.config())
                    .expect("valid config");
            }
        }
    }
    #[cfg(feature = "tls")]
    let tls_done = mode == Mode::HeartbeatTls;
    #[cfg(not(feature = "tls"))]
    let tls_done = false;
    if tls_done {
        // Listening or dialled over TLS above.
    } else if node.server {
        let listener = reactor.listen(addr).expect("listen");
        let bound = reactor.local_addr(listener).expect("bound");
        node.say(format_args!("listening {bound}"));
    } else {
        for _ in 0..LINKS {
            reactor
                .dial_with(addr, mode.config())
                .expect("valid config");
        }
    }
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut next_stats = Instant::now();
    while Instant::now() < deadline {
        reactor.poll_once(&mut node, Some(ms(20))).expect("poll");
        if Instant::now() >= next_stats {
            next_stats = Instant::now() + ms(100);
            // Links that have seen a heartbeat: a PING of the peer's, or a
            // PONG to one of ours.
            let beating = node
                .live
                .iter()
                .filter_map(|&id| reactor.conn_stats(id))
                .filter(|s| s.pings_received > 0 || s.pongs_received > 0)
                .count();
            node.say(format_args!("stats {} {beating}", node.live.len()));
        }
    }
    node.say("lifetime-over");
    std::process::exit(3);
}

/// The handler of both child roles: the server echoes, a client sends one
/// message per connection; both print every event.
struct Node {
    server: bool,
    start: Instant,
    /// Connections up now.
    live: BTreeSet<ConnId>,
}

impl Node {
    fn say(&self, what: impl fmt::Display) {
        println!("EV {:.3} {what}", self.start.elapsed().as_secs_f64());
    }
}

impl Handler for Node {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        self.live.insert(id);
        let peer = cx
            .conn_stats(id)
            .map_or_else(|| "?".to_string(), |s| s.peer_addr.to_string());
        self.say(format_args!("connected {id} {peer}"));
        if !self.server {
            let _ = cx.send(id, Bytes::from_static(b"over the veth"));
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        if self.server {
            let _ = cx.send(id, message);
        } else {
            self.say(format_args!("echo {id}"));
        }
    }

    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        self.live.remove(&id);
        self.say(format_args!("disconnected {id} {reason:?}"));
    }

    fn on_reconnecting(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        attempt: u32,
        delay: Duration,
        reason: &DisconnectReason,
    ) {
        self.say(format_args!(
            "reconnecting {id} {attempt} {} {reason:?}",
            delay.as_millis()
        ));
    }
}

// ----- the test's side: namespaces, children, events ----------------------

/// Runs `ip` with `args`; panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A network namespace of ours, deleted when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn add(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// `ip -n NAME args…`
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `ss` inside the namespace, for the log.
    fn sockets(&self) -> String {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "ss",
                "-tno",
                "state",
                "established",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("(ss: {e})"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
        {
            Ok(status) if status.success() => {}
            other => eprintln!(
                "warning: could not delete network namespace {}: {other:?}",
                self.name
            ),
        }
    }
}

/// Deletes namespaces of earlier runs that were killed before their guards
/// ran: named by this test, their pid gone, and older than ten minutes (so
/// a live run in another pid namespace is never touched).
fn delete_leftover_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines().take(10_000) {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let old = std::fs::metadata(format!("/run/netns/{name}"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() && old {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            eprintln!("deleted leftover network namespace {name} (process {pid} is gone)");
        }
    }
}

fn require_root_and_ip() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    assert_eq!(
        euid,
        Some("0"),
        "the cable-pull tests need root (they create network namespaces); \
         .ci/run skips them otherwise"
    );
    assert!(
        Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "the cable-pull tests need the ip command (iproute2)"
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// An event line of a child, parsed.
#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Listening,
    Connected(String),
    Echo(String),
    Disconnected(String, String),
    Reconnecting(String, String),
    /// Connections up, and how many of them have seen a heartbeat.
    Stats(usize, usize),
    Other(String),
}

fn parse(line: &str) -> Ev {
    // "<secs> <kind> <args…>"
    let mut words = line.splitn(4, ' ').skip(1);
    let kind = words.next().unwrap_or("");
    let id = words.next().unwrap_or("").to_string();
    let rest = words.next().unwrap_or("").to_string();
    match kind {
        "listening" => Ev::Listening,
        "connected" => Ev::Connected(id),
        "echo" => Ev::Echo(id),
        "disconnected" => Ev::Disconnected(id, rest),
        "reconnecting" => Ev::Reconnecting(id, rest),
        "stats" => Ev::Stats(id.parse().unwrap_or(0), rest.trim().parse().unwrap_or(0)),
        _ => Ev::Other(line.to_string()),
    }
}

/// A child process running in a namespace; killed and reaped when dropped.
struct ChildProc {
    child: Child,
}

impl ChildProc {
    /// Writes `line` to the child's stdin.
    fn tell(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").expect("the child reads its stdin");
        stdin.flush().expect("flush the child's stdin");
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Stamped = (Instant, Side, Ev);

fn spawn_child(ns: &Netns, side: Side, mode: Mode, tx: Sender<Stamped>) -> ChildProc {
    let exe = std::env::current_exe().expect("path of the test binary");
    let role = match side {
        Side::Server => "server",
        Side::Client => "client",
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(exe)
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ROLE_ENV, role)
        .env(MODE_ENV, mode.env())
        .env(ADDR_ENV, server_addr().to_string())
        .envs(tls_env(mode))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a child under ip netns exec");
    let stdout = child.stdout.take().expect("piped stdout");
    let proc = ChildProc { child };
    // Ends at the child's EOF (it exits with the test, or by its lifetime).
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            match line.strip_prefix("EV ") {
                Some(ev) => {
                    if tx.send((at, side, parse(ev))).is_err() {
                        break;
                    }
                }
                None if line.trim().is_empty() || line.starts_with("running ") => {}
                None => eprintln!("[{role}] {line}"),
            }
        }
    });
    proc
}

/// The TLS run's certificates for the children, made once per test
/// process (nothing for the other runs).
fn tls_env(mode: Mode) -> Vec<(&'static str, String)> {
    #[cfg(feature = "tls")]
    if mode == Mode::HeartbeatTls {
        static PEMS: std::sync::OnceLock<[String; 3]> = std::sync::OnceLock::new();
        let pems = PEMS.get_or_init(|| {
            let ca = certs::Ca::new("cable CA");
            let leaf = ca.server(&[TLS_NAME]);
            [ca.pem.clone(), leaf.cert, leaf.key]
        });
        return TLS_ENV.iter().copied().zip(pems.iter().cloned()).collect();
    }
    let _ = mode;
    Vec::new()
}

/// Everything the children reported, in arrival order.
struct Lab {
    rx: Receiver<Stamped>,
    log: Vec<Stamped>,
}

impl Lab {
    /// Takes events until `done` holds for the log, or `limit` has passed;
    /// returns whether it held.
    fn wait_until(&mut self, limit: Duration, mut done: impl FnMut(&[Stamped]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.log) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(event) => self.log.push(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    thread::sleep(left.min(ms(10)));
                }
            }
        }
    }
}

/// Distinct connection ids with an event of this side matching `pick`
/// since `since`, each with the time of its first such event.
fn firsts(
    log: &[Stamped],
    side: Side,
    since: Option<Instant>,
    pick: impl Fn(&Ev) -> Option<(&str, &str)>,
) -> BTreeMap<String, (Instant, String)> {
    let mut out = BTreeMap::new();
    for (at, s, ev) in log {
        if *s != side || since.is_some_and(|t| *at < t) {
            continue;
        }
        if let Some((id, detail)) = pick(ev) {
            out.entry(id.to_string())
                .or_insert_with(|| (*at, detail.to_string()));
        }
    }
    out
}

fn connected(ev: &Ev) -> Option<(&str, &str)> {
    match ev {
        Ev::Connected(id) => Some((id, "")),
        _ => None,
    }
}

fn echoed(ev: &Ev) -> Option<(&str, &str)> {
    match ev {
        Ev::Echo(id) => Some((id, "")),
        _ => None,
    }
}

fn disconnected(ev: &Ev) -> Option<(&str, &str)> {
    match ev {
        Ev::Disconnected(id, why) => Some((id, why)),
        _ => None,
    }
}

/// The latest stats line of a side.
fn latest_stats(log: &[Stamped], side: Side) -> Option<(usize, usize)> {
    log.iter().rev().find_map(|(_, s, ev)| match ev {
        Ev::Stats(live, beating) if *s == side => Some((*live, *beating)),
        _ => None,
    })
}

/// What one run measured.
#[derive(Clone, Debug)]
struct Outcome {
    mode: Mode,
    /// Per dead link: how long after the pull the client dropped it, why.
    client: Vec<(Duration, String)>,
    /// The same on the server.
    server: Vec<(Duration, String)>,
    /// How long detections were watched for.
    watched: Duration,
    /// Clients connected (and echoed) again after the link came back, and
    /// how long after the link came back the last of them was.
    back: usize,
    back_after: Option<Duration>,
    /// New connections the server accepted after the link came back.
    server_back: usize,
    /// Connections the server and the clients hold at the end.
    server_live_at_end: Option<usize>,
    client_live_at_end: Option<usize>,
}

static RUN: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces joined by a veth pair, the client's end of which can be
/// pulled and put back.
struct Cable {
    ns_s: Netns,
    ns_c: Netns,
    veth_c: String,
}

impl Cable {
    /// Sets up both namespaces and the veth pair between them.
    fn new() -> Cable {
        require_root_and_ip();
        delete_leftover_namespaces();
        let run = RUN.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{NS_PREFIX}{pid}-{run}");
        // Interface names are at most 15 bytes; they are created straight
        // in our namespaces, unique anyway.
        let (veth_s, veth_c) = (format!("tv{run}s{pid}"), format!("tv{run}c{pid}"));
        let ns_s = Netns::add(format!("{tag}-s"));
        let ns_c = Netns::add(format!("{tag}-c"));
        ip(&[
            "link", "add", &veth_s, "netns", &ns_s.name, "type", "veth", "peer", "name", &veth_c,
            "netns", &ns_c.name,
        ]);
        for (ns, dev, addr) in [(&ns_s, &veth_s, SERVER_IP), (&ns_c, &veth_c, CLIENT_IP)] {
            ns.ip(&["addr", "add", &format!("{addr}/{PREFIX_LEN}"), "dev", dev]);
            ns.ip(&["link", "set", "lo", "up"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        Cable { ns_s, ns_c, veth_c }
    }

    /// Takes the client's end down: the server's end loses its carrier,
    /// nothing at all crosses. Returns when the command is done.
    fn pull(&self) -> Instant {
        let before = Instant::now();
        self.ns_c.ip(&["link", "set", &self.veth_c, "down"]);
        let pulled = Instant::now();
        eprintln!("link down (the ip command took {:?})", pulled - before);
        pulled
    }

    /// Puts the client's end back up. The instant is taken before the
    /// command: a client's SYN retransmitted while `ip` runs can be
    /// accepted before the command returns, and its server-side
    /// `connected` must count as after the restore (once, it did not:
    /// "server accepted 3").
    fn restore(&self) -> Instant {
        let restored = Instant::now();
        self.ns_c.ip(&["link", "set", &self.veth_c, "up"]);
        restored
    }
}

/// Sets up both namespaces, the server and the clients, pulls the cable,
/// watches, puts the cable back, and reports what happened.
fn pull_the_cable(mode: Mode) -> Outcome {
    // Declared before the children, so dropped after them: the processes
    // in a namespace are gone before it is deleted.
    let cable = Cable::new();
    let (ns_s, ns_c) = (&cable.ns_s, &cable.ns_c);

    let (tx, rx) = mpsc::channel();
    let mut lab = Lab {
        rx,
        log: Vec::new(),
    };
    let _server = spawn_child(ns_s, Side::Server, mode, tx.clone());
    assert!(
        lab.wait_until(ms(10_000), |log| log
            .iter()
            .any(|(_, s, e)| *s == Side::Server && *e == Ev::Listening)),
        "the server never listened"
    );
    let _client = spawn_child(ns_c, Side::Client, mode, tx);
    assert!(
        lab.wait_until(ms(10_000), |log| {
            firsts(log, Side::Client, None, echoed).len() == LINKS
                && firsts(log, Side::Server, None, connected).len() == LINKS
        }),
        "not every link connected and echoed across the veth: {:?}",
        lab.log
    );
    #[cfg(feature = "tls")]
    let heartbeats = matches!(mode, Mode::Heartbeat | Mode::HeartbeatTls);
    #[cfg(not(feature = "tls"))]
    let heartbeats = mode == Mode::Heartbeat;
    if heartbeats {
        assert!(
            lab.wait_until(ms(3 * I + 1000), |log| {
                latest_stats(log, Side::Server) == Some((LINKS, LINKS))
                    && latest_stats(log, Side::Client) == Some((LINKS, LINKS))
            }),
            "heartbeats never flowed on every link: server {:?}, client {:?}",
            latest_stats(&lab.log, Side::Server),
            latest_stats(&lab.log, Side::Client)
        );
    } else {
        // Let the first keepalive probes go both ways (kernel run), or the
        // links sit idle as long (the run without anything).
        lab.wait_until(KA_IDLE + ms(500), |_| false);
    }
    eprintln!(
        "[{}] client sockets before the pull:\n{}",
        mode.env(),
        ns_c.sockets().trim_end()
    );

    // Pull the cable: the client's end goes down, the server's end loses
    // its carrier. Nothing at all crosses from here on.
    eprint!("[{}] ", mode.env());
    let pulled = cable.pull();
    let watched = match mode.window() {
        Some((_, latest)) => latest + GRACE,
        None => NOTHING_WINDOW,
    };
    lab.wait_until(watched, |log| {
        mode != Mode::Nothing
            && firsts(log, Side::Client, Some(pulled), disconnected).len() >= LINKS
            && firsts(log, Side::Server, Some(pulled), disconnected).len() >= LINKS
    });
    let detections = |side| -> Vec<(Duration, String)> {
        firsts(&lab.log, side, Some(pulled), disconnected)
            .into_values()
            .map(|(at, why)| (at - pulled, why))
            .collect()
    };
    let client = detections(Side::Client);
    let server = detections(Side::Server);

    // Put the cable back.
    let restored = cable.restore();
    let (mut back, mut back_after, mut server_back) = (0, None, 0);
    if mode == Mode::Nothing {
        lab.wait_until(ms(1000), |_| false);
    } else {
        lab.wait_until(ms(10_000), |log| {
            firsts(log, Side::Client, Some(restored), echoed).len() >= LINKS
                && firsts(log, Side::Server, Some(restored), connected).len() >= LINKS
        });
        let echoes = firsts(&lab.log, Side::Client, Some(restored), echoed);
        back = echoes.len();
        back_after = echoes.values().map(|(at, _)| *at - restored).max();
        server_back = firsts(&lab.log, Side::Server, Some(restored), connected).len();
    }
    // Fresh stats lines come every 100 ms.
    lab.wait_until(ms(300), |_| false);
    Outcome {
        mode,
        client,
        server,
        watched,
        back,
        back_after,
        server_back,
        server_live_at_end: latest_stats(&lab.log, Side::Server).map(|s| s.0),
        client_live_at_end: latest_stats(&lab.log, Side::Client).map(|s| s.0),
    }
}

/// Rows of the detection-time table, from every run in this process.
static TABLE: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());

fn span(detections: &[(Duration, String)], watched: Duration) -> String {
    let mut times: Vec<Duration> = detections.iter().map(|(d, _)| *d).collect();
    times.sort();
    match (times.first(), times.last()) {
        (Some(lo), Some(hi)) if times.len() == LINKS => {
            format!("{:.2}–{:.2} s", lo.as_secs_f64(), hi.as_secs_f64())
        }
        (Some(lo), Some(hi)) => format!(
            "{}/{LINKS}: {:.2}–{:.2} s",
            times.len(),
            lo.as_secs_f64(),
            hi.as_secs_f64()
        ),
        _ => format!("none in {:.1} s", watched.as_secs_f64()),
    }
}

fn reasons(detections: &[(Duration, String)]) -> String {
    let set: BTreeSet<&str> = detections.iter().map(|(_, why)| why.as_str()).collect();
    if set.is_empty() {
        "-".to_string()
    } else {
        set.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// Adds this run's row to the table and prints the whole table.
fn report(outcome: &Outcome) {
    for (side, list) in [("client", &outcome.client), ("server", &outcome.server)] {
        for (took, why) in list {
            eprintln!(
                "[{}] {side} dropped a link {:.3} s after the pull: {why}",
                outcome.mode.env(),
                took.as_secs_f64()
            );
        }
    }
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    table.retain(|o| o.mode != outcome.mode);
    table.push(outcome.clone());
    eprintln!();
    eprintln!(
        "cable pull across a veth, {LINKS} links, times from link down to the side dropping them:"
    );
    eprintln!(
        "{:<16} {:<34} {:<16} {:<16} {:<26} back after link up",
        "run", "settings", "client drops", "server drops", "reason"
    );
    for o in table.iter() {
        let back = match o.back_after {
            Some(d) => format!("{}/{LINKS} in {:.2} s", o.back, d.as_secs_f64()),
            None if o.mode == Mode::Nothing => "never lost".to_string(),
            None => format!("{}/{LINKS}", o.back),
        };
        eprintln!(
            "{:<16} {:<34} {:<16} {:<16} {:<26} {}",
            o.mode.label(),
            o.mode.settings(),
            span(&o.client, o.watched),
            span(&o.server, o.watched),
            reasons(&[o.client.clone(), o.server.clone()].concat()),
            back
        );
    }
    eprintln!();
}

/// Both sides dropped every link within the mode's window, and the clients
/// came back once the link did.
fn assert_detected_and_back(o: &Outcome, reason_ok: impl Fn(&str) -> bool) {
    let (earliest, latest) = o.mode.window().expect("a mode that detects");
    for (side, list) in [("client", &o.client), ("server", &o.server)] {
        assert_eq!(
            list.len(),
            LINKS,
            "{side}: only {} of {LINKS} dead links dropped within {:?} of the pull",
            list.len(),
            o.watched
        );
        for (took, why) in list {
            assert!(reason_ok(why), "{side}: dropped for {why}");
            assert!(
                *took >= earliest && *took <= latest,
                "{side}: dropped a dead link {took:?} after the pull, outside [{earliest:?}, {latest:?}]"
            );
        }
    }
    assert_eq!(
        o.back, LINKS,
        "only {} of {LINKS} clients were back (and echoed) within 10 s of the link coming back",
        o.back
    );
    assert!(o.server_back >= LINKS, "server accepted {}", o.server_back);
    // Backoff is capped at 500 ms (+20 %) in this config.
    assert!(
        o.back_after.is_some_and(|d| d <= ms(3000)),
        "clients slow to come back: {:?}",
        o.back_after
    );
    assert_eq!(o.server_live_at_end, Some(LINKS), "server links at the end");
    assert_eq!(o.client_live_at_end, Some(LINKS), "client links at the end");
}

#[test]
#[ignore = "needs root and ip netns; run by .ci/run"]
fn cable_pull_1_heartbeats_drop_the_dead_link_on_both_sides_within_i_plus_t() {
    support::init_logs();
    let outcome = pull_the_cable(Mode::Heartbeat);
    report(&outcome);
    assert_detected_and_back(&outcome, heartbeat_or_unreachable);
}

/// The reason a dead link may be dropped for in the heartbeat runs: the
/// heartbeat timeout, or, with the client's interface down, the kernel's
/// ENETUNREACH for a retransmission that it reported just before the
/// deadline (a turn reads sockets before it runs timers). Either way the
/// drop must fall within the window, which is what these runs measure.
fn heartbeat_or_unreachable(why: &str) -> bool {
    why == "HeartbeatTimeout" || why == "Io(NetworkUnreachable)"
}

#[test]
#[ignore = "needs root and ip netns; run by .ci/run"]
fn cable_pull_2_tuned_kernel_keepalive_and_user_timeout_drop_it_without_heartbeats() {
    support::init_logs();
    let outcome = pull_the_cable(Mode::Kernel);
    report(&outcome);
    // The kernel fails the socket with ETIMEDOUT; tether reports the read
    // error. Never a heartbeat timeout: heartbeats are off.
    assert_detected_and_back(&outcome, |why| why == "Io(TimedOut)");
}

#[cfg(feature = "tls")]
#[test]
#[ignore = "needs root and ip netns; run by .ci/run"]
fn cable_pull_4_heartbeats_over_tls_drop_the_dead_link_within_i_plus_t() {
    support::init_logs();
    let outcome = pull_the_cable(Mode::HeartbeatTls);
    report(&outcome);
    assert_detected_and_back(&outcome, heartbeat_or_unreachable);
}

#[test]
#[ignore = "needs root and ip netns; run by .ci/run"]
fn cable_pull_3_without_any_liveness_check_nothing_is_noticed() {
    support::init_logs();
    let outcome = pull_the_cable(Mode::Nothing);
    report(&outcome);
    assert!(
        outcome.client.is_empty() && outcome.server.is_empty(),
        "something noticed the pull without any liveness check: client {:?}, server {:?}",
        outcome.client,
        outcome.server
    );
    // Both sides still believe in every link: the seed problem.
    assert_eq!(outcome.server_live_at_end, Some(LINKS));
    assert_eq!(outcome.client_live_at_end, Some(LINKS));
}
