//! Identifiers the application holds: connections and listeners, and the
//! application's own timers and event sources.
//!
//! An id is one `u64`: a slab index in its low [`INDEX_BITS`] bits and, above
//! them, a generation drawn from one counter per reactor, so an id kept
//! after its connection ended does not reach the connection that reuses
//! its slot. The generation has 40 bits: it repeats only after 2^40 (about
//! 10^12) connections and listeners of one reactor — 35 years at a
//! thousand a second — and even then a stale id names a connection only if
//! that connection sits in the same slot. Eight bytes, so that comparing
//! and passing ids costs one register on the per-message path.

use std::fmt;

/// Bits of an id that hold the slab index.
pub(crate) const INDEX_BITS: u32 = 24;
/// Slots a reactor's slab may use: one index, the highest, is kept for ids
/// that name no slot (see [`ConnId::nowhere`]).
pub(crate) const MAX_SLOTS: usize = (1 << INDEX_BITS) - 1;
/// Generations run through these values, then start again at 1 (0 is never
/// given out).
const GENERATION_MASK: u64 = (1 << (64 - INDEX_BITS)) - 1;

/// The next generation after `g`: 1 to 2^40 - 1, round and round.
pub(crate) fn next_generation(g: u64) -> u64 {
    let next = (g + 1) & GENERATION_MASK;
    next.max(1)
}

/// Names one connection for its whole life — for a dialed link, across
/// every redial.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    pub(crate) fn new(index: usize, generation: u64) -> ConnId {
        debug_assert!(index <= MAX_SLOTS && generation <= GENERATION_MASK);
        ConnId((generation << INDEX_BITS) | index as u64)
    }

    /// An id of this generation that names no slot: every lookup misses.
    pub(crate) fn nowhere(generation: u64) -> ConnId {
        ConnId::new(MAX_SLOTS, generation)
    }

    /// The slab index it names.
    #[inline]
    pub(crate) fn index(self) -> usize {
        (self.0 & ((1 << INDEX_BITS) - 1)) as usize
    }

    fn generation(self) -> u64 {
        self.0 >> INDEX_BITS
    }

    /// The id as one number (for logs and maps): no other connection or
    /// listener of the same reactor has it while the reactor makes fewer
    /// than 2^40 of them.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index(), self.generation())
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnId")
            .field("index", &self.index())
            .field("generation", &self.generation())
            .finish()
    }
}

/// Names one listening socket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(ConnId);

impl ListenerId {
    pub(crate) fn new(index: usize, generation: u64) -> ListenerId {
        ListenerId(ConnId::new(index, generation))
    }

    /// The listener slab index it names.
    pub(crate) fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener#{}.{}", self.0.index(), self.0.generation())
    }
}

impl fmt::Debug for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerId")
            .field("index", &self.0.index())
            .field("generation", &self.0.generation())
            .finish()
    }
}

/// Names one application timer set with [`Context::set_timer`] or
/// [`Context::set_timer_at`] (or the same on the [`Reactor`]).
///
/// A timer's id is stale once it has fired or been cancelled: cancelling
/// it again returns false and never reaches a newer timer, even one that
/// reuses its place. (The id holds an index and a 64-bit generation from
/// one counter per reactor, which does not repeat.)
///
/// [`Context::set_timer`]: crate::Context::set_timer
/// [`Context::set_timer_at`]: crate::Context::set_timer_at
/// [`Reactor`]: crate::Reactor
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    // Generation first: ids order by when they were made.
    generation: u64,
    index: u32,
}

impl TimerId {
    pub(crate) fn new(index: u32, generation: u64) -> TimerId {
        TimerId { generation, index }
    }

    /// The index of its timer cell.
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }

    pub(crate) fn generation(self) -> u64 {
        self.generation
    }
}

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timer#{}.{}", self.index, self.generation)
    }
}

impl fmt::Debug for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerId")
            .field("index", &self.index)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Names one event source the application registered with
/// [`Context::register`] (or [`Reactor::register`]).
///
/// Once the source is deregistered its id is stale: it is refused by
/// [`Context::reregister`] and [`Context::deregister`], and no readiness
/// is ever reported under it, even when a newer source takes its place.
///
/// [`Context::register`]: crate::Context::register
/// [`Context::reregister`]: crate::Context::reregister
/// [`Context::deregister`]: crate::Context::deregister
/// [`Reactor::register`]: crate::Reactor::register
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId {
    generation: u64,
    index: u32,
}

impl SourceId {
    pub(crate) fn new(index: u32, generation: u64) -> SourceId {
        SourceId { generation, index }
    }

    /// The index of its source slot.
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source#{}.{}", self.index, self.generation)
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceId")
            .field("index", &self.index)
            .field("generation", &self.generation)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_eight_bytes_holding_its_index_and_generation() {
        assert_eq!(std::mem::size_of::<ConnId>(), 8);
        let id = ConnId::new(7, 9);
        assert_eq!((id.index(), id.generation()), (7, 9));
        assert_eq!(id.as_u64(), (9 << INDEX_BITS) | 7);
        assert_eq!(id.to_string(), "conn#7.9");
        assert_eq!(format!("{id:?}"), "ConnId { index: 7, generation: 9 }");
        let top = ConnId::new(MAX_SLOTS - 1, GENERATION_MASK);
        assert_eq!(
            (top.index(), top.generation()),
            (MAX_SLOTS - 1, GENERATION_MASK)
        );
        assert_eq!(ConnId::nowhere(3).index(), MAX_SLOTS);
        assert_ne!(ConnId::nowhere(3), ConnId::new(MAX_SLOTS - 1, 3));
    }

    #[test]
    fn generations_skip_zero_and_wrap_within_their_bits() {
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(41), 42);
        assert_eq!(next_generation(GENERATION_MASK - 1), GENERATION_MASK);
        assert_eq!(next_generation(GENERATION_MASK), 1);
    }
}
