//! The send queue of one connection: control frames jump the queue at a
//! frame boundary.
//!
//! Control frames (PING, PONG, CLOSE, HELLO, WELCOME, ACK) are encoded into
//! one small buffer that goes out ahead of every DATA segment that has not
//! yet started onto the wire; a segment already partly written is finished
//! first, so frames never interleave. Large DATA payloads are queued as the
//! application's `Bytes` and written as (header, payload) slices without
//! copying; small ones (up to 1 KiB) are copied into packed runs of at most
//! 16 KiB, since one contiguous write beats two slices per small message.
//! A run partly on the wire is cut at the end of the frame being written
//! when a control frame arrives, so control still jumps the queue at the
//! next frame boundary. The outbox owns no socket: the caller gathers
//! slices with [`Outbox::chunks`], writes what it can and reports the count
//! with [`Outbox::advance`]. It knows whether our own PING is still queued,
//! so that a connection never queues a second one behind it.
//!
//! Words used here and in the reactor, each for one thing:
//! - a **run** (packed run): one buffer of whole small DATA frames,
//!   headers included, copied in back to back;
//! - the **open run**: the run at the back of the queue, not yet on the
//!   wire, that the next small message is appended to;
//! - a **fresh run**: an empty run taken from the thread's **run pool**
//!   (`run_pool`), where runs go once written out;
//! - the **lent run**: the open (or a fresh) run taken out of the queue and
//!   lent to the reactor while the handler answers the connection being
//!   read (`reactor::lent_run`), and put back before anything else touches
//!   the connection;
//! - the **spare queue** (`spare_queue`): one emptied queue kept on the
//!   thread for the next connection's control frames.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::codec::{self, HEADER_LEN};

/// Messages up to this size are copied into a packed run rather than
/// queued as their own `Bytes`: for small frames one contiguous write is
/// cheaper than a header and a payload slice per message.
pub(crate) const COPY_MAX: usize = 1024;
/// A packed run stops growing at this size, which also bounds how long a
/// control frame can wait behind a run already on the wire.
const PACK_MAX: usize = 16 * 1024;

/// A stretch of queued DATA: whole frames only.
#[derive(Debug)]
enum Segment {
    /// Small frames copied together, headers included.
    Packed(BytesMut),
    /// One large frame: its header and the application's payload, uncopied.
    Frame {
        header: [u8; HEADER_LEN],
        payload: Bytes,
    },
}

impl Segment {
    fn wire_len(&self) -> usize {
        match self {
            Segment::Packed(run) => run.len(),
            Segment::Frame { payload, .. } => HEADER_LEN + payload.len(),
        }
    }
}

/// Pending output of one connection: nothing at all (one pointer) while
/// nothing is queued and the connection is idle, a [`Queue`] otherwise.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: Option<Box<Queue>>,
}

impl Outbox {
    #[inline]
    fn queue(&mut self) -> &mut Queue {
        self.queue.get_or_insert_with(spare_queue::take)
    }

    /// Unsent bytes in total.
    #[inline]
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
        let queue = self.queue();
        queue.split_head();
        &mut queue.ctrl
    }

    /// Queues our PING with `nonce` as a control frame, and remembers it
    /// until it is completely written (see [`ping_queued`]).
    ///
    /// [`ping_queued`]: Outbox::ping_queued
    pub(crate) fn push_ping(&mut self, nonce: u64) {
        let queue = self.queue();
        queue.split_head();
        codec::encode_ping(nonce, &mut queue.ctrl);
        queue.ping_end = queue.ctrl.len();
    }

    /// Whether a PING queued with [`push_ping`] is not completely written
    /// yet (the socket has not taken all of its bytes).
    ///
    /// [`push_ping`]: Outbox::push_ping
    pub(crate) fn ping_queued(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| q.ping_end > 0)
    }

    /// The tail buffer, for frames that must follow every queued DATA frame.
    pub(crate) fn tail(&mut self) -> &mut BytesMut {
        &mut self.queue().tail
    }

    /// Queues one DATA frame (no copy of the payload).
    pub(crate) fn push_data(&mut self, payload: Bytes) {
        self.queue().push_data(payload);
    }

    /// Queues one DATA frame with a copy of `payload` (a small one goes
    /// straight into the packed run: no allocation).
    pub(crate) fn push_slice(&mut self, payload: &[u8]) {
        self.queue().push_slice(payload);
    }

    /// Queues a copy of one whole DATA frame, header included, whose
    /// payload is at most [`COPY_MAX`] bytes: it goes into the packed run
    /// with a single copy.
    #[inline]
    pub(crate) fn push_framed(&mut self, frame: &[u8]) {
        debug_assert!(frame.len() >= HEADER_LEN && frame.len() - HEADER_LEN <= COPY_MAX);
        self.queue().push_framed(frame);
    }

    /// Takes every DATA frame that has not started onto the wire, and the
    /// tail, out of the output. A partly written frame is kept so the
    /// stream stays framed. The payloads taken are withheld, in order,
    /// until [`clear`](Self::clear) hands them back behind that frame (if
    /// it is not finished by then), so the hand-back keeps send order.
    pub(crate) fn discard_unstarted(&mut self) {
        if let Some(q) = self.queue.as_mut() {
            q.discard_unstarted();
        }
    }

    /// Drops everything (the socket is going away). The payloads of the
    /// DATA frames not completely written are appended to `dropped`, in
    /// send order (a frame partly written counts: the peer cannot have
    /// it), the ones withheld by [`discard_unstarted`](Self::discard_unstarted)
    /// included.
    pub(crate) fn clear(&mut self, dropped: &mut Vec<Bytes>) {
        if let Some(mut q) = self.queue.take() {
            let head_sent = mem::take(&mut q.head_sent);
            payloads(q.data.drain(..), head_sent, dropped);
            dropped.append(&mut q.withheld);
        }
    }

    /// Frees all memory while nothing is queued, so an idle connection
    /// holds no output buffers. (A queue whose last byte is written goes
    /// to the thread's spare by itself, in [`advance`](Self::advance); this
    /// catches one emptied another way.) True if there was memory to free.
    pub(crate) fn release_idle_memory(&mut self) -> bool {
        if !self.is_empty() || self.queue.as_ref().is_some_and(|q| !q.withheld.is_empty()) {
            return false;
        }
        match self.queue.take() {
            Some(queue) => {
                spare_queue::give(queue);
                true
            }
            None => false,
        }
    }

    /// DATA frames queued that have not started onto the wire (a frame
    /// partly written counts as started). Walks the queue: for the queue
    /// lifetime's looks, not for the per-message path.
    pub(crate) fn unstarted_frames(&self) -> u64 {
        self.queue.as_ref().map_or(0, |q| q.unstarted_frames())
    }

    /// Takes the first `k` DATA frames that have not started onto the wire
    /// (the oldest waiting) out of the queue and appends their payloads to
    /// `out`, in order; fewer if fewer are waiting. Control frames, a frame
    /// partly written and the tail stay.
    pub(crate) fn withdraw_unstarted(&mut self, k: u64, out: &mut Vec<Bytes>) {
        if let Some(q) = self.queue.as_mut() {
            q.withdraw_unstarted(k, out);
        }
    }

    /// Takes the packed run at the back out of the queue if a small frame
    /// queued now would be appended to it, with the room it has left under
    /// its cap. Its bytes count in no [`len`](Self::len) until
    /// [`put_back_run`](Self::put_back_run) returns it.
    ///
    /// A run partly on the wire is never lent: its written bytes belong to
    /// the queue's head, which must stay in place while it is lent (frames
    /// queued meanwhile go the queue's way, appended to it).
    pub(crate) fn take_open_run(&mut self) -> Option<(BytesMut, usize)> {
        let q = self.queue.as_mut()?;
        if q.head_sent > 0 && q.data.len() == 1 {
            return None;
        }
        let room = PACK_MAX.saturating_sub(q.open_run()?.len());
        match q.data.pop_back() {
            Some(Segment::Packed(run)) => {
                q.data_bytes -= run.len();
                Some((run, room))
            }
            other => {
                // `open_run` said the back is a packed run.
                debug_assert!(other.is_none(), "open run vanished");
                q.data.extend(other);
                None
            }
        }
    }

    /// A fresh packed run from the thread's pool, with its room, when no
    /// DATA and no closing frames are queued (so frames appended to it
    /// follow nothing but control frames, which go first anyway); `None`
    /// otherwise. Like a run from [`take_open_run`](Self::take_open_run),
    /// it goes back with [`put_back_run`](Self::put_back_run).
    #[inline]
    pub(crate) fn take_fresh_run(&mut self) -> Option<(BytesMut, usize)> {
        if let Some(q) = self.queue.as_ref() {
            if !q.data.is_empty() || !q.tail.is_empty() {
                return None;
            }
        }
        let mut run = run_pool::take();
        run.reserve(PACK_MAX);
        Some((run, PACK_MAX))
    }

    /// Puts back at the end of the queue a run taken with
    /// [`take_open_run`](Self::take_open_run) (grown by whole frames since).
    #[inline(always)]
    pub(crate) fn put_back_run(&mut self, run: BytesMut) {
        if run.is_empty() {
            run_pool::give(run);
            return;
        }
        let q = self.queue();
        q.data_bytes += run.len();
        q.data.push_back(Segment::Packed(run));
    }

    /// All unsent output, when it is one contiguous slice (the usual case:
    /// small messages packed into one run, or control frames alone);
    /// `None` when it is not, or when nothing is queued.
    #[inline]
    pub(crate) fn contiguous(&self) -> Option<&[u8]> {
        let q = self.queue.as_ref()?;
        if !q.tail.is_empty() {
            return None;
        }
        match (q.ctrl.is_empty(), q.data.len()) {
            (false, 0) => Some(&q.ctrl),
            (true, 1) => match q.data.front() {
                Some(Segment::Packed(run)) => run.get(q.head_sent..),
                _ => None,
            },
            _ => None,
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
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        if let Some(q) = self.queue.as_mut() {
            if q.wrote_sole_segment(n) {
                // Nothing left: the queue goes to the thread's spare, for
                // the next connection that answers (see `advance_queue`).
                if q.withheld.is_empty() {
                    if let Some(queue) = self.queue.take() {
                        spare_queue::give(queue);
                    }
                }
                return;
            }
            Self::advance_queue(&mut self.queue, n);
        }
    }

    /// [`advance`](Self::advance) in general: control frames, several
    /// segments, a partial write (out of line, so that the usual case —
    /// one run written whole — stays small).
    #[inline(never)]
    fn advance_queue(queue: &mut Option<Box<Queue>>, n: usize) {
        if let Some(q) = queue.as_mut() {
            // (Measured before the bytes written are consumed from it.)
            let ctrl_capacity = q.ctrl.capacity();
            let ctrl_sent = q.advance(n);
            // A queue is given up as soon as all it held is out, to the
            // thread's spare (see `spare_queue`), small buffers and all:
            // the next connection to answer takes it, still in the CPU's
            // cache, where one queue per busy connection would make every
            // read touch that connection's own queue and ring, cold at a
            // thousand connections. While output waits its control buffer
            // stays too while small (a resumed session's ACKs come every
            // 64 messages); a large one, after a burst of control frames,
            // is freed.
            if q.len() == 0 && q.withheld.is_empty() {
                if let Some(queue) = queue.take() {
                    spare_queue::give(queue);
                }
            } else if ctrl_sent && ctrl_capacity > spare_queue::CTRL_KEEP {
                q.ctrl = BytesMut::new();
            }
        }
    }
}

/// The queued output itself.
#[derive(Debug, Default)]
struct Queue {
    /// Whole control frames not yet written (their unsent suffix).
    ctrl: BytesMut,
    /// Bytes of `ctrl` up to the end of our queued PING; 0 when none is
    /// queued (or it is written). Always at most `ctrl.len()`.
    ping_end: usize,
    /// DATA in order; the front segment may be partly written. (A packed
    /// run's buffer comes from, and goes back to, the thread's [`runs`]
    /// once written: a steady stream of small messages allocates nothing.)
    data: VecDeque<Segment>,
    /// Bytes of `data.front()` already written (header included).
    head_sent: usize,
    /// Frames that must follow all queued DATA (a graceful CLOSE).
    tail: BytesMut,
    /// Unsent bytes of `data` (excluding `head_sent`).
    data_bytes: usize,
    /// Payloads taken out by `discard_unstarted`, in order: handed back by
    /// `clear`, behind the frame that was partly written.
    withheld: Vec<Bytes>,
}

impl Queue {
    fn len(&self) -> usize {
        self.ctrl.len() + self.data_bytes + self.tail.len()
    }

    /// Queues one DATA frame: a small one is copied into the packed run
    /// at the back, a large one queued as it is.
    fn push_data(&mut self, payload: Bytes) {
        if payload.len() > COPY_MAX {
            self.data_bytes += HEADER_LEN + payload.len();
            let header = codec::data_header(payload.len());
            self.data.push_back(Segment::Frame { header, payload });
        } else {
            self.push_small(&payload);
        }
    }

    /// Queues one DATA frame with a copy of `payload`.
    fn push_slice(&mut self, payload: &[u8]) {
        if payload.len() > COPY_MAX {
            self.push_data(Bytes::copy_from_slice(payload));
        } else {
            self.push_small(payload);
        }
    }

    /// Copies a frame of at most `COPY_MAX` payload bytes into the packed
    /// run at the back.
    #[inline]
    fn push_small(&mut self, payload: &[u8]) {
        let header = codec::data_header(payload.len());
        self.pack(HEADER_LEN + payload.len(), |run| {
            run.extend_from_slice(&header);
            run.extend_from_slice(payload);
        });
    }

    /// Copies a whole DATA frame, header included, of at most `COPY_MAX`
    /// payload bytes into the packed run at the back: one copy.
    #[inline]
    fn push_framed(&mut self, frame: &[u8]) {
        self.pack(frame.len(), |run| run.extend_from_slice(frame));
    }

    /// Appends `need` bytes of whole frames (at most `HEADER_LEN +
    /// COPY_MAX`) with `write` to the packed run at the back, or to a new
    /// one if it is full or on the wire with control frames waiting.
    #[inline]
    fn pack(&mut self, need: usize, write: impl FnOnce(&mut BytesMut)) {
        self.data_bytes += need;
        // While control frames wait for the run on the wire to reach a
        // frame boundary, that run is not extended: a frame queued now goes
        // after them. (The new run reserves only what it needs: this is rare.)
        if let Some(run) = self.open_run() {
            if run.len() + need <= PACK_MAX {
                write(run);
                return;
            }
        }
        self.pack_new(need, write);
    }

    /// True while control frames wait for the run partly on the wire to
    /// reach a frame boundary: that run must not be extended.
    #[inline]
    fn run_in_flight(&self) -> bool {
        self.head_sent > 0 && !self.ctrl.is_empty() && self.data.len() == 1
    }

    /// The packed run at the back, if frames may be appended to it (room
    /// aside): not one on the wire with control frames waiting.
    #[inline]
    fn open_run(&mut self) -> Option<&mut BytesMut> {
        if self.run_in_flight() {
            return None;
        }
        match self.data.back_mut() {
            Some(Segment::Packed(run)) => Some(run),
            _ => None,
        }
    }

    /// [`pack`](Self::pack) into a new run (out of line: once per run).
    #[cold]
    #[inline(never)]
    fn pack_new(&mut self, need: usize, write: impl FnOnce(&mut BytesMut)) {
        let mut run = run_pool::take();
        run.reserve(if self.run_in_flight() { need } else { PACK_MAX });
        write(&mut run);
        self.data.push_back(Segment::Packed(run));
    }

    /// If the front segment is a packed run partly on the wire, cuts it at
    /// the end of the frame being written, so that what follows counts as
    /// unstarted: control frames go ahead of it, a discard drops it. (Rare:
    /// only when a control frame or an error comes mid-run.)
    fn split_head(&mut self) {
        if self.head_sent == 0 {
            return;
        }
        let Some(Segment::Packed(run)) = self.data.front_mut() else {
            return;
        };
        // The run holds whole frames we encoded: walk their headers.
        let mut end = 0;
        while end < self.head_sent && end + 4 <= run.len() {
            let len = u32::from_be_bytes([run[end], run[end + 1], run[end + 2], run[end + 3]]);
            end += 4 + len as usize;
        }
        if end == self.head_sent {
            // Exactly at a boundary: the written frames are simply gone.
            run.advance(end);
            self.head_sent = 0;
        } else if end < run.len() {
            let started = Segment::Packed(run.split_to(end));
            self.data.push_front(started);
        }
    }

    /// See [`Outbox::unstarted_frames`].
    fn unstarted_frames(&self) -> u64 {
        let mut count = 0;
        for (i, segment) in self.data.iter().enumerate() {
            let sent = if i == 0 { self.head_sent } else { 0 };
            count += match segment {
                Segment::Frame { .. } => u64::from(sent == 0),
                Segment::Packed(run) => frames_from(run, sent),
            };
        }
        count
    }

    /// See [`Outbox::withdraw_unstarted`].
    fn withdraw_unstarted(&mut self, mut k: u64, out: &mut Vec<Bytes>) {
        self.split_head();
        // After the cut, a partly written frame is alone at the front.
        let mut i = usize::from(self.head_sent > 0);
        while k > 0 && i < self.data.len() {
            let (frames, cut) = match &self.data[i] {
                Segment::Frame { .. } => (1, self.data[i].wire_len()),
                Segment::Packed(run) => first_frames(run, k),
            };
            if cut == self.data[i].wire_len() {
                if let Some(segment) = self.data.remove(i) {
                    payloads(std::iter::once(segment), 0, out);
                }
            } else if let Some(Segment::Packed(run)) = self.data.get_mut(i) {
                let head = run.split_to(cut);
                payloads(std::iter::once(Segment::Packed(head)), 0, out);
                i += 1;
            }
            self.data_bytes -= cut;
            k -= frames;
        }
    }

    /// Takes every DATA frame that has not started onto the wire, and the
    /// tail, out, withholding their payloads. A partly written frame is
    /// kept so the stream stays framed.
    fn discard_unstarted(&mut self) {
        self.split_head();
        let keep = usize::from(self.head_sent > 0);
        payloads(self.data.drain(keep..), 0, &mut self.withheld);
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
        let mut segments = self.data.iter();
        if self.head_sent > 0 {
            if let Some(head) = segments.next() {
                out.segment(head, self.head_sent);
            }
        }
        out.push(&self.ctrl);
        for segment in segments {
            if out.is_full() {
                break;
            }
            out.segment(segment, 0);
        }
        out.push(&self.tail);
        out.n
    }

    /// Records that the first `n` bytes of the order given by [`chunks`]
    /// were written.
    ///
    /// [`chunks`]: Queue::chunks
    ///
    /// Returns true when this emptied the control buffer.
    fn advance(&mut self, mut n: usize) -> bool {
        if self.head_sent > 0 {
            n = self.advance_head(n);
        }
        let take = n.min(self.ctrl.len());
        self.ctrl.advance(take);
        self.ping_end = self.ping_end.saturating_sub(take);
        let ctrl_sent = take > 0 && self.ctrl.is_empty();
        n -= take;
        while n > 0 && !self.data.is_empty() {
            n = self.advance_head(n);
        }
        let take = n.min(self.tail.len());
        self.tail.advance(take);
        debug_assert_eq!(n, take, "advanced past the queued output");
        ctrl_sent
    }

    /// The usual case of [`advance`](Self::advance): all that is queued is
    /// one DATA segment (a packed run of answers, say), and the `n` bytes
    /// written finish it. Then it is gone (a run back to the thread's
    /// pool) and true; otherwise false, nothing changed.
    #[inline]
    fn wrote_sole_segment(&mut self, n: usize) -> bool {
        if n != self.data_bytes
            || self.data.len() != 1
            || !self.ctrl.is_empty()
            || !self.tail.is_empty()
        {
            return false;
        }
        if let Some(Segment::Packed(run)) = self.data.pop_front() {
            run_pool::give(run);
        }
        self.head_sent = 0;
        self.data_bytes = 0;
        true
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
            if let Some(Segment::Packed(run)) = self.data.pop_front() {
                run_pool::give(run);
            }
            self.head_sent = 0;
        }
        n - take
    }
}

/// Appends the payloads of the DATA frames in `segments` to `out`, in
/// order, skipping the frames of the first segment that end within its
/// first `sent` bytes (written whole). Off the hot path: it runs only when
/// queued output is dropped.
fn payloads(segments: impl Iterator<Item = Segment>, mut sent: usize, out: &mut Vec<Bytes>) {
    for segment in segments {
        match segment {
            Segment::Frame { payload, .. } => out.push(payload),
            Segment::Packed(run) => {
                // Whole frames we encoded: walk their headers.
                let run = run.freeze();
                let mut at = 0;
                while at + HEADER_LEN <= run.len() {
                    let len = u32::from_be_bytes([run[at], run[at + 1], run[at + 2], run[at + 3]]);
                    let end = (at + 4 + len as usize).min(run.len());
                    if end > sent {
                        out.push(run.slice(at + HEADER_LEN..end));
                    }
                    at = end;
                }
            }
        }
        sent = 0;
    }
}

/// How many of the whole frames packed in `run` start at or after byte
/// `from`.
fn frames_from(run: &[u8], from: usize) -> u64 {
    let (mut at, mut count) = (0, 0);
    while at + HEADER_LEN <= run.len() {
        count += u64::from(at >= from);
        // The length field counts the type byte and the payload.
        let len = u32::from_be_bytes([run[at], run[at + 1], run[at + 2], run[at + 3]]);
        at += 4 + len as usize;
    }
    count
}

/// The first `k` whole frames packed in `run` (all of them if fewer): how
/// many, and the byte they end at.
fn first_frames(run: &[u8], k: u64) -> (u64, usize) {
    let (mut at, mut count) = (0, 0);
    while count < k && at + HEADER_LEN <= run.len() {
        let len = u32::from_be_bytes([run[at], run[at + 1], run[at + 2], run[at + 3]]);
        at = (at + 4 + len as usize).min(run.len());
        count += 1;
    }
    (count, at)
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

    /// The unsent slices of `segment`, `sent` bytes in.
    fn segment(&mut self, segment: &'a Segment, sent: usize) {
        match segment {
            Segment::Packed(run) => self.push(&run[sent..]),
            Segment::Frame { header, payload } if sent < HEADER_LEN => {
                self.push(&header[sent..]);
                self.push(payload);
            }
            Segment::Frame { payload, .. } => self.push(&payload[sent - HEADER_LEN..]),
        }
    }
}

mod run_pool;
mod spare_queue;
#[cfg(test)]
mod tests;
