//! Slowloris: clients that connect and trickle their HELLO a byte at a time
//! are closed at the handshake timeout, and a thousand of them at once do
//! not delay a good client.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use tether::proto::codec::Frame;

#[test]
fn a_trickled_hello_is_closed_at_the_handshake_timeout() {
    init_logs();
    let mut cfg = config(1000, 1000);
    cfg.handshake_timeout = ms(500);
    let server = echo_server(cfg, None);
    let addr = server.addr.expect("bound");
    let hello = hello_bytes(0, 0);
    let mut raw = RawPeer::connect(addr);
    let connected = Instant::now();
    // A byte every 100 ms: the HELLO would take 3.5 s.
    let mut closed = None;
    // Every frame received, across the reads: the CLOSE may come in one
    // read and the end of the stream in the next.
    let mut frames = Vec::new();
    for b in &hello {
        if raw.stream.write_all(&[*b]).is_err() {
            closed = Some(Instant::now());
            break;
        }
        let (more, eof) = raw.read_until_eof(ms(100));
        frames.extend(more);
        if let Some(at) = eof {
            assert!(
                matches!(frames.last(), Some((_, Frame::Close { code, .. })) if *code == tether::CloseCode::PROTOCOL_ERROR),
                "{frames:?}"
            );
            closed = Some(at);
            break;
        }
    }
    let took = closed.expect("the trickling client was never closed") - connected;
    assert!(
        took >= ms(480) && took <= ms(1200),
        "closed after {took:?}, handshake timeout 500 ms"
    );
    // The application never heard of a client that never said HELLO.
    let events = server.collect_for(ms(200));
    assert!(events.is_empty(), "{events:?}");
    let reactor = server.stop();
    assert_eq!(reactor.stats().closes.handshake_timeout, 1);
    assert_eq!(reactor.stats().closes.total(), 1);
}

#[test]
fn a_thousand_slowloris_clients_do_not_delay_a_good_one() {
    init_logs();
    let mut cfg = config(1000, 1000);
    cfg.handshake_timeout = ms(1500);
    let server = echo_server(cfg, None);
    let addr = server.addr.expect("bound");
    let hello = hello_bytes(0, 0);

    // 1 000 connections, each sends the first 3 bytes of a HELLO, then
    // trickles one more byte per 200 ms.
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(&hello[..3]).expect("write");
            s
        })
        .collect();
    let trickler = thread::spawn(move || {
        for i in 3..8 {
            thread::sleep(ms(200));
            for s in &mut slow {
                let _ = s.write_all(&hello[i..=i]);
            }
        }
        slow
    });

    // Meanwhile a good client handshakes and echoes promptly.
    for _ in 0..5 {
        let start = Instant::now();
        let mut good = RawPeer::connect(addr);
        good.hello(0, 0);
        assert!(matches!(good.next_frame(ms(2000)), Some(Frame::Welcome(_))));
        good.send_frame(&Frame::Data(bytes::Bytes::from_static(b"hi")));
        let echo = good.next_frame(ms(2000));
        assert_eq!(echo, Some(Frame::Data(bytes::Bytes::from_static(b"hi"))));
        assert!(
            start.elapsed() < ms(500),
            "a good client took {:?} among 1 000 slow ones",
            start.elapsed()
        );
        thread::sleep(ms(100));
    }
    let slow = trickler.join().expect("trickler");
    // All 1 000 are closed by the handshake timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reactor = loop {
        thread::sleep(ms(200));
        if Instant::now() > deadline {
            break server.stop();
        }
        // Closed sockets read EOF (or reset).
        let open = slow
            .iter()
            .filter(|s| {
                s.set_nonblocking(true).expect("nonblocking");
                let mut b = [0u8; 256];
                matches!(std::io::Read::read(&mut &**s, &mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        if open == 0 {
            break server.stop();
        }
    };
    assert_eq!(reactor.stats().closes.handshake_timeout, 1000);
}
