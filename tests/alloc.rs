//! Zero heap allocations per echoed message on the server's steady path,
//! counted (not timed) with a counting global allocator. Alone in its own
//! test binary, since the allocator is process-wide.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
mod support;

use std::sync::mpsc;
use std::thread;

use bytes::Bytes;
use counting_alloc::{allocations, Counting};
use support::*;
use tether::proto::codec::{Frame, Handshake};
use tether::{ConnId, Context, Handler, Message};

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
        // Every way of answering: sharing the read buffer, copying into
        // the output, and forwarding (which picks by size).
        let _ = match self.messages % 3 {
            0 => cx.send(id, message),
            1 => cx.send_slice(id, &message),
            _ => cx.forward(id, message),
        };
        self.messages += 1;
        if self.messages % 1000 == 0 {
            let _ = self.report.send((self.messages, allocations()));
        }
    }
}

#[test]
fn echoing_allocates_nothing_per_message_once_warm() {
    echo_allocations(false);
}

/// The same with session resume: every message is numbered and kept in
/// the replay log until the client's ACK (every 64, as tether's own).
#[test]
fn echoing_in_a_resumed_session_allocates_nothing_per_message_once_warm() {
    echo_allocations(true);
}

fn echo_allocations(resume: bool) {
    // Heartbeats far apart: this measures the message path only.
    let (mut reactor, addr, handle) = listening(config(60_000, 60_000));
    let (report, reports) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut h = CountingEcho {
            messages: 0,
            report,
        };
        reactor.run(&mut h).expect("run");
    });

    // A raw client keeps a window of 16 messages of 64 B in flight.
    let mut raw = RawPeer::connect(addr);
    raw.send_frame(&Frame::Hello(Handshake {
        flags: if resume { Handshake::RESUME } else { 0 },
        ..Handshake::default()
    }));
    match raw.next_frame(ms(2000)) {
        Some(Frame::Welcome(w)) => assert_eq!(w.has(Handshake::RESUME), resume),
        other => panic!("expected WELCOME, got {other:?}"),
    }
    let message = frame_bytes(&Frame::Data(Bytes::from(vec![0x5A; 64])));
    let window: Vec<u8> = message.repeat(16);
    let total = 20_000;
    let mut echoed = 0;
    while echoed < total {
        raw.send_raw(&window).expect("write");
        let mut got = 0;
        while got < 16 {
            match raw.next_frame(ms(2000)) {
                Some(Frame::Data(_)) => got += 1,
                Some(_) => {}
                None => panic!("echo stopped after {echoed}"),
            }
        }
        echoed += 16;
        if resume && echoed % 64 == 0 {
            raw.send_frame(&Frame::Ack(echoed));
        }
    }
    handle.shutdown().expect("shutdown");
    server.join().expect("server");

    let counts: Vec<(u64, u64)> = reports.try_iter().collect();
    // Warm-up: the first 5 000 messages may size buffers and queues.
    let warm: Vec<&(u64, u64)> = counts.iter().filter(|(n, _)| *n >= 5000).collect();
    let (first_n, first_a) = *warm[0];
    let (last_n, last_a) = **warm.last().expect("reports");
    let per_message = (last_a - first_a) as f64 / (last_n - first_n) as f64;
    assert!(
        last_a == first_a,
        "{} allocations over {} echoed messages ({per_message:.3} per message) on the server thread",
        last_a - first_a,
        last_n - first_n
    );
}
