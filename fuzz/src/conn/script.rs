//! The script language of the connection target: a configuration, then
//! [`Op`]s, each a byte and its parameters. Any bytes are a valid script.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tether::proto::codec::{self, Handshake};
use tether::proto::conn::Role;
use tether::BackoffConfig;
use tether::{CloseCode, Config};
use tether::{PingFlood, MIN_STALL_TOLERANCE};

use super::super::input::Input;

/// Bytes of configuration at the start of every input.
pub const CONFIG_LEN: usize = 10;

const MAX_FRAMES: [usize; 8] = [0, 1, 8, 64, 200, 1000, 1 << 16, 1 << 20];
const MAX_OUTBOUNDS: [usize; 8] = [0, 13, 100, 500, 2000, 10_000, 1 << 16, 4 << 20];

/// One step of a script. The byte layout is `Op::write`'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The clock moves on by [`span`] of the byte; nothing is called.
    Advance(u8),
    /// The clock moves to `poll_timeout()` (if later), plus a lateness
    /// (0 for bytes below 128), and `handle_timeout` runs.
    FireDue(u8),
    /// `handle_timeout` at the current time (often early: harmless).
    Timeout,
    /// The peer queues a well-formed frame on the current socket.
    Peer(PeerFrame),
    /// The peer queues raw bytes on the current socket.
    Raw(Vec<u8>),
    /// Up to this many queued peer bytes arrive (0: all of them).
    Deliver(u8),
    /// The application sends a message of about this length.
    Send(u16),
    /// The application closes with a code selector and a reason length.
    Close(u8, u8),
    /// The TCP connect the client asked for completes.
    Connected,
    /// The TCP connect fails.
    ConnectFailed(u8),
    /// The peer closes its side of the stream.
    Eof,
    /// A read or write fails.
    IoError(u8),
    /// The socket would not take all the output.
    WriteBlocked,
    /// The driver writes up to this many bytes (0: all, in several writes).
    Transmit(u8),
    /// Client: `start`.
    Start,
    /// Shorthand: finish a pending connect, write everything, and have the
    /// peer answer with the right handshake frame, delivered at once.
    Handshake,
}

/// A well-formed frame from the peer, with two parameter bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// HELLO with flags and interval from the parameters.
    Hello(u8, u8),
    /// WELCOME with session id and interval from the parameters.
    Welcome(u8, u8),
    /// DATA of `a + 256 * (b % 4)` bytes.
    Data(u8, u8),
    /// PING with nonce `a b`.
    Ping(u8, u8),
    /// PONG echoing our last PING if `a` is even, else nonce `a b`.
    Pong(u8, u8),
    /// CLOSE with code `1000 + a % 16` and a reason of `b % 124` bytes.
    Close(u8, u8),
    /// ACK with count `a b`.
    Ack(u8, u8),
    /// The handshake frame our role expects (WELCOME for a client).
    Handshake(u8, u8),
}

impl PeerFrame {
    fn read(input: &mut Input<'_>) -> PeerFrame {
        let (k, a, b) = (input.u8(), input.u8(), input.u8());
        match k % 8 {
            0 => PeerFrame::Hello(a, b),
            1 => PeerFrame::Welcome(a, b),
            2 => PeerFrame::Data(a, b),
            3 => PeerFrame::Ping(a, b),
            4 => PeerFrame::Pong(a, b),
            5 => PeerFrame::Close(a, b),
            6 => PeerFrame::Ack(a, b),
            _ => PeerFrame::Handshake(a, b),
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        let (k, a, b) = match self {
            PeerFrame::Hello(a, b) => (0, a, b),
            PeerFrame::Welcome(a, b) => (1, a, b),
            PeerFrame::Data(a, b) => (2, a, b),
            PeerFrame::Ping(a, b) => (3, a, b),
            PeerFrame::Pong(a, b) => (4, a, b),
            PeerFrame::Close(a, b) => (5, a, b),
            PeerFrame::Ack(a, b) => (6, a, b),
            PeerFrame::Handshake(a, b) => (7, a, b),
        };
        out.extend_from_slice(&[k, a, b]);
    }

    pub(super) fn encode(self, role: Role, our_ping: Option<u64>, dst: &mut BytesMut) {
        let handshake = |session: u8, interval: u8| Handshake {
            flags: 0,
            interval_ms: u32::from(interval) * 10,
            timeout_ms: 1000,
            session_id: u64::from(session),
            recv_seq: 0,
        };
        let nonce = |a: u8, b: u8| u64::from(u16::from_be_bytes([a, b]));
        match self {
            PeerFrame::Hello(a, b) => codec::encode_hello(
                &Handshake {
                    flags: a,
                    ..handshake(0, b)
                },
                dst,
            ),
            PeerFrame::Welcome(a, b) => codec::encode_welcome(&handshake(a, b), dst),
            PeerFrame::Handshake(a, b) => match role {
                Role::Client => codec::encode_welcome(&handshake(a, b), dst),
                Role::Server => codec::encode_hello(&handshake(0, b), dst),
            },
            PeerFrame::Data(a, b) => {
                let len = usize::from(a) + 256 * usize::from(b % 4);
                codec::encode_data(&pattern(u64::from(a) << 8 | u64::from(b), len), dst)
            }
            PeerFrame::Ping(a, b) => codec::encode_ping(nonce(a, b), dst),
            PeerFrame::Pong(a, b) => match our_ping.filter(|_| a % 2 == 0) {
                Some(n) => codec::encode_pong(n, dst),
                None => codec::encode_pong(nonce(a, b), dst),
            },
            PeerFrame::Close(a, b) => {
                let reason = reason(usize::from(b % 124));
                codec::encode_close(CloseCode(1000 + u16::from(a % 16)), &reason, dst)
            }
            PeerFrame::Ack(a, b) => codec::encode_ack(nonce(a, b), dst),
        }
    }
}

impl Op {
    /// Reads the next op (any bytes are some op).
    pub fn read(input: &mut Input<'_>) -> Op {
        match input.u8() % 16 {
            0 => Op::Advance(input.u8()),
            1 => Op::FireDue(input.u8()),
            2 => Op::Timeout,
            3 => Op::Peer(PeerFrame::read(input)),
            4 => {
                let n = usize::from(input.u8() % 48);
                Op::Raw(input.bytes(n).to_vec())
            }
            5 => Op::Deliver(input.u8()),
            6 => Op::Send(input.u16()),
            7 => Op::Close(input.u8(), input.u8()),
            8 => Op::Connected,
            9 => Op::ConnectFailed(input.u8()),
            10 => Op::Eof,
            11 => Op::IoError(input.u8()),
            12 => Op::WriteBlocked,
            13 => Op::Transmit(input.u8()),
            14 => Op::Start,
            _ => Op::Handshake,
        }
    }

    /// Appends this op's bytes (the inverse of [`Op::read`]).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Op::Advance(b) => out.extend_from_slice(&[0, *b]),
            Op::FireDue(b) => out.extend_from_slice(&[1, *b]),
            Op::Timeout => out.push(2),
            Op::Peer(frame) => {
                out.push(3);
                frame.write(out);
            }
            Op::Raw(bytes) => {
                let bytes = &bytes[..bytes.len().min(47)];
                out.extend_from_slice(&[4, bytes.len() as u8]);
                out.extend_from_slice(bytes);
            }
            Op::Deliver(n) => out.extend_from_slice(&[5, *n]),
            Op::Send(len) => {
                out.push(6);
                out.extend_from_slice(&len.to_be_bytes());
            }
            Op::Close(code, len) => out.extend_from_slice(&[7, *code, *len]),
            Op::Connected => out.push(8),
            Op::ConnectFailed(k) => out.extend_from_slice(&[9, *k]),
            Op::Eof => out.push(10),
            Op::IoError(k) => out.extend_from_slice(&[11, *k]),
            Op::WriteBlocked => out.push(12),
            Op::Transmit(n) => out.extend_from_slice(&[13, *n]),
            Op::Start => out.push(14),
            Op::Handshake => out.push(15),
        }
    }
}

/// An input: a configuration and a script.
pub fn script(config: [u8; CONFIG_LEN], ops: &[Op]) -> Vec<u8> {
    let mut out = config.to_vec();
    for op in ops {
        op.write(&mut out);
    }
    out
}

/// Configuration byte 0: role and switches.
pub mod flags {
    /// The connection under test is a server (else a client).
    pub const SERVER: u8 = 1;
    /// No heartbeats.
    pub const NO_HEARTBEAT: u8 = 2;
    /// No ping-flood protection.
    pub const NO_PING_FLOOD: u8 = 4;
    /// No write-stall timeout.
    pub const NO_WRITE_STALL: u8 = 8;
    /// The backoff gives up after `byte 8 % 4` attempts.
    pub const MAX_ATTEMPTS: u8 = 16;
    /// ±20 % backoff jitter.
    pub const BACKOFF_JITTER: u8 = 32;
    /// A healthy period of `byte 1 × 4` ms.
    pub const HEALTHY_AFTER: u8 = 64;
    /// One duration (chosen by byte 9) is huge: `Duration::MAX` or
    /// `u64::MAX / 4` seconds. `Config::validate` accepts both.
    pub const HUGE_DURATION: u8 = 128;
}

/// The configuration the first [`CONFIG_LEN`] bytes choose, and the role;
/// `None` if `Config::validate` rejects it (only ever one with
/// [`flags::HUGE_DURATION`]).
///
/// | byte | meaning |
/// |------|---------|
/// | 0 | [`flags`] |
/// | 1 | heartbeat interval `10 + 8·b` ms |
/// | 2 | heartbeat timeout `10 + 8·b` ms |
/// | 3 | bits 0–2 `max_frame`, bits 3–5 `max_outbound` (tables), bits 6–7 ping-flood strikes |
/// | 4 | bits 0–3 stall tolerance `50·b` ms (at least `MIN_STALL_TOLERANCE`), bits 4–7 close linger `50·b` ms |
/// | 5 | handshake timeout `10 + 10·b` ms |
/// | 6 | connect timeout `10 + 10·b` ms |
/// | 7 | write-stall timeout `10 + 20·b` ms |
/// | 8 | backoff initial delay `10·b` ms (max 16×) |
/// | 9 | seed; with [`flags::HUGE_DURATION`], which duration is huge |
pub fn config(c: [u8; CONFIG_LEN]) -> Option<(Config, Role)> {
    let ms = |v: u8, mul: u64, add: u64| Duration::from_millis(add + u64::from(v) * mul);
    let f = c[0];
    let mut b = Config::builder()
        .max_frame(MAX_FRAMES[usize::from(c[3] & 7)])
        .max_outbound(MAX_OUTBOUNDS[usize::from(c[3] >> 3 & 7)])
        .stall_tolerance(ms(c[4] & 15, 50, 0).max(MIN_STALL_TOLERANCE))
        .close_linger(ms(c[4] >> 4, 50, 0))
        .handshake_timeout(ms(c[5], 10, 10))
        .connect_timeout(ms(c[6], 10, 10))
        .seed(u64::from(c[9]))
        // The scripts check the rules without resume (its handshake fields
        // and ACK counts included).
        .no_resume();
    b = if f & flags::NO_HEARTBEAT != 0 {
        b.no_heartbeat()
    } else {
        b.heartbeat(ms(c[1], 8, 10), ms(c[2], 8, 10))
    };
    b = b.ping_flood((f & flags::NO_PING_FLOOD == 0).then_some(PingFlood {
        min_interval: Duration::from_millis(100),
        max_strikes: u32::from(c[3] >> 6),
    }));
    b = b.write_stall_timeout((f & flags::NO_WRITE_STALL == 0).then(|| ms(c[7], 20, 10)));
    let initial = ms(c[8], 10, 0);
    let backoff = BackoffConfig {
        initial,
        multiplier: 2.0,
        max: initial * 16,
        jitter: if f & flags::BACKOFF_JITTER != 0 {
            0.2
        } else {
            0.0
        },
        max_attempts: (f & flags::MAX_ATTEMPTS != 0).then_some(u32::from(c[8] & 3)),
    };
    b = b.backoff(backoff);
    if f & flags::HEALTHY_AFTER != 0 {
        b = b.healthy_after(ms(c[1], 4, 0));
    }
    if f & flags::HUGE_DURATION != 0 {
        let huge = if c[9] & 8 != 0 {
            Duration::MAX
        } else {
            Duration::from_secs(u64::MAX / 4)
        };
        b = match c[9] % 8 {
            0 => b.handshake_timeout(huge),
            1 => b.connect_timeout(huge),
            2 => b.close_linger(huge),
            3 => b.write_stall_timeout(Some(huge)),
            4 => b.healthy_after(huge),
            5 => b.stall_tolerance(huge),
            6 => b.backoff(BackoffConfig {
                initial: huge,
                max: huge,
                ..backoff
            }),
            _ => b.backoff(BackoffConfig {
                max: huge,
                ..backoff
            }),
        };
    }
    let role = if f & flags::SERVER != 0 {
        Role::Server
    } else {
        Role::Client
    };
    match b.build() {
        Ok(config) => Some((config, role)),
        // The fix of `Bug::ConfigOverflow`: huge durations are refused.
        Err(_) if f & flags::HUGE_DURATION != 0 => None,
        Err(e) => panic!("a fuzz configuration is invalid: {e}"),
    }
}

/// A clock jump: 0–99 ms by 1, then to 2 s by 20 ms, then to 28 s by 0.5 s.
pub fn span(b: u8) -> Duration {
    let b = u64::from(b);
    Duration::from_millis(match b {
        0..=99 => b,
        100..=199 => (b - 99) * 20,
        _ => (b - 199) * 500,
    })
}

pub(super) fn lateness(b: u8) -> Duration {
    if b < 128 {
        Duration::ZERO
    } else {
        span(b - 128)
    }
}

/// Distinct, recognisable payload bytes: the tag, then a counter.
pub(super) fn pattern(tag: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = tag
        .to_be_bytes()
        .into_iter()
        .chain(0..=255)
        .cycle()
        .take(len)
        .collect();
    v.truncate(len);
    v
}

/// A UTF-8 reason of about `len` bytes, with two-byte characters so that a
/// cut at 123 bytes can fall inside one.
pub(super) fn reason(len: usize) -> String {
    "close é "
        .chars()
        .cycle()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= len).then_some(c)
        })
        .collect()
}

pub(super) fn io_kind(b: u8) -> io::ErrorKind {
    [
        io::ErrorKind::ConnectionRefused,
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::TimedOut,
        io::ErrorKind::Other,
    ][usize::from(b) % 5]
}
