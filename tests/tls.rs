//! TLS on real loopback sockets (feature `tls`): handshake and echo, each
//! refused handshake with the reason it names and a backoff, heartbeats
//! and dead-peer detection through TLS, a slowloris and garbage instead of
//! a ClientHello, close_notify after CLOSE, and a 1 MiB message.
#![cfg(feature = "tls")]

#[path = "support/certs.rs"]
mod certs;
#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use certs::{Ca, Leaf};
use proxy::{Mode, Proxy};
use support::*;
use tether::proto::codec::{Decoder, Frame, Handshake};
use tether::tls::rustls::{ClientConfig, ClientConnection, ServerConfig, StreamOwned};
use tether::{tls, CloseCode, Config, DisconnectReason, TlsFailure};

const NAME: &str = "localhost";

fn server_tls(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    tls::server_config_from_pem(
        leaf.cert.as_bytes(),
        leaf.key.as_bytes(),
        client_ca.map(|ca| ca.pem.as_bytes()),
    )
    .expect("server config")
}

fn client_tls(ca: &Ca, cert: Option<&Leaf>) -> Arc<ClientConfig> {
    tls::client_config_from_pem(
        ca.pem.as_bytes(),
        cert.map(|c| (c.cert.as_bytes(), c.key.as_bytes())),
    )
    .expect("client config")
}

/// An echo server listening with TLS on a free loopback port.
fn tls_echo_server(config: Config, tls: Arc<ServerConfig>) -> Running {
    spawn(config, true, move |r| {
        let l = r
            .listen_tls("127.0.0.1:0".parse().expect("addr"), tls)
            .expect("listen");
        r.local_addr(l)
    })
}

/// A client reactor with one TLS link to `addr`, verifying `name`.
fn tls_dialer(config: Config, addr: SocketAddr, name: &str, tls: Arc<ClientConfig>) -> Running {
    let name = tls::server_name(name).expect("name");
    spawn(config, false, move |r| {
        r.dial_tls(addr, name, tls);
        None
    })
}

fn is_tls(reason: &DisconnectReason, failure: TlsFailure) -> bool {
    matches!(reason, DisconnectReason::Tls { failure: f, .. } if *f == failure)
}

/// The client's link fails its attempts with `failure`, and backs off
/// between them (no hot loop): a few attempts a second, with growing
/// delays.
fn assert_fails_with_backoff(client: &Running, failure: TlsFailure) {
    let (_, first) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Reconnecting(..)))
        .expect("the attempt failed");
    let Seen::Reconnecting(_, _, _, reason) = &first else {
        unreachable!()
    };
    assert!(is_tls(reason, failure), "expected {failure:?}: {reason:?}");
    // Detail says what failed, in rustls's words.
    assert!(reason.to_string().starts_with("TLS: "), "{reason}");
    let later = client.collect_for(ms(1000));
    let mut delays = Vec::new();
    for (_, seen) in &later {
        match seen {
            Seen::Reconnecting(_, _, delay, reason) => {
                assert!(is_tls(reason, failure), "{reason:?}");
                delays.push(*delay);
            }
            Seen::Connected(..) => panic!("connected despite {failure:?}"),
            _ => {}
        }
    }
    // Backoff 50, 100, 200, 400, 400 ms: at most 5 more attempts in 1 s.
    assert!(
        (1..=5).contains(&delays.len()),
        "attempts in 1 s: {delays:?}"
    );
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
}

#[test]
fn tls_handshake_then_echo() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, None),
    );
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected over TLS");
    let id = seen.id();
    for i in 0..100u32 {
        client
            .handle
            .send(id, Bytes::from(format!("message {i}")))
            .expect("send");
    }
    for i in 0..100u32 {
        let (_, seen) = client
            .wait_for(ms(3000), |s| matches!(s, Seen::Message(..)))
            .expect("echo");
        assert_eq!(seen, Seen::Message(id, Bytes::from(format!("message {i}"))));
    }
    let server = server.stop();
    let client = client.stop();
    assert_eq!(server.stats().closes.tls, 0);
    assert_eq!(client.stats().closes.tls, 0);
}

#[test]
fn a_tls_link_dialed_by_name_and_failover_list_verifies_the_name_it_was_given() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let port = server.addr.expect("bound").port();
    let down = free_addr();
    // The first endpoint is down; the second is a name whose first address
    // refuses: each socket tried gets a TLS session of its own.
    let list: tether::Endpoints = format!("{down},tls.test:{port}")
        .parse()
        .expect("endpoints");
    let name = tls::server_name(NAME).expect("name");
    let tls_config = client_tls(&ca, None);
    let client = spawn(config(500, 500), false, move |r| {
        r.set_resolver(|_: &str, port: u16| -> std::io::Result<Vec<SocketAddr>> {
            Ok(vec![
                SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ])
        });
        r.dial_tls(list, name, tls_config);
        None
    });
    let (_, seen) = client
        .wait_for(ms(5000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected over TLS");
    let Seen::Connected(id, peer) = seen else {
        unreachable!()
    };
    assert_eq!((peer.endpoint, peer.moved), (1, false));
    client.handle.send(id, &b"by name"[..]).expect("send");
    let (_, echo) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Message(..)))
        .expect("echo");
    assert_eq!(echo, Seen::Message(id, Bytes::from_static(b"by name")));
    server.stop();
    let client = client.stop();
    assert_eq!(client.stats().closes.tls, 0);
    assert_eq!(client.stats().connects, 3, "down, [::1] refused, 127.0.0.1");
}

#[test]
fn tls_with_a_required_client_certificate() {
    init_logs();
    let ca = Ca::new("test CA");
    let client_ca = Ca::new("client CA");
    let server = tls_echo_server(
        config(500, 500),
        server_tls(&ca.server(&[NAME]), Some(&client_ca)),
    );
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, Some(&client_ca.client())),
    );
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected with a client certificate");
    client.handle.send(seen.id(), &b"ping"[..]).expect("send");
    client
        .wait_for(
            ms(3000),
            |s| matches!(s, Seen::Message(_, m) if m == "ping"),
        )
        .expect("echo");
}

#[test]
fn a_server_certificate_the_client_does_not_trust_fails_each_attempt() {
    init_logs();
    let ca = Ca::new("test CA");
    let other = Ca::new("other CA");
    let server = tls_echo_server(config(500, 500), server_tls(&other.server(&[NAME]), None));
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, None),
    );
    assert_fails_with_backoff(&client, TlsFailure::UntrustedCertificate);
    drop(client);
    // The server hears the client's alert.
    let server = server.stop();
    assert!(server.stats().closes.tls >= 1, "{:?}", server.stats());
}

#[test]
fn a_name_mismatch_fails_each_attempt() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        "other.example",
        client_tls(&ca, None),
    );
    assert_fails_with_backoff(&client, TlsFailure::NameMismatch);
}

#[test]
fn an_expired_server_certificate_fails_each_attempt() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(
        config(500, 500),
        server_tls(&ca.expired_server(&[NAME]), None),
    );
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, None),
    );
    assert_fails_with_backoff(&client, TlsFailure::Expired);
}

#[test]
fn a_missing_client_certificate_fails_each_attempt_on_both_ends() {
    init_logs();
    let ca = Ca::new("test CA");
    let client_ca = Ca::new("client CA");
    let server = tls_echo_server(
        config(500, 500),
        server_tls(&ca.server(&[NAME]), Some(&client_ca)),
    );
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, None),
    );
    assert_fails_with_backoff(&client, TlsFailure::ClientCertRequired);
    drop(client);
    let server = server.stop();
    assert!(server.stats().closes.tls >= 1, "{:?}", server.stats());
    assert_eq!(server.stats().closes.handshake_timeout, 0);
}

#[test]
fn a_tls_client_on_a_plain_port_fails_each_attempt_with_not_tls() {
    init_logs();
    let server = echo_server(config(500, 500), None);
    let ca = Ca::new("test CA");
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, None),
    );
    assert_fails_with_backoff(&client, TlsFailure::NotTls);
}

#[test]
fn a_plain_client_on_a_tls_port_is_refused_as_not_tls() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let client = dialer(config(500, 500), server.addr.expect("bound"));
    // The plain client reads a TLS alert where it expected WELCOME.
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Reconnecting(..)))
        .expect("the attempt failed");
    assert!(
        matches!(
            seen,
            Seen::Reconnecting(_, _, _, DisconnectReason::ProtocolError { .. })
                | Seen::Reconnecting(_, _, _, DisconnectReason::PeerEof)
        ),
        "{seen:?}"
    );
    let later = client.collect_for(ms(1000));
    let attempts = later
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Reconnecting(..)))
        .count();
    assert!((1..=5).contains(&attempts), "{attempts} attempts in 1 s");
    drop(client);
    let server = server.stop();
    assert!(server.stats().closes.tls >= 2, "{:?}", server.stats());
    assert_eq!(server.stats().closes.handshake_timeout, 0);
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_at_once() {
    init_logs();
    let ca = Ca::new("test CA");
    let mut config = config(500, 500);
    config.handshake_timeout = ms(3000);
    let server = tls_echo_server(config, server_tls(&ca.server(&[NAME]), None));
    let mut raw = RawPeer::connect(server.addr.expect("bound"));
    let sent = Instant::now();
    raw.send_raw(&[0xAB; 64]).expect("write");
    let mut buf = [0u8; 256];
    raw.stream
        .set_read_timeout(Some(ms(2000)))
        .expect("timeout");
    // An alert, perhaps, then the end; well before the handshake timeout.
    loop {
        match raw.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // At once: not at the 3 s handshake timeout.
    let took = sent.elapsed();
    eprintln!("garbage closed after {took:?}");
    assert!(took < ms(500), "closed after {took:?}");
    let server = server.stop();
    assert_eq!(server.stats().closes.tls, 1, "{:?}", server.stats());
}

/// The first bytes a TLS client sends: its ClientHello.
fn client_hello(ca: &Ca) -> Vec<u8> {
    let name = tls::server_name(NAME).expect("name");
    let mut conn = ClientConnection::new(client_tls(ca, None), name).expect("client");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write to a Vec");
    }
    hello
}

#[test]
fn a_client_hello_trickled_byte_by_byte_ends_at_the_handshake_timeout() {
    init_logs();
    let ca = Ca::new("test CA");
    let mut config = config(500, 500);
    config.handshake_timeout = ms(600);
    let server = tls_echo_server(config, server_tls(&ca.server(&[NAME]), None));
    let hello = client_hello(&ca);
    let mut raw = RawPeer::connect(server.addr.expect("bound"));
    let start = Instant::now();
    // One byte every 20 ms: every byte is life, but the handshake timeout
    // covers the TLS handshake and HELLO whatever arrives.
    let mut closed = None;
    for byte in hello.iter().take(100) {
        if raw.send_raw(&[*byte]).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        std::thread::sleep(ms(20));
        raw.stream.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 64];
        let r = raw.stream.read(&mut buf);
        raw.stream.set_nonblocking(false).expect("blocking");
        match r {
            Ok(0) => {
                closed = Some(start.elapsed());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(_) | Err(_) => {
                closed = Some(start.elapsed());
                break;
            }
        }
    }
    let closed = closed.expect("the server never closed the slow handshake");
    eprintln!("trickled ClientHello closed after {closed:?}");
    assert!(
        closed >= ms(580) && closed <= ms(600 + 700),
        "closed after {closed:?}; handshake timeout 600 ms"
    );
    let server = server.stop();
    assert_eq!(server.stats().closes.handshake_timeout, 1);
}

#[test]
fn a_stall_after_the_tls_handshake_ends_at_the_handshake_timeout() {
    init_logs();
    let ca = Ca::new("test CA");
    let mut config = config(500, 500);
    config.handshake_timeout = ms(600);
    let server = tls_echo_server(config, server_tls(&ca.server(&[NAME]), None));
    let start = Instant::now();
    let mut raw = RawTls::connect(server.addr.expect("bound"), &ca);
    // The TLS handshake completes; HELLO never comes.
    raw.complete_handshake();
    let (frames, eof) = raw.read_until_eof(ms(2000));
    let eof = eof.expect("closed");
    let took = eof - start;
    eprintln!("stall after the TLS handshake closed after {took:?}");
    assert!(
        took >= ms(580) && took <= ms(600 + 700),
        "closed after {took:?}; handshake timeout 600 ms"
    );
    assert!(
        matches!(&frames[..], [Frame::Close { code, .. }] if *code == CloseCode::PROTOCOL_ERROR),
        "{frames:?}"
    );
    let server = server.stop();
    assert_eq!(server.stats().closes.handshake_timeout, 1);
}

/// A raw tether client over blocking TLS (rustls's `StreamOwned`).
struct RawTls {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: BytesMut,
    decoder: Decoder,
}

impl RawTls {
    fn connect(addr: SocketAddr, ca: &Ca) -> RawTls {
        let name = tls::server_name(NAME).expect("name");
        let conn = ClientConnection::new(client_tls(ca, None), name).expect("client");
        let tcp = TcpStream::connect(addr).expect("connect");
        RawTls {
            stream: StreamOwned::new(conn, tcp),
            buf: BytesMut::new(),
            decoder: Decoder::new(1 << 20),
        }
    }

    fn complete_handshake(&mut self) {
        let StreamOwned { conn, sock } = &mut self.stream;
        while conn.is_handshaking() {
            conn.complete_io(sock).expect("TLS handshake");
        }
    }

    fn send_frame(&mut self, frame: &Frame) {
        self.stream.write_all(&frame_bytes(frame)).expect("write");
        self.stream.flush().expect("flush");
    }

    /// The next frame (None at the end of the stream or after `limit`).
    fn next_frame(&mut self, limit: Duration) -> Option<Frame> {
        self.stream
            .sock
            .set_read_timeout(Some(limit))
            .expect("timeout");
        loop {
            if let Ok(Some(frame)) = self.decoder.decode(&mut self.buf) {
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Frames until the end of the stream; the end's instant if it came
    /// with close_notify (a clean TLS end).
    fn read_until_eof(&mut self, limit: Duration) -> (Vec<Frame>, Option<Instant>) {
        self.stream
            .sock
            .set_read_timeout(Some(limit))
            .expect("timeout");
        let mut frames = Vec::new();
        loop {
            while let Ok(Some(frame)) = self.decoder.decode(&mut self.buf) {
                frames.push(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return (frames, Some(Instant::now())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    log::info!("raw TLS read ended: {e}");
                    return (frames, None);
                }
            }
        }
    }
}

#[test]
fn a_close_sends_close_notify_after_close() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let mut raw = RawTls::connect(server.addr.expect("bound"), &ca);
    raw.send_frame(&Frame::Hello(Handshake::default()));
    let (_, seen) = server
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("server connected");
    server
        .handle
        .close(seen.id(), CloseCode::NORMAL, "bye")
        .expect("close");
    // WELCOME, CLOSE, then a clean TLS end (close_notify: `read` returns
    // 0; without it rustls reports an unexpected EOF).
    let (frames, clean_end) = raw.read_until_eof(ms(3000));
    assert!(
        matches!(&frames[..], [Frame::Welcome(_), Frame::Close { code, reason }]
            if *code == CloseCode::NORMAL && reason == "bye"),
        "{frames:?}"
    );
    assert!(clean_end.is_some(), "no close_notify after CLOSE");
}

#[test]
fn a_1_mib_message_over_tls() {
    init_logs();
    let ca = Ca::new("test CA");
    let config = || {
        let mut c = config(500, 1000);
        c.max_frame = 2 << 20;
        c
    };
    let server = tls_echo_server(config(), server_tls(&ca.server(&[NAME]), None));
    let client = tls_dialer(
        config(),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, None),
    );
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected");
    let message: Bytes = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    client
        .handle
        .send(seen.id(), message.clone())
        .expect("send");
    let (_, echo) = client
        .wait_for(ms(5000), |s| matches!(s, Seen::Message(..)))
        .expect("echo of 1 MiB");
    let Seen::Message(_, echo) = echo else {
        unreachable!()
    };
    assert_eq!(echo.len(), message.len());
    assert!(echo == message, "the echo differs");
}

#[test]
fn heartbeats_keep_an_idle_tls_link_and_a_blackhole_is_detected() {
    init_logs();
    const I: u64 = 300;
    const T: u64 = 300;
    const SLACK: u64 = I / 10 + 400;
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(I, T), server_tls(&ca.server(&[NAME]), None));
    let proxy = Proxy::start(server.addr.expect("bound"));
    let control = proxy.handle();
    let client = tls_dialer(config(I, T), proxy.addr(), NAME, client_tls(&ca, None));
    client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected");
    // Idle for several heartbeat periods: PING/PONG inside TLS keep it.
    let idle = client.collect_for(ms(4 * (I + T)));
    assert!(
        !idle
            .iter()
            .any(|(_, s)| matches!(s, Seen::Disconnected(..) | Seen::Reconnecting(..))),
        "{idle:?}"
    );
    // Pull the plug without a FIN: both ends find the peer dead.
    let cut = Instant::now();
    control.set_mode(Mode::Blackhole);
    let (at, seen) = client
        .wait_for(ms(I + T + SLACK + 2000), |s| {
            matches!(s, Seen::Disconnected(..))
        })
        .expect("client detected the dead peer");
    assert_eq!(
        seen,
        Seen::Disconnected(seen.id(), DisconnectReason::HeartbeatTimeout)
    );
    assert!(at - cut <= ms(I + T + SLACK), "after {:?}", at - cut);
    eprintln!(
        "client: dead peer detected {:?} after the blackhole",
        at - cut
    );
    let (at, seen) = server
        .wait_for(ms(I + T + SLACK + 2000), |s| {
            matches!(s, Seen::Disconnected(..))
        })
        .expect("server detected the dead peer");
    assert_eq!(
        seen,
        Seen::Disconnected(seen.id(), DisconnectReason::HeartbeatTimeout)
    );
    assert!(at - cut <= ms(I + T + SLACK), "after {:?}", at - cut);
    eprintln!(
        "server: dead peer detected {:?} after the blackhole",
        at - cut
    );
    // The cable back: the link redials through TLS on its own.
    control.set_mode(Mode::PassThrough);
    client
        .wait_for(ms(5000), |s| matches!(s, Seen::Connected(..)))
        .expect("reconnected over TLS");
}

/// Counts the server's connections and echoes.
#[derive(Default)]
struct ServerCount {
    connected: usize,
}

impl tether::Handler for ServerCount {
    fn on_connected(
        &mut self,
        _: &mut tether::Context<'_>,
        _: tether::ConnId,
        _: &tether::PeerInfo,
    ) {
        self.connected += 1;
    }
}

/// A TLS server reactor on `addr` (port 0: a free one), turned on this
/// thread until `kill` is set or `want` connections are up, then
/// dropped without a shutdown: every socket closes at once, with no CLOSE
/// and no close_notify, as when the process is killed.
fn serve_until_killed(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    kill: Arc<std::sync::atomic::AtomicBool>,
    bound: std::sync::mpsc::Sender<SocketAddr>,
) -> (usize, tether::ReactorStats) {
    let mut reactor = tether::Reactor::with_config(config(500, 1000)).expect("reactor");
    let l = reactor.listen_tls(addr, tls).expect("listen");
    bound
        .send(reactor.local_addr(l).expect("bound"))
        .expect("test waits");
    let mut handler = ServerCount::default();
    while !kill.load(std::sync::atomic::Ordering::SeqCst) {
        reactor.poll_once(&mut handler, Some(ms(10))).expect("poll");
    }
    (handler.connected, reactor.stats())
}

#[test]
fn tls_links_come_back_after_the_server_is_killed_and_restarted() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    const LINKS: usize = 200;
    init_logs();
    let ca = Ca::new("test CA");
    let server_config = server_tls(&ca.server(&[NAME]), None);
    let start_server = |addr: SocketAddr| {
        let kill = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let tls = server_config.clone();
        let flag = kill.clone();
        let thread = std::thread::spawn(move || serve_until_killed(addr, tls, flag, tx));
        let bound = rx.recv().expect("server started");
        (kill, thread, bound)
    };
    let (kill, first, addr) = start_server("127.0.0.1:0".parse().expect("addr"));
    let mut client_config = config(500, 1000);
    client_config.backoff.jitter = 0.2;
    let client_tls = client_tls(&ca, None);
    let client = spawn(client_config, false, move |r| {
        for _ in 0..LINKS {
            let name = tls::server_name(NAME).expect("name");
            r.dial_tls(addr, name, client_tls.clone());
        }
        None
    });
    let mut up = std::collections::HashSet::new();
    while up.len() < LINKS {
        let (_, seen) = client
            .wait_for(ms(20_000), |s| matches!(s, Seen::Connected(..)))
            .unwrap_or_else(|| panic!("{} of {LINKS} links up", up.len()));
        up.insert(seen.id());
    }
    // Kill: every TLS socket of the server closes at once.
    kill.store(true, Ordering::SeqCst);
    let (served, _) = first.join().expect("server thread");
    assert_eq!(served, LINKS);
    let down = Instant::now();
    let mut lost = std::collections::HashSet::new();
    let mut attempts = std::collections::HashMap::<tether::ConnId, u32>::new();
    let mut first_delays = Vec::new();
    // Down for a second: the links redial into refused connects, backing
    // off (50 ms doubling to 400 ms, ±20 %).
    for (_, seen) in client.collect_for(ms(1000)) {
        match seen {
            Seen::Disconnected(id, reason) => {
                assert!(
                    matches!(reason, DisconnectReason::PeerEof | DisconnectReason::Io(_)),
                    "{reason:?}"
                );
                lost.insert(id);
            }
            Seen::Reconnecting(id, attempt, delay, _) => {
                *attempts.entry(id).or_default() += 1;
                if attempt == 1 {
                    first_delays.push(delay);
                }
            }
            Seen::Connected(..) => panic!("connected to a dead server"),
            _ => {}
        }
    }
    assert_eq!(lost.len(), LINKS, "links that noticed the kill");
    let most = attempts.values().copied().max().unwrap_or(0);
    assert!(most <= 6, "a link redialled {most} times in 1 s");
    // The first redials are spread by the backoff's jitter (±20 % of
    // 50 ms), not one pulse against the restarted server.
    first_delays.sort();
    assert_eq!(first_delays.len(), LINKS, "one first redial per link");
    let at = |q: f64| first_delays[((LINKS - 1) as f64 * q) as usize];
    assert!(
        at(0.9) - at(0.1) >= at(0.5).mul_f64(0.2),
        "first redial delays not spread: p10 {:?}, median {:?}, p90 {:?}",
        at(0.1),
        at(0.5),
        at(0.9)
    );
    assert!(first_delays[0] >= ms(40), "{:?} is early", first_delays[0]);
    // Restart on the same port: every link comes back over TLS, once.
    let (kill, second, again) = start_server(addr);
    assert_eq!(again, addr);
    let mut back = std::collections::HashSet::new();
    while back.len() < LINKS {
        let (_, seen) = client
            .wait_for(ms(20_000), |s| matches!(s, Seen::Connected(..)))
            .unwrap_or_else(|| panic!("{} of {LINKS} links back", back.len()));
        back.insert(seen.id());
    }
    eprintln!("{LINKS} TLS links back {:?} after the kill", down.elapsed());
    kill.store(true, Ordering::SeqCst);
    let (served, stats) = second.join().expect("server thread");
    assert_eq!(served, LINKS);
    assert_eq!(stats.accepted, LINKS as u64, "one accept per link");
    assert_eq!(stats.closes.tls, 0, "{stats:?}");
    assert_eq!(stats.closes.handshake_timeout, 0, "{stats:?}");
}

#[test]
fn a_handle_dials_over_tls_from_another_thread() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let client = spawn(config(500, 500), false, |_| None);
    let name = tls::server_name(NAME).expect("name");
    let id = client
        .handle
        .dial_tls(
            server.addr.expect("bound"),
            name,
            client_tls(&ca, None),
            None,
        )
        .expect("dialed");
    let (_, seen) = client
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected over TLS");
    assert_eq!(seen.id(), id);
    client.handle.send(id, &b"hi"[..]).expect("send");
    client
        .wait_for(ms(3000), |s| matches!(s, Seen::Message(_, m) if m == "hi"))
        .expect("echo");
}

#[test]
fn a_record_that_does_not_decrypt_ends_an_established_tls_link() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let mut raw = RawTls::connect(server.addr.expect("bound"), &ca);
    raw.send_frame(&Frame::Hello(Handshake::default()));
    server
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("server connected");
    // An application-data record of junk, straight onto the TCP stream.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend_from_slice(&[0x5A; 0x40]);
    raw.stream.sock.write_all(&record).expect("write");
    let (_, seen) = server
        .wait_for(ms(3000), |s| matches!(s, Seen::Disconnected(..)))
        .expect("the server ended the link");
    let Seen::Disconnected(_, reason) = seen else {
        unreachable!()
    };
    assert!(is_tls(&reason, TlsFailure::Other), "{reason:?}");
    let server = server.stop();
    assert_eq!(server.stats().closes.tls, 1);
}

#[test]
fn garbage_frames_inside_tls_get_close_1002_inside_tls() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let mut raw = RawTls::connect(server.addr.expect("bound"), &ca);
    raw.stream.write_all(&[0xFF; 32]).expect("write");
    raw.stream.flush().expect("flush");
    // CLOSE 1002 inside TLS, then close_notify: a clean TLS end.
    let (frames, clean_end) = raw.read_until_eof(ms(3000));
    assert!(
        matches!(&frames[..], [Frame::Close { code, .. }] if *code == CloseCode::PROTOCOL_ERROR || *code == CloseCode::TOO_LARGE),
        "{frames:?}"
    );
    assert!(clean_end.is_some(), "no close_notify after CLOSE");
    let server = server.stop();
    assert_eq!(server.stats().closes.protocol_error, 1);
    assert_eq!(server.stats().closes.tls, 0);
}

/// A client configuration for TLS 1.2 only.
fn tls12_client(ca: &Ca) -> Arc<ClientConfig> {
    let roots = tls::roots_from_pem(ca.pem.as_bytes()).expect("roots");
    let mut config = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&tls::rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![tls::ALPN.to_vec()];
    Arc::new(config)
}

#[test]
fn tls_1_2_only_where_configured() {
    init_logs();
    let ca = Ca::new("test CA");
    let leaf = ca.server(&[NAME]);
    // The helpers' server speaks TLS 1.3 only: a TLS 1.2 client is refused.
    let strict = tls_echo_server(config(500, 500), server_tls(&leaf, None));
    let old = tls_dialer(
        config(500, 500),
        strict.addr.expect("bound"),
        NAME,
        tls12_client(&ca),
    );
    assert_fails_with_backoff(&old, TlsFailure::PeerAlert);
    drop(old);
    let strict = strict.stop();
    assert!(strict.stats().closes.tls >= 1);
    // A server configured for TLS 1.2 as well takes it.
    let chain = tls::certs_from_pem(leaf.cert.as_bytes()).expect("chain");
    let key = tls::key_from_pem(leaf.key.as_bytes()).expect("key");
    let both = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(tls::rustls::ALL_VERSIONS)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    // (No ALPN set: listen_tls adds it.)
    let lenient = tls_echo_server(config(500, 500), Arc::new(both));
    let old = tls_dialer(
        config(500, 500),
        lenient.addr.expect("bound"),
        NAME,
        tls12_client(&ca),
    );
    let (_, seen) = old
        .wait_for(ms(3000), |s| matches!(s, Seen::Connected(..)))
        .expect("connected over TLS 1.2");
    old.handle.send(seen.id(), &b"1.2"[..]).expect("send");
    old.wait_for(ms(3000), |s| matches!(s, Seen::Message(_, m) if m == "1.2"))
        .expect("echo");
}

#[test]
fn a_thousand_slow_tls_handshakes_do_not_delay_a_good_client() {
    init_logs();
    let ca = Ca::new("test CA");
    let mut config = config(1000, 1000);
    config.handshake_timeout = ms(1500);
    let server = tls_echo_server(config, server_tls(&ca.server(&[NAME]), None));
    let addr = server.addr.expect("bound");
    let hello = client_hello(&ca);
    // 1 000 connections send the first 10 bytes of a ClientHello, then
    // one more byte per 200 ms.
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(&hello[..10]).expect("write");
            s
        })
        .collect();
    let trickler = std::thread::spawn(move || {
        for i in 10..15 {
            std::thread::sleep(ms(200));
            for s in &mut slow {
                let _ = s.write_all(&hello[i..=i]);
            }
        }
        slow
    });
    // Meanwhile a good client does the TLS handshake, HELLO and an echo
    // promptly.
    for _ in 0..5 {
        let start = Instant::now();
        let mut good = RawTls::connect(addr, &ca);
        good.send_frame(&Frame::Hello(Handshake::default()));
        assert!(matches!(good.next_frame(ms(2000)), Some(Frame::Welcome(_))));
        good.send_frame(&Frame::Data(Bytes::from_static(b"hi")));
        assert_eq!(
            good.next_frame(ms(2000)),
            Some(Frame::Data(Bytes::from_static(b"hi")))
        );
        assert!(
            start.elapsed() < ms(500),
            "a good client took {:?} among 1 000 slow ones",
            start.elapsed()
        );
        std::thread::sleep(ms(100));
    }
    let slow = trickler.join().expect("trickler");
    // All 1 000 are closed by the handshake timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(ms(200));
        let open = slow
            .iter()
            .filter(|s| {
                s.set_nonblocking(true).expect("nonblocking");
                let mut b = [0u8; 256];
                matches!((&**s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        if open == 0 || Instant::now() > deadline {
            assert_eq!(open, 0, "slow handshakes still open");
            break;
        }
    }
    let server = server.stop();
    assert_eq!(server.stats().closes.handshake_timeout, 1000);
}

#[test]
fn a_client_certificate_the_server_does_not_trust_fails_each_attempt() {
    init_logs();
    let ca = Ca::new("test CA");
    let client_ca = Ca::new("client CA");
    let stranger = Ca::new("stranger CA");
    let server = tls_echo_server(
        config(500, 500),
        server_tls(&ca.server(&[NAME]), Some(&client_ca)),
    );
    let client = tls_dialer(
        config(500, 500),
        server.addr.expect("bound"),
        NAME,
        client_tls(&ca, Some(&stranger.client())),
    );
    // The server refuses the certificate and says so in an alert.
    assert_fails_with_backoff(&client, TlsFailure::PeerAlert);
    drop(client);
    let server = server.stop();
    assert!(server.stats().closes.tls >= 1, "{:?}", server.stats());
}

#[test]
fn a_session_resumed_on_a_new_tls_socket_moves_with_its_tls_session() {
    init_logs();
    let ca = Ca::new("test CA");
    let server = tls_echo_server(config(500, 500), server_tls(&ca.server(&[NAME]), None));
    let addr = server.addr.expect("bound");
    let hello = |session_id: u64, recv_seq: u64| {
        Frame::Hello(Handshake {
            flags: Handshake::RESUME,
            session_id,
            recv_seq,
            ..Handshake::default()
        })
    };
    let mut old = RawTls::connect(addr, &ca);
    old.send_frame(&hello(0, 0));
    let session = match old.next_frame(ms(2000)) {
        Some(Frame::Welcome(w)) if w.has(Handshake::RESUME) => w.session_id,
        other => panic!("expected a resuming WELCOME, got {other:?}"),
    };
    old.send_frame(&Frame::Data(Bytes::from_static(b"one")));
    assert_eq!(
        old.next_frame(ms(2000)),
        Some(Frame::Data(Bytes::from_static(b"one")))
    );
    // The same session from a new TLS socket, the old one still open: the
    // new socket, and its TLS session, move to the connection holding it.
    let mut new = RawTls::connect(addr, &ca);
    new.send_frame(&hello(session, 1));
    match new.next_frame(ms(2000)) {
        Some(Frame::Welcome(w)) => {
            assert!(w.has(Handshake::RESUME));
            assert_eq!((w.session_id, w.recv_seq), (session, 1));
        }
        other => panic!("expected WELCOME, got {other:?}"),
    }
    // The old socket hears CLOSE 1001 inside its own TLS session, then
    // its close_notify.
    let (frames, clean_end) = old.read_until_eof(ms(2000));
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, Frame::Close { code, .. } if code.0 == 1001)),
        "{frames:?}"
    );
    assert!(clean_end.is_some(), "the old TLS socket ends cleanly");
    // The resumed socket carries on, its records read by its own session.
    new.send_frame(&Frame::Data(Bytes::from_static(b"two")));
    assert_eq!(
        new.next_frame(ms(2000)),
        Some(Frame::Data(Bytes::from_static(b"two")))
    );
    let server = server.stop();
    assert_eq!(server.stats().closes.tls, 0, "{:?}", server.stats());
}
