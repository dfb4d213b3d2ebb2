//! A peer that does not read its answers: they back up in the server's
//! output, partly written, while it keeps sending. The server must neither
//! panic nor lose count, whichever way the handler answers.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use support::*;
use tether::proto::codec::Frame;
use tether::{ConnId, Context, Handler, Message, Reactor};

/// Answers every message with `forward` or `send_slice` (by the message's
/// first byte) and reports the running count.
struct Answer {
    received: mpsc::Sender<u64>,
    count: u64,
}

impl Handler for Answer {
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        self.count += 1;
        // Refusals (backpressure) are expected once the output is full.
        let _ = if message.first() == Some(&b'f') {
            cx.forward(id, message)
        } else {
            cx.send_slice(id, &message)
        };
        let _ = self.received.send(self.count);
    }
}

/// A raw client whose receive buffer is tiny, so the server's writes are
/// partial early.
fn tiny_window_client(addr: SocketAddr) -> std::net::TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_nodelay(true).expect("nodelay");
    stream
}

#[test]
fn answers_to_a_peer_that_does_not_read_never_panic_the_reactor() {
    init_logs();
    let (received_tx, received) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut reactor = Reactor::with_config(config(60_000, 60_000)).expect("reactor");
        let l = reactor
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        ready_tx
            .send((reactor.local_addr(l).expect("bound"), reactor.handle()))
            .expect("test waiting");
        let mut handler = Answer {
            received: received_tx,
            count: 0,
        };
        reactor.run(&mut handler).expect("run");
    });
    let (addr, handle) = ready.recv().expect("server up");

    let mut client = tiny_window_client(addr);
    client
        .write_all(&hello_bytes(60_000, 60_000))
        .expect("hello");
    // Batches of small messages, half answered by `forward`, half by
    // `send_slice`.
    let mut batch = Vec::new();
    for i in 0..64u32 {
        let tag = if i % 2 == 0 { b'f' } else { b's' };
        let mut payload = vec![tag; 96];
        payload[1..5].copy_from_slice(&i.to_be_bytes());
        batch.extend(frame_bytes(&Frame::Data(payload.into())));
    }
    // One batch per server read (the next goes once the server counted
    // this one): each read's answers fill one fresh run, so when the
    // socket first refuses, the run it took part of is the whole queue,
    // and the next read's answers go to that run. ~6 MB in all: well past
    // the point where the socket is full.
    let batches = 6 * 1024 * 1024 / batch.len();
    for b in 1..=batches {
        client.write_all(&batch).expect("the server keeps reading");
        let want = (b * 64) as u64;
        let mut got = 0;
        while got < want {
            got = received
                .recv_timeout(Duration::from_secs(10))
                .expect("the server thread is alive and counting");
        }
    }
    handle.shutdown().expect("reactor alive");
    server.join().expect("the reactor thread did not panic");
}
