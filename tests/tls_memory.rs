//! Bytes per idle TLS connection on the server, counted with a counting
//! global allocator (live heap bytes of the server's thread), next to a
//! plain connection's. Alone in its own test binary, since the allocator
//! is process-wide. Run with `--nocapture` to see the figures.
#![cfg(feature = "tls")]

#[path = "support/certs.rs"]
mod certs;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use certs::Ca;
use support::*;
use tether::{tls, ConnId, Context, Handler, PeerInfo, Reactor};

/// Counts live heap bytes per thread (what a thread frees counts against
/// it, wherever it was allocated: the server's reactor frees its own).
struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add(n: i64) {
    let _ = LIVE.try_with(|c| c.set(c.get() + n));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    LIVE.with(Cell::get)
}

#[derive(Default)]
struct Count {
    connected: usize,
}

impl Handler for Count {
    fn on_connected(&mut self, _: &mut Context<'_>, _: ConnId, _: &PeerInfo) {
        self.connected += 1;
    }
}

/// Idle connections measured (`TETHER_TLS_MEMORY_CONNS` overrides; the
/// docs' figure is from 1 000 in a release build, where 1 000 handshakes
/// at once are quick).
fn conns() -> usize {
    std::env::var("TETHER_TLS_MEMORY_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}
const I: u64 = 200;

/// Heartbeat `I`/`I`, and time for many TLS handshakes at once.
fn slow_handshakes() -> tether::Config {
    let mut config = config(I, I);
    config.handshake_timeout = ms(10_000);
    config.connect_timeout = ms(10_000);
    config
}

/// Turns the server until `n` connections are up, then for `idle` (the
/// heartbeats of idle links go on meanwhile).
fn serve(reactor: &mut Reactor, handler: &mut Count, n: usize, idle: Duration) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while handler.connected < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} connected",
            handler.connected
        );
        reactor.poll_once(handler, Some(ms(10))).expect("poll");
    }
    let end = Instant::now() + idle;
    while Instant::now() < end {
        reactor.poll_once(handler, Some(ms(10))).expect("poll");
    }
}

/// Live bytes per idle connection on the server, TLS or plain.
fn bytes_per_idle_connection(with_tls: bool) -> i64 {
    let ca = Ca::new("test CA");
    let leaf = ca.server(&["localhost"]);
    let mut server = Reactor::with_config(slow_handshakes()).expect("reactor");
    let any = "127.0.0.1:0".parse().expect("addr");
    let l = if with_tls {
        let tls = tls::server_config_from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), None)
            .expect("server config");
        server.listen_tls(any, tls).expect("listen")
    } else {
        server.listen(any).expect("listen")
    };
    let addr = server.local_addr(l).expect("bound");
    let client_tls = tls::client_config_from_pem(ca.pem.as_bytes(), None).expect("client");
    let dial = move |n: usize| {
        let client_tls = client_tls.clone();
        spawn(slow_handshakes(), false, move |r| {
            for _ in 0..n {
                if with_tls {
                    let name = tls::server_name("localhost").expect("name");
                    r.dial_tls(addr, name, client_tls.clone());
                } else {
                    r.dial(addr);
                }
            }
            None
        })
    };
    let mut handler = Count::default();
    // One connection first: the reactor-wide buffers (the read buffer,
    // the TLS input buffer) are in the baseline.
    let first = dial(1);
    serve(&mut server, &mut handler, 1, ms(3 * I));
    let base = live();
    let n = conns();
    let rest = dial(n);
    serve(&mut server, &mut handler, n + 1, ms(5 * I));
    let after = live();
    let per = (after - base) / n as i64;
    eprintln!(
        "{}: {per} bytes per idle connection on the server ({n} connections, {} bytes)",
        if with_tls { "TLS" } else { "plain" },
        after - base
    );
    drop(rest);
    drop(first);
    per
}

#[test]
fn an_idle_tls_connection_holds_little_memory() {
    init_logs();
    let plain = bytes_per_idle_connection(false);
    let tls = bytes_per_idle_connection(true);
    eprintln!("TLS costs {} bytes more per idle connection", tls - plain);
    assert!(plain < 4 * 1024, "plain: {plain} bytes per idle connection");
    // Measured 8.0 KiB with 1 000 connections in a release build (8.4 KiB
    // with the default 200 in a debug one; rustls 0.23.48, ring; plain:
    // 0.6 KiB): its 4 KiB record buffer,
    // which it shrinks back to 4 KiB between reads, the session's state,
    // and (shared, capped at 256 entries) the server's resumption cache,
    // which rustls fills with the tickets it issues. The aim is 40 KiB; 16 KiB catches a regression.
    assert!(tls <= 16 * 1024, "TLS: {tls} bytes per idle connection");
}
