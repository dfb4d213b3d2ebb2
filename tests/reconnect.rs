//! Redials on real sockets: refused dials follow the backoff schedule, and
//! every client comes back after its server restarts on the same port.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::*;
use tether::DisconnectReason;

#[test]
fn refused_dials_follow_the_backoff_schedule() {
    init_logs();
    let addr = free_addr();
    let client = dialer(config(300, 300), addr);
    let started = Instant::now();
    let mut attempts = Vec::new();
    while attempts.len() < 6 {
        let (at, seen) = client
            .wait_for(ms(3000), |s| matches!(s, Seen::Reconnecting(..)))
            .expect("a failed dial must schedule a redial");
        let Seen::Reconnecting(_, attempt, delay, reason) = seen else {
            unreachable!()
        };
        assert!(
            matches!(reason, DisconnectReason::ConnectFailed(_)),
            "{reason:?}"
        );
        attempts.push((at, attempt, delay));
    }
    // 50 ms doubling to the 400 ms cap, no jitter in this config.
    let delays: Vec<(u32, Duration)> = attempts.iter().map(|&(_, a, d)| (a, d)).collect();
    assert_eq!(
        delays,
        vec![
            (1, ms(50)),
            (2, ms(100)),
            (3, ms(200)),
            (4, ms(400)),
            (5, ms(400)),
            (6, ms(400))
        ]
    );
    // Each refused dial happened one delay after the previous one was
    // scheduled: never a tight retry loop, never much later.
    for w in attempts.windows(2) {
        let gap = w[1].0 - w[0].0;
        let want = w[0].2;
        assert!(
            gap >= want - ms(2) && gap <= want + ms(250),
            "redial after {gap:?}, expected {want:?}"
        );
    }
    assert!(started.elapsed() >= ms(50 + 100 + 200 + 400 + 400));
    let reactor = client.stop();
    assert!(reactor.stats().closes.connect_failed >= 6);
}

#[test]
fn every_client_comes_back_after_the_server_restarts_on_the_same_port() {
    init_logs();
    const CLIENTS: usize = 50;
    let server = echo_server(config(300, 300), None);
    let addr = server.addr.expect("bound");
    let clients = spawn(config(300, 300), false, move |r| {
        for _ in 0..CLIENTS {
            r.dial(addr);
        }
        None
    });
    let mut connected = HashMap::new();
    while connected.len() < CLIENTS {
        let (_, seen) = clients
            .wait_for(ms(5000), |s| matches!(s, Seen::Connected(..)))
            .expect("every client connects");
        connected.insert(seen.id(), 1);
    }

    // Stop the server: its listener and every connection go away.
    let stopped_at = Instant::now();
    server.stop();
    let mut lost = 0;
    while lost < CLIENTS {
        let (_, seen) = clients
            .wait_for(ms(5000), |s| matches!(s, Seen::Disconnected(..)))
            .expect("every client notices the server going away");
        assert!(
            matches!(
                seen,
                Seen::Disconnected(_, DisconnectReason::PeerClosed { .. })
            ),
            "{seen:?}"
        );
        lost += 1;
    }
    // Let the clients fail a few redials against the closed port.
    std::thread::sleep(ms(500));

    let server = echo_server(config(300, 300), Some(addr));
    let restarted = Instant::now();
    let mut back = HashMap::new();
    while back.len() < CLIENTS {
        let (at, seen) = clients
            .wait_for(ms(5000), |s| matches!(s, Seen::Connected(..)))
            .unwrap_or_else(|| panic!("only {} of {CLIENTS} clients came back", back.len()));
        back.insert(seen.id(), at);
    }
    // Same ids as before the restart: a link keeps its id across redials.
    let mut before: Vec<_> = connected.keys().copied().collect();
    let mut after: Vec<_> = back.keys().copied().collect();
    before.sort();
    after.sort();
    assert_eq!(before, after);
    // Within the backoff maximum (400 ms) plus connect and handshake time.
    let last = back.values().max().copied().expect("clients");
    assert!(
        last - restarted <= ms(400 + 600),
        "last client back {:?} after the restart",
        last - restarted
    );
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    clients.stop();
    server.stop();
}
