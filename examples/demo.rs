//! tether in eighteen seconds: heartbeats, a dead peer, a cut cable that
//! loses nothing, a server restart.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! One program plays every part on loopback, each line stamped with the
//! seconds since start:
//!
//! - **Act 1 (0–4 s)** — an echo server (its own [`Reactor`] in its own
//!   thread) and three clients (three dialed links in one more reactor and
//!   thread), which reach it through a tiny TCP relay — the "cable", a
//!   thread pair per connection over std [`TcpStream`]s — that the
//!   director can cut. Every client sends a message every 0.5 s and prints each
//!   echo's round trip; heartbeat statistics show that a busy link never
//!   needs a PING.
//! - **Act 2 (4–8 s)** — the clients go idle and heartbeats take over,
//!   while a fake client connects with a raw [`TcpStream`], handshakes by
//!   hand and then plays dead, like a machine that lost power: no FIN, no
//!   RST, just silence. The server notices within `I + T` (2 s here) and
//!   closes it; the idle but healthy clients stay.
//! - **Act 3 (8–11 s)** — the cable is cut mid-stream. The clients stream
//!   numbered messages, 32 in flight each, as fast as the echoes come back;
//!   at 9 s the relay resets every connection (SO_LINGER 0, then close:
//!   RST to both sides). The clients redial, resume their sessions and
//!   send again what was not acknowledged, and the server does the same
//!   with its echoes. Then each client prints what it sent and what came
//!   back, and the demo says "not one message lost or repeated" only if
//!   the counts prove it (sent = echoed, no duplicate, none out of order).
//! - **Act 4 (11–18 s)** — the server is shut down. The clients see it go,
//!   redial with exponential backoff and jitter while it is away, and come
//!   back by themselves when a new server starts on the same port 3 s
//!   later — in new sessions, since the new server never knew the old
//!   ones: what it never acknowledged is handed back to the clients. A
//!   summary ends the show.
//!
//! Heartbeats are `I = T = 1 s` on both sides; the clients' backoff starts
//! at 200 ms and doubles up to 2 s, ±20 % jitter. The reactor offers no
//! application timers, so the client thread drives its reactor with
//! [`Reactor::poll_once`], using the time to the next send as the timeout.
//! The main thread directs the acts: it talks to the client thread through
//! a channel, stops each server through its [`Handle`], and cuts the relay.
//! Session resume is tether's default, on both sides.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether::BackoffConfig;
use tether::{
    Config, ConnId, Context, DisconnectReason, Handle, Handler, Message, PeerInfo, Reactor,
    ResumeStatus, State, UndeliveredCause,
};

/// Heartbeat interval `I` and timeout `T`, on both sides.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often each client sends a message while it is chatting.
const SEND_EVERY: Duration = Duration::from_millis(500);
/// The longest the client thread sleeps before looking for new cues.
const CUE_POLL: Duration = Duration::from_millis(50);
const CLIENT_NAMES: [&str; 3] = ["A", "B", "C"];

/// Messages each client keeps in flight while it streams (act 3).
const WINDOW: u64 = 32;

/// The script, in seconds since start.
const ACT2_AT: f64 = 4.0;
const ACT3_AT: f64 = 8.0;
/// Act 3: the cable is cut, streaming stops, the counts are told.
const CUT_AT: f64 = 9.0;
const STREAM_END_AT: f64 = 10.3;
const COUNTS_AT: f64 = 10.8;
const ACT4_AT: f64 = 11.0;
const RESTART_AT: f64 = 14.0;
const END_AT: f64 = 18.0;

/// If the show is not over by then, something is stuck: exit instead of
/// hanging.
const WATCHDOG: Duration = Duration::from_secs(40);

fn main() {
    if std::env::args().len() > 1 {
        eprintln!("usage: demo    (it takes no arguments; run it and watch)");
        process::exit(2);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    thread::spawn(|| {
        thread::sleep(WATCHDOG);
        eprintln!("demo: not finished after {WATCHDOG:?}, giving up");
        process::exit(1);
    });
    let stage = Stage::new();
    if let Err(e) = play(&stage) {
        eprintln!("demo: {e}");
        process::exit(1);
    }
}

/// Runs the three acts and prints the summary.
fn play(stage: &Stage) -> io::Result<()> {
    println!("tether demo: keeping TCP connections alive. About 18 s; times are since start.");

    stage.banner(&[
        "Act 1: an echo server and three clients",
        "One reactor thread serves on a free loopback port; another dials it",
        "three times, through a relay that plays the cable. Heartbeats: PING",
        "after I = 1 s of silence, peer dead if nothing arrives T = 1 s after",
        "it. Each client sends a message every 0.5 s and times the echo.",
    ]);
    let server = Server::start(stage, "127.0.0.1:0".parse().expect("literal address"))?;
    let addr = server.addr;
    stage.say(format_args!("server: listening on {addr}"));
    let relay = Relay::start(addr)?;
    stage.say(format_args!("relay: {} -> {addr} (the cable)", relay.addr));
    let clients = Clients::start(stage, relay.addr)?;

    stage.wait_until(ACT2_AT - 0.1);
    stage.say("heartbeat stats: busy links never ping, every message proves life");
    clients.cue(Cue::Stats);

    stage.wait_until(ACT2_AT);
    stage.banner(&[
        "Act 2: idle is not dead",
        "The clients stop sending; their heartbeats keep the links up.",
        "Meanwhile a fake client connects with a raw TcpStream, handshakes",
        "by hand, and then plays dead: it never reads or writes again, and",
        "no FIN or RST is sent, as when a machine loses power. The server",
        "should close it within I + T = 2 s (plus up to 0.1 s PING jitter).",
    ]);
    clients.cue(Cue::Mode(Mode::Idle));
    let silent_peer = play_dead(stage, addr);

    stage.wait_until(ACT3_AT - 0.1);
    stage.say("heartbeat stats: idle links exchange one PING/PONG per second");
    clients.cue(Cue::Stats);

    stage.wait_until(ACT3_AT);
    stage.banner(&[
        "Act 3: the cable is cut mid-stream",
        "The clients stream numbered messages, 32 in flight each, as fast as",
        "the echoes return. At 9 s the relay resets every connection (RST to",
        "both sides). Session resume (on by default): each side redials or",
        "waits, the sessions go on where they broke off, and what was not",
        "acknowledged is sent again. Then the clients count.",
    ]);
    clients.cue(Cue::Mode(Mode::Stream));

    stage.wait_until(CUT_AT);
    let cut = relay.cut();
    stage.say(format_args!(
        "relay: cable cut, {cut} connections reset mid-stream"
    ));

    stage.wait_until(STREAM_END_AT);
    stage.say("the clients stop streaming; the last echoes come home");
    clients.cue(Cue::Mode(Mode::Idle));

    stage.wait_until(COUNTS_AT);
    let (tx, counts) = mpsc::channel();
    clients.cue(Cue::Count(tx));
    let verdict = counts.recv_timeout(Duration::from_secs(2)).ok();
    stage.say(match verdict {
        Some(Ok(())) => "not one message lost or repeated".to_owned(),
        Some(Err(wrong)) => format!("something went wrong: {wrong}"),
        None => "something went wrong: the clients did not answer".to_owned(),
    });

    stage.wait_until(ACT4_AT);
    stage.banner(&[
        "Act 4: the server goes away and comes back",
        "The server shuts down (each client gets CLOSE 1001). The clients",
        "redial by themselves: 200 ms, 400 ms, 800 ms, ... up to 2 s, each",
        "delay jittered by +/-20 % so that they do not stampede. A new server",
        "starts on the same port 3 s later, and they reconnect: in new",
        "sessions, since the new server never knew the old ones. (Through",
        "the relay a refused connect reaches them as a reset.)",
    ]);
    let first = server.stop();
    stage.say(format_args!(
        "server: stopped, port {} is closed",
        addr.port()
    ));
    clients.cue(Cue::Mode(Mode::Quiet));

    stage.wait_until(RESTART_AT);
    stage.say(format_args!("server: restarting on {addr}"));
    let second = Server::start_retrying(stage, addr)?;

    stage.wait_until(END_AT);
    stage.say("curtain: shutting both reactors down");
    stage.mute(true);
    let fleet = clients.stop();
    second.stop();
    relay.stop();
    drop(silent_peer);
    stage.mute(false);

    summary(stage, fleet.as_ref(), first.as_ref());
    Ok(())
}

// ----- the stage: timestamps and banners -----------------------------------

/// The shared clock of every thread, and a switch to silence them all
/// during the final teardown.
#[derive(Clone)]
struct Stage {
    start: Instant,
    muted: Arc<AtomicBool>,
}

impl Stage {
    fn new() -> Stage {
        Stage {
            start: Instant::now(),
            muted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Prints one line stamped with the time since start. `println!`
    /// locks stdout, so lines from different threads never mix.
    fn say(&self, what: impl Display) {
        if !self.muted.load(Ordering::Relaxed) {
            println!("[{:7.3}s] {what}", self.start.elapsed().as_secs_f64());
        }
    }

    fn banner(&self, lines: &[&str]) {
        let rule = "-".repeat(72);
        println!("\n{rule}");
        self.say(lines[0]);
        for line in &lines[1..] {
            println!("           {line}");
        }
        println!("{rule}");
    }

    fn mute(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Sleeps until `secs` seconds after start (at once if already past).
    fn wait_until(&self, secs: f64) {
        let at = self.start + Duration::from_secs_f64(secs);
        thread::sleep(at.saturating_duration_since(Instant::now()));
    }

    fn nanos(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

// ----- the server ----------------------------------------------------------

/// An echo server: a reactor running in its own thread.
struct Server {
    addr: SocketAddr,
    handle: Handle,
    thread: JoinHandle<io::Result<EchoServer>>,
}

impl Server {
    /// Binds `addr` (port 0: any free port), then serves in a new thread.
    fn start(stage: &Stage, addr: SocketAddr) -> io::Result<Server> {
        let config = Config::builder()
            .heartbeat(HEARTBEAT, HEARTBEAT)
            .build()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut reactor = Reactor::with_config(config)?;
        let listener = reactor.listen(addr)?;
        let addr = reactor.local_addr(listener).unwrap_or(addr);
        let handle = reactor.handle();
        let mut echo = EchoServer {
            stage: stage.clone(),
            peers: HashMap::new(),
            detections: Vec::new(),
        };
        let thread = thread::spawn(move || {
            reactor.run(&mut echo)?;
            Ok(echo)
        });
        Ok(Server {
            addr,
            handle,
            thread,
        })
    }

    /// [`start`](Self::start), retried for a moment if the port is not
    /// free yet.
    fn start_retrying(stage: &Stage, addr: SocketAddr) -> io::Result<Server> {
        let give_up = Instant::now() + Duration::from_secs(2);
        loop {
            match Server::start(stage, addr) {
                Err(e) if Instant::now() < give_up => {
                    stage.say(format_args!("server: cannot listen yet ({e}), retrying"));
                    thread::sleep(Duration::from_millis(100));
                }
                result => return result,
            }
        }
    }

    /// Shuts the reactor down (every client gets CLOSE 1001) and waits for
    /// its thread, which releases the port.
    fn stop(self) -> Option<EchoServer> {
        // An error means the reactor is already gone: nothing to stop.
        let _ = self.handle.shutdown();
        match self.thread.join() {
            Ok(Ok(echo)) => Some(echo),
            Ok(Err(e)) => {
                eprintln!("demo: server failed: {e}");
                None
            }
            Err(_) => None,
        }
    }
}

/// A client as the server knows it.
struct Peer {
    addr: SocketAddr,
    /// When its last frame the handler saw arrived (the handshake or a
    /// message).
    last_heard: Instant,
}

/// The server's handler: echoes messages and reports each connection.
struct EchoServer {
    stage: Stage,
    peers: HashMap<ConnId, Peer>,
    /// How long each dead peer took to be detected.
    detections: Vec<Duration>,
}

impl Handler for EchoServer {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        let Some(addr) = cx.conn_stats(id).map(|s| s.peer_addr) else {
            return;
        };
        let last_heard = cx.now();
        self.peers.insert(id, Peer { addr, last_heard });
        match peer.resume {
            ResumeStatus::Resumed { resent } => self.stage.say(format_args!(
                "server: {addr} resumed its session ({resent} echoes sent again)"
            )),
            _ => self.stage.say(format_args!("server: {addr} connected")),
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.last_heard = cx.now();
        }
        if let Err(e) = cx.send(id, message) {
            self.stage
                .say(format_args!("server: echo to {id} dropped: {e}"));
        }
    }

    fn on_disconnected(&mut self, cx: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        if *reason == DisconnectReason::HeartbeatTimeout {
            let silence = cx.now().saturating_duration_since(peer.last_heard);
            self.detections.push(silence);
            self.stage.say(format_args!(
                "server: {} heartbeat timeout -> closed, {:.3} s after its last frame",
                peer.addr,
                silence.as_secs_f64()
            ));
        } else {
            // Resume: the session waits for its client to come back.
            let held = cx
                .conn_stats(id)
                .is_some_and(|s| s.state == State::Detached);
            let held = if held { " (session held)" } else { "" };
            self.stage.say(format_args!(
                "server: {} disconnected{held}: {reason}",
                peer.addr
            ));
        }
    }
}

// ----- the cable: a relay the director can cut --------------------------------

/// How often a relay thread looks up from a blocking read or write.
const RELAY_TICK: Duration = Duration::from_millis(20);

/// A TCP relay on a free loopback port that forwards every connection to
/// the server: two threads per connection, one per direction, over
/// blocking std sockets with short timeouts.
struct Relay {
    addr: SocketAddr,
    shared: Arc<RelayShared>,
    thread: JoinHandle<()>,
}

struct RelayShared {
    target: SocketAddr,
    stop: AtomicBool,
    /// The connections, for the cut.
    pairs: std::sync::Mutex<Vec<std::sync::Weak<Pair>>>,
}

/// One relayed connection: the client's socket and the server's.
struct Pair {
    client: TcpStream,
    server: TcpStream,
    cut: AtomicBool,
}

impl Relay {
    fn start(target: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(RelayShared {
            target,
            stop: AtomicBool::new(false),
            pairs: std::sync::Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        let thread = thread::spawn(move || {
            while !accepting.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => accepting.open(client),
                    Err(_) => thread::sleep(RELAY_TICK),
                }
            }
        });
        Ok(Relay {
            addr,
            shared,
            thread,
        })
    }

    /// Resets every relayed connection; returns how many.
    fn cut(&self) -> usize {
        let pairs = std::mem::take(&mut *self.shared.lock_pairs());
        pairs
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|pair| pair.reset())
            .count()
    }

    fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.cut();
        let _ = self.thread.join();
    }
}

impl RelayShared {
    fn lock_pairs(&self) -> std::sync::MutexGuard<'_, Vec<std::sync::Weak<Pair>>> {
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects `client` to the target and starts its two threads; resets
    /// it if the target does not answer (the server is down).
    fn open(&self, client: TcpStream) {
        let server = match TcpStream::connect_timeout(&self.target, Duration::from_secs(1)) {
            Ok(server) => server,
            Err(_) => {
                reset(&client);
                return;
            }
        };
        for s in [&client, &server] {
            let setup = s
                .set_nonblocking(false)
                .and_then(|()| s.set_nodelay(true))
                .and_then(|()| s.set_read_timeout(Some(RELAY_TICK)))
                .and_then(|()| s.set_write_timeout(Some(RELAY_TICK)));
            if setup.is_err() {
                reset(s);
                return;
            }
        }
        let pair = Arc::new(Pair {
            client,
            server,
            cut: AtomicBool::new(false),
        });
        let mut pairs = self.lock_pairs();
        pairs.retain(|p| p.strong_count() > 0);
        pairs.push(Arc::downgrade(&pair));
        drop(pairs);
        let up = pair.clone();
        thread::spawn(move || up.pump(&up.client, &up.server));
        thread::spawn(move || pair.pump(&pair.server, &pair.client));
    }
}

impl Pair {
    /// Copies `from` to `to` until either ends or the pair is cut. The
    /// sockets close when both directions' threads have let go of the pair.
    fn pump(&self, mut from: &TcpStream, mut to: &TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        while !self.cut.load(Ordering::Relaxed) {
            let n = match from.read(&mut buf) {
                Ok(0) => {
                    // An orderly end: pass the FIN on.
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Ok(n) => n,
                Err(e) if is_tick(&e) => continue,
                Err(_) => break,
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() && !self.cut.load(Ordering::Relaxed) {
                match to.write(rest) {
                    Ok(0) => break,
                    Ok(k) => rest = &rest[k..],
                    Err(e) if is_tick(&e) => {}
                    Err(_) => {
                        self.reset();
                        return;
                    }
                }
            }
        }
        self.reset();
    }

    /// Both sides get an RST once both threads have let go of the pair.
    fn reset(&self) {
        reset(&self.client);
        reset(&self.server);
        self.cut.store(true, Ordering::Relaxed);
    }
}

/// SO_LINGER 0: the socket's close sends an RST instead of a FIN.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

// ----- the fake client that plays dead --------------------------------------

/// Connects a raw socket, handshakes by hand, and keeps the socket open
/// without ever touching it again. Returns it so that it stays open.
fn play_dead(stage: &Stage, server: SocketAddr) -> Option<TcpStream> {
    match handshake_by_hand(server) {
        Ok((stream, session)) => {
            let local = stream
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            stage.say(format_args!(
                "silent peer: {local} sent HELLO, got WELCOME (session {session:#x}); \
                 now it plays dead"
            ));
            Some(stream)
        }
        Err(e) => {
            stage.say(format_args!("silent peer: handshake failed: {e}"));
            None
        }
    }
}

/// Sends HELLO and reads WELCOME over a plain `TcpStream`; returns the
/// stream and the session id the server assigned.
fn handshake_by_hand(server: SocketAddr) -> io::Result<(TcpStream, u64)> {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(&hello_frame())?;
    let mut welcome = [0u8; 35];
    stream.read_exact(&mut welcome)?;
    // Length 31 (kind + 30-byte payload), kind 0x02 WELCOME, magic TTHR.
    if welcome[..9] != [0, 0, 0, 31, 0x02, b'T', b'T', b'H', b'R'] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "expected a WELCOME frame",
        ));
    }
    let mut session = [0u8; 8];
    session.copy_from_slice(&welcome[19..27]);
    Ok((stream, u64::from_be_bytes(session)))
}

/// A HELLO frame built by hand from docs/PROTOCOL.md (35 bytes, integers
/// big-endian). `tether::proto::codec::encode_hello` writes the same bytes.
fn hello_frame() -> Vec<u8> {
    let interval_ms = u32::try_from(HEARTBEAT.as_millis()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(35);
    frame.extend_from_slice(&31u32.to_be_bytes()); // length: kind + 30-byte payload
    frame.push(0x01); // kind: HELLO
    frame.extend_from_slice(b"TTHR"); // magic
    frame.push(1); // protocol version
    frame.push(0); // flags
    frame.extend_from_slice(&interval_ms.to_be_bytes()); // heartbeat interval, ms
    frame.extend_from_slice(&interval_ms.to_be_bytes()); // heartbeat timeout, ms
    frame.extend_from_slice(&0u64.to_be_bytes()); // session id: 0, a new session
    frame.extend_from_slice(&0u64.to_be_bytes()); // DATA frames received: 0
    frame
}

// ----- the clients -----------------------------------------------------------

/// What the director tells the client thread.
enum Cue {
    Mode(Mode),
    /// Print each link's heartbeat statistics.
    Stats,
    /// Print each link's counts and answer whether they prove that every
    /// message came back exactly once and in order (else what went wrong).
    Count(Sender<Result<(), String>>),
    /// Close the links and end the thread.
    Stop,
}

/// How the clients behave.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Send every 0.5 s and print every echo.
    Chatty,
    /// Send nothing: only heartbeats cross the links.
    Idle,
    /// Send every 0.5 s, print only the first echo after each connect.
    Quiet,
    /// Keep [`WINDOW`] messages in flight, as fast as they come back;
    /// print no echo.
    Stream,
}

/// The client thread, seen from the director.
struct Clients {
    cues: Sender<Cue>,
    thread: JoinHandle<io::Result<Fleet>>,
}

impl Clients {
    /// Dials `server` three times from one reactor in a new thread.
    fn start(stage: &Stage, server: SocketAddr) -> io::Result<Clients> {
        let backoff = BackoffConfig {
            initial: Duration::from_millis(200),
            multiplier: 2.0,
            max: Duration::from_secs(2),
            jitter: 0.2,
            max_attempts: None,
        };
        let config = Config::builder()
            .heartbeat(HEARTBEAT, HEARTBEAT)
            .backoff(backoff)
            .build()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut reactor = Reactor::with_config(config)?;
        let mut fleet = Fleet {
            stage: stage.clone(),
            mode: Mode::Chatty,
            links: Vec::new(),
        };
        for name in CLIENT_NAMES {
            let id = reactor.dial(server);
            fleet.links.push(Link::new(name, id));
        }
        let (cues, inbox) = mpsc::channel();
        let thread = thread::spawn(move || drive(reactor, fleet, &inbox));
        Ok(Clients { cues, thread })
    }

    fn cue(&self, cue: Cue) {
        // The thread only ends on Stop (or an I/O error, reported then).
        let _ = self.cues.send(cue);
    }

    /// Closes the links and returns the clients' record.
    fn stop(self) -> Option<Fleet> {
        self.cue(Cue::Stop);
        match self.thread.join() {
            Ok(Ok(fleet)) => Some(fleet),
            Ok(Err(e)) => {
                eprintln!("demo: clients failed: {e}");
                None
            }
            Err(_) => None,
        }
    }
}

/// The client thread's loop: follow the cues, send what is due, and poll
/// the reactor in between for at most [`CUE_POLL`].
fn drive(mut reactor: Reactor, mut fleet: Fleet, cues: &Receiver<Cue>) -> io::Result<Fleet> {
    loop {
        match cues.try_recv() {
            Ok(Cue::Mode(mode)) => fleet.mode = mode,
            Ok(Cue::Stats) => fleet.print_stats(&reactor),
            Ok(Cue::Count(answer)) => {
                let _ = answer.send(fleet.count());
            }
            Ok(Cue::Stop) | Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {}
        }
        let timeout = fleet
            .time_to_next_send()
            .map_or(CUE_POLL, |t| t.min(CUE_POLL));
        reactor.poll_once(&mut fleet, Some(timeout))?;
        // Queued here, written by the next `poll_once` straight away.
        fleet.send_due(&mut reactor.context());
    }
    reactor.context().shutdown();
    reactor.run(&mut fleet)?;
    Ok(fleet)
}

/// One dialed link and its record.
struct Link {
    name: &'static str,
    id: ConnId,
    connected: bool,
    next_send: Instant,
    /// An echo has been printed since the last connect.
    echo_shown: bool,
    sent: u64,
    /// Distinct sequence numbers echoed.
    echoes: u64,
    /// Echoes of a number already echoed.
    duplicates: u64,
    /// Echoes that came after one of a higher number.
    reordered: u64,
    highest: u64,
    seen: HashSet<u64>,
    /// Messages handed back by `on_undelivered`.
    handed_back: u64,
    /// Messages never to be echoed: in flight when a session was lost.
    abandoned: u64,
    /// Its session resumes: sends while the link is down are kept for it.
    resumable: bool,
    connects: u32,
    redials: u32,
}

impl Link {
    fn new(name: &'static str, id: ConnId) -> Link {
        Link {
            name,
            id,
            connected: false,
            next_send: Instant::now(),
            echo_shown: false,
            sent: 0,
            echoes: 0,
            duplicates: 0,
            reordered: 0,
            highest: 0,
            seen: HashSet::new(),
            handed_back: 0,
            abandoned: 0,
            resumable: false,
            connects: 0,
            redials: 0,
        }
    }

    /// Messages sent that may still be echoed.
    fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.echoes + self.abandoned)
    }

    /// Whether a message may be sent now: the link is up, or down with a
    /// session that keeps what is sent meanwhile.
    fn can_send(&self) -> bool {
        self.connected || self.resumable
    }
}

/// The three clients: the handler of the client reactor.
struct Fleet {
    stage: Stage,
    mode: Mode,
    links: Vec<Link>,
}

impl Fleet {
    fn link(&mut self, id: ConnId) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.id == id)
    }

    /// Prints `what` about the client of link `id`.
    fn say(&self, id: ConnId, what: impl Display) {
        let name = self
            .links
            .iter()
            .find(|l| l.id == id)
            .map_or("?", |l| l.name);
        self.stage.say(format_args!("client {name}: {what}"));
    }

    fn time_to_next_send(&self) -> Option<Duration> {
        if self.mode == Mode::Idle {
            return None;
        }
        if self.mode == Mode::Stream {
            // Refilled after every poll; echoes wake it.
            return Some(CUE_POLL);
        }
        let now = Instant::now();
        self.links
            .iter()
            .filter(|l| l.can_send())
            .map(|l| l.next_send.saturating_duration_since(now))
            .min()
    }

    /// Sends a message on every connected link whose time has come; true
    /// if anything was sent. Each message carries its sequence number and
    /// its send time, so the echo tells its own round trip.
    fn send_due(&mut self, cx: &mut Context<'_>) -> bool {
        if self.mode == Mode::Idle {
            return false;
        }
        let now = Instant::now();
        let nanos = self.stage.nanos();
        let mut sent = false;
        for link in self.links.iter_mut().filter(|l| l.can_send()) {
            if self.mode == Mode::Stream {
                while link.in_flight() < WINDOW && send_next(cx, link, nanos) {
                    sent = true;
                }
                continue;
            }
            if now < link.next_send {
                continue;
            }
            let next = link.next_send + SEND_EVERY;
            // After a pause, start a fresh rhythm instead of catching up.
            link.next_send = if next > now { next } else { now + SEND_EVERY };
            sent |= send_next(cx, link, nanos);
        }
        sent
    }

    /// Prints each link's counts; `Ok` if they prove that every message
    /// sent came back exactly once and in order, else what went wrong.
    fn count(&self) -> Result<(), String> {
        let mut wrong = Vec::new();
        for link in &self.links {
            self.say(
                link.id,
                format_args!(
                    "sent {}, echoed {}, {} duplicates, {} out of order",
                    link.sent, link.echoes, link.duplicates, link.reordered
                ),
            );
            let name = link.name;
            if link.echoes < link.sent {
                wrong.push(format!(
                    "client {name}: {} messages not echoed",
                    link.sent - link.echoes
                ));
            }
            if link.duplicates > 0 {
                wrong.push(format!("client {name}: {} repeated", link.duplicates));
            }
            if link.reordered > 0 {
                wrong.push(format!("client {name}: {} out of order", link.reordered));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }

    fn print_stats(&self, reactor: &Reactor) {
        for link in &self.links {
            let Some(s) = reactor.conn_stats(link.id) else {
                continue;
            };
            let srtt = s
                .srtt
                .map_or_else(|| "-".to_owned(), |d| format!("{:.3} ms", ms(d)));
            self.say(
                link.id,
                format_args!(
                    "pings sent {}, pongs received {}, srtt {srtt}; \
                     server pings answered {}; echoes {}",
                    s.pings_sent, s.pongs_received, s.pings_received, link.echoes
                ),
            );
        }
    }
}

impl Handler for Fleet {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        let now = cx.now();
        let mut handed_back = 0;
        if let Some(link) = self.link(id) {
            link.connected = true;
            link.connects += 1;
            link.echo_shown = false;
            link.next_send = now;
            if !matches!(peer.resume, ResumeStatus::Resumed { .. }) {
                // What was in flight went with the old session.
                link.abandoned += link.in_flight();
            }
            link.resumable = matches!(
                peer.resume,
                ResumeStatus::New | ResumeStatus::Resumed { .. }
            );
            handed_back = link.handed_back;
        }
        let session = match peer.resume {
            ResumeStatus::Resumed { resent } => format!(
                "session {:#x} resumed: {resent} messages sent again",
                peer.session_id
            ),
            ResumeStatus::Lost => format!(
                "new session {:#x}: the old one was lost, {handed_back} messages handed back",
                peer.session_id
            ),
            ResumeStatus::New => format!("new session {:#x}", peer.session_id),
            _ => format!("session {:#x}, no resume", peer.session_id),
        };
        self.say(
            id,
            format_args!(
                "connected ({session}; server heartbeat {}/{} ms)",
                peer.interval.as_millis(),
                peer.timeout.as_millis()
            ),
        );
    }

    fn on_message(&mut self, _: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let now_ns = self.stage.nanos();
        let mode = self.mode;
        let Some(link) = self.link(id) else { return };
        let Some((seq, sent_ns)) = parse_message(&message) else {
            return;
        };
        if !link.seen.insert(seq) {
            link.duplicates += 1;
            return;
        }
        link.echoes += 1;
        if seq < link.highest {
            link.reordered += 1;
        }
        link.highest = link.highest.max(seq);
        let note = match mode {
            Mode::Chatty => "",
            Mode::Quiet if !link.echo_shown => " (first since connecting; the rest are counted)",
            _ => return,
        };
        link.echo_shown = true;
        let rtt_ms = now_ns.saturating_sub(sent_ns) as f64 / 1e6;
        self.say(id, format_args!("echo seq={seq} rtt={rtt_ms:.3} ms{note}"));
    }

    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        if let Some(link) = self.link(id) {
            link.connected = false;
        }
        self.say(id, format_args!("disconnected: {reason}"));
    }

    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        messages: Vec<Bytes>,
        cause: UndeliveredCause,
    ) {
        let echoed = match self.link(id) {
            Some(link) => {
                link.handed_back += messages.len() as u64;
                messages
                    .iter()
                    .filter_map(|m| parse_message(m))
                    .filter(|(seq, _)| link.seen.contains(seq))
                    .count()
            }
            None => 0,
        };
        self.say(
            id,
            format_args!(
                "{} messages handed back ({echoed} of them echoed already): {cause}",
                messages.len()
            ),
        );
    }

    fn on_reconnecting(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        attempt: u32,
        delay: Duration,
        reason: &DisconnectReason,
    ) {
        if let Some(link) = self.link(id) {
            link.redials += 1;
        }
        self.say(
            id,
            format_args!(
                "reconnecting in {} ms (attempt {attempt}): {reason}",
                delay.as_millis()
            ),
        );
    }

    fn on_gave_up(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        attempts: u32,
        reason: &DisconnectReason,
    ) {
        self.say(
            id,
            format_args!("gave up after {attempts} attempts: {reason}"),
        );
    }
}

/// Sends `link`'s next numbered message, stamped `nanos`; true if it was
/// accepted. Each message carries its sequence number (from 1) and its
/// send time, so the echo tells its own round trip.
fn send_next(cx: &mut Context<'_>, link: &mut Link, nanos: u64) -> bool {
    let seq = link.sent + 1;
    let mut message = Vec::with_capacity(16);
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(&nanos.to_be_bytes());
    if cx.send(link.id, message).is_ok() {
        link.sent = seq;
        true
    } else {
        false
    }
}

/// Splits a message into its sequence number and send time.
fn parse_message(message: &[u8]) -> Option<(u64, u64)> {
    let (seq, sent) = message.split_first_chunk::<8>()?;
    let sent: [u8; 8] = sent.try_into().ok()?;
    Some((u64::from_be_bytes(*seq), u64::from_be_bytes(sent)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ----- the summary -----------------------------------------------------------

fn summary(stage: &Stage, fleet: Option<&Fleet>, first_server: Option<&EchoServer>) {
    stage.banner(&["Summary"]);
    let links = fleet.map_or(&[][..], |f| &f.links[..]);
    for link in links {
        println!(
            "  client {}: connected {} times, {} reconnect attempts, {} of {} messages echoed",
            link.name, link.connects, link.redials, link.echoes, link.sent
        );
    }
    let handed_back: u64 = links.iter().map(|l| l.handed_back).sum();
    if links.iter().any(|l| l.echoes < l.sent) {
        println!(
            "  (a cut cable loses nothing: the sessions resume; the restarted server \
             knew none of them, and the {handed_back} messages it never acknowledged \
             were handed back to the clients)"
        );
    }
    for silence in first_server.map_or(&[][..], |s| &s.detections[..]) {
        println!(
            "  dead peer closed {:.3} s after its last frame (bound: I + T = {:.1} s, \
             plus up to 0.1 s PING jitter)",
            silence.as_secs_f64(),
            (HEARTBEAT + HEARTBEAT).as_secs_f64()
        );
    }
    println!("  total time {:.1} s", stage.start.elapsed().as_secs_f64());
}
