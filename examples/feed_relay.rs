//! A feed relay: datagrams arriving on a UDP socket go out to every
//! connected tether client — the feed, the clients, their heartbeats and a
//! periodic stats line all on one thread, in one loop.
//!
//! It shows tether embedded in a service that has event sources of its
//! own: the UDP socket is registered with the reactor
//! ([`Reactor::register`]) and its readiness comes to the handler's
//! `on_source` (`common/relay.rs`), which drains it to `WouldBlock`; the
//! stats line is an application timer ([`Reactor::set_timer_at`]), re-armed
//! from its own deadline so it does not drift.
//!
//! ```text
//! cargo run --example feed_relay -- --listen 127.0.0.1:7000 --feed 127.0.0.1:7001
//! cargo run --example echo_client -- --connect 127.0.0.1:7000 --interval-ms 1000 --timeout-ms 1000
//! echo hello | nc -u -w0 127.0.0.1 7001
//! ```
//!
//! The client prints each relayed datagram as an "unexpected message" (it
//! expects echoes of its own); `tests/feed_relay.rs` runs this relay
//! against a client and a feed, all on one thread.
//!
//! The log goes to stderr at info level (`RUST_LOG` changes it). Stdout
//! carries two lines, `listening on ADDR` and `feed on ADDR`, with the
//! bound addresses (port 0 picks a free one). A bad flag prints the usage
//! on stderr and exits with code 2.

mod common;
#[path = "common/relay.rs"]
mod relay;

use std::net::SocketAddr;
use std::process;
use std::time::Instant;

use log::{error, info};
use tether::mio::net::UdpSocket;
use tether::mio::Interest;
use tether::Reactor;

use common::Flags;
use relay::{Relay, STATS};

const USAGE: &str = "\
usage: feed_relay [--listen ADDR] [--feed ADDR] [--stats-ms MS]

Relays every datagram received on a UDP socket to every connected client.

  --listen ADDR   address tether clients connect to (default 127.0.0.1:7000)
  --feed ADDR     UDP address the feed is received on (default 127.0.0.1:7001)
  --stats-ms MS   period of the stats line (default 1000)";

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();

    let flags = Flags::parse(USAGE, &["listen", "feed", "stats-ms"]);
    let listen: SocketAddr = flags
        .optional("listen")
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7000)));
    let feed: SocketAddr = flags
        .optional("feed")
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7001)));
    let period = flags.millis("stats-ms", Some(1000));
    if period.is_zero() {
        flags.fail("--stats-ms must be at least 1");
    }

    if let Err(e) = serve(listen, feed, period) {
        error!("{e}");
        process::exit(1);
    }
}

/// Binds the feed and the listener and relays until the process is killed.
fn serve(listen: SocketAddr, feed: SocketAddr, period: std::time::Duration) -> std::io::Result<()> {
    let mut reactor = Reactor::new()?;
    let listener = reactor
        .listen(listen)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let socket = UdpSocket::bind(feed)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {feed}: {e}")))?;
    let mut relay = Relay::new(socket, period);
    relay.feed_id = Some(reactor.register(&mut relay.feed, Interest::READABLE)?);
    let first = relay.start(Instant::now());
    reactor.set_timer_at(first, STATS);

    let bound = reactor.local_addr(listener).unwrap_or(listen);
    let feed_bound = relay.feed.local_addr()?;
    info!("listening on {bound}, feed on {feed_bound}");
    println!("listening on {bound}");
    println!("feed on {feed_bound}");
    reactor.run(&mut relay)
}
