//! The wire contract as the load generator and the two baselines speak it:
//! a header check that finds the next whole frame in a byte slice, and
//! encoders that append frames to any `BufMut` (`Vec<u8>`, `BytesMut`).
//!
//! Written by hand on purpose (the way a baseline would be), with tether's
//! own constants so that the three servers and the generator agree on
//! every byte. The checks are those of `wire-protocol.md`: length 0, an
//! unknown kind or a fixed-size kind of the wrong size is a protocol error
//! (1002), a DATA payload above `max_frame` is 1009.

use bytes::BufMut;
use tether::proto::codec::{HANDSHAKE_LEN, HEADER_LEN, MAGIC, VERSION};

pub const HELLO: u8 = 0x01;
pub const WELCOME: u8 = 0x02;
pub const DATA: u8 = 0x03;
pub const PING: u8 = 0x04;
pub const PONG: u8 = 0x05;
pub const CLOSE: u8 = 0x06;
pub const ACK: u8 = 0x07;

/// The default `max_frame` of the contract (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes of a HELLO or WELCOME frame on the wire.
pub const HANDSHAKE_FRAME: usize = HEADER_LEN + HANDSHAKE_LEN;

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_TOO_LARGE: u16 = 1009;

/// What lies at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole frame of this kind, `len` bytes including its header.
    Frame { kind: u8, len: usize },
    /// Not a whole frame yet (the header, if present, is valid).
    Partial,
    /// A protocol error: close with this code.
    Error(u16),
}

/// Finds the frame at the front of `buf`, validating its header as soon
/// as the 5 header bytes are present.
#[inline]
pub fn next_frame(buf: &[u8], max_frame: usize) -> Next {
    if buf.len() < HEADER_LEN {
        if buf.len() >= 4 && buf[..4] == [0, 0, 0, 0] {
            return Next::Error(CLOSE_PROTOCOL);
        }
        return Next::Partial;
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let kind = buf[4];
    if length == 0 {
        return Next::Error(CLOSE_PROTOCOL);
    }
    let payload = length - 1;
    let ok = match kind {
        HELLO | WELCOME => payload == HANDSHAKE_LEN,
        DATA => {
            if payload > max_frame {
                return Next::Error(CLOSE_TOO_LARGE);
            }
            true
        }
        PING | PONG | ACK => payload == 8,
        CLOSE => (2..=125).contains(&payload),
        _ => false,
    };
    if !ok {
        return Next::Error(CLOSE_PROTOCOL);
    }
    let len = 4 + length;
    if buf.len() < len {
        Next::Partial
    } else {
        Next::Frame { kind, len }
    }
}

/// True if a whole HELLO/WELCOME frame carries the right magic and version.
pub fn handshake_ok(frame: &[u8]) -> bool {
    frame.len() == HANDSHAKE_FRAME
        && frame[HEADER_LEN..HEADER_LEN + 4] == MAGIC
        && frame[HEADER_LEN + 4] == VERSION
}

/// The `u64` of a whole PING/PONG frame.
#[inline]
pub fn nonce(frame: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&frame[HEADER_LEN..HEADER_LEN + 8]);
    u64::from_be_bytes(b)
}

/// Appends a HELLO (`kind` = [`HELLO`]) or WELCOME frame with `flags`
/// (RESUME = 1).
pub fn put_handshake(
    out: &mut impl BufMut,
    kind: u8,
    flags: u8,
    interval_ms: u32,
    timeout_ms: u32,
    session: u64,
) {
    out.put_u32(1 + HANDSHAKE_LEN as u32);
    out.put_u8(kind);
    out.put_slice(&MAGIC);
    out.put_u8(VERSION);
    out.put_u8(flags);
    out.put_u32(interval_ms);
    out.put_u32(timeout_ms);
    out.put_u64(session);
    out.put_u64(0);
}

/// Appends a PING or PONG (`kind`) with `nonce`.
#[inline]
pub fn put_heartbeat(out: &mut impl BufMut, kind: u8, nonce: u64) {
    out.put_u32(9);
    out.put_u8(kind);
    out.put_u64(nonce);
}

/// Appends the header of a DATA frame whose payload is `len` bytes.
#[inline]
pub fn put_data_header(out: &mut impl BufMut, len: usize) {
    out.put_u32(len as u32 + 1);
    out.put_u8(DATA);
}

/// Appends a CLOSE frame with `code` and no reason.
pub fn put_close(out: &mut impl BufMut, code: u16) {
    out.put_u32(3);
    out.put_u8(CLOSE);
    out.put_u16(code);
}

/// Checks these encoders against tether's codec (run by the smoke test:
/// a harness-less bench target has no `#[test]`s).
pub fn self_check() -> Result<(), String> {
    use bytes::BytesMut;
    let mut ours = Vec::new();
    put_heartbeat(&mut ours, PING, 7);
    put_data_header(&mut ours, 2);
    ours.extend_from_slice(b"hi");
    put_handshake(&mut ours, HELLO, 0, 1000, 2000, 0);
    let mut theirs = BytesMut::new();
    tether::proto::codec::encode_ping(7, &mut theirs);
    tether::proto::codec::encode_data(b"hi", &mut theirs);
    let hs = tether::proto::codec::Handshake {
        interval_ms: 1000,
        timeout_ms: 2000,
        ..Default::default()
    };
    tether::proto::codec::encode_hello(&hs, &mut theirs);
    if ours[..] != theirs[..] {
        return Err(format!("encoders disagree: {ours:?} vs {:?}", &theirs[..]));
    }
    let first = next_frame(&ours, MAX_FRAME);
    if first
        != (Next::Frame {
            kind: PING,
            len: 13,
        })
    {
        return Err(format!("next_frame: {first:?}"));
    }
    if !handshake_ok(&ours[20..]) {
        return Err("handshake_ok rejects a HELLO".into());
    }
    Ok(())
}
