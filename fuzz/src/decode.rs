//! Fuzzing the frame decoder: a byte stream fed in arbitrary splits.
//!
//! Input layout: `[max_frame selector, split mode, wire bytes...]`. The
//! wire bytes are appended to one buffer a chunk at a time (split mode 0:
//! all at once; 1: a byte at a time; n ≥ 2: chunks of 1..=n bytes drawn
//! from splitmix seeded with n), and after each chunk `Decoder::decode` is
//! called until it stops returning frames. Every call is checked against
//! [`model`], a non-incremental reading of the wire contract's table of
//! malformed input (`docs/PROTOCOL.md`, "Malformed input"):
//!
//! - it never panics;
//! - it returns exactly what the model says for the bytes present: the same
//!   frame and length, `Ok(None)`, or the same error, so errors are found as
//!   soon as the contract says they can be and the result does not depend
//!   on the split;
//! - `Ok(None)` and `Err` leave the buffer byte-for-byte unchanged;
//! - an `Err` carries close code 1002, or 1009 exactly for `TooLarge`;
//! - `Ok(Some(frame))` removed exactly `frame.encoded_len()` bytes, and the
//!   frame re-encodes to exactly those bytes (the codec documents one
//!   exception, a hand-built CLOSE reason that is too long or not UTF-8,
//!   which no decoded frame has; [`hand_built_frames`] checks that case);
//! - `pending_frame_len` agrees with the header and is at most
//!   `max_frame + 5`;
//! - a call allocates nothing larger than [`MAX_DECODE_ALLOC`] bytes, so
//!   nothing is reserved from an unvalidated length (a zero-copy split
//!   allocates one small shared header).

use bytes::{Bytes, BytesMut};
use tether::proto::codec::{DecodeError, Decoder, Frame, Handshake, Kind};
use tether::CloseCode;

use super::input::SplitMix;
use super::track;

/// The decoder limits the first input byte chooses from: edge cases around
/// the fixed payload sizes, the default, the largest a `Config` accepts, and
/// no limit at all.
pub const MAX_FRAMES: [usize; 10] = [
    0,
    1,
    8,
    30,
    64,
    125,
    1 << 10,
    1 << 20,
    u32::MAX as usize - 2,
    usize::MAX,
];

/// The largest single allocation one `decode` call may make.
pub const MAX_DECODE_ALLOC: usize = 256;

/// What the contract says the bytes at the front of a buffer are.
#[derive(Debug, PartialEq)]
pub enum Expect {
    /// Not a whole frame yet, and nothing wrong so far.
    More,
    /// A frame of this many bytes.
    Frame(Frame, usize),
    /// Malformed.
    Error(DecodeError),
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}

/// The header rules: `Ok(Some((kind, payload_len)))` once all five header
/// bytes are in and valid.
pub fn model_header(buf: &[u8], max_frame: usize) -> Result<Option<(Kind, u32)>, DecodeError> {
    let Some(length) = buf.get(..4).map(be_u32) else {
        return Ok(None);
    };
    if length == 0 {
        return Err(DecodeError::ZeroLength);
    }
    let Some(&byte) = buf.get(4) else {
        return Ok(None);
    };
    let kind = match byte {
        0x01 => Kind::Hello,
        0x02 => Kind::Welcome,
        0x03 => Kind::Data,
        0x04 => Kind::Ping,
        0x05 => Kind::Pong,
        0x06 => Kind::Close,
        0x07 => Kind::Ack,
        other => return Err(DecodeError::UnknownKind(other)),
    };
    let payload_len = length - 1;
    let size_ok = match kind {
        Kind::Hello | Kind::Welcome => payload_len == 30,
        Kind::Ping | Kind::Pong | Kind::Ack => payload_len == 8,
        Kind::Close => (2..=125).contains(&payload_len),
        Kind::Data if u64::from(payload_len) > max_frame as u64 => {
            return Err(DecodeError::TooLarge {
                payload_len,
                max: max_frame,
            })
        }
        Kind::Data => true,
    };
    if !size_ok {
        return Err(DecodeError::BadLength { kind, payload_len });
    }
    Ok(Some((kind, payload_len)))
}

/// The contract, read without any incremental state: what the bytes at the
/// front of `buf` are.
pub fn model(buf: &[u8], max_frame: usize) -> Expect {
    let (kind, payload_len) = match model_header(buf, max_frame) {
        Err(e) => return Expect::Error(e),
        Ok(None) => return Expect::More,
        Ok(Some(header)) => header,
    };
    let end = 5 + payload_len as usize;
    let body = &buf[5..buf.len().min(end)];
    if matches!(kind, Kind::Hello | Kind::Welcome) {
        // Magic and version are judged as their bytes arrive.
        let n = body.len().min(4);
        if body[..n] != b"TTHR"[..n] {
            return Expect::Error(DecodeError::BadMagic);
        }
        if let Some(&version) = body.get(4).filter(|&&v| v != 1) {
            return Expect::Error(DecodeError::BadVersion(version));
        }
    }
    if buf.len() < end {
        return Expect::More;
    }
    let handshake = || Handshake {
        flags: body[5],
        interval_ms: be_u32(&body[6..10]),
        timeout_ms: be_u32(&body[10..14]),
        session_id: be_u64(&body[14..22]),
        recv_seq: be_u64(&body[22..30]),
    };
    let frame = match kind {
        Kind::Hello => Frame::Hello(handshake()),
        Kind::Welcome => Frame::Welcome(handshake()),
        Kind::Data => Frame::Data(Bytes::copy_from_slice(body)),
        Kind::Ping => Frame::Ping(be_u64(body)),
        Kind::Pong => Frame::Pong(be_u64(body)),
        Kind::Ack => Frame::Ack(be_u64(body)),
        Kind::Close => {
            if std::str::from_utf8(&body[2..]).is_err() {
                return Expect::Error(DecodeError::BadUtf8);
            }
            Frame::Close {
                code: CloseCode(u16::from_be_bytes([body[0], body[1]])),
                reason: Bytes::copy_from_slice(&body[2..]),
            }
        }
    };
    Expect::Frame(frame, end)
}

/// Runs one input; panics with the broken invariant.
pub fn run(data: &[u8]) {
    let [selector, split, wire @ ..] = data else {
        return;
    };
    let max_frame = MAX_FRAMES[usize::from(*selector) % MAX_FRAMES.len()];
    let decoder = Decoder::new(max_frame);
    assert_eq!(decoder.max_frame(), max_frame);
    let mut rng = SplitMix(u64::from(*split));
    let mut buf = BytesMut::new();
    let mut fed = 0;
    track::take_largest();
    while fed < wire.len() {
        let n = match split {
            0 => wire.len(),
            1 => 1,
            &n => 1 + rng.below(usize::from(n)),
        };
        let chunk = &wire[fed..wire.len().min(fed + n)];
        fed += chunk.len();
        buf.extend_from_slice(chunk);
        if !drain(&decoder, &mut buf) {
            break;
        }
    }
    hand_built_frames(wire);
}

/// Decodes until the decoder wants more bytes (true) or rejects them
/// (false), checking every call.
fn drain(decoder: &Decoder, buf: &mut BytesMut) -> bool {
    let max_frame = decoder.max_frame();
    loop {
        let before = buf.to_vec();
        let expect = model(&before, max_frame);
        check_pending_len(decoder, &before);
        let got = {
            let _scope = track::enter();
            decoder.decode(buf)
        };
        let largest = track::take_largest();
        assert!(
            largest <= MAX_DECODE_ALLOC,
            "decode allocated {largest} bytes at once (buffer of {} bytes)",
            before.len()
        );
        match (got, expect) {
            (Ok(None), Expect::More) => {
                assert_eq!(&buf[..], &before[..], "Ok(None) changed the buffer");
                return true;
            }
            (Err(e), Expect::Error(want)) => {
                assert_eq!(e, want, "wrong error for {before:02x?}");
                assert_eq!(&buf[..], &before[..], "Err changed the buffer");
                let code = e.close_code();
                let want_code = match e {
                    DecodeError::TooLarge { .. } => CloseCode::TOO_LARGE,
                    _ => CloseCode::PROTOCOL_ERROR,
                };
                assert_eq!(code, want_code, "close code of {e:?}");
                assert!(!e.detail().is_empty() && !e.to_string().is_empty());
                return false;
            }
            (Ok(Some(frame)), Expect::Frame(want, len)) => {
                assert_eq!(frame, want, "wrong frame from {before:02x?}");
                assert_eq!(&buf[..], &before[len..], "consumed other than one frame");
                assert_eq!(frame.encoded_len(), len, "encoded_len of {frame:?}");
                let mut again = BytesMut::new();
                frame.encode(&mut again);
                assert_eq!(
                    &again[..],
                    &before[..len],
                    "{frame:?} re-encodes differently"
                );
                if let Frame::Data(payload) = &frame {
                    assert!(payload.len() <= max_frame);
                }
            }
            (got, expect) => {
                panic!("decode({before:02x?}) with max_frame {max_frame} gave {got:?}, the contract says {expect:?}")
            }
        }
    }
}

/// `pending_frame_len` vouches for exactly the headers `decode` accepts,
/// with their true length: never above `max_frame + 5`, or 130 (the
/// longest CLOSE) when `max_frame` is smaller than a control frame.
fn check_pending_len(decoder: &Decoder, buf: &[u8]) {
    let max_frame = decoder.max_frame();
    let want = match model_header(buf, max_frame) {
        Ok(Some((_, payload_len))) => Some(5 + payload_len as usize),
        _ => None,
    };
    let got = decoder.pending_frame_len(buf);
    assert_eq!(got, want, "pending_frame_len of {buf:02x?}");
    if let Some(len) = got {
        assert!(len <= max_frame.saturating_add(5).max(130));
    }
}

/// Frames built by hand from the input: DATA round-trips exactly; a CLOSE
/// reason is sent as its longest valid UTF-8 prefix of at most 123 bytes,
/// as `Frame::close_reason` documents.
fn hand_built_frames(wire: &[u8]) {
    let decoder = Decoder::new(wire.len());
    let data = Frame::Data(Bytes::copy_from_slice(wire));
    let mut buf = BytesMut::new();
    data.encode(&mut buf);
    assert_eq!(buf.len(), data.encoded_len());
    assert_eq!(decoder.decode(&mut buf), Ok(Some(data)));
    assert!(buf.is_empty());

    let code = CloseCode(u16::from_be_bytes([
        wire.first().copied().unwrap_or(0),
        wire.get(1).copied().unwrap_or(0),
    ]));
    let reason = Bytes::copy_from_slice(wire.get(2..).unwrap_or_default());
    let close = Frame::Close { code, reason };
    let text = close
        .close_reason()
        .expect("a CLOSE has a reason")
        .to_owned();
    let sent = text.len().min(123);
    let mut cut = sent;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    close.encode(&mut buf);
    assert_eq!(buf.len(), close.encoded_len());
    let decoded = Decoder::new(0).decode(&mut buf);
    assert_eq!(
        decoded,
        Ok(Some(Frame::Close {
            code,
            reason: Bytes::copy_from_slice(&text.as_bytes()[..cut]),
        }))
    );
}
