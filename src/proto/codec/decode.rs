//! The incremental decoder: validates a header the moment its bytes are in,
//! then waits for, parses and splits off one whole frame.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    DecodeError, Frame, Handshake, Kind, CLOSE_CODE_LEN, HANDSHAKE_LEN, HEADER_LEN, MAGIC,
    MAX_CLOSE_REASON, U64_LEN, VERSION,
};
use crate::error::CloseCode;

/// Bytes of the length field at the start of every frame.
const LENGTH_LEN: usize = 4;

/// A whole frame found by [`Decoder::decode_in_place`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InPlace {
    /// A frame other than DATA, removed from the buffer.
    Frame(Frame),
    /// A DATA frame whose header was removed: its payload is the first
    /// `len` bytes now in the buffer (possibly 0), still to be taken or
    /// skipped by the caller.
    Data(usize),
}

/// An incremental decoder of the frames at the front of a read buffer.
///
/// It keeps no state of its own besides the `max_frame` limit (so it is
/// `Copy`): the caller appends what it reads from the socket to one
/// [`BytesMut`] and calls [`Decoder::decode`] until it returns `Ok(None)`.
/// A partial frame stays in the buffer until the rest arrives.
///
/// ```
/// use bytes::{BufMut, BytesMut};
/// use tether::proto::codec::{encode_data, encode_ping, Decoder, DecodeError, Frame};
/// use tether::CloseCode;
///
/// let decoder = Decoder::new(1024);
/// let mut buf = BytesMut::new();
/// encode_ping(7, &mut buf);
/// encode_data(b"hello", &mut buf);
/// buf.put_slice(&[0, 0, 0, 3]); // the start of a third frame
///
/// assert_eq!(decoder.decode(&mut buf), Ok(Some(Frame::Ping(7))));
/// assert_eq!(decoder.decode(&mut buf), Ok(Some(Frame::Data("hello".into()))));
/// assert_eq!(decoder.decode(&mut buf), Ok(None)); // waits for more bytes
/// assert_eq!(buf.len(), 4);
///
/// // A DATA header announcing more than max_frame is refused at once,
/// // without waiting for (or buffering) its payload.
/// let mut buf = BytesMut::from(&[0, 0, 4, 2, 0x03][..]);
/// let err = decoder.decode(&mut buf).unwrap_err();
/// assert_eq!(err, DecodeError::TooLarge { payload_len: 1025, max: 1024 });
/// assert_eq!(err.close_code(), CloseCode::TOO_LARGE);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    max_frame: usize,
}

impl Decoder {
    /// A decoder accepting DATA payloads of up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Decoder { max_frame }
    }

    /// The largest DATA payload this decoder accepts, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Decodes the frame at the front of `buf`.
    ///
    /// - `Ok(Some(frame))`: one whole frame was removed from the front of
    ///   `buf`. DATA payloads and CLOSE reasons are split off `buf` as
    ///   [`Bytes`] sharing its memory (no copy).
    /// - `Ok(None)`: the frame is not complete yet; `buf` is untouched.
    ///   Append more bytes and call again.
    /// - `Err(e)`: the peer broke the protocol; `buf` is untouched. Send
    ///   CLOSE with [`DecodeError::close_code`] and close the connection.
    ///
    /// Every check that the bytes present allow is made before waiting for
    /// more: the length as soon as 4 bytes are in, the kind and the payload
    /// size as soon as the 5-byte header is, and a handshake's magic and
    /// version as their bytes arrive. It never panics, whatever `buf` holds.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        Ok(match self.decode_in_place(buf)? {
            None => None,
            Some(InPlace::Frame(frame)) => Some(frame),
            Some(InPlace::Data(len)) => Some(Frame::Data(split_bytes(buf, len))),
        })
    }

    /// Like [`decode`](Self::decode), but a DATA payload stays in `buf`:
    /// only its header is removed, and [`InPlace::Data`] says how many of
    /// the bytes now at the front of `buf` are the payload. The caller
    /// reads them in place and then takes them (`split_to`) or skips them
    /// (`advance`) before decoding the next frame. This lets a driver hand
    /// a message to the application as a borrowed slice, paying for a
    /// shared [`Bytes`] only when the application keeps it.
    pub fn decode_in_place(&self, buf: &mut BytesMut) -> Result<Option<InPlace>, DecodeError> {
        let Some((kind, total)) = self.header(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            if matches!(kind, Kind::Hello | Kind::Welcome) {
                check_handshake_prefix(&buf[HEADER_LEN..])?;
            }
            return Ok(None);
        }
        let frame = match kind {
            Kind::Data => {
                buf.advance(HEADER_LEN);
                return Ok(Some(InPlace::Data(total - HEADER_LEN)));
            }
            Kind::Hello => Frame::Hello(parse_handshake(&buf[HEADER_LEN..total])?),
            Kind::Welcome => Frame::Welcome(parse_handshake(&buf[HEADER_LEN..total])?),
            Kind::Ping => Frame::Ping(be_u64(&buf[HEADER_LEN..total])),
            Kind::Pong => Frame::Pong(be_u64(&buf[HEADER_LEN..total])),
            Kind::Ack => Frame::Ack(be_u64(&buf[HEADER_LEN..total])),
            Kind::Close => {
                let start = HEADER_LEN + CLOSE_CODE_LEN;
                let code = CloseCode(u16::from_be_bytes([buf[HEADER_LEN], buf[HEADER_LEN + 1]]));
                if std::str::from_utf8(&buf[start..total]).is_err() {
                    return Err(DecodeError::BadUtf8);
                }
                buf.advance(start);
                let reason = split_bytes(buf, total - start);
                return Ok(Some(InPlace::Frame(Frame::Close { code, reason })));
            }
        };
        buf.advance(total);
        Ok(Some(InPlace::Frame(frame)))
    }

    /// The payload length of the DATA frame at the front of `buf` if that
    /// frame is complete and valid; `None` for anything else (another
    /// kind, an incomplete frame, an invalid header), which
    /// [`decode_in_place`](Self::decode_in_place) then sorts out. Nothing
    /// is consumed: the payload is `buf[HEADER_LEN..HEADER_LEN + len]`.
    ///
    /// The one check a stream of messages pays per frame: a driver that
    /// hands payloads over in place steps over the whole frame afterwards.
    /// It applies DATA's rules only (kind 0x03, length at least 1 for the
    /// kind byte, payload at most `max_frame`) and leaves every other
    /// header, valid or not, to the general decode; a test checks it
    /// agrees with [`decode_in_place`](Self::decode_in_place) on every
    /// prefix of thousands of random streams.
    #[inline]
    pub fn complete_data(&self, buf: &[u8]) -> Option<usize> {
        let (&[l0, l1, l2, l3, kind], rest) = buf.split_first_chunk::<HEADER_LEN>()?;
        // Length 0 (no kind byte) is left to the general decode.
        let payload = u32::from_be_bytes([l0, l1, l2, l3]).checked_sub(1)? as usize;
        let fits = kind == Kind::Data as u8 && payload <= self.max_frame && payload <= rest.len();
        fits.then_some(payload)
    }

    /// The total wire length (header + payload) of the frame at the front
    /// of `buf`, once its header is complete and valid; `None` before that,
    /// and for a header [`Decoder::decode`] rejects.
    ///
    /// Lets a caller reserve room for the rest of a partial frame: the
    /// value is bounded by `max_frame + 5`, never by an unchecked length.
    pub fn pending_frame_len(&self, buf: &[u8]) -> Option<usize> {
        match self.header(buf) {
            Ok(Some((_, total))) => Some(total),
            _ => None,
        }
    }

    /// Validates the header at the front of `buf` as far as it is present.
    /// Returns the kind and the frame's total wire length once all 5 header
    /// bytes are in and valid.
    #[inline]
    fn header(&self, buf: &[u8]) -> Result<Option<(Kind, usize)>, DecodeError> {
        if buf.len() < LENGTH_LEN {
            return Ok(None);
        }
        let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if length == 0 {
            return Err(DecodeError::ZeroLength);
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = Kind::from_u8(buf[4]).ok_or(DecodeError::UnknownKind(buf[4]))?;
        let payload_len = length - 1;
        let size_ok = match kind {
            Kind::Hello | Kind::Welcome => payload_len == HANDSHAKE_LEN as u32,
            Kind::Ping | Kind::Pong | Kind::Ack => payload_len == U64_LEN as u32,
            Kind::Close => (CLOSE_CODE_LEN as u32..=(CLOSE_CODE_LEN + MAX_CLOSE_REASON) as u32)
                .contains(&payload_len),
            Kind::Data => {
                if u64::from(payload_len) > self.max_frame as u64 {
                    return Err(self.too_large(payload_len));
                }
                true
            }
        };
        if !size_ok {
            return Err(DecodeError::BadLength { kind, payload_len });
        }
        // Cannot fail on 32- and 64-bit targets with a sane `max_frame`; a
        // frame whose length does not fit `usize` could never be buffered.
        let total = usize::try_from(payload_len)
            .ok()
            .and_then(|p| p.checked_add(HEADER_LEN))
            .ok_or_else(|| self.too_large(payload_len))?;
        Ok(Some((kind, total)))
    }

    fn too_large(&self, payload_len: u32) -> DecodeError {
        DecodeError::TooLarge {
            payload_len,
            max: self.max_frame,
        }
    }
}

/// Splits the first `len` bytes off `buf` without copying. An empty payload
/// gets a static empty `Bytes`, which spares even the reference count.
#[inline]
fn split_bytes(buf: &mut BytesMut, len: usize) -> Bytes {
    if len == 0 {
        Bytes::new()
    } else {
        buf.split_to(len).freeze()
    }
}

/// Rejects a partial handshake payload as soon as its magic or version
/// bytes are wrong, so a peer speaking another protocol is refused early.
fn check_handshake_prefix(partial: &[u8]) -> Result<(), DecodeError> {
    let n = partial.len().min(MAGIC.len());
    if partial[..n] != MAGIC[..n] {
        return Err(DecodeError::BadMagic);
    }
    match partial.get(MAGIC.len()) {
        Some(&v) if v != VERSION => Err(DecodeError::BadVersion(v)),
        _ => Ok(()),
    }
}

/// Parses a complete 30-byte handshake payload.
fn parse_handshake(p: &[u8]) -> Result<Handshake, DecodeError> {
    debug_assert_eq!(p.len(), HANDSHAKE_LEN);
    if p[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if p[4] != VERSION {
        return Err(DecodeError::BadVersion(p[4]));
    }
    Ok(Handshake {
        flags: p[5],
        interval_ms: be_u32(&p[6..10]),
        timeout_ms: be_u32(&p[10..14]),
        session_id: be_u64(&p[14..22]),
        recv_seq: be_u64(&p[22..30]),
    })
}

/// A big-endian `u32` from exactly 4 bytes.
#[inline]
fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

/// A big-endian `u64` from exactly 8 bytes.
#[inline]
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}
