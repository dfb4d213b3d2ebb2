//! Micro benchmarks of the sans-IO connection state machine
//! ([`tether::proto::conn::Connection`]): no sockets, no reactor, no real clock.
//!
//! Run with `cargo bench --bench conn` (one case:
//! `cargo bench --bench conn -- heartbeat_round`). The defaults are
//! shortened to 1 s of warm-up and 3 s of measurement per case;
//! `--warm-up-time` and `--measurement-time` override them.
//! `cargo test --benches` runs every case once as a smoke test.
//!
//! A client and a server `Connection` (default `Config`: heartbeat 10 s /
//! 10 s) are wired back to back through one in-memory buffer and taken
//! through the handshake before timing starts. Then, per iteration
//! (`Throughput::Elements(1)`):
//!
//! - `heartbeat_round`: one application heartbeat. Time jumps straight to
//!   the server's idle timer (`timer(Timer::Ping)`: 10 s of silence plus
//!   jitter), `handle_timeout` there queues a PING, its 13 bytes go to
//!   `client.handle_input`, which queues a PONG, and the PONG goes back to
//!   `server.handle_input`, which stands down the dead-peer timer and
//!   re-arms the idle timer. Nothing is emitted as an event.
//! - `data_frame/64B`, `data_frame/16KiB`: `client.send(payload)` (a
//!   `Bytes` clone: a reference count, no copy), `transmit` /
//!   `advance_transmit` into the wire buffer, `server.handle_input`, which
//!   yields `Event::Message`, then the event is dropped.
//!
//! Output moves with `transmit` + `advance_transmit`, as the reactor's
//! vectored write does; copying the slices into the wire buffer stands in
//! for the socket (for the 16 KiB frame that copy is a noticeable share of
//! the time). The wire buffer and the events `Vec` are reused and cleared,
//! so what is left is the state machine's own cost, allocations it makes
//! included.

use std::hint::black_box;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use tether::proto::conn::{Connection, Event, State, Timer};
use tether::Config;

/// An established client/server pair and the buffers between them.
struct Pair {
    client: Connection,
    server: Connection,
    /// Bytes in flight between the two (cleared by `handle_input`).
    wire: BytesMut,
    events: Vec<Event>,
    /// The current time of this in-memory world.
    now: Instant,
}

impl Pair {
    /// A client and a server through the handshake, at `now`.
    fn established() -> Pair {
        let config = Arc::new(Config::default());
        let now = Instant::now();
        let mut pair = Pair {
            client: Connection::client(config.clone(), 1),
            server: Connection::server(config, now, 42, 2),
            wire: BytesMut::with_capacity(64 * 1024),
            events: Vec::with_capacity(16),
            now,
        };
        pair.client.start(now);
        pair.client.handle_connected(now);
        pair.client_to_server(); // HELLO
        pair.server_to_client(); // WELCOME
        let connected = pair
            .events
            .iter()
            .filter(|e| matches!(e, Event::Connected(_)))
            .count();
        assert_eq!(connected, 2, "handshake failed: {:?}", pair.events);
        pair.events.clear();
        pair.assert_established();
        pair
    }

    /// Moves everything the client has queued into the server.
    #[inline]
    fn client_to_server(&mut self) {
        flush(&mut self.client, &mut self.wire, self.now);
        self.server
            .handle_input(self.now, &mut self.wire, &mut self.events);
    }

    /// Moves everything the server has queued into the client.
    #[inline]
    fn server_to_client(&mut self) {
        flush(&mut self.server, &mut self.wire, self.now);
        self.client
            .handle_input(self.now, &mut self.wire, &mut self.events);
    }

    /// One heartbeat: the server's idle timer fires, PING, PONG.
    #[inline]
    fn heartbeat_round(&mut self) {
        // The idle timer (PING after I of silence); the write-idle check
        // may come earlier and is handled on the way.
        self.now = self
            .server
            .timer(Timer::Ping)
            .expect("server idle timer armed");
        self.server.handle_timeout(self.now, &mut self.events);
        self.server_to_client(); // PING
        self.client_to_server(); // PONG
        black_box(&self.events);
        self.events.clear();
    }

    /// One DATA frame from the client to the server's events.
    #[inline]
    fn data_frame(&mut self, payload: &Bytes) {
        self.client
            .send(payload.clone())
            .expect("established, under the limits");
        self.client_to_server();
        debug_assert!(
            matches!(self.events.as_slice(), [Event::Message(m)] if m.len() == payload.len())
        );
        black_box(&self.events);
        self.events.clear();
    }

    fn assert_established(&self) {
        assert_eq!(self.client.state(), State::Established);
        assert_eq!(self.server.state(), State::Established);
        assert_eq!(self.client.pending_output(), 0);
        assert_eq!(self.server.pending_output(), 0);
        assert!(
            self.events.is_empty(),
            "unexpected events: {:?}",
            self.events
        );
    }
}

/// Writes all of `conn`'s pending output into `wire` the way the reactor
/// does: vectored slices from `transmit`, then `advance_transmit`.
#[inline]
fn flush(conn: &mut Connection, wire: &mut BytesMut, now: Instant) {
    while conn.pending_output() > 0 {
        let written = {
            let mut iov = [IoSlice::new(&[]); 8];
            let n = conn.transmit(&mut iov);
            let mut written = 0;
            for slice in &iov[..n] {
                wire.extend_from_slice(slice);
                written += slice.len();
            }
            written
        };
        conn.advance_transmit(now, written, &mut Vec::new());
    }
}

fn conn(c: &mut Criterion) {
    let mut group = c.benchmark_group("conn");
    group.throughput(Throughput::Elements(1));
    heartbeat(&mut group);
    data(&mut group);
    group.finish();
}

fn heartbeat(group: &mut BenchmarkGroup<'_, WallTime>) {
    let mut pair = Pair::established();
    // Not timed: a round really is PING then PONG, and leaves the pair as
    // it found it.
    let before = *pair.server.stats();
    pair.heartbeat_round();
    let after = *pair.server.stats();
    assert_eq!(after.pings_sent, before.pings_sent + 1, "no PING sent");
    assert_eq!(after.pongs_received, before.pongs_received + 1, "no PONG");
    assert_eq!(pair.client.stats().pings_received, 1);
    pair.assert_established();

    group.bench_function("heartbeat_round", |b| b.iter(|| pair.heartbeat_round()));
    pair.assert_established();
    let stats = pair.server.stats();
    assert_eq!(
        u64::from(stats.pings_sent),
        stats.pongs_received,
        "a PONG went missing"
    );
}

fn data(group: &mut BenchmarkGroup<'_, WallTime>) {
    for (len, label) in [(64, "64B"), (16 * 1024, "16KiB")] {
        let payload = Bytes::from(vec![0xA5; len]);
        let mut pair = Pair::established();
        pair.data_frame(&payload);
        assert_eq!(pair.server.stats().messages_received, 1);
        group.bench_function(BenchmarkId::new("data_frame", label), |b| {
            b.iter(|| pair.data_frame(&payload))
        });
        pair.assert_established();
        let (sent, received) = (
            pair.client.stats().messages_sent,
            pair.server.stats().messages_received,
        );
        assert_eq!(sent, received, "a message went missing");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = conn
}
criterion_main!(benches);
