//! A configuration reaches the reactor by three paths — `Reactor::dial_with`,
//! `Context::dial_with` and `Handle::dial_with` — and each validates it:
//! a bad one is refused with the reason, and the reactor and its other
//! connections carry on.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tether::BackoffConfig;
use tether::ConfigError;
use tether::{Config, ConnId, Context, HandleError, Handler, PeerInfo, Reactor};

/// A loopback address nobody listens on (a dial there is refused).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("bound")
}

/// Configurations `validate` refuses, each of which used to panic the
/// reactor thread (at the dial, or at the first failed connect).
fn bad_configs() -> Vec<(&'static str, Config)> {
    let mut huge_connect = config(300, 300);
    huge_connect.connect_timeout = Duration::MAX;
    let jitter = |j| {
        let mut c = config(300, 300);
        c.backoff = BackoffConfig {
            jitter: j,
            ..c.backoff
        };
        c
    };
    vec![
        ("connect_timeout MAX", huge_connect),
        ("jitter NaN", jitter(f64::NAN)),
        ("jitter 1.5", jitter(1.5)),
    ]
}

#[test]
fn reactor_dial_with_refuses_a_bad_config_and_keeps_running() {
    init_logs();
    let addr = closed_port();
    let mut reactor = Reactor::with_config(config(300, 300)).expect("reactor");
    for (what, bad) in bad_configs() {
        let refused = reactor.dial_with(addr, bad.clone());
        assert_eq!(refused.map_err(Some), Err(bad.validate().err()), "{what}");
        for _ in 0..5 {
            reactor.poll_once(&mut (), Some(ms(20))).expect("turn");
        }
        assert_eq!(reactor.stats().connections, 0, "{what}: dial taken");
    }
    // A good one still dials.
    let good = reactor.dial_with(addr, config(300, 300));
    assert!(good.is_ok(), "{good:?}");
    assert_eq!(reactor.stats().connections, 1);
}

#[test]
fn handle_dial_with_refuses_a_bad_config_on_the_calling_thread() {
    init_logs();
    let server = echo_server(config(300, 300), None);
    let target = server.addr.expect("bound");
    let client = spawn(config(300, 300), false, |_| None);
    let link = client.handle.dial(target).expect("dial");
    client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("link up");
    for (what, bad) in bad_configs() {
        let why = bad.validate().expect_err(what);
        let refused = client.handle.dial_with(closed_port(), bad);
        assert_eq!(refused, Err(HandleError::InvalidConfig(why)), "{what}");
    }
    // The reactor and its link are unharmed: the echo comes back.
    client.handle.send(link, &b"still here"[..]).expect("send");
    let (_, seen) = client
        .wait_for(ms(3000), |s| {
            matches!(s, Seen::Message(..) | Seen::Disconnected(..))
        })
        .expect("echo");
    assert_eq!(
        seen,
        Seen::Message(link, bytes::Bytes::from_static(b"still here"))
    );
    client.stop();
    server.stop();
}

/// Dials from inside a callback through the `Context`, once with a bad
/// configuration and once with a good one, and reports both results.
struct DialsFromCallback {
    target: SocketAddr,
    bad: Config,
    results: Option<(Result<ConnId, ConfigError>, Result<ConnId, ConfigError>)>,
}

impl Handler for DialsFromCallback {
    fn on_connected(&mut self, cx: &mut Context<'_>, _: ConnId, _: &PeerInfo) {
        if self.results.is_none() {
            let bad = cx.dial_with(self.target, self.bad.clone());
            let good = cx.dial_with(self.target, config(300, 300));
            self.results = Some((bad, good));
        }
    }
}

#[test]
fn context_dial_with_refuses_a_bad_config() {
    init_logs();
    let server = echo_server(config(300, 300), None);
    let target = server.addr.expect("bound");
    let mut reactor = Reactor::with_config(config(300, 300)).expect("reactor");
    reactor.dial(target);
    for (what, bad) in bad_configs() {
        let why = bad.validate().expect_err(what);
        let mut handler = DialsFromCallback {
            target,
            bad,
            results: None,
        };
        let before = reactor.stats().connections;
        // The dial above, or the good one of the previous round, connects.
        let deadline = std::time::Instant::now() + ms(3000);
        while handler.results.is_none() && std::time::Instant::now() < deadline {
            reactor.poll_once(&mut handler, Some(ms(10))).expect("turn");
        }
        let (bad, good) = handler.results.expect("a link came up");
        assert_eq!(bad, Err(why), "{what}");
        assert!(good.is_ok(), "{what}: {good:?}");
        assert_eq!(reactor.stats().connections, before + 1, "{what}");
    }
    server.stop();
}
