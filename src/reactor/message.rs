//! The message a [`Handler`](super::Handler) receives: a payload borrowed
//! from the reactor's read buffer for the length of the callback.
//!
//! Reading it costs nothing; keeping it ([`Message::into_bytes`]) shares
//! the read buffer instead of copying. It must never outlive the callback
//! (the borrow checker sees to that) and never copies on its own.

use std::fmt;
use std::ops::Deref;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::codec::HEADER_LEN;

/// One application message, as [`Handler::on_message`](super::Handler::on_message)
/// receives it.
///
/// It dereferences to `&[u8]`: read it in place, or answer with
/// [`Context::send_slice`](super::Context::send_slice), which copies a
/// small message straight into the connection's output (no allocation).
/// To keep it past the callback, or to pass it on as [`Bytes`], take it
/// with [`into_bytes`](Self::into_bytes) (or `Bytes::from`, or just hand
/// it to [`Context::send`](super::Context::send)): no copy, the `Bytes`
/// shares the reactor's read buffer (which stays allocated while any such
/// `Bytes` lives).
///
/// ```
/// use bytes::Bytes;
/// use tether::{ConnId, Context, Handler, Message};
///
/// struct Collector(Vec<Bytes>);
///
/// impl Handler for Collector {
///     fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
///         if message.starts_with(b"keep:") {
///             self.0.push(message.into_bytes()); // zero-copy
///         } else {
///             cx.send_slice(id, &message).ok(); // echo, no allocation
///         }
///     }
/// }
/// ```
pub struct Message<'a> {
    /// The payload is `buf[start..start + len]` (after the frame's header);
    /// the rest of `buf` is not ours.
    buf: &'a mut BytesMut,
    start: usize,
    len: usize,
}

impl<'a> Message<'a> {
    /// The payload is the `len` bytes of `buf` from `start` on. When
    /// `start` is `HEADER_LEN` or more, the `HEADER_LEN` bytes before it
    /// must be the payload's DATA header (see [`frame`](Self::frame)).
    #[inline]
    pub(super) fn new(buf: &'a mut BytesMut, start: usize, len: usize) -> Message<'a> {
        debug_assert!(start + len <= buf.len());
        Message { buf, start, len }
    }

    /// The payload.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The whole DATA frame the payload came in, header included: the
    /// `HEADER_LEN` bytes in front of the payload in the read buffer
    /// (every message read from a socket has them; one handed over from
    /// an event does not, `start` 0). Forwarding it copies these bytes as
    /// they are.
    #[inline]
    pub(super) fn frame(&self) -> Option<&[u8]> {
        let at = self.start.checked_sub(HEADER_LEN)?;
        self.buf.get(at..self.start + self.len)
    }

    /// Takes the payload as [`Bytes`] without copying it. (The bytes before
    /// it in the read buffer — its frame's header, and frames already
    /// handled — are consumed with it.)
    #[inline]
    pub fn into_bytes(self) -> Bytes {
        if self.len == 0 {
            Bytes::new()
        } else {
            self.buf.advance(self.start);
            self.buf.split_to(self.len).freeze()
        }
    }
}

impl Deref for Message<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Message<'_> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Message<'_>> for Bytes {
    fn from(message: Message<'_>) -> Bytes {
        message.into_bytes()
    }
}

impl PartialEq<[u8]> for Message<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Message<'_> {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for Message<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl PartialEq<Bytes> for Message<'_> {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_ref()
    }
}

impl PartialEq<Message<'_>> for Bytes {
    fn eq(&self, other: &Message<'_>) -> bool {
        self.as_ref() == other.as_slice()
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A byte string, as `Bytes` renders one (without copying it).
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_place_and_takes_without_copying() {
        let mut buf = BytesMut::from(&b"hdr:hellorest"[..]);
        let start = buf[4..].as_ptr();
        let m = Message::new(&mut buf, 4, 5);
        assert_eq!(m.len(), 5);
        let slice: &[u8] = b"hello";
        assert!(m == *b"hello" && m == b"hello"[..] && m == slice);
        assert!(m == Bytes::from_static(b"hello") && Bytes::from_static(b"hello") == m);
        assert_eq!(format!("{m:?}"), "b\"hello\"");
        let mut odd = BytesMut::from(&b"a\"\n\xff"[..]);
        let odd = Message::new(&mut odd, 0, 4);
        assert_eq!(
            format!("{odd:?}"),
            format!("{:?}", Bytes::from_static(b"a\"\n\xff"))
        );
        let kept = m.into_bytes();
        assert_eq!(kept, &b"hello"[..]);
        assert_eq!(kept.as_ptr(), start, "shares the buffer");
        assert_eq!(
            &buf[..],
            b"rest",
            "taking it consumed the header and the payload"
        );
    }

    #[test]
    fn the_frame_is_the_header_and_payload_only_when_the_header_is_in_front() {
        let mut wire = BytesMut::from(&[0, 0, 0, 3, 3, b'h', b'i', 0, 0][..]);
        let m = Message::new(&mut wire, HEADER_LEN, 2);
        assert_eq!(m.frame(), Some(&[0, 0, 0, 3, 3, b'h', b'i'][..]));
        assert_eq!(m, *b"hi");
        let mut bare = BytesMut::from(&b"hi"[..]);
        assert_eq!(Message::new(&mut bare, 0, 2).frame(), None);
    }

    #[test]
    fn an_empty_message_takes_nothing() {
        let mut buf = BytesMut::from(&b"next"[..]);
        let m = Message::new(&mut buf, 0, 0);
        assert!(m.is_empty());
        assert!(Bytes::from(m).is_empty());
        assert_eq!(&buf[..], b"next");
    }
}
