//! An echo client that stays connected: it dials a server, prints every
//! connection event, and — when the link is lost — lets tether redial with
//! exponential backoff and jitter, forever.
//!
//! It shows the client side of tether: [`Reactor::dial`] returns one
//! [`ConnId`] that names the link across all its redials; the [`Handler`]
//! sees `connected`, `disconnected`, `reconnecting` and `gave up` events.
//! With `--send-every-ms P` it also sends a message every `P` ms while
//! connected and times the echo. The reactor has no application timers, so
//! the program drives it with [`Reactor::poll_once`], passing the time left
//! until the next send as the poll timeout, and sends through
//! [`Reactor::context`] outside the callbacks.
//!
//! ```text
//! cargo run --example echo_server -- --listen 127.0.0.1:7000 --interval-ms 1000 --timeout-ms 1000
//! cargo run --example echo_client -- --connect 127.0.0.1:7000 --interval-ms 1000 --timeout-ms 1000 --send-every-ms 500
//! ```
//!
//! Stop and restart the server while the client runs to watch it reconnect.
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
//! Each message is 16 bytes: a sequence number and the send time in
//! nanoseconds since the client started, both `u64` big-endian; the echo
//! brings the send time back, so the round trip is measured without keeping
//! any state. `--count N` makes the client stop after the `N`th echo: it
//! closes the link with CLOSE 1000, shuts the reactor down and exits with
//! code 0. Without `--count` it runs until killed. Exit code 2 means a bad
//! flag (the usage goes to stderr), 1 a local I/O error or a link that gave
//! up.
//!
//! Events go to stdout, one line each, stamped with the time since start.
//! tether's own log (warnings only by default) goes to stderr; set
//! `RUST_LOG=debug` to see its state changes.

mod common;

use std::path::PathBuf;
use std::process;
use std::time::{Duration, Instant};

use tether::BackoffConfig;
use tether::{
    CloseCode, Config, ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor,
};

use common::Flags;

const USAGE: &str = "\
usage: echo_client --connect ADDR --interval-ms I --timeout-ms T
                   [--backoff-initial-ms B] [--backoff-max-ms M]
                   [--send-every-ms P] [--count N]
                   [--tls-ca FILE --tls-name NAME [--tls-cert FILE --tls-key FILE]]

Dials an echo server, prints every connection event, and redials with
backoff whenever the link is lost.

  --connect ADDR           the server's address
  --interval-ms I          heartbeat interval: PING after I ms of silence
  --timeout-ms T           heartbeat timeout: a server silent for T ms after
                           a PING is declared dead
  --backoff-initial-ms B   delay before the first redial (default 100); it
                           doubles per failed attempt, with +/-20% jitter
  --backoff-max-ms M       cap of the redial delay (default 30000)
  --send-every-ms P        send a 16-byte message every P ms while connected
                           and print each echo's round-trip time
  --count N                with --send-every-ms: after the Nth echo, close
                           the link (CLOSE 1000) and exit with code 0
  --tls-ca FILE            dial over TLS, trusting the CAs of this PEM file
                           (needs --tls-name and the `tls` feature)
  --tls-name NAME          the name the server's certificate must carry
  --tls-cert FILE          present this PEM client certificate chain
  --tls-key FILE           the PEM private key of --tls-cert";

/// Size of a message: sequence number + send time, both `u64`.
const MESSAGE_LEN: usize = 16;

/// What the command line asked for.
struct Options {
    server: std::net::SocketAddr,
    config: Config,
    send_every: Option<Duration>,
    count: Option<u64>,
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
    let config = Config::builder()
        .heartbeat(
            flags.millis("interval-ms", None),
            flags.millis("timeout-ms", None),
        )
        .backoff(backoff)
        .build()
        .unwrap_or_else(|e| flags.fail(e));
    let send_every = flags.optional("send-every-ms").map(Duration::from_millis);
    if send_every.is_some_and(|p| p.is_zero()) {
        flags.fail("--send-every-ms must be at least 1");
    }
    let count = flags.optional("count");
    if count == Some(0) {
        flags.fail("--count must be at least 1");
    }
    if count.is_some() && send_every.is_none() {
        flags.fail("--count needs --send-every-ms");
    }
    Options {
        server: flags.required("connect"),
        config,
        send_every,
        count,
        tls: tls_options(&flags),
    }
}

/// The client's state, updated by the reactor's callbacks.
struct Client {
    start: Instant,
    link: Option<ConnId>,
    connected: bool,
    /// Sequence number of the last message sent.
    sent: u64,
    echoes: u64,
    /// Stop after this many echoes.
    count: Option<u64>,
    /// The count was reached: the link is closing and the reactor shutting
    /// down.
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

    /// Sends the next numbered, timestamped message.
    fn send_next(&mut self, cx: &mut Context<'_>) {
        let Some(link) = self.link else { return };
        let seq = self.sent + 1;
        let mut message = Vec::with_capacity(MESSAGE_LEN);
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(&self.clock_ns().to_be_bytes());
        match cx.send(link, message) {
            Ok(()) => self.sent = seq,
            Err(e) => self.say(format_args!("send seq={seq} failed: {e}")),
        }
    }
}

impl Handler for Client {
    fn on_connected(&mut self, _: &mut Context<'_>, _: ConnId, peer: &PeerInfo) {
        self.connected = true;
        self.say(format_args!(
            "connected (session {:#x}, server heartbeat {}/{} ms)",
            peer.session_id,
            peer.interval.as_millis(),
            peer.timeout.as_millis(),
        ));
    }

    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        if self.finished {
            return;
        }
        let Some((seq, sent_ns)) = parse_message(&message) else {
            self.say(format_args!(
                "unexpected message of {} bytes",
                message.len()
            ));
            return;
        };
        let rtt_ms = self.clock_ns().saturating_sub(sent_ns) as f64 / 1e6;
        self.echoes += 1;
        self.say(format_args!("echo seq={seq} rtt={rtt_ms:.3} ms"));
        if self.count.is_some_and(|n| self.echoes >= n) {
            self.finished = true;
            self.say(format_args!(
                "received {} echoes: closing with {}",
                self.echoes,
                CloseCode::NORMAL
            ));
            cx.close(id, CloseCode::NORMAL, "done");
            cx.shutdown();
        }
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
        self.say(format_args!("gave up after {attempts} attempts: {reason}"));
        cx.shutdown();
    }
}

/// The send instant after `last`: one period later, or one period from
/// `now` if the loop fell behind (no burst of catch-up sends).
#[cfg(feature = "tls")]
fn dial(
    reactor: &mut Reactor,
    addr: std::net::SocketAddr,
    tls: Option<&TlsOptions>,
) -> std::io::Result<ConnId> {
    let Some(tls) = tls else {
        return Ok(reactor.dial(addr));
    };
    let cert = tls.cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let config = tether::tls::client_config_from_files(&tls.ca, cert)?;
    let name = tether::tls::server_name(&tls.name)?;
    Ok(reactor.dial_tls(addr, name, config))
}

#[cfg(not(feature = "tls"))]
fn dial(
    reactor: &mut Reactor,
    addr: std::net::SocketAddr,
    _: Option<&TlsOptions>,
) -> std::io::Result<ConnId> {
    Ok(reactor.dial(addr))
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
    let (seq, sent) = message.split_first_chunk::<8>()?;
    let sent: [u8; 8] = sent.try_into().ok()?;
    Some((u64::from_be_bytes(*seq), u64::from_be_bytes(sent)))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let options = options();
    match run(options) {
        Ok(client) if client.gave_up => process::exit(1),
        Ok(_) => {}
        Err(e) => {
            eprintln!("echo_client: {e}");
            process::exit(1);
        }
    }
}

/// Dials the server and drives the reactor until the count is reached or
/// the link gives up (never, with the default unlimited attempts).
fn run(options: Options) -> std::io::Result<Client> {
    let mut reactor = Reactor::with_config(options.config)?;
    let mut client = Client {
        start: Instant::now(),
        link: None,
        connected: false,
        sent: 0,
        echoes: 0,
        count: options.count,
        finished: false,
        gave_up: false,
    };
    client.say(format_args!("dialing {}", options.server));
    client.link = Some(dial(&mut reactor, options.server, options.tls.as_ref())?);

    let mut next_send = Instant::now();
    while !client.finished && !client.gave_up {
        // Sleep in the poll until the next send is due (or forever, without
        // --send-every-ms: every event wakes the poll anyway).
        let timeout = options
            .send_every
            .map(|_| next_send.saturating_duration_since(Instant::now()));
        reactor.poll_once(&mut client, timeout)?;

        if let Some(period) = options.send_every {
            let now = Instant::now();
            if now >= next_send {
                if client.connected && !client.finished {
                    // Queued here, written by the next `poll_once` at once
                    // (it does not sleep while output is waiting).
                    client.send_next(&mut reactor.context());
                }
                next_send = next_after(next_send, period, now);
            }
        }
    }
    // The handler has closed the link and started the shutdown; `run`
    // returns once the CLOSE frame is flushed.
    reactor.run(&mut client)?;
    Ok(client)
}
