//! An echo client that stays connected: it dials a server, prints every
//! connection event, and — when the link is lost — lets tether redial with
//! exponential backoff and jitter, forever.
//!
//! It shows the client side of tether: [`Reactor::dial`] returns one
//! [`ConnId`] that names the link across all its redials; the [`Handler`]
//! sees `connected`, `disconnected`, `reconnecting` and `gave up` events,
//! and, with session resume (on by default; `--no-resume` turns it off),
//! what became of the session on each connect: new, resumed (with how many
//! messages were sent again), or lost (the server no longer held it, and
//! the messages it had not acknowledged are handed back to
//! `on_undelivered`, which prints them). The reactor has no application
//! timers here, so the program drives it with [`Reactor::poll_once`] and
//! short timeouts, and sends through [`Reactor::context`] outside the
//! callbacks.
//!
//! ```text
//! cargo run --example echo_server -- --listen 127.0.0.1:7000 --interval-ms 1000 --timeout-ms 1000
//! cargo run --example echo_client -- --connect 127.0.0.1:7000 --interval-ms 1000 --timeout-ms 1000 --send-every-ms 500
//! cargo run --example echo_client -- --connect 127.0.0.1:7000 --interval-ms 1000 --timeout-ms 1000 --window 64 --count 100000
//! cargo run --example echo_client -- --connect localhost:7000,localhost:7001 --interval-ms 1000 --timeout-ms 1000 --send-every-ms 500
//! ```
//!
//! `--connect` takes an address, a host name and port (looked up again at
//! every redial, so a server that moved is found), or several of them
//! separated by commas: a failover list (see [`tether::Endpoints`]); the
//! client says when the link moves to another one.
//!
//! Stop and restart the server while the client runs to watch it reconnect
//! (a restarted server has lost the session), or break the connection
//! (`ss -K`, a proxy) to watch it resume.
//!
//! Over TLS (built with `--features tls`), against an `echo_server` with
//! `--tls-cert`: trust the CA that signed the server's certificate, name
//! the server as its certificate does, and (if the server asks for one)
//! present a client certificate:
//!
//! ```text
//! cargo run --features tls --example echo_client -- --connect 127.0.0.1:7443 \
//!     --interval-ms 1000 --timeout-ms 1000 --tls-ca ca.pem --tls-name localhost
//! ```
//!
//! Each message is `--size` bytes (default 64, at least 16): its sequence
//! number (from 1) and its send time in nanoseconds since the client
//! started, both `u64` big-endian, then filler; the echo brings the send
//! time back, so the round trip is measured without keeping any state.
//! `--send-every-ms P` sends one every `P` ms and prints each echo;
//! `--window W` keeps at most `W` messages in flight, and with
//! `--send-every-ms 0` (or `--window` alone) the client streams: it refills
//! the window as echoes come and prints its progress each second.
//!
//! `--count N` makes the client stop once `N` distinct messages are echoed
//! (it sends no more than that, plus any lost with a session): it closes
//! the link with CLOSE 1000, shuts the reactor down and exits with code 0.
//! Without `--count` it runs until Ctrl-C (exit code 130 after a clean
//! close). Whenever it stops it prints, on stdout, one line in this form:
//!
//! ```text
//! summary: sent=N echoed=N duplicates=D reordered=R lost_session=L
//! ```
//!
//! `sent` counts messages sent, `echoed` distinct sequence numbers echoed,
//! `duplicates` echoes of a number already echoed, `reordered` echoes that
//! came after one of a higher number, `lost_session` connections whose
//! session the server no longer held. Exit code 2 means a bad flag (the
//! usage goes to stderr), 1 a local I/O error or a link that gave up.
//!
//! Events go to stdout, one line each, stamped with the time since start.
//! tether's own log (warnings only by default) goes to stderr; set
//! `RUST_LOG=debug` to see its state changes.

mod common;
#[path = "common/ctrl_c.rs"]
mod ctrl_c;

use std::path::PathBuf;
use std::process;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether::BackoffConfig;
use tether::{
    CloseCode, Config, ConnId, Context, DisconnectReason, Endpoints, Handler, Message, PeerInfo,
    Reactor, ResumeStatus, SendError, UndeliveredCause,
};

use common::Flags;

const USAGE: &str = "\
usage: echo_client --connect HOST:PORT[,HOST:PORT...] --interval-ms I --timeout-ms T
                   [--backoff-initial-ms B] [--backoff-max-ms M] [--no-resume]
                   [--send-every-ms P] [--window W] [--size BYTES] [--count N]
                   [--tls-ca FILE --tls-name NAME [--tls-cert FILE --tls-key FILE]]

Dials an echo server, prints every connection event, and redials with
backoff whenever the link is lost. Session resume is on: after a redial the
session goes on where it broke off, and no message is lost or repeated.

  --connect HOST:PORT      the server: an address (127.0.0.1:7000, [::1]:7000)
                           or a host name and port (localhost:7000), looked
                           up at every redial; several, comma-separated, are
                           a failover list, the first preferred
  --interval-ms I          heartbeat interval: PING after I ms of silence
  --timeout-ms T           heartbeat timeout: a server silent for T ms after
                           a PING is declared dead
  --backoff-initial-ms B   delay before the first redial (default 100); it
                           doubles per failed attempt, with +/-20% jitter
  --backoff-max-ms M       cap of the redial delay (default 30000)
  --no-resume              no session resume: each connection starts afresh,
                           and what was in flight when it broke may be lost
  --send-every-ms P        send a numbered message every P ms and print each
                           echo's round-trip time; 0 streams them as fast as
                           the window allows (progress printed each second)
  --window W               at most W messages sent and not yet echoed
                           (default 64 when streaming, else unlimited); alone,
                           it means --send-every-ms 0
  --size BYTES             message size, 16 to 1048576 (default 64)
  --count N                stop after N messages are echoed: close the link
                           (CLOSE 1000) and exit with code 0
  --tls-ca FILE            dial over TLS, trusting the CAs of this PEM file
                           (needs --tls-name and the `tls` feature)
  --tls-name NAME          the name the server's certificate must carry
  --tls-cert FILE          present this PEM client certificate chain
  --tls-key FILE           the PEM private key of --tls-cert

When it stops (count reached, link given up, or Ctrl-C) it prints
  summary: sent=N echoed=N duplicates=D reordered=R lost_session=L";

/// Smallest message: sequence number + send time, both `u64`.
const MIN_SIZE: usize = 16;
/// Largest message: tether's default `max_frame`.
const MAX_SIZE: usize = 1 << 20;
/// The window when streaming without `--window`.
const STREAM_WINDOW: u64 = 64;
/// The longest the loop sleeps in a poll (it looks for Ctrl-C in between).
const TICK: Duration = Duration::from_millis(100);
/// How often a streaming client prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the command line asked for.
struct Options {
    server: Endpoints,
    config: Config,
    /// `Some(ZERO)`: stream, as fast as the window allows.
    send_every: Option<Duration>,
    count: Option<u64>,
    window: u64,
    size: usize,
    tls: Option<TlsOptions>,
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
/// What `--tls-*` asked for: CA file, server name, client certificate
/// and key files.
struct TlsOptions {
    ca: PathBuf,
    name: String,
    cert: Option<(PathBuf, PathBuf)>,
}

fn tls_options(flags: &Flags) -> Option<TlsOptions> {
    let ca: Option<PathBuf> = flags.optional("tls-ca");
    let name: Option<String> = flags.optional("tls-name");
    let cert: Option<PathBuf> = flags.optional("tls-cert");
    let key: Option<PathBuf> = flags.optional("tls-key");
    let cert = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => flags.fail("--tls-cert and --tls-key go together"),
    };
    match (ca, name) {
        (Some(ca), Some(name)) => {
            if cfg!(not(feature = "tls")) {
                flags.fail("--tls-ca needs the `tls` feature (cargo run --features tls ...)");
            }
            Some(TlsOptions { ca, name, cert })
        }
        (None, None) if cert.is_none() => None,
        _ => flags.fail("--tls-ca and --tls-name go together (and --tls-cert with them)"),
    }
}

fn options() -> Options {
    let flags = Flags::parse(
        USAGE,
        &[
            "connect",
            "interval-ms",
            "timeout-ms",
            "no-resume",
            "window",
            "size",
            "backoff-initial-ms",
            "backoff-max-ms",
            "send-every-ms",
            "count",
            "tls-ca",
            "tls-name",
            "tls-cert",
            "tls-key",
        ],
    );
    let backoff = BackoffConfig {
        initial: flags.millis("backoff-initial-ms", Some(100)),
        max: flags.millis("backoff-max-ms", Some(30_000)),
        multiplier: 2.0,
        jitter: 0.2,
        max_attempts: None,
    };
    let mut builder = Config::builder()
        .heartbeat(
            flags.millis("interval-ms", None),
            flags.millis("timeout-ms", None),
        )
        .backoff(backoff);
    if flags.switch("no-resume") {
        builder = builder.no_resume();
    }
    let config = builder.build().unwrap_or_else(|e| flags.fail(e));
    let window: Option<u64> = flags.optional("window");
    if window == Some(0) {
        flags.fail("--window must be at least 1");
    }
    let send_every = flags
        .optional("send-every-ms")
        .map(Duration::from_millis)
        .or(window.map(|_| Duration::ZERO));
    let streaming = send_every.is_some_and(|p| p.is_zero());
    let window = window.unwrap_or(if streaming { STREAM_WINDOW } else { u64::MAX });
    let size = flags.optional("size").unwrap_or(64);
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        flags.fail(format_args!(
            "--size must be from {MIN_SIZE} to {MAX_SIZE} bytes"
        ));
    }
    let count = flags.optional("count");
    if count == Some(0) {
        flags.fail("--count must be at least 1");
    }
    if count.is_some() && send_every.is_none() {
        flags.fail("--count needs --send-every-ms or --window");
    }
    let connect: String = flags.required("connect");
    let server = connect
        .parse::<Endpoints>()
        .unwrap_or_else(|e| flags.fail(format_args!("--connect {connect}: {e}")));
    Options {
        server,
        config,
        send_every,
        count,
        window,
        size,
        tls: tls_options(&flags),
    }
}

/// Which sequence numbers have been echoed: one bit each.
#[derive(Default)]
struct SeenSet {
    words: Vec<u64>,
}

impl SeenSet {
    /// Marks `seq`; false if it was marked already.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & (1 << bit) == 0;
        self.words[word] |= 1 << bit;
        fresh
    }

    fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// The client's state, updated by the reactor's callbacks.
struct Client {
    start: Instant,
    link: Option<ConnId>,
    connected: bool,
    /// The last connection carries a resumable session: sends while the
    /// link is down are kept for it and sent once it resumes.
    resumable: bool,
    size: usize,
    /// Print a progress line each second instead of every echo.
    streaming: bool,
    window: u64,
    /// Sequence number of the last message sent (numbers start at 1).
    sent: u64,
    /// Distinct sequence numbers echoed.
    echoed: u64,
    /// Echoes of a number already echoed.
    duplicates: u64,
    /// Echoes that arrived after one of a higher number.
    reordered: u64,
    /// Connections whose session the server no longer held.
    lost_sessions: u64,
    /// Messages sent and never to be echoed: in flight when a connection
    /// broke without resuming its session.
    abandoned: u64,
    /// The highest number echoed.
    highest: u64,
    seen: SeenSet,
    /// Messages handed back since the last connect.
    handed_back: u64,
    /// A send met backpressure: wait for `on_drain`.
    blocked: bool,
    last_rtt_ms: f64,
    next_progress: Instant,
    /// Stop after this many echoes.
    count: Option<u64>,
    /// The count was reached (or Ctrl-C): the link is closing and the
    /// reactor shutting down.
    finished: bool,
    gave_up: bool,
}

impl Client {
    /// Prints one event line, stamped with the time since start.
    fn say(&self, what: impl std::fmt::Display) {
        println!("[{:8.3}s] {what}", self.start.elapsed().as_secs_f64());
    }

    /// Nanoseconds since the client started (fits a `u64` for 584 years).
    fn clock_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Messages sent that may still be echoed.
    fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.echoed + self.abandoned)
    }

    /// Whether the next message may go now: the link is up (or down with
    /// a session that keeps it), the window has room, and with `--count`
    /// fewer than the count are still to be echoed.
    fn may_send(&self) -> bool {
        !self.finished
            && !self.blocked
            && (self.connected || self.resumable)
            && self.in_flight() < self.window
            && !self
                .count
                .is_some_and(|n| self.sent.saturating_sub(self.abandoned) >= n)
    }

    /// Sends the next numbered, timestamped message; false if it was not
    /// accepted.
    fn send_next(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(link) = self.link else { return false };
        let seq = self.sent + 1;
        let mut message = Vec::with_capacity(self.size);
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(&self.clock_ns().to_be_bytes());
        message.resize(self.size, b'.');
        match cx.send(link, message) {
            Ok(()) => {
                self.sent = seq;
                true
            }
            Err(SendError::Backpressure { .. }) => {
                self.blocked = true;
                false
            }
            // Down, and no session keeps it: wait for the next connect.
            Err(SendError::NotConnected) => false,
            Err(e) => {
                self.say(format_args!("send seq={seq} failed: {e}"));
                false
            }
        }
    }

    /// Sends what the window and the count allow now.
    fn fill(&mut self, cx: &mut Context<'_>) {
        while self.may_send() && self.send_next(cx) {}
    }

    /// Closes the link and starts the shutdown, once.
    fn finish(&mut self, cx: &mut Context<'_>, why: &str) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(link) = self.link {
            cx.close(link, CloseCode::NORMAL, why);
        }
        cx.shutdown();
    }

    fn print_progress(&mut self) {
        self.next_progress = Instant::now() + PROGRESS_EVERY;
        self.say(format_args!(
            "progress: sent={} echoed={} in_flight={} last_rtt={:.3} ms",
            self.sent,
            self.echoed,
            self.in_flight(),
            self.last_rtt_ms
        ));
    }

    /// The line printed when the client stops, in a fixed form for
    /// scripts and tests.
    fn summary(&self) -> String {
        format!(
            "summary: sent={} echoed={} duplicates={} reordered={} lost_session={}",
            self.sent, self.echoed, self.duplicates, self.reordered, self.lost_sessions
        )
    }
}

impl Handler for Client {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        self.connected = true;
        if peer.moved {
            let at = cx.conn_stats(id).map(|s| s.peer_addr);
            let endpoint = cx.endpoint(id).map(|e| e.to_string()).unwrap_or_default();
            self.say(format_args!(
                "moved to endpoint #{} {endpoint} ({})",
                peer.endpoint,
                at.map_or_else(String::new, |a| a.to_string())
            ));
        }
        if !matches!(peer.resume, ResumeStatus::Resumed { .. }) {
            // What was in flight went with the old connection (or its
            // session): its echoes will never come.
            self.abandoned += self.in_flight();
        }
        self.resumable = matches!(
            peer.resume,
            ResumeStatus::New | ResumeStatus::Resumed { .. }
        );
        let heartbeat = format!(
            "server heartbeat {}/{} ms",
            peer.interval.as_millis(),
            peer.timeout.as_millis()
        );
        let session = peer.session_id;
        match peer.resume {
            ResumeStatus::Resumed { resent } => self.say(format_args!(
                "connected (session {session:#x}, {heartbeat}): \
                 resumed: {resent} messages sent again"
            )),
            ResumeStatus::Lost => {
                self.lost_sessions += 1;
                self.say(format_args!(
                    "connected (new session {session:#x}, {heartbeat}): \
                     session lost: {} messages handed back",
                    self.handed_back
                ));
            }
            ResumeStatus::New => self.say(format_args!(
                "connected (new session {session:#x}, {heartbeat})"
            )),
            ResumeStatus::Refused => self.say(format_args!(
                "connected (session {session:#x}, {heartbeat}): \
                 the server does not resume sessions"
            )),
            _ => self.say(format_args!(
                "connected (session {session:#x}, {heartbeat}): resume off"
            )),
        }
        self.handed_back = 0;
    }

    fn on_message(&mut self, cx: &mut Context<'_>, _: ConnId, message: Message<'_>) {
        if self.finished {
            return;
        }
        let Some((seq, sent_ns)) = parse_message(&message).filter(|&(s, _)| s >= 1) else {
            self.say(format_args!(
                "unexpected message of {} bytes",
                message.len()
            ));
            return;
        };
        let rtt_ms = self.clock_ns().saturating_sub(sent_ns) as f64 / 1e6;
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            self.say(format_args!("duplicate echo seq={seq}"));
            return;
        }
        self.echoed += 1;
        self.last_rtt_ms = rtt_ms;
        if seq < self.highest {
            self.reordered += 1;
            self.say(format_args!(
                "echo seq={seq} out of order, after seq={}",
                self.highest
            ));
        }
        self.highest = self.highest.max(seq);
        if !self.streaming {
            self.say(format_args!("echo seq={seq} rtt={rtt_ms:.3} ms"));
        }
        if self.count.is_some_and(|n| self.echoed >= n) {
            self.say(format_args!(
                "received {} echoes: closing with {}",
                self.echoed,
                CloseCode::NORMAL
            ));
            self.finish(cx, "done");
        }
    }

    fn on_drain(&mut self, _: &mut Context<'_>, _: ConnId) {
        self.blocked = false;
    }

    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        messages: Vec<Bytes>,
        cause: UndeliveredCause,
    ) {
        self.handed_back += messages.len() as u64;
        let seqs: Vec<u64> = messages
            .iter()
            .filter_map(|m| parse_message(m).map(|(seq, _)| seq))
            .collect();
        let range = match (seqs.first(), seqs.last()) {
            (Some(a), Some(b)) if a == b => format!(" (seq={a}"),
            (Some(a), Some(b)) => format!(" (seq={a}..={b}"),
            _ => " (".to_owned(),
        };
        let echoed = seqs.iter().filter(|&&s| self.seen.contains(s)).count();
        self.say(format_args!(
            "undelivered: {} messages handed back{range}, {echoed} of them echoed \
             already): {cause}",
            messages.len()
        ));
    }

    fn on_disconnected(&mut self, _: &mut Context<'_>, _: ConnId, reason: &DisconnectReason) {
        self.connected = false;
        self.say(format_args!("disconnected: {reason}"));
    }

    fn on_reconnecting(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        attempt: u32,
        delay: Duration,
        reason: &DisconnectReason,
    ) {
        self.say(format_args!(
            "reconnecting in {} ms (attempt {attempt}): {reason}",
            delay.as_millis()
        ));
    }

    fn on_gave_up(
        &mut self,
        cx: &mut Context<'_>,
        _: ConnId,
        attempts: u32,
        reason: &DisconnectReason,
    ) {
        self.gave_up = true;
        self.resumable = false;
        self.say(format_args!("gave up after {attempts} attempts: {reason}"));
        cx.shutdown();
    }
}

/// The send instant after `last`: one period later, or one period from
/// `now` if the loop fell behind (no burst of catch-up sends).
#[cfg(feature = "tls")]
fn dial(reactor: &mut Reactor, to: Endpoints, tls: Option<&TlsOptions>) -> std::io::Result<ConnId> {
    let Some(tls) = tls else {
        return Ok(reactor.dial(to));
    };
    let cert = tls.cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let config = tether::tls::client_config_from_files(&tls.ca, cert)?;
    let name = tether::tls::server_name(&tls.name)?;
    Ok(reactor.dial_tls(to, name, config))
}

#[cfg(not(feature = "tls"))]
fn dial(reactor: &mut Reactor, to: Endpoints, _: Option<&TlsOptions>) -> std::io::Result<ConnId> {
    Ok(reactor.dial(to))
}

fn next_after(last: Instant, period: Duration, now: Instant) -> Instant {
    let next = last + period;
    if next > now {
        next
    } else {
        now + period
    }
}

/// Splits a message into its sequence number and send time.
fn parse_message(message: &[u8]) -> Option<(u64, u64)> {
    let (seq, rest) = message.split_first_chunk::<8>()?;
    let (sent, _) = rest.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*seq), u64::from_be_bytes(*sent)))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let options = options();
    ctrl_c::install();
    match run(options) {
        Ok(client) => {
            println!("{}", client.summary());
            if client.gave_up {
                process::exit(1);
            }
            if ctrl_c::interrupted() {
                process::exit(130);
            }
        }
        Err(e) => {
            eprintln!("echo_client: {e}");
            process::exit(1);
        }
    }
}

/// Dials the server and drives the reactor until the count is reached,
/// Ctrl-C, or the link gives up (never, with the default unlimited
/// attempts).
fn run(options: Options) -> std::io::Result<Client> {
    let mut reactor = Reactor::with_config(options.config)?;
    let streaming = options.send_every.is_some_and(|p| p.is_zero());
    let mut client = Client {
        start: Instant::now(),
        link: None,
        connected: false,
        resumable: false,
        size: options.size,
        streaming,
        window: options.window,
        sent: 0,
        echoed: 0,
        duplicates: 0,
        reordered: 0,
        lost_sessions: 0,
        abandoned: 0,
        highest: 0,
        seen: SeenSet::default(),
        handed_back: 0,
        blocked: false,
        last_rtt_ms: 0.0,
        next_progress: Instant::now() + PROGRESS_EVERY,
        count: options.count,
        finished: false,
        gave_up: false,
    };
    client.say(format_args!("dialing {}", options.server));
    client.link = Some(dial(&mut reactor, options.server, options.tls.as_ref())?);

    let mut next_send = Instant::now();
    while !client.finished && !client.gave_up {
        // Sleep in the poll until the next send is due, at most a tick
        // (every event wakes the poll anyway, and so does Ctrl-C).
        let timeout = match options.send_every {
            Some(period) if !period.is_zero() => next_send
                .saturating_duration_since(Instant::now())
                .min(TICK),
            _ => TICK,
        };
        reactor.poll_once(&mut client, Some(timeout))?;

        if ctrl_c::interrupted() {
            client.say("interrupted: closing");
            client.finish(&mut reactor.context(), "interrupted");
            break;
        }
        // Queued here, written by the next `poll_once` at once (it does
        // not sleep while output is waiting).
        match options.send_every {
            Some(period) if period.is_zero() => client.fill(&mut reactor.context()),
            Some(period) => {
                let now = Instant::now();
                if now >= next_send {
                    if client.may_send() {
                        client.send_next(&mut reactor.context());
                    }
                    next_send = next_after(next_send, period, now);
                }
            }
            None => {}
        }
        if streaming && Instant::now() >= client.next_progress {
            client.print_progress();
        }
    }
    // The link is closed (or given up) and the shutdown started: done once
    // the CLOSE frame is flushed. (Not `run`, which would poll once more
    // before it looks, and wait for a timer if the shutdown is already
    // complete.)
    while !reactor.is_shut_down() {
        reactor.poll_once(&mut client, Some(TICK))?;
    }
    if streaming {
        client.print_progress();
    }
    Ok(client)
}
