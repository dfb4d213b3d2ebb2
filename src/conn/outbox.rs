//! The send queue of one connection: control frames jump the queue at a
//! frame boundary.
//!
//! Control frames (PING, PONG, CLOSE, HELLO, WELCOME) are encoded into one
//! small buffer that goes out ahead of every DATA frame that has not yet
//! started onto the wire; a DATA frame already partly written is finished
//! first, so frames never interleave. DATA payloads are queued as `Bytes`
//! and handed to the writer as (header, payload) slices for one vectored
//! write, without copying. The outbox owns no socket: the caller gathers
//! slices with [`Outbox::chunks`], writes what it can and reports the count
//! with [`Outbox::advance`].

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{self, HEADER_LEN};

/// One queued DATA frame: its header and its payload.
#[derive(Debug)]
struct DataFrame {
    header: [u8; HEADER_LEN],
    payload: Bytes,
}

impl DataFrame {
    fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// Pending output of one connection: nothing at all (one pointer) while
/// nothing is queued and the connection is idle, a [`Queue`] otherwise.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: Option<Box<Queue>>,
}

impl Outbox {
    fn queue(&mut self) -> &mut Queue {
        self.queue.get_or_insert_with(Box::default)
    }

    /// Unsent bytes in total.
    pub(crate) fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when no queue is allocated at all.
    #[cfg(test)]
    pub(crate) fn is_unallocated(&self) -> bool {
        self.queue.is_none()
    }

    /// The control buffer, to encode a control frame into. It is sent at
    /// the next frame boundary, ahead of unstarted DATA.
    pub(crate) fn ctrl(&mut self) -> &mut BytesMut {
        &mut self.queue().ctrl
    }

    /// The tail buffer, for frames that must follow every queued DATA frame.
    pub(crate) fn tail(&mut self) -> &mut BytesMut {
        &mut self.queue().tail
    }

    /// Queues one DATA frame (no copy of the payload).
    pub(crate) fn push_data(&mut self, payload: Bytes) {
        self.queue().push_data(payload);
    }

    /// Drops every DATA frame that has not started onto the wire, and the
    /// tail. A partly written frame is kept so the stream stays framed.
    pub(crate) fn discard_unstarted(&mut self) {
        if let Some(q) = self.queue.as_mut() {
            q.discard_unstarted();
        }
    }

    /// Drops everything (the socket is going away).
    pub(crate) fn clear(&mut self) {
        self.queue = None;
    }

    /// Frees all memory while nothing is queued, so an idle connection
    /// holds no output buffers. (An active one keeps its queue, so sending
    /// does not allocate per message.)
    pub(crate) fn release_idle_memory(&mut self) {
        if self.is_empty() {
            self.queue = None;
        }
    }

    /// Fills `dst` with the slices to write next, in wire order, and returns
    /// how many it filled (always a prefix of the whole order).
    pub(crate) fn chunks<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.queue.as_ref().map_or(0, |q| q.chunks(dst))
    }

    /// Records that the first `n` bytes of the order given by [`chunks`]
    /// were written.
    ///
    /// [`chunks`]: Outbox::chunks
    pub(crate) fn advance(&mut self, n: usize) {
        if let Some(q) = self.queue.as_mut() {
            q.advance(n);
            // A queue that only ever carried control frames (a heartbeat)
            // is freed as soon as they are out; one that carries messages
            // is kept until the connection goes idle, so sending does not
            // allocate per message.
            if q.len() == 0 && q.data.capacity() == 0 {
                self.queue = None;
            }
        }
    }
}

/// The queued output itself.
#[derive(Debug, Default)]
struct Queue {
    /// Whole control frames not yet written (their unsent suffix).
    ctrl: BytesMut,
    /// DATA frames in order; the front one may be partly written.
    data: VecDeque<DataFrame>,
    /// Bytes of `data.front()` already written (header included).
    head_sent: usize,
    /// Frames that must follow all queued DATA (a graceful CLOSE).
    tail: BytesMut,
    /// Unsent bytes of `data` (excluding `head_sent`).
    data_bytes: usize,
}

impl Queue {
    fn len(&self) -> usize {
        self.ctrl.len() + self.data_bytes + self.tail.len()
    }

    /// Queues one DATA frame (no copy of the payload).
    fn push_data(&mut self, payload: Bytes) {
        let frame = DataFrame {
            header: codec::data_header(payload.len()),
            payload,
        };
        self.data_bytes += frame.wire_len();
        self.data.push_back(frame);
    }

    /// Drops every DATA frame that has not started onto the wire, and the
    /// tail. A partly written frame is kept so the stream stays framed.
    fn discard_unstarted(&mut self) {
        let keep = usize::from(self.head_sent > 0);
        self.data.truncate(keep);
        self.data_bytes = self
            .data
            .front()
            .map_or(0, |f| f.wire_len() - self.head_sent);
        self.tail.clear();
    }

    /// Fills `dst` with the slices to write next, in wire order, and returns
    /// how many it filled (always a prefix of the whole order).
    fn chunks<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut out = Gather { dst, n: 0 };
        let mut frames = self.data.iter();
        if self.head_sent > 0 {
            if let Some(head) = frames.next() {
                out.frame(head, self.head_sent);
            }
        }
        out.push(&self.ctrl);
        for frame in frames {
            if out.is_full() {
                break;
            }
            out.frame(frame, 0);
        }
        out.push(&self.tail);
        out.n
    }

    /// Records that the first `n` bytes of the order given by [`chunks`]
    /// were written.
    ///
    /// [`chunks`]: Queue::chunks
    fn advance(&mut self, mut n: usize) {
        if self.head_sent > 0 {
            n = self.advance_head(n);
        }
        let take = n.min(self.ctrl.len());
        self.ctrl.advance(take);
        if take > 0 && self.ctrl.is_empty() {
            // Control frames are rare (one heartbeat per interval): free
            // the buffer rather than keep it on every idle connection.
            self.ctrl = BytesMut::new();
        }
        n -= take;
        while n > 0 && !self.data.is_empty() {
            n = self.advance_head(n);
        }
        let take = n.min(self.tail.len());
        self.tail.advance(take);
        debug_assert_eq!(n, take, "advanced past the queued output");
    }

    /// Advances the front DATA frame by up to `n` bytes; returns the rest.
    fn advance_head(&mut self, n: usize) -> usize {
        let Some(head) = self.data.front() else {
            return n;
        };
        let left = head.wire_len() - self.head_sent;
        let take = n.min(left);
        self.head_sent += take;
        self.data_bytes -= take;
        if take == left {
            self.data.pop_front();
            self.head_sent = 0;
        }
        n - take
    }
}

/// Collects slices into the caller's array; once full it stays full, so
/// what it holds is always a prefix of the wire order.
struct Gather<'a, 'b> {
    dst: &'b mut [IoSlice<'a>],
    n: usize,
}

impl<'a> Gather<'a, '_> {
    fn is_full(&self) -> bool {
        self.n >= self.dst.len()
    }

    fn push(&mut self, s: &'a [u8]) {
        if !s.is_empty() && !self.is_full() {
            self.dst[self.n] = IoSlice::new(s);
            self.n += 1;
        }
    }

    /// The unsent slices of `frame`, `sent` bytes in.
    fn frame(&mut self, frame: &'a DataFrame, sent: usize) {
        if sent < HEADER_LEN {
            self.push(&frame.header[sent..]);
            self.push(&frame.payload);
        } else {
            self.push(&frame.payload[sent - HEADER_LEN..]);
        }
    }
}

#[cfg(test)]
mod tests;
