//! A peer's FIN that arrives behind more than the reactor reads from one
//! connection per turn is still seen at once. (Its own test binary: it
//! reaches into the reactor's socket by descriptor, and no other test's
//! thread may close descriptors meanwhile.) Linux only: it reads the
//! socket's queue from /proc/net/tcp.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tether::proto::codec::Frame;
use tether::{Config, ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor};

/// Counts what the reactor reports.
#[derive(Default)]
struct Counter {
    connected: bool,
    messages: usize,
    ended: Option<DisconnectReason>,
}

impl Handler for Counter {
    fn on_connected(&mut self, _: &mut Context<'_>, _: ConnId, _: &PeerInfo) {
        self.connected = true;
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {
        self.messages += 1;
    }
    fn on_disconnected(&mut self, _: &mut Context<'_>, _: ConnId, reason: &DisconnectReason) {
        self.ended = Some(reason.clone());
    }
}

/// Polls `reactor` on this thread until `done` holds or `limit` passes;
/// returns whether it held.
fn poll_until(
    reactor: &mut Reactor,
    handler: &mut Counter,
    limit: Duration,
    mut done: impl FnMut(&Counter) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while !done(handler) {
        if Instant::now() >= deadline {
            return false;
        }
        reactor.poll_once(handler, Some(ms(10))).expect("poll");
    }
    true
}

/// The state (`0x08`: CLOSE_WAIT, the FIN received) and the receive queue
/// of the TCP socket `local` → `remote`, from /proc/net/tcp.
fn tcp_state(local: SocketAddr, remote: SocketAddr) -> Option<(u8, u64)> {
    let port = |a: SocketAddr| format!(":{:04X}", a.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || !f[1].ends_with(&port(local)) || !f[2].ends_with(&port(remote)) {
            return None;
        }
        let state = u8::from_str_radix(f[3], 16).ok()?;
        let queued = u64::from_str_radix(f[4].split(':').nth(1)?, 16).ok()?;
        Some((state, queued))
    })
}

/// Gives the reactor's socket `local` → `remote` a receive buffer of
/// `bytes` (as far as `net.core.rmem_max` allows), so that a burst can
/// wait in it whole.
fn grow_receive_buffer(local: SocketAddr, remote: SocketAddr, bytes: usize) {
    use std::os::fd::{BorrowedFd, RawFd};
    let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor was open when listed, and nothing closes
        // it while borrowed: this binary runs one test, and the reactor
        // runs on this thread, which is here. Only socket options are read
        // or set on it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let is_it = |a: std::io::Result<socket2::SockAddr>, b: SocketAddr| {
            a.ok().and_then(|a| a.as_socket()) == Some(b)
        };
        if is_it(socket.local_addr(), local) && is_it(socket.peer_addr(), remote) {
            socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
            return;
        }
    }
    panic!("the reactor's socket {local} -> {remote} was not found");
}

#[test]
fn a_fin_behind_a_burst_larger_than_the_read_budget_is_seen_at_once() {
    init_logs();
    // The kernel must let one socket queue the whole burst (the receive
    // buffer is twice what is asked, up to twice net.core.rmem_max).
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if rmem_max < 2 << 20 {
        eprintln!("skipped: net.core.rmem_max is {rmem_max}, too small to queue a 1.5 MiB burst");
        return;
    }
    // No heartbeats: nothing but the FIN can end the connection.
    let config = Config::builder().no_heartbeat().build().expect("config");
    let (mut reactor, addr, _handle) = listening(config);
    let mut handler = Counter::default();
    let mut raw = RawPeer::connect(addr);
    let client = raw.stream.local_addr().expect("local");
    raw.hello(0, 0);
    assert!(
        poll_until(&mut reactor, &mut handler, ms(2000), |h| h.connected),
        "no handshake"
    );
    grow_receive_buffer(addr, client, 4 << 20);

    // 1.5 MiB of messages and the FIN, written while the server does not
    // poll: the FIN's readiness event finds more queued than the 1 MiB
    // (16 reads of 64 KiB) a connection may read per turn.
    const BURST: usize = 24;
    let frame = frame_bytes(&Frame::Data(Bytes::from(vec![7u8; 64 * 1024])));
    for _ in 0..BURST {
        raw.stream.write_all(&frame).expect("write");
    }
    raw.stream.shutdown(Shutdown::Write).expect("shutdown");
    // All of it waits in the server's receive queue (the FIN counts as
    // one more sequence number).
    let queued = Some((0x08, (BURST * frame.len()) as u64 + 1));
    let waited = Instant::now();
    while tcp_state(addr, client) != queued && waited.elapsed() < ms(2000) {
        std::thread::sleep(ms(10));
    }
    assert_eq!(
        tcp_state(addr, client),
        queued,
        "setup: the burst and the FIN did not all reach the server's receive queue"
    );

    let ended = poll_until(&mut reactor, &mut handler, ms(2000), |h| h.ended.is_some());
    assert_eq!(handler.messages, BURST, "messages lost");
    assert!(ended, "the peer's FIN went unnoticed for 2 s");
    assert_eq!(handler.ended, Some(DisconnectReason::PeerEof));
    assert_eq!(reactor.stats().closes.peer_eof, 1);
}
