//! One emptied send queue kept on the reactor's thread, for whichever
//! connection queues output next.
//!
//! Answers usually need a queue only for a moment: a read's answers (or a
//! PING's PONG) are queued and written out in the same reactor turn, and a
//! connection gives its queue up as soon as all of it is out (an idle
//! connection holds none). Handed here instead of freed, the queue and its
//! small buffers serve the next connection's answers: no allocation and no
//! free per read answered, and one queue, warm in the CPU's cache, for a
//! thousand connections answered in turn. It keeps one queue (its control
//! buffer and its ring of segments only if small) and never panics: if the
//! thread's spare cannot be reached (the thread is exiting) a queue is
//! simply allocated or dropped.

use std::cell::RefCell;

use bytes::BytesMut;

use super::Queue;

/// A control buffer above this capacity (after a burst of control frames)
/// is freed rather than kept.
pub(super) const CTRL_KEEP: usize = 256;

/// A ring of DATA segments above this capacity (after a backlog of large
/// messages) is freed rather than kept.
pub(super) const DATA_KEEP: usize = 16;

thread_local! {
    static SPARE: RefCell<Option<Box<Queue>>> = const { RefCell::new(None) };
}

/// An empty queue: the one given back last on this thread, or a new one.
#[inline]
pub(super) fn take() -> Box<Queue> {
    SPARE
        .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps an emptied queue for the next [`take`]. A queue with anything
/// still queued is dropped (its bytes belong to no one now); the tail
/// buffer is freed, so the spare holds at most a small control buffer and
/// a small ring of segments.
#[inline]
pub(super) fn give(mut queue: Box<Queue>) {
    if queue.len() != 0 || queue.head_sent != 0 || !queue.data.is_empty() {
        return;
    }
    if queue.data.capacity() > DATA_KEEP {
        queue.data = Default::default();
    }
    if queue.tail.capacity() != 0 {
        queue.tail = BytesMut::new();
    }
    if queue.ctrl.capacity() > CTRL_KEEP {
        queue.ctrl = BytesMut::new();
    }
    queue.ctrl.clear();
    queue.ping_end = 0;
    queue.data_bytes = 0;
    let _ = SPARE.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            *spare = Some(queue);
        }
    });
}

/// Whether this thread holds a spare queue now.
#[cfg(test)]
pub(super) fn kept() -> bool {
    SPARE.with(|spare| spare.borrow().is_some())
}
