//! Shared helpers for the loopback integration tests: reactors on their own
//! threads reporting every event through a channel, and raw peers that
//! speak the wire protocol by hand.
#![allow(dead_code)] // each test binary uses its own subset

pub mod numbered;
mod rng;

#[allow(unused_imports)] // not every test binary draws random numbers
pub use rng::Rng;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tether::proto::codec::{self, Decoder, Frame, Handshake};
use tether::BackoffConfig;
use tether::{
    Config, ConnId, Context, DisconnectReason, Handle, Handler, Message, PeerInfo, Reactor,
};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A reactor with `config` listening on a fresh loopback port: the
/// reactor, the address it listens on, and its handle.
pub fn listening(config: Config) -> (Reactor, SocketAddr, Handle) {
    let mut reactor = Reactor::with_config(config).expect("reactor");
    let l = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let addr = reactor.local_addr(l).expect("bound");
    let handle = reactor.handle();
    (reactor, addr, handle)
}

pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A config with heartbeat `i`/`t` ms and a fast, jitter-free backoff.
pub fn config(i: u64, t: u64) -> Config {
    Config::builder()
        .heartbeat(ms(i), ms(t))
        .handshake_timeout(ms(1000))
        .connect_timeout(ms(1000))
        .backoff(BackoffConfig {
            initial: ms(50),
            multiplier: 2.0,
            max: ms(400),
            jitter: 0.0,
            max_attempts: None,
        })
        .build()
        .expect("valid test config")
}

/// Something a handler saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Connected(ConnId, PeerInfo),
    Message(ConnId, Bytes),
    Disconnected(ConnId, DisconnectReason),
    Reconnecting(ConnId, u32, Duration, DisconnectReason),
    GaveUp(ConnId, u32),
}

impl Seen {
    pub fn id(&self) -> ConnId {
        match self {
            Seen::Connected(id, _)
            | Seen::Message(id, _)
            | Seen::Disconnected(id, _)
            | Seen::Reconnecting(id, ..)
            | Seen::GaveUp(id, _) => *id,
        }
    }
}

/// Reports every event on a channel; optionally echoes messages back.
pub struct Recorder {
    pub tx: Sender<(Instant, Seen)>,
    pub echo: bool,
}

impl Recorder {
    fn report(&self, seen: Seen) {
        let _ = self.tx.send((Instant::now(), seen));
    }
}

impl Handler for Recorder {
    fn on_connected(&mut self, _: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        self.report(Seen::Connected(id, *peer));
    }
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let message = message.into_bytes();
        if self.echo {
            // A message can arrive in the same read as the peer's CLOSE;
            // then the echo is refused as not connected, which is right.
            if let Err(e) = cx.send(id, message.clone()) {
                assert_eq!(
                    e,
                    tether::proto::conn::SendError::NotConnected,
                    "echo refused"
                );
            }
        }
        self.report(Seen::Message(id, message));
    }
    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        self.report(Seen::Disconnected(id, reason.clone()));
    }
    fn on_reconnecting(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        attempt: u32,
        delay: Duration,
        reason: &DisconnectReason,
    ) {
        self.report(Seen::Reconnecting(id, attempt, delay, reason.clone()));
    }
    fn on_gave_up(&mut self, _: &mut Context<'_>, id: ConnId, attempts: u32, _: &DisconnectReason) {
        self.report(Seen::GaveUp(id, attempts));
    }
}

/// A reactor running on its own thread.
pub struct Running {
    pub handle: Handle,
    pub events: Receiver<(Instant, Seen)>,
    pub addr: Option<SocketAddr>,
    pub thread: Option<JoinHandle<Reactor>>,
}

impl Running {
    /// Waits for an event matching `pred`, up to `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&Seen) -> bool,
    ) -> Option<(Instant, Seen)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((at, seen)) if pred(&seen) => return Some((at, seen)),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every event that arrives within `d`.
    pub fn collect_for(&self, d: Duration) -> Vec<(Instant, Seen)> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while let Ok(e) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(e);
        }
        out
    }

    /// Shuts the reactor down and returns it (for its stats).
    pub fn stop(mut self) -> Reactor {
        self.handle.shutdown().expect("reactor alive");
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("reactor thread panicked")
    }
}

/// Starts a reactor on its own thread; `setup` runs on the reactor before
/// the loop (listen, dial).
pub fn spawn(
    config: Config,
    echo: bool,
    setup: impl FnOnce(&mut Reactor) -> Option<SocketAddr> + Send + 'static,
) -> Running {
    let (tx, events) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut reactor = Reactor::with_config(config).expect("reactor");
        let addr = setup(&mut reactor);
        ready_tx
            .send((reactor.handle(), addr))
            .expect("test thread waiting");
        let mut handler = Recorder { tx, echo };
        reactor.run(&mut handler).expect("reactor run");
        reactor
    });
    let (handle, addr) = ready_rx.recv().expect("reactor started");
    Running {
        handle,
        events,
        addr,
        thread: Some(thread),
    }
}

/// An echo server on a free loopback port (or `addr`).
pub fn echo_server(config: Config, addr: Option<SocketAddr>) -> Running {
    let addr = addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
    spawn(config, true, move |r| {
        let l = r.listen(addr).expect("listen");
        r.local_addr(l)
    })
}

/// A client reactor on its own thread with one link dialled to `addr`.
pub fn dialer(config: Config, addr: SocketAddr) -> Running {
    spawn(config, false, move |r| {
        r.dial(addr);
        None
    })
}

/// An echo server and a client reactor with one link to it, both with
/// heartbeat `i`/`t` ms.
pub fn echo_pair(i: u64, t: u64) -> (Running, Running) {
    let server = echo_server(config(i, t), None);
    let client = dialer(config(i, t), server.addr.expect("bound"));
    (server, client)
}

/// A raw peer speaking the wire protocol by hand over a blocking socket.
pub struct RawPeer {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl RawPeer {
    pub fn connect(addr: SocketAddr) -> RawPeer {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawPeer::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> RawPeer {
        RawPeer {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(1 << 20),
        }
    }

    pub fn send_frame(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.stream.write_all(&out).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn hello(&mut self, interval_ms: u32, timeout_ms: u32) {
        self.send_frame(&Frame::Hello(Handshake {
            interval_ms,
            timeout_ms,
            ..Handshake::default()
        }));
    }

    /// The next frame, or None at EOF / error / `limit`.
    pub fn next_frame(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => return Some(frame),
                Ok(None) => {}
                Err(e) => panic!("peer sent a malformed frame: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until EOF (or `limit`); returns them and whether EOF
    /// (or a reset) was seen.
    pub fn read_until_eof(&mut self, limit: Duration) -> (Vec<(Instant, Frame)>, Option<Instant>) {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            while let Ok(Some(frame)) = self.decoder.decode(&mut self.buf) {
                frames.push((Instant::now(), frame));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (frames, None);
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return (frames, Some(Instant::now())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return (frames, Some(Instant::now())),
            }
        }
    }
}

/// Encodes one frame into bytes.
pub fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

/// A loopback address nothing listens on (bound, then released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Encodes a HELLO with these values (for tests that inspect bytes).
pub fn hello_bytes(interval_ms: u32, timeout_ms: u32) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec::encode_hello(
        &Handshake {
            interval_ms,
            timeout_ms,
            ..Handshake::default()
        },
        &mut out,
    );
    out.to_vec()
}

/// Turns `reactor` with `handler` until `done` says so, failing after 5 s.
pub fn turn_until<H: Handler>(
    reactor: &mut Reactor,
    handler: &mut H,
    mut done: impl FnMut(&H) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(handler) {
        assert!(Instant::now() < deadline, "not within 5 s");
        reactor
            .poll_once(handler, Some(Duration::from_millis(10)))
            .expect("poll");
    }
}
