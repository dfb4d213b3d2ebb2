//! Many connections held with heartbeats: none falsely declared dead.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn two_thousand_connections_with_heartbeats_none_falsely_declared_dead() {
    init_logs();
    const LINKS: usize = 2000; // 4 000 sockets in this process
    let server = echo_server(config(200, 400), None);
    let addr = server.addr.expect("bound");
    let clients = spawn(config(200, 400), false, move |r| {
        for _ in 0..LINKS {
            r.dial(addr);
        }
        None
    });
    let mut up = HashSet::new();
    while up.len() < LINKS {
        let (_, seen) = clients
            .wait_for(ms(10_000), |s| matches!(s, Seen::Connected(..)))
            .unwrap_or_else(|| panic!("only {} of {LINKS} connected", up.len()));
        up.insert(seen.id());
    }
    // Hold them: 3 s is 15 heartbeat intervals.
    let held = Instant::now();
    let trouble = clients.collect_for(Duration::from_secs(3));
    assert!(held.elapsed() >= Duration::from_secs(3));
    let trouble: Vec<_> = trouble
        .into_iter()
        .filter(|(_, s)| !matches!(s, Seen::Message(..)))
        .collect();
    assert!(
        trouble.is_empty(),
        "client-side events while idle: {:?}",
        &trouble[..trouble.len().min(5)]
    );
    let server_trouble: Vec<_> = server
        .events
        .try_iter()
        .filter(|(_, s)| !matches!(s, Seen::Connected(..)))
        .collect();
    assert!(
        server_trouble.is_empty(),
        "server-side: {:?}",
        &server_trouble[..server_trouble.len().min(5)]
    );

    let client_reactor = clients.stop();
    let server_reactor = server.stop();
    let (c, s) = (client_reactor.stats(), server_reactor.stats());
    assert_eq!(c.closes.heartbeat_timeout + s.closes.heartbeat_timeout, 0);
    assert_eq!(s.accepted, LINKS as u64);
    assert_eq!(c.connects, LINKS as u64, "no link had to redial");
    // Heartbeats really flowed: 2 000 links pinging every ~200 ms for 3 s
    // keep both loops turning far more than an idle reactor would.
    assert!(
        c.turns > 100 && s.turns > 100,
        "{} / {} turns",
        c.turns,
        s.turns
    );
}
