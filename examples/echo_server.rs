//! An echo server: every message a client sends comes straight back.
//!
//! It shows the server side of tether: build a [`Config`] (heartbeat
//! interval `I` and timeout `T`, handshake timeout, largest frame), start a
//! [`Reactor`], listen, and run a handler that echoes each DATA message
//! (`common/echo.rs`). Heartbeats, dead-peer detection and closing are the
//! library's job; the handler logs each client that connects or
//! disconnects, with its address and the reason, and never drops an echo:
//! a client that does not read its echoes is paused (nothing more is read
//! from it) until its output drains, and closed by the write-stall timeout
//! if it never does.
//!
//! Session resume is on (tether's default): a client whose connection
//! breaks comes back to its session, under the same connection id, and
//! every message and echo arrives exactly once and in order; the log says
//! whether each connection is a new session or a resumed one.
//! `--no-resume` turns it off: each connection stands alone, and what was
//! in flight when it broke may be lost.
//!
//! ```text
//! cargo run --example echo_server -- --listen 127.0.0.1:7000 --interval-ms 1000 --timeout-ms 1000
//! ```
//!
//! Then connect one or more `echo_client`s (see that example). A client
//! that stops answering heartbeats is dropped within `I + T`.
//!
//! Over TLS (built with `--features tls`): give the server's certificate
//! chain and key in PEM, and with `--tls-client-ca` require clients to
//! present a certificate signed by that CA:
//!
//! ```text
//! cargo run --features tls --example echo_server -- --listen 127.0.0.1:7443 \
//!     --interval-ms 1000 --timeout-ms 1000 --tls-cert cert.pem --tls-key key.pem
//! ```
//!
//! The log goes to stderr at info level (change it with `RUST_LOG`, e.g.
//! `RUST_LOG=debug` to watch tether's own state changes). Stdout carries a
//! single line, `listening on ADDR`, with the bound address — handy with
//! `--listen 127.0.0.1:0`, which picks a free port. A bad flag prints the
//! usage on stderr and exits with code 2.

mod common;
#[path = "common/echo.rs"]
mod echo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process;
use std::time::Duration;

use log::{error, info};
use tether::{ClientLiveness, Config, Reactor};

use common::Flags;
use echo::Echo;

const USAGE: &str = "\
usage: echo_server --listen ADDR --interval-ms I --timeout-ms T
                   [--handshake-timeout-ms H] [--max-frame BYTES]
                   [--no-resume] [--client-interval-ms MIN..MAX]
                   [--busy-poll-us N]
                   [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]

Echoes every message back to the client that sent it.

  --listen ADDR              address to listen on (port 0 picks a free port;
                             the bound address is printed on stdout)
  --interval-ms I            heartbeat interval: PING after I ms of silence
  --timeout-ms T             heartbeat timeout: a client silent for T ms after
                             a PING is declared dead and closed
  --handshake-timeout-ms H   time a new client has to send its HELLO
                             (default 5000)
  --max-frame BYTES          largest message accepted (default 1048576)
  --client-interval-ms MIN..MAX
                             the heartbeat intervals clients may use: a
                             client that adopts the server's liveness (as
                             echo_client does) is clamped into it (default:
                             it is given this server's own)
  --no-resume                hold no sessions: a client that reconnects
                             starts afresh (resume is on by default)
  --busy-poll-us N           before sleeping, poll without blocking for up
                             to N microseconds: lower latency for a core
                             spinning while idle (default 0: off)

  --tls-cert FILE            serve TLS with this PEM certificate chain (leaf
                             first; needs --tls-key and the `tls` feature)
  --tls-key FILE             the PEM private key of --tls-cert
  --tls-client-ca FILE       require client certificates signed by a CA of
                             this PEM file";

/// Builds the configuration from the flags.
fn config(flags: &Flags) -> Config {
    let mut builder = Config::builder()
        .heartbeat(
            flags.millis("interval-ms", None),
            flags.millis("timeout-ms", None),
        )
        .handshake_timeout(flags.millis("handshake-timeout-ms", Some(5000)));
    if let Some(bytes) = flags.optional("max-frame") {
        builder = builder.max_frame(bytes);
    }
    if flags.switch("no-resume") {
        builder = builder.no_resume();
    }
    if let Some(range) = flags.optional::<String>("client-interval-ms") {
        builder = builder.client_liveness(Some(client_interval(flags, &range)));
    }
    builder.build().unwrap_or_else(|e| flags.fail(e))
}

/// `--client-interval-ms MIN..MAX`: the heartbeat intervals clients that
/// adopt this server's liveness may use (their timeouts are left as they
/// propose).
fn client_interval(flags: &Flags, range: &str) -> ClientLiveness {
    let parsed = range
        .split_once("..")
        .and_then(|(lo, hi)| Some((lo.parse::<u64>().ok()?, hi.parse::<u64>().ok()?)));
    let Some((lo, hi)) = parsed.filter(|&(lo, hi)| lo >= 1 && lo <= hi) else {
        flags.fail("--client-interval-ms takes MIN..MAX, in ms, 1 <= MIN <= MAX");
    };
    ClientLiveness {
        min_interval: Duration::from_millis(lo),
        max_interval: Duration::from_millis(hi),
        min_timeout: Duration::from_millis(1),
        max_timeout: Duration::from_millis(u64::from(u32::MAX)),
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();

    let flags = Flags::parse(
        USAGE,
        &[
            "listen",
            "interval-ms",
            "timeout-ms",
            "no-resume",
            "client-interval-ms",
            "busy-poll-us",
            "handshake-timeout-ms",
            "max-frame",
            "tls-cert",
            "tls-key",
            "tls-client-ca",
        ],
    );
    let addr: SocketAddr = flags.required("listen");
    let config = config(&flags);
    let tls = tls_options(&flags);
    let busy_poll = Duration::from_micros(flags.optional("busy-poll-us").unwrap_or(0));

    if let Err(e) = serve(addr, config, tls, busy_poll) {
        error!("{e}");
        process::exit(1);
    }
}

/// The TLS files: certificate chain, key, client CA (if any).
type TlsFiles = (PathBuf, PathBuf, Option<PathBuf>);

/// The `--tls-*` flags, checked.
fn tls_options(flags: &Flags) -> Option<TlsFiles> {
    let cert: Option<PathBuf> = flags.optional("tls-cert");
    let key: Option<PathBuf> = flags.optional("tls-key");
    let client_ca: Option<PathBuf> = flags.optional("tls-client-ca");
    match (cert, key) {
        (Some(cert), Some(key)) => {
            if cfg!(not(feature = "tls")) {
                flags.fail("--tls-cert needs the `tls` feature (cargo run --features tls ...)");
            }
            Some((cert, key, client_ca))
        }
        (None, None) if client_ca.is_none() => None,
        _ => flags.fail("--tls-cert and --tls-key go together (and --tls-client-ca with them)"),
    }
}

/// Listens on `addr`, over TLS with `tls`, and echoes until the process
/// is killed, busy polling for up to `busy_poll` before each sleep.
fn serve(
    addr: SocketAddr,
    config: Config,
    tls: Option<TlsFiles>,
    busy_poll: Duration,
) -> std::io::Result<()> {
    let mut reactor = Reactor::with_config(config)?;
    reactor.set_busy_poll(busy_poll);
    let listener = listen(&mut reactor, addr, tls)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let bound = reactor.local_addr(listener).unwrap_or(addr);
    info!("listening on {bound}");
    println!("listening on {bound}");
    reactor.run(&mut Echo::default())
}

#[cfg(feature = "tls")]
fn listen(
    reactor: &mut Reactor,
    addr: SocketAddr,
    tls: Option<TlsFiles>,
) -> std::io::Result<tether::ListenerId> {
    match tls {
        Some((cert, key, client_ca)) => {
            let config = tether::tls::server_config_from_files(&cert, &key, client_ca.as_deref())?;
            info!("TLS with {}", cert.display());
            reactor.listen_tls(addr, config)
        }
        None => reactor.listen(addr),
    }
}

#[cfg(not(feature = "tls"))]
fn listen(
    reactor: &mut Reactor,
    addr: SocketAddr,
    _: Option<TlsFiles>,
) -> std::io::Result<tether::ListenerId> {
    reactor.listen(addr)
}
