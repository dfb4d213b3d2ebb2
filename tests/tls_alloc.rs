//! Allocations per echoed message over TLS on the server's thread, counted
//! with a counting global allocator: tether's TLS layer adds none of its
//! own; what remains is rustls's (a buffer per record received and per
//! record sent). Alone in its own test binary, since the allocator is
//! process-wide. Run with `--nocapture` to see the figure.
#![cfg(feature = "tls")]

#[path = "support/certs.rs"]
mod certs;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

use bytes::{Bytes, BytesMut};
use certs::Ca;
use counting_alloc::{allocations, Counting};
use support::*;
use tether::proto::codec::{Decoder, Frame, Handshake};
use tether::tls::rustls::{ClientConnection, StreamOwned};
use tether::{tls, ConnId, Context, Handler, Message, Reactor};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Echoes, and reports the server thread's allocation count at each
/// 1 000th message.
struct CountingEcho {
    messages: u64,
    report: mpsc::Sender<(u64, u64)>,
}

impl Handler for CountingEcho {
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let _ = cx.forward(id, message);
        self.messages += 1;
        if self.messages % 1000 == 0 {
            let _ = self.report.send((self.messages, allocations()));
        }
    }
}

#[test]
fn echoing_over_tls_allocates_only_what_rustls_does() {
    let ca = Ca::new("test CA");
    let leaf = ca.server(&["localhost"]);
    let server_tls = tls::server_config_from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), None)
        .expect("server config");
    let mut reactor = Reactor::with_config(config(60_000, 60_000)).expect("reactor");
    let l = reactor
        .listen_tls("127.0.0.1:0".parse().expect("addr"), server_tls)
        .expect("listen");
    let addr = reactor.local_addr(l).expect("bound");
    let handle = reactor.handle();
    let (report, reports) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut h = CountingEcho {
            messages: 0,
            report,
        };
        reactor.run(&mut h).expect("run");
    });

    // A blocking TLS client keeps a window of 16 messages of 64 B in
    // flight, written as one record.
    let client_tls = tls::client_config_from_pem(ca.pem.as_bytes(), None).expect("client");
    let conn = ClientConnection::new(client_tls, tls::server_name("localhost").expect("name"))
        .expect("client");
    let mut stream = StreamOwned::new(conn, TcpStream::connect(addr).expect("connect"));
    stream
        .write_all(&frame_bytes(&Frame::Hello(Handshake::default())))
        .expect("HELLO");
    let decoder = Decoder::new(1 << 20);
    let mut buf = BytesMut::new();
    let mut next_frame = |stream: &mut StreamOwned<ClientConnection, TcpStream>| loop {
        if let Some(frame) = decoder.decode(&mut buf).expect("well-formed") {
            return frame;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the server ended the stream");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(matches!(next_frame(&mut stream), Frame::Welcome(_)));
    let message = frame_bytes(&Frame::Data(Bytes::from(vec![0x5A; 64])));
    let window: Vec<u8> = message.repeat(16);
    let total = 20_000;
    let mut echoed = 0;
    while echoed < total {
        stream.write_all(&window).expect("write");
        let mut got = 0;
        while got < 16 {
            if let Frame::Data(_) = next_frame(&mut stream) {
                got += 1;
            }
        }
        echoed += 16;
    }
    handle.shutdown().expect("shutdown");
    server.join().expect("server");

    let counts: Vec<(u64, u64)> = reports.try_iter().collect();
    let warm: Vec<&(u64, u64)> = counts.iter().filter(|(n, _)| *n >= 5000).collect();
    let (first_n, first_a) = *warm[0];
    let (last_n, last_a) = **warm.last().expect("reports");
    let per_message = (last_a - first_a) as f64 / (last_n - first_n) as f64;
    let per_window = per_message * 16.0;
    eprintln!(
        "TLS echo: {per_message:.3} allocations per message, {per_window:.2} per window of 16 \
         (one record each way)"
    );
    // rustls allocates per record, not per message: one record in, one
    // out per window. A layer that allocated per message would show ≥ 1.
    assert!(
        per_window <= 4.0,
        "{per_message:.3} allocations per echoed message ({per_window:.2} per window of 16)"
    );
}
