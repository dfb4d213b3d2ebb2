//! The packed runs written out, kept on the reactor's thread for whichever
//! connection packs small messages next.
//!
//! A run is the buffer small DATA frames are copied into (up to 16 KiB).
//! Once written out it is handed here rather than kept by its connection,
//! so the next batch of answers — usually another connection's, in the
//! same reactor turn — is packed into memory that is still in the CPU's
//! cache, and an idle connection holds no run at all. It keeps one run,
//! and never panics: if the thread's pool cannot be
//! reached (the thread is exiting) a run is simply allocated or dropped.

use std::cell::Cell;

use bytes::BytesMut;

// Runs kept per thread at most: one, the room of `RUN`. A reactor's turn
// needs one at a time (each connection's answers are written before the
// next connection is read); a connection whose socket did not take all
// its output holds its own run until it drains. Keeping more would hold
// memory for connections that may never send again, and would break the
// per-connection heap bound the fuzz harness checks (it counts the
// thread's one kept run as part of a connection's memory). A plain `Cell`
// (no borrow flag, no vector) keeps a take or a give to a few instructions:
// they run once per read answered.
thread_local! {
    static RUN: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// A run to pack into: the one written out last on this thread, or a new,
/// empty one.
#[inline]
pub(super) fn take() -> BytesMut {
    RUN.try_with(Cell::take).ok().flatten().unwrap_or_default()
}

/// Hands back a run that is written out, emptied, for the next [`take`]
/// (a run kept already is freed).
#[inline]
pub(super) fn give(mut run: BytesMut) {
    run.clear();
    // Off the thread's end, the run is simply dropped.
    let _ = RUN.try_with(|kept| kept.replace(Some(run)));
}

/// Runs kept on this thread now.
#[cfg(test)]
pub(super) fn kept() -> usize {
    RUN.with(|kept| {
        let run = kept.take();
        let n = usize::from(run.is_some());
        kept.set(run);
        n
    })
}
