//! The basic promise on real sockets: messages of every size go out and
//! come back whole and in order, and idle links measure their RTT.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;

#[test]
fn messages_of_every_size_echo_back_whole_and_in_order() {
    init_logs();
    let (server, client) = echo_pair(200, 400);
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected");
    let link = seen.id();
    // Empty, small, a frame boundary's worth, and the 1 MiB maximum.
    let sizes = [0usize, 1, 13, 64, 1500, 16 * 1024, 65_536, 300_000, 1 << 20];
    let sent: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Bytes::from((0..n).map(|b| (b * 31 + i) as u8).collect::<Vec<u8>>()))
        .collect();
    for m in &sent {
        client.handle.send(link, m.clone()).expect("send");
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() && Instant::now() < deadline {
        if let Some((_, Seen::Message(_, m))) =
            client.wait_for(ms(500), |s| matches!(s, Seen::Message(..)))
        {
            got.push(m);
        }
    }
    assert_eq!(got.len(), sent.len());
    for (i, (a, b)) in got.iter().zip(&sent).enumerate() {
        assert!(
            a == b,
            "message {i} ({} bytes) came back different",
            b.len()
        );
    }

    // Idle for a few intervals: heartbeats flow and time the round trip.
    std::thread::sleep(ms(1000));
    let reactor = client.stop();
    let stats = reactor.stats();
    assert_eq!(stats.closes.total(), 1, "{stats:?}"); // our own shutdown
    assert_eq!(stats.closes.local_close, 1);
    let server_reactor = server.stop();
    assert_eq!(server_reactor.stats().closes.heartbeat_timeout, 0);
}

#[test]
fn idle_links_sample_their_round_trip_time() {
    init_logs();
    let server = echo_server(config(100, 400), None);
    let addr = server.addr.expect("bound");
    // The client runs on this thread, so its stats can be read live.
    let (tx, _events) = std::sync::mpsc::channel();
    let mut handler = Recorder { tx, echo: false };
    let mut reactor = tether::Reactor::with_config(config(100, 400)).expect("reactor");
    let link = reactor.dial(addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        reactor.poll_once(&mut handler, Some(ms(10))).expect("poll");
        let s = reactor.conn_stats(link).expect("link");
        if let (Some(srtt), true) = (s.srtt, s.pongs_received >= 3) {
            assert!(srtt < ms(100), "loopback srtt {:?}", s.srtt);
            assert!(s.rttvar.is_some());
            assert!(s.since_last_recv.expect("established") < ms(500));
            assert_eq!(s.reconnect_attempt, 0);
            break;
        }
        assert!(Instant::now() < deadline, "no RTT samples: {s:?}");
    }
    server.stop();
}

#[test]
fn a_busy_polling_server_echoes_and_its_spins_find_the_messages() {
    init_logs();
    // A budget far above a loopback round trip: the raw client's next
    // message arrives while the server still spins after its echo.
    let server = spawn(config(60_000, 60_000), true, |r| {
        r.set_busy_poll(ms(50));
        let l = r
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        r.local_addr(l)
    });
    let mut raw = RawPeer::connect(server.addr.expect("bound"));
    raw.send_frame(&tether::proto::codec::Frame::Hello(
        tether::proto::codec::Handshake::default(),
    ));
    assert!(matches!(
        raw.next_frame(ms(2000)),
        Some(tether::proto::codec::Frame::Welcome(_))
    ));
    for i in 0..200u32 {
        let m = Bytes::from(i.to_be_bytes().to_vec());
        raw.send_frame(&tether::proto::codec::Frame::Data(m.clone()));
        match raw.next_frame(ms(2000)) {
            Some(tether::proto::codec::Frame::Data(echo)) => assert_eq!(echo, m),
            other => panic!("echo {i}: {other:?}"),
        }
    }
    let stats = server.stop().stats();
    assert!(stats.busy_poll_hits > 0, "{stats:?}");
    assert!(stats.busy_polls >= stats.busy_poll_hits, "{stats:?}");
}
