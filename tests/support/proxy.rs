//! A fault-injecting TCP proxy for the loopback tests.
//!
//! [`Proxy::start`] listens on 127.0.0.1:0 and forwards every accepted
//! connection to a target address. Each proxied connection is served by two
//! threads, one per direction (client → server is [`Dir::Up`], server →
//! client is [`Dir::Down`]), over blocking std sockets with short timeouts so
//! that every thread notices a mode change or a stop within [`TICK`].
//!
//! The [`Mode`] is shared by all current and future connections and can be
//! switched at any time, from any thread ([`ProxyHandle`] is `Clone + Send`).
//!
//! Bytes are never dropped: a blackholed direction simply stops moving (the
//! proxy neither reads nor writes it, so the endpoints' kernels still ACK
//! what was sent, as with a firewall that silently drops a flow, and only
//! application heartbeats can tell). When the blackhole lifts, what was held
//! flows on in order — as TCP's retransmissions would after a transient
//! outage. A FIN or RST cannot cross a blackhole either.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::SockRef;

/// How often a waiting thread looks at the mode and the stop flag; also the
/// read and write timeout of the proxied sockets.
pub const TICK: Duration = Duration::from_millis(5);
/// Bytes per read.
const CHUNK: usize = 16 * 1024;
/// Chunks a direction holds before it stops reading (back-pressure).
const QUEUE: usize = 16;

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

/// What the proxy does to the traffic of every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything as it comes.
    PassThrough,
    /// Forward nothing in either direction; both sockets stay open.
    Blackhole,
    /// Forward nothing client → server (the server stops hearing the client).
    BlackholeUp,
    /// Forward nothing server → client (the client stops hearing the server).
    BlackholeDown,
    /// Deliver each chunk this long after it was read, in order.
    Delay(Duration),
    /// Deliver at most this many bytes per second in each direction.
    Throttle(u64),
    /// Reset both sides of every connection (SO_LINGER 0, then close: RST);
    /// connections accepted meanwhile are reset at once.
    Reset,
    /// shutdown(Write) toward the client (it reads EOF); client → server
    /// still flows. Applies to connections accepted meanwhile too.
    CloseToClient,
    /// shutdown(Write) toward the server (it reads EOF); server → client
    /// still flows. Applies to connections accepted meanwhile too.
    CloseToServer,
}

impl Mode {
    fn holds(self, dir: Dir) -> bool {
        matches!(
            (self, dir),
            (Mode::Blackhole, _) | (Mode::BlackholeUp, Dir::Up) | (Mode::BlackholeDown, Dir::Down)
        )
    }

    fn closes(self, dir: Dir) -> bool {
        matches!(
            (self, dir),
            (Mode::CloseToClient, Dir::Down) | (Mode::CloseToServer, Dir::Up)
        )
    }

    fn delay(self) -> Duration {
        match self {
            Mode::Delay(d) => d,
            _ => Duration::ZERO,
        }
    }
}

struct Shared {
    target: SocketAddr,
    mode: Mutex<Mode>,
    stop: AtomicBool,
    accepted: AtomicU64,
    active: AtomicUsize,
    delivered: [AtomicU64; 2],
    last_delivery: Mutex<[Option<Instant>; 2]>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Controls a [`Proxy`] from any thread.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// Switches every current and future connection to `mode`.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *lock(&self.shared.mode)
    }

    /// Connections accepted (and forwarded) so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Proxied connections still open (at least one of their threads runs).
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Bytes delivered in `dir`, over all connections.
    pub fn delivered(&self, dir: Dir) -> u64 {
        self.shared.delivered[dir as usize].load(Ordering::SeqCst)
    }

    /// When the last bytes were handed to the destination in `dir` (taken
    /// just before the write, so the receiver cannot have read them
    /// earlier), over all connections.
    pub fn last_delivery(&self, dir: Dir) -> Option<Instant> {
        lock(&self.shared.last_delivery)[dir as usize]
    }
}

/// The proxy; dropping it stops and joins every thread.
pub struct Proxy {
    addr: SocketAddr,
    handle: ProxyHandle,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`, in
    /// pass-through mode.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("proxy nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            target,
            mode: Mutex::new(Mode::PassThrough),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            delivered: [AtomicU64::new(0), AtomicU64::new(0)],
            last_delivery: Mutex::new([None, None]),
            threads: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(&listener, &shared))
        };
        Proxy {
            addr,
            handle: ProxyHandle { shared },
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }
}

impl Deref for Proxy {
    type Target = ProxyHandle;
    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // No new threads after the acceptor is gone.
        let threads = std::mem::take(&mut *lock(&shared.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => open(shared, client),
            Err(_) => thread::sleep(TICK), // WouldBlock, or a transient error
        }
        lock(&shared.threads).retain(|t| !t.is_finished());
    }
}

fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Connects an accepted client to the target and starts its two threads.
fn open(shared: &Arc<Shared>, client: TcpStream) {
    let mode = *lock(&shared.mode);
    if mode == Mode::Reset {
        reset(&client);
        return; // dropped: RST
    }
    let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(1)) else {
        reset(&client); // like a refused connection
        return;
    };
    for s in [&client, &server] {
        let setup = s
            .set_nonblocking(false)
            .and_then(|()| s.set_nodelay(true))
            .and_then(|()| s.set_read_timeout(Some(TICK)))
            .and_then(|()| s.set_write_timeout(Some(TICK)));
        if setup.is_err() {
            return;
        }
    }
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    shared.active.fetch_add(1, Ordering::SeqCst);
    let pair = Arc::new(Pair {
        shared: shared.clone(),
        client,
        server,
        aborted: AtomicBool::new(false),
    });
    let mut threads = lock(&shared.threads);
    for dir in [Dir::Up, Dir::Down] {
        let pair = pair.clone();
        threads.push(thread::spawn(move || pump(&pair, dir)));
    }
}

/// Both sockets of one proxied connection; closed when both threads end.
struct Pair {
    shared: Arc<Shared>,
    client: TcpStream,
    server: TcpStream,
    aborted: AtomicBool,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pair {
    /// (source, destination) of `dir`.
    fn ends(&self, dir: Dir) -> (&TcpStream, &TcpStream) {
        match dir {
            Dir::Up => (&self.client, &self.server),
            Dir::Down => (&self.server, &self.client),
        }
    }

    /// Both sides will get an RST once both threads have let go.
    fn abort(&self) {
        reset(&self.client);
        reset(&self.server);
        self.aborted.store(true, Ordering::SeqCst);
    }

    /// Whether `dir` should keep going; carries out Reset and Close modes.
    fn carry_on(&self, dir: Dir) -> bool {
        if self.aborted.load(Ordering::SeqCst) || self.shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let mode = *lock(&self.shared.mode);
        if mode == Mode::Reset {
            self.abort();
            return false;
        }
        if mode.closes(dir) {
            let _ = self.ends(dir).1.shutdown(Shutdown::Write);
            return false;
        }
        true
    }

    fn mode(&self) -> Mode {
        *lock(&self.shared.mode)
    }

    fn delivered(&self, dir: Dir, at: Instant, n: usize) {
        lock(&self.shared.last_delivery)[dir as usize] = Some(at);
        self.shared.delivered[dir as usize].fetch_add(n as u64, Ordering::SeqCst);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Moves bytes in one direction until EOF, an error, a fault that ends it,
/// or the proxy stops. Reads go into a queue of (due, bytes) chunks, so that
/// delayed chunks keep their order while reading goes on.
fn pump(pair: &Pair, dir: Dir) {
    let (mut src, mut dst) = pair.ends(dir);
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut sent = 0; // bytes of the head chunk already written
    let mut eof = false;
    let mut paced_until = Instant::now(); // throttle: earliest next write
    let mut buf = vec![0u8; CHUNK];
    while pair.carry_on(dir) {
        let mode = match pair.mode() {
            Mode::Throttle(rate) => Mode::Throttle(rate.max(1)),
            mode => mode,
        };
        let held = mode.holds(dir);
        let now = Instant::now();
        // 1. Deliver the head chunk once it is due.
        if !held {
            match queue.front() {
                Some((due, data)) if *due <= now => {
                    let mut end = data.len();
                    if let Mode::Throttle(rate) = mode {
                        // At most 10 ms worth of bytes per write, paced.
                        let piece = usize::try_from(rate / 100).unwrap_or(usize::MAX).max(1);
                        end = end.min(sent + piece);
                        let start = paced_until.max(now);
                        thread::sleep(start - now);
                        paced_until = start;
                    }
                    let at = Instant::now();
                    match dst.write(&data[sent..end]) {
                        Ok(n) => {
                            pair.delivered(dir, at, n);
                            sent += n;
                            if let Mode::Throttle(rate) = mode {
                                paced_until += Duration::from_secs_f64(n as f64 / rate as f64);
                            }
                            if sent == data.len() {
                                queue.pop_front();
                                sent = 0;
                            }
                        }
                        Err(e) if is_timeout(&e) => {}
                        Err(_) => return pair.abort(),
                    }
                    continue;
                }
                None if eof => {
                    let _ = dst.shutdown(Shutdown::Write);
                    return;
                }
                _ => {}
            }
        }
        // 2. Read more, unless held, finished or full; never wait past the
        // head chunk's due time.
        let wait = queue
            .front()
            .map_or(TICK, |(due, _)| due.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), TICK);
        if held || eof || queue.len() >= QUEUE {
            thread::sleep(if held { TICK } else { wait });
            continue;
        }
        if src.set_read_timeout(Some(wait)).is_err() {
            return pair.abort();
        }
        match src.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => {
                let due = Instant::now() + pair.mode().delay();
                queue.push_back((due, buf[..n].to_vec()));
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return pair.abort(),
        }
    }
}
