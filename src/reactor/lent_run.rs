//! The lent run: the output run of the connection being read, lent to the
//! reactor while the handler answers that connection's messages.
//!
//! Answering a request is the common case (an echo, a response): from the
//! first answer of a read on (a fresh run from the thread's pool when the
//! connection has no DATA queued, else its open run once that answer has
//! gone through the queue), every small answer to the connection whose
//! read is being delivered
//! is copied straight into this run, with no slab lookup, state check or
//! queue walk per message; the checks `send` makes were made once, when
//! the run was lent, and are kept as a byte budget (`room`) and a payload
//! limit. The run goes back to its connection's queue, with the count of
//! messages, before anything else touches that connection: it is held by
//! [`Slots`](super::slots::Slots), whose every way to act on a slot
//! returns it first.
//!
//! It never decides what may be sent: it only holds bytes `send` would
//! have accepted, in the order `send` would have queued them.

use bytes::BytesMut;

use super::ConnId;
use crate::proto::codec::{self, HEADER_LEN};

/// A connection's output run, out of its queue for the length of a read.
#[derive(Debug)]
pub(super) struct LentRun {
    /// The connection it belongs to, and its slab index.
    pub(super) id: ConnId,
    pub(super) idx: usize,
    /// The run: whole frames, the lent bytes first.
    pub(super) run: BytesMut,
    /// Where the frames appended since the lending begin in `run`.
    pub(super) from: usize,
    /// Bytes that may still be appended: the least of the run's cap and
    /// what the connection's `max_outbound` leaves.
    room: usize,
    /// The largest payload that may be appended (`max_frame`, and never
    /// above the size small messages are copied up to).
    max_payload: usize,
    /// Messages appended since the run was lent.
    pub(super) messages: u64,
}

impl LentRun {
    pub(super) fn new(
        id: ConnId,
        idx: usize,
        run: BytesMut,
        room: usize,
        max_payload: usize,
    ) -> Self {
        LentRun {
            id,
            idx,
            from: run.len(),
            run,
            room,
            max_payload,
            messages: 0,
        }
    }

    /// Appends one whole DATA frame, as received, if it is for `id` and
    /// fits; false (nothing appended) otherwise.
    #[inline]
    pub(super) fn push_frame(&mut self, id: ConnId, frame: &[u8]) -> bool {
        let fits = id == self.id
            && frame.len() <= self.room
            && frame.len().saturating_sub(HEADER_LEN) <= self.max_payload;
        if fits {
            self.run.extend_from_slice(frame);
            self.room -= frame.len();
            self.messages += 1;
        }
        fits
    }

    /// Appends a DATA frame carrying `payload` if it is for `id` and fits;
    /// false (nothing appended) otherwise.
    #[inline]
    pub(super) fn push_payload(&mut self, id: ConnId, payload: &[u8]) -> bool {
        let need = HEADER_LEN + payload.len();
        let fits = id == self.id && need <= self.room && payload.len() <= self.max_payload;
        if fits {
            self.run
                .extend_from_slice(&codec::data_header(payload.len()));
            self.run.extend_from_slice(payload);
            self.room -= need;
            self.messages += 1;
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: usize) -> ConnId {
        ConnId::new(index, 1)
    }

    #[test]
    fn appends_only_for_its_connection_within_its_room_and_payload_limit() {
        let mut r = LentRun::new(id(3), 3, BytesMut::from(&b"xx"[..]), 21, 8);
        let frame = [&codec::data_header(4)[..], b"abcd"].concat();
        assert!(!r.push_frame(id(4), &frame), "another connection");
        assert!(r.push_frame(id(3), &frame));
        assert!(
            !r.push_payload(id(3), b"123456789"),
            "over the payload limit"
        );
        assert!(r.push_payload(id(3), b"12"));
        assert_eq!(r.room, 21 - 9 - 7);
        assert!(!r.push_payload(id(3), b"123"), "8 bytes, 5 of room left");
        assert!(r.push_payload(id(3), &[]), "an empty message fits in 5");
        assert!(!r.push_payload(id(3), &[]), "no room left");
        assert_eq!(r.messages, 3);
        let mut want = b"xx".to_vec();
        want.extend_from_slice(&frame);
        want.extend_from_slice(&codec::data_header(2));
        want.extend_from_slice(b"12");
        want.extend_from_slice(&codec::data_header(0));
        assert_eq!(&r.run[..], &want[..]);
    }
}
