//! tether's echo server, as in `examples/echo_server.rs` minus the
//! logging: a [`Reactor`] with heartbeat `I`/`T`, one listener, and a
//! [`Handler`] that sends every message back with `forward` (a small one
//! copied straight into the output, a large one shared without a copy).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tether::{Config, ConnId, Context, Handler, Message, Reactor};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let _ = cx.forward(id, message);
    }
}

/// Listens on `addr`, reports the bound port through `bound`, and serves
/// until the process ends, busy polling for up to `busy_poll` before each
/// sleep (zero: off).
pub fn run(
    addr: SocketAddr,
    interval: Duration,
    timeout: Duration,
    resume: bool,
    busy_poll: Duration,
    bound: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let mut config = Config::builder().heartbeat(interval, timeout);
    if !resume {
        config = config.no_resume();
    }
    let config = config
        .build()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut reactor = Reactor::with_config(config)?;
    reactor.set_busy_poll(busy_poll);
    let listener = reactor.listen(addr)?;
    bound(reactor.local_addr(listener).unwrap_or(addr));
    reactor.run(&mut Echo)
}
