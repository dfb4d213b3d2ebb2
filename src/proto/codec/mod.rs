//! The byte-exact frame codec of wire protocol version 1.
//!
//! Every frame on a tether stream is
//!
//! ```text
//! +-------------------+-----------+---------------------------+
//! | length: u32 (BE)  | kind: u8  | payload: length - 1 bytes |
//! +-------------------+-----------+---------------------------+
//! ```
//!
//! This module turns [`Frame`]s into those bytes (the free `encode_*`
//! functions write straight into the caller's [`BytesMut`]) and turns a read
//! buffer back into frames, one at a time, with the incremental [`Decoder`].
//! It is pure: no I/O, no clock, no state between calls beyond the bytes the
//! caller keeps in its buffer.
//!
//! The decoder sits directly behind the socket, so everything it reads is
//! untrusted. It must never:
//!
//! - panic, whatever bytes arrive;
//! - buffer, wait for, or reserve room for a frame it is going to reject: the
//!   header (length and kind) is validated as soon as its 5 bytes are
//!   present, so an oversized or malformed length is refused before a single
//!   payload byte is needed;
//! - copy a payload: DATA payloads and CLOSE reasons are split off the read
//!   buffer as [`Bytes`] that share its memory.
//!
//! Each [`DecodeError`] maps to the close code the connection sends before it
//! closes: 1009 for an oversized DATA frame, 1002 for everything else.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::error::CloseCode;

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::{Decoder, InPlace};
pub use encode::{
    data_header, encode_ack, encode_close, encode_data, encode_hello, encode_ping, encode_pong,
    encode_welcome,
};

/// Bytes of a frame header: the `u32` length followed by the `u8` kind.
pub const HEADER_LEN: usize = 5;

/// Bytes of a HELLO or WELCOME payload.
pub const HANDSHAKE_LEN: usize = 30;

/// Bytes of a PING or PONG frame on the wire (header + `u64` nonce).
pub const HEARTBEAT_FRAME_LEN: usize = HEADER_LEN + U64_LEN;

/// The magic that opens every HELLO and WELCOME payload.
pub const MAGIC: [u8; 4] = *b"TTHR";

/// The protocol version this codec speaks.
pub const VERSION: u8 = 1;

/// The longest CLOSE reason, in bytes of UTF-8 (a CLOSE payload is the
/// `u16` code plus at most this many bytes: 125 in all).
pub const MAX_CLOSE_REASON: usize = 123;

/// Payload length of the kinds that carry one `u64` (PING, PONG, ACK).
const U64_LEN: usize = 8;
/// Bytes of the close code at the start of a CLOSE payload.
const CLOSE_CODE_LEN: usize = 2;
/// Wire length of a HELLO or WELCOME frame.
const HANDSHAKE_FRAME_LEN: usize = HEADER_LEN + HANDSHAKE_LEN;

/// The kind byte that follows the length of every frame.
///
/// ```
/// use tether::proto::codec::Kind;
/// assert_eq!(Kind::from_u8(0x04), Some(Kind::Ping));
/// assert_eq!(Kind::Ping as u8, 0x04);
/// assert_eq!(Kind::from_u8(0x08), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// 0x01: the client's opening handshake.
    Hello = 0x01,
    /// 0x02: the server's answer to HELLO.
    Welcome = 0x02,
    /// 0x03: an application message.
    Data = 0x03,
    /// 0x04: a heartbeat probe carrying a nonce.
    Ping = 0x04,
    /// 0x05: the answer to a PING, echoing its nonce.
    Pong = 0x05,
    /// 0x06: a close code and a UTF-8 reason; nothing follows it.
    Close = 0x06,
    /// 0x07: reserved for session resume, a count of DATA frames received.
    Ack = 0x07,
}

impl Kind {
    /// The kind with wire byte `b`, or `None` if protocol version 1 defines
    /// no such kind.
    #[inline]
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::Hello,
            0x02 => Kind::Welcome,
            0x03 => Kind::Data,
            0x04 => Kind::Ping,
            0x05 => Kind::Pong,
            0x06 => Kind::Close,
            0x07 => Kind::Ack,
            _ => return None,
        })
    }
}

/// The payload of HELLO and WELCOME.
///
/// The magic (`TTHR`) and the version (1) are implicit: the encoder always
/// writes them and the decoder rejects any other value, so they are not
/// fields here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshake {
    /// Extension flags ([`Handshake::RESUME`], [`Handshake::LIVENESS`]);
    /// unknown bits are 0 when sent and kept as received (receivers ignore
    /// them).
    pub flags: u8,
    /// The sender's heartbeat interval, in milliseconds.
    pub interval_ms: u32,
    /// The sender's heartbeat timeout, in milliseconds.
    pub timeout_ms: u32,
    /// HELLO: 0 for a new session. WELCOME: the id the server assigned.
    pub session_id: u64,
    /// DATA frames received so far in this session (0 until resume exists).
    pub recv_seq: u64,
}

impl Handshake {
    /// Flag bit 0: HELLO: the client wants session resume; WELCOME: the
    /// server holds this session for resume.
    pub const RESUME: u8 = 0x01;
    /// Flag bit 1: HELLO: the client will adopt the liveness the server
    /// sets; WELCOME: `interval_ms`/`timeout_ms` are the client's own.
    pub const LIVENESS: u8 = 0x02;

    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// One decoded frame, or one to encode.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use tether::proto::codec::{Decoder, Frame, Kind};
///
/// let frame = Frame::Data(Bytes::from_static(b"hi"));
/// let mut buf = BytesMut::new();
/// frame.encode(&mut buf);
/// assert_eq!(&buf[..], &[0, 0, 0, 3, 0x03, b'h', b'i']);
/// assert_eq!(buf.len(), frame.encoded_len());
/// assert_eq!(frame.kind(), Kind::Data);
///
/// let decoded = Decoder::new(1 << 20).decode(&mut buf).unwrap();
/// assert_eq!(decoded, Some(frame));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The client's opening handshake.
    Hello(Handshake),
    /// The server's answer to HELLO.
    Welcome(Handshake),
    /// An application message (possibly empty).
    Data(Bytes),
    /// A heartbeat probe with its nonce.
    Ping(u64),
    /// The answer to the PING with this nonce.
    Pong(u64),
    /// The last frame an endpoint sends.
    ///
    /// `reason` is guaranteed valid UTF-8 of at most 123 bytes when
    /// decoded. When encoding, a longer or invalid reason is cut to its
    /// longest valid prefix of at most 123 bytes (see
    /// [`Frame::close_reason`]).
    Close {
        /// The close code.
        code: CloseCode,
        /// The UTF-8 reason, possibly empty.
        reason: Bytes,
    },
    /// Reserved for session resume: the count of DATA frames received.
    Ack(u64),
}

impl Frame {
    /// The kind byte this frame is sent with.
    #[inline]
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello(_) => Kind::Hello,
            Frame::Welcome(_) => Kind::Welcome,
            Frame::Data(_) => Kind::Data,
            Frame::Ping(_) => Kind::Ping,
            Frame::Pong(_) => Kind::Pong,
            Frame::Close { .. } => Kind::Close,
            Frame::Ack(_) => Kind::Ack,
        }
    }

    /// Bytes this frame takes on the wire: header plus payload. Exactly what
    /// [`Frame::encode`] appends.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Hello(_) | Frame::Welcome(_) => HANDSHAKE_FRAME_LEN,
            Frame::Data(payload) => HEADER_LEN + payload.len(),
            Frame::Ping(_) | Frame::Pong(_) | Frame::Ack(_) => HEADER_LEN + U64_LEN,
            Frame::Close { reason, .. } => HEADER_LEN + CLOSE_CODE_LEN + wire_reason(reason).len(),
        }
    }

    /// Appends this frame's wire bytes to `dst`, reserving exactly
    /// [`Frame::encoded_len`] bytes once.
    ///
    /// # Panics
    ///
    /// If a DATA payload is 2³² − 1 bytes or longer, which no `u32` length
    /// can describe (see [`encode_data`]).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tether::proto::codec::Frame;
    ///
    /// let mut buf = BytesMut::new();
    /// Frame::Ping(0x0102_0304_0506_0708).encode(&mut buf);
    /// assert_eq!(&buf[..], &[0, 0, 0, 9, 0x04, 1, 2, 3, 4, 5, 6, 7, 8]);
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Hello(hs) => encode_hello(hs, dst),
            Frame::Welcome(hs) => encode_welcome(hs, dst),
            Frame::Data(payload) => encode_data(payload, dst),
            Frame::Ping(nonce) => encode_ping(*nonce, dst),
            Frame::Pong(nonce) => encode_pong(*nonce, dst),
            Frame::Close { code, reason } => encode_close(*code, wire_reason(reason), dst),
            Frame::Ack(count) => encode_ack(*count, dst),
        }
    }

    /// The reason of a CLOSE frame as text; `None` for every other kind.
    ///
    /// A decoded reason is always valid UTF-8. For a `Frame::Close` built
    /// by hand whose reason is not, this is its longest valid prefix, which
    /// is also what [`Frame::encode`] sends (cut to 123 bytes).
    pub fn close_reason(&self) -> Option<&str> {
        match self {
            Frame::Close { reason, .. } => Some(valid_prefix(reason)),
            _ => None,
        }
    }
}

/// The reason a `Frame::Close` sends: the longest valid UTF-8 prefix of at
/// most [`MAX_CLOSE_REASON`] bytes. Looking at those bytes only keeps
/// [`Frame::encoded_len`] cheap even for a huge hand-built reason; it gives
/// the same text as cutting the whole valid prefix at a char boundary.
fn wire_reason(reason: &[u8]) -> &str {
    valid_prefix(&reason[..reason.len().min(MAX_CLOSE_REASON)])
}

/// The longest prefix of `bytes` that is valid UTF-8 (all of it, normally).
fn valid_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        // `valid_up_to` is by definition the end of a valid prefix, so the
        // fallback is unreachable; it only avoids an `unwrap`.
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// Why the bytes at the front of a read buffer are not a valid frame.
///
/// Every variant is fatal to the connection: send CLOSE with
/// [`DecodeError::close_code`] and close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length field is 0 (it must count at least the kind byte).
    ZeroLength,
    /// The kind byte names no frame kind of this protocol version.
    UnknownKind(u8),
    /// A fixed-size kind (HELLO, WELCOME: 30 bytes; PING, PONG, ACK: 8)
    /// came with another payload size, or a CLOSE payload is not 2..=125
    /// bytes.
    BadLength {
        /// The kind of the offending frame.
        kind: Kind,
        /// Its payload length (`length - 1`).
        payload_len: u32,
    },
    /// A DATA payload is larger than the decoder's `max_frame`.
    TooLarge {
        /// The announced payload length (`length - 1`).
        payload_len: u32,
        /// The decoder's limit.
        max: usize,
    },
    /// A HELLO or WELCOME payload does not start with `TTHR`.
    BadMagic,
    /// A HELLO or WELCOME announces a protocol version other than 1.
    BadVersion(u8),
    /// A CLOSE reason is not valid UTF-8.
    BadUtf8,
}

impl DecodeError {
    /// The close code to send before closing: [`CloseCode::TOO_LARGE`]
    /// (1009) for an oversized frame, [`CloseCode::PROTOCOL_ERROR`] (1002)
    /// for everything else.
    pub fn close_code(&self) -> CloseCode {
        match self {
            DecodeError::TooLarge { .. } => CloseCode::TOO_LARGE,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short static description, for logs and
    /// `DisconnectReason::ProtocolError`.
    pub fn detail(&self) -> &'static str {
        match self {
            DecodeError::ZeroLength => "zero frame length",
            DecodeError::UnknownKind(_) => "unknown frame kind",
            DecodeError::BadLength { .. } => "wrong payload length for frame kind",
            DecodeError::TooLarge { .. } => "frame too large",
            DecodeError::BadMagic => "bad handshake magic",
            DecodeError::BadVersion(_) => "unsupported protocol version",
            DecodeError::BadUtf8 => "close reason is not valid UTF-8",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail();
        match *self {
            DecodeError::UnknownKind(b) => write!(f, "{detail} 0x{b:02x}"),
            DecodeError::BadLength { kind, payload_len } => {
                write!(f, "{detail}: {kind:?} with {payload_len} payload bytes")
            }
            DecodeError::TooLarge { payload_len, max } => {
                write!(f, "{detail}: {payload_len} payload bytes, max {max}")
            }
            DecodeError::BadVersion(v) => write!(f, "{detail} {v}"),
            _ => f.write_str(detail),
        }
    }
}

impl std::error::Error for DecodeError {}
