use std::time::{Duration, Instant};

use bytes::Bytes;
use tether::{Config, ConnId, Context, Handler, PeerInfo, Reactor};

#[derive(Default)]
struct Echo {
    client: Option<ConnId>,
    got: Vec<Bytes>,
}

impl Handler for Echo {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        if Some(id) == self.client {
            cx.send(id, &b"hello"[..]).unwrap();
        }
    }
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, m: Bytes) {
        if Some(id) == self.client {
            self.got.push(m);
        } else {
            cx.send(id, m).unwrap();
        }
    }
}

#[test]
fn echo_round_trip_in_one_reactor() {
    let _ = env_logger::builder().is_test(true).try_init();
    let config = Config::builder()
        .heartbeat(Duration::from_millis(200), Duration::from_millis(200))
        .build()
        .unwrap();
    let mut reactor = Reactor::with_config(config).unwrap();
    let l = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.local_addr(l).unwrap();
    let mut h = Echo {
        client: Some(reactor.dial(addr)),
        ..Echo::default()
    };
    let start = Instant::now();
    while h.got.is_empty() && start.elapsed() < Duration::from_secs(5) {
        reactor
            .poll_once(&mut h, Some(Duration::from_millis(50)))
            .unwrap();
    }
    assert_eq!(h.got, vec![Bytes::from_static(b"hello")]);
    // Heartbeats keep both alive for a second.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        reactor
            .poll_once(&mut h, Some(Duration::from_millis(50)))
            .unwrap();
    }
    let s = reactor.conn_stats(h.client.unwrap()).unwrap();
    assert!(s.pongs_received > 0 || s.pings_received > 0, "{s:?}");
    assert_eq!(reactor.stats().connections, 2);
    assert_eq!(reactor.stats().closes.total(), 0, "{:?}", reactor.stats());
}
