//! Socket options at the edges of the ranges `Config::validate` accepts
//! are taken by the kernel: a reactor with them listens, and a link dialed
//! with them connects (the options are set on the listener, which accepted
//! sockets inherit on Linux, and on every dialed socket).

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;
use tether::{Config, Reactor};
use tether::{Keepalive, SocketOptions, UserTimeout};

fn with_socket(mut config: Config, socket: SocketOptions) -> Config {
    config.socket = socket;
    config.validate().expect("at the bounds, still valid");
    config
}

/// Keepalive 1 s / 1 s / 127 probes, TCP_USER_TIMEOUT i32::MAX ms.
fn low_bounds() -> Config {
    let socket = SocketOptions::default()
        .keepalive(Some(Keepalive {
            idle: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            count: Keepalive::MAX_COUNT,
        }))
        .user_timeout(UserTimeout::Fixed(UserTimeout::MAX));
    with_socket(config(300, 300), socket)
}

/// Keepalive 32767 s / 32767 s / 1 probe, TCP_USER_TIMEOUT Auto with
/// I + T = i32::MAX ms.
fn high_bounds() -> Config {
    let socket = SocketOptions::default().keepalive(Some(Keepalive {
        idle: Keepalive::MAX_TIME,
        interval: Keepalive::MAX_TIME,
        count: 1,
    }));
    let mut config = with_socket(config(300, 300), socket);
    let timeout = Duration::from_secs(10);
    config.heartbeat = Some(tether::Heartbeat {
        interval: UserTimeout::MAX - timeout,
        timeout,
    });
    config.validate().expect("I + T = i32::MAX ms");
    assert_eq!(
        config.socket.user_timeout_for(config.heartbeat),
        Some(UserTimeout::MAX)
    );
    config
}

#[test]
fn options_at_the_bounds_listen_and_connect() {
    init_logs();
    for (listener, dialer) in [(low_bounds(), high_bounds()), (high_bounds(), low_bounds())] {
        let mut reactor = Reactor::with_config(listener).expect("reactor");
        let l = reactor
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen with options at the bounds");
        let addr = reactor.local_addr(l).expect("bound");
        let link = reactor.dial_with(addr, dialer).expect("valid config");
        let (tx, events) = mpsc::channel();
        let mut handler = Recorder { tx, echo: false };
        let mut connected = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while connected < 2 && Instant::now() < deadline {
            reactor.poll_once(&mut handler, Some(ms(10))).expect("turn");
            for (_, seen) in events.try_iter() {
                match seen {
                    Seen::Connected(..) => connected += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(connected, 2, "both ends of {link} up");
    }
}
