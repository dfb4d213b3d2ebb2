//! One read's bytes on their way into a connection, and where the next
//! frame starts: the cursor that [`Connection::start_input`] makes,
//! [`Connection::next_message`] moves and [`Connection::finish_input`]
//! consumes — the one way input enters a connection.
//!
//! It holds two buffers in turn: first the frame an earlier read left
//! incomplete, completed with the first bytes of this read (if there was
//! one), then the rest of the read. Messages are read in place or split
//! off ([`ReadInput::deliver`]); it never copies a payload and never
//! decides anything about a frame (the connection does).
//!
//! [`Connection::start_input`]: super::Connection::start_input
//! [`Connection::next_message`]: super::Connection::next_message
//! [`Connection::finish_input`]: super::Connection::finish_input

use std::mem;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::codec::HEADER_LEN;

/// The bytes of one read being fed to a connection (see the module
/// documentation). Made by [`Connection::start_input`], and finished with
/// [`Connection::finish_input`], which keeps the start of a frame the read
/// left incomplete: a `ReadInput` dropped unfinished loses it.
///
/// [`Connection::start_input`]: super::Connection::start_input
/// [`Connection::finish_input`]: super::Connection::finish_input
#[must_use = "finish it with Connection::finish_input, or an incomplete frame is lost"]
#[derive(Debug, Default)]
pub struct ReadInput {
    /// The completed frame of an earlier read, while it is the buffer
    /// being read.
    head: Option<BytesMut>,
    /// The rest of the read.
    data: BytesMut,
    /// Where the next frame starts in the buffer being read: the bytes
    /// before it are done with (read in place).
    pos: usize,
}

impl ReadInput {
    pub(super) fn new(head: Option<BytesMut>, data: BytesMut) -> ReadInput {
        ReadInput { head, data, pos: 0 }
    }

    #[inline(always)]
    fn buf(&self) -> &BytesMut {
        self.head.as_ref().unwrap_or(&self.data)
    }

    #[inline(always)]
    fn buf_mut(&mut self) -> &mut BytesMut {
        match &mut self.head {
            Some(head) => head,
            None => &mut self.data,
        }
    }

    /// The bytes from the next frame on.
    #[inline(always)]
    pub(super) fn rest(&self) -> &[u8] {
        self.buf().get(self.pos..).unwrap_or_default()
    }

    /// Whether every byte of the read has been gone through.
    #[inline(always)]
    pub(crate) fn is_used_up(&self) -> bool {
        self.head.is_none() && self.pos >= self.data.len()
    }

    /// Whether the head (a frame an earlier read left incomplete) is the
    /// buffer being read.
    pub(super) fn in_head(&self) -> bool {
        self.head.is_some()
    }

    /// Hands the message [`Connection::next_message`] just returned (its
    /// payload `len` bytes long) to `deliver` as the buffer it is in and
    /// the offset of its payload there, its DATA header in the
    /// [`HEADER_LEN`] bytes before. `deliver` reads it in place, or splits
    /// it off: `advance(start)`, then `split_to(len)`, and nothing else.
    /// Either way the cursor moves past it.
    ///
    /// [`Connection::next_message`]: super::Connection::next_message
    #[inline(always)]
    pub fn deliver<R>(&mut self, len: usize, deliver: impl FnOnce(&mut BytesMut, usize) -> R) -> R {
        let pos = self.pos;
        let buf = self.buf_mut();
        let before = buf.len();
        let result = deliver(buf, pos + HEADER_LEN);
        // Split off: the buffer now starts after the message.
        let taken = buf.len() != before;
        self.pos = if taken { 0 } else { pos + HEADER_LEN + len };
        result
    }

    /// [`deliver`](Self::deliver) that splits the message off, as
    /// [`Bytes`] (no copy).
    pub fn take_message(&mut self, len: usize) -> Bytes {
        self.deliver(len, |buf, start| {
            if len == 0 {
                Bytes::new()
            } else {
                buf.advance(start);
                buf.split_to(len).freeze()
            }
        })
    }

    /// The buffer being read, with the bytes done with consumed: the next
    /// frame at its front.
    pub(super) fn consume_done(&mut self) -> &mut BytesMut {
        let pos = mem::take(&mut self.pos);
        let buf = self.buf_mut();
        buf.advance(pos.min(buf.len()));
        buf
    }

    /// Moves on from the head to the rest of the read; what is left of the
    /// head, consumed up to the next frame.
    pub(super) fn leave_head(&mut self) -> BytesMut {
        let mut head = self.head.take().unwrap_or_default();
        head.advance(mem::take(&mut self.pos).min(head.len()));
        head
    }

    /// Takes both buffers apart at the end of the read: what is left of
    /// the head (consumed up to the next frame), the rest of the read, and
    /// where the next frame starts in it.
    pub(super) fn into_parts(mut self) -> (Option<BytesMut>, BytesMut, usize) {
        let head = self.head.is_some().then(|| self.leave_head());
        (head, self.data, self.pos)
    }
}
