//! The wheel's slots: six levels of 64, each slot `64^level` ticks wide,
//! with the slab indices of every slot's timers and, per level, the
//! occupancy bitmask that says which slots hold timers.
//!
//! Besides the slot vectors, everything here is pure slot arithmetic on
//! `u64` ticks; the entries themselves live in the wheel's slab
//! (`mod.rs`), each recording its slot and its position in the slot.

/// Levels in the wheel.
pub(super) const LEVELS: usize = 6;

/// Slots per level; one bit of the occupancy mask each.
pub(super) const SLOTS: usize = 64;

/// `log2(SLOTS)`: each level's slot index is 6 more bits of the tick.
const SLOT_BITS: u32 = 6;

/// Ticks spanned by all levels together, `64^6` ms ≈ 795 days. A timer
/// further away than this is parked in the top level's furthest slot.
pub(super) const HORIZON: u64 = 1 << (SLOT_BITS * LEVELS as u32);

/// "No entry": a link to nothing (slab indices are `u32`, this one is never
/// used).
pub(super) const NONE: u32 = u32::MAX;

/// Slots over all levels.
const BUCKETS: usize = LEVELS * SLOTS;

/// A slot keeps this much capacity however few entries it holds; above it,
/// its capacity stays within four times its length (see
/// [`Slots::swap_remove`]).
pub(super) const SLOT_KEEP: usize = 16;

/// The capacity each slot of the lowest `PREALLOCATED_LEVELS` levels
/// starts with.
const PREALLOCATED: usize = 4;
const PREALLOCATED_LEVELS: usize = 3;

/// Every slot of every level, numbered `level * 64 + slot` (a *bucket*):
/// the slab indices filed there and the occupancy masks.
#[derive(Debug)]
pub(super) struct Slots {
    levels: [Level; LEVELS],
    /// The slab indices of each bucket's entries, in no particular order.
    /// An entry records its position here, so removal is a `swap_remove`.
    /// Inline (9 KiB), not boxed: an insert reaches its bucket's header
    /// without loading a pointer first.
    lists: [Vec<u32>; BUCKETS],
    /// The wheel's last scan for the next slot to process (see
    /// `Wheel::next_slot`), kept until an occupancy bit changes: `None`
    /// when unknown, `Some(None)` when no slot is occupied.
    next: Option<Option<NextSlot>>,
}

/// The next slot to process: `(level, slot, start tick)`.
pub(super) type NextSlot = (usize, usize, u64);

impl Slots {
    pub(super) fn new() -> Self {
        Slots {
            levels: std::array::from_fn(Level::new),
            // The three lowest levels (the next 4.4 minutes) hold the
            // deadlines that move all the time (a resumed session's ACK
            // delay, heartbeats): their slots get room up front, so that
            // an entry visiting a slot for the first time allocates
            // nothing (3 KiB per wheel).
            lists: std::array::from_fn(|b| {
                if b < PREALLOCATED_LEVELS * SLOTS {
                    Vec::with_capacity(PREALLOCATED)
                } else {
                    Vec::new()
                }
            }),
            next: None,
        }
    }

    /// Level `n`: its slot arithmetic and occupancy mask.
    #[cfg(test)]
    pub(super) fn level(&self, n: usize) -> &Level {
        &self.levels[n]
    }

    pub(super) fn levels(&self) -> &[Level; LEVELS] {
        &self.levels
    }

    /// The entries of `bucket` (slab indices), in no particular order.
    #[cfg(test)]
    pub(super) fn entries(&self, bucket: usize) -> &[u32] {
        &self.lists[bucket]
    }

    /// The capacity of `bucket`'s vector.
    #[cfg(test)]
    pub(super) fn capacity(&self, bucket: usize) -> usize {
        self.lists[bucket].capacity()
    }

    /// Appends `index` to `bucket` and returns its position there. Sets the
    /// slot's occupancy bit.
    #[inline]
    pub(super) fn push(&mut self, bucket: usize, index: u32) -> u32 {
        let list = &mut self.lists[bucket];
        let pos = list.len();
        list.push(index);
        if pos == 0 {
            self.mark(bucket, true);
        }
        pos as u32
    }

    /// [`push`](Self::push) if the bucket's vector has room, without
    /// allocating; `None` otherwise.
    #[inline]
    pub(super) fn push_within_capacity(&mut self, bucket: usize, index: u32) -> Option<u32> {
        let list = &mut self.lists[bucket];
        let pos = list.len();
        if pos == list.capacity() {
            return None;
        }
        list.push(index);
        if pos == 0 {
            self.mark(bucket, true);
        }
        Some(pos as u32)
    }

    /// Removes the entry at `pos` of `bucket` by moving the bucket's last
    /// entry into its place, and returns that moved entry (its position is
    /// now `pos`), or [`NONE`] when the removed entry was the last one.
    /// Clears the occupancy bit when the slot empties.
    ///
    /// Keeps the vector's capacity within `max(SLOT_KEEP, 4 × len)`: when
    /// it falls to a quarter full it is halved (to twice its length), so a
    /// burst of cancelled timers leaves no large allocation behind, at an
    /// amortised O(1) per removal.
    #[inline]
    pub(super) fn swap_remove(&mut self, bucket: usize, pos: u32) -> u32 {
        let list = &mut self.lists[bucket];
        let Some(last) = list.pop() else {
            return NONE;
        };
        let moved = match list.get_mut(pos as usize) {
            Some(hole) => {
                *hole = last;
                last
            }
            None => NONE,
        };
        if list.len() * 4 <= list.capacity() {
            // Rarely: an empty slot, or a large one shrinking.
            self.shrunk(bucket);
        }
        moved
    }

    /// After a removal left `bucket` at most a quarter full: clears its
    /// occupancy bit if it is empty, and halves its capacity (to twice its
    /// length, at least `SLOT_KEEP`) if that is above `SLOT_KEEP`.
    #[cold]
    #[inline(never)]
    fn shrunk(&mut self, bucket: usize) {
        let list = &mut self.lists[bucket];
        if list.capacity() > SLOT_KEEP {
            list.shrink_to((2 * list.len()).max(SLOT_KEEP));
        }
        if list.is_empty() {
            self.mark(bucket, false);
        }
    }

    /// The scan result kept by [`keep_next`](Self::keep_next), unless an
    /// occupancy bit has changed since.
    #[inline]
    pub(super) fn kept_next(&self) -> Option<Option<NextSlot>> {
        self.next
    }

    /// Keeps a scan result until the next occupancy change.
    #[inline]
    pub(super) fn keep_next(&mut self, next: Option<NextSlot>) {
        self.next = Some(next);
    }

    /// Sets (`occupied`) or clears `bucket`'s occupancy bit, and forgets
    /// the kept scan result.
    #[inline]
    fn mark(&mut self, bucket: usize, occupied: bool) {
        self.next = None;
        // `% LEVELS` keeps the index in range without a bounds check.
        let level = &mut self.levels[bucket / SLOTS % LEVELS];
        let bit = 1 << (bucket % SLOTS);
        if occupied {
            level.occupied |= bit;
        } else {
            level.occupied &= !bit;
        }
    }

    /// Detaches `bucket`'s entries and returns them; the slot is empty
    /// afterwards. Hand the vector back with [`restore`](Self::restore) to
    /// reuse its allocation.
    #[inline]
    pub(super) fn take(&mut self, bucket: usize) -> Vec<u32> {
        self.mark(bucket, false);
        std::mem::take(&mut self.lists[bucket])
    }

    /// Gives back the allocation of a vector from [`take`](Self::take),
    /// emptied, if the bucket is still empty and the allocation small (at
    /// most `SLOT_KEEP`); otherwise drops it.
    #[inline]
    pub(super) fn restore(&mut self, bucket: usize, mut entries: Vec<u32>) {
        let current = &mut self.lists[bucket];
        if current.capacity() == 0 && entries.capacity() <= SLOT_KEEP {
            entries.clear();
            *current = entries;
        }
    }
}

/// The bucket number of `slot` of `level`.
#[inline]
pub(super) fn bucket(level: usize, slot: usize) -> usize {
    level * SLOTS + slot % SLOTS
}

/// One level: its slot arithmetic and which of its slots are non-empty.
#[derive(Debug)]
pub(super) struct Level {
    /// `6 × level`: a tick's slot index at this level is `(tick >> shift) % 64`.
    shift: u32,
    /// Bit `i` set ⇔ slot `i` holds at least one timer.
    occupied: u64,
}

impl Level {
    /// An empty level number `level` (0 = 1 ms slots).
    #[inline]
    pub(super) fn new(level: usize) -> Self {
        Level {
            shift: SLOT_BITS * level as u32,
            occupied: 0,
        }
    }

    /// Ticks covered by one slot of this level: `64^level`.
    #[inline]
    pub(super) fn slot_range(&self) -> u64 {
        1 << self.shift
    }

    /// Ticks covered by the whole level: `64^(level + 1)`.
    #[inline]
    pub(super) fn level_range(&self) -> u64 {
        1 << (self.shift + SLOT_BITS)
    }

    /// The slot that `tick` falls in at this level.
    #[inline]
    pub(super) fn slot_for(&self, tick: u64) -> usize {
        ((tick >> self.shift) as usize) & (SLOTS - 1)
    }

    /// The occupancy mask: bit `i` set ⇔ slot `i` is non-empty.
    #[inline]
    pub(super) fn occupied(&self) -> u64 {
        self.occupied
    }

    /// The first occupied slot at or after `from`, wrapping past slot 63
    /// back to slot 0; `None` when the level is empty.
    #[inline]
    pub(super) fn next_occupied(&self, from: usize) -> Option<usize> {
        if self.occupied == 0 {
            return None;
        }
        let from = from % SLOTS;
        let zeros = self.occupied.rotate_right(from as u32).trailing_zeros() as usize;
        Some((from + zeros) % SLOTS)
    }

    /// The first tick *after* `elapsed` at which `slot` begins: in the
    /// current pass of this level if the slot is still ahead, else in the
    /// next pass (only the top level, which holds deadlines beyond its own
    /// span, ever has occupied slots behind the current one).
    #[inline]
    pub(super) fn slot_start(&self, elapsed: u64, slot: usize) -> u64 {
        let level_start = elapsed & !(self.level_range() - 1);
        let start = level_start + (slot % SLOTS) as u64 * self.slot_range();
        if start <= elapsed {
            start + self.level_range()
        } else {
            start
        }
    }

    /// The next slot of this level to process when the wheel stands at
    /// `elapsed`, with the tick it starts at. The search begins just after
    /// `elapsed`'s own slot and wraps, so that slot comes last: at the top
    /// level it holds only deadlines a full pass (≈ 795 days) away.
    #[inline]
    pub(super) fn next_expiration(&self, elapsed: u64) -> Option<(usize, u64)> {
        let slot = self.next_occupied(self.slot_for(elapsed) + 1)?;
        Some((slot, self.slot_start(elapsed, slot)))
    }
}

/// Where a timer due at `tick` is filed while the wheel stands at `elapsed`
/// (`elapsed < tick`): `(level, slot)`.
///
/// The level is the one of the highest 6-bit digit in which the two ticks
/// differ, so the slot's start is after `elapsed` and not after `tick`.
/// A tick [`HORIZON`] or more ahead goes to the top level's furthest slot —
/// the one `elapsed` is in, whose next start is a whole pass away — and is
/// re-filed, not fired, when that slot comes due.
#[inline]
pub(super) fn position(elapsed: u64, tick: u64) -> (usize, usize) {
    let masked = (elapsed ^ tick) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    let level = (significant / SLOT_BITS) as usize;
    if level < LEVELS - 1 {
        // The ticks agree from bit 30 up, so `tick` is within the horizon.
        return (level, slot_at(level, tick));
    }
    let top = LEVELS - 1;
    if tick.saturating_sub(elapsed) >= HORIZON {
        (top, slot_at(top, elapsed))
    } else {
        (top, slot_at(top, tick))
    }
}

/// The bucket of [`position`] when it is below the top level; `None` for
/// the top level (whose slot also depends on the horizon).
#[inline]
pub(super) fn low_bucket(elapsed: u64, tick: u64) -> Option<usize> {
    let masked = (elapsed ^ tick) | (SLOTS as u64 - 1);
    let level = ((63 - masked.leading_zeros()) / SLOT_BITS) as usize;
    if level < LEVELS - 1 {
        Some(bucket(level, slot_at(level, tick)))
    } else {
        None
    }
}

/// `tick`'s slot at `level` (the `level`-th 6-bit digit of the tick).
#[inline]
fn slot_at(level: usize, tick: u64) -> usize {
    ((tick >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_grow_by_64_per_level() {
        assert_eq!(Level::new(0).slot_range(), 1);
        assert_eq!(Level::new(0).level_range(), 64);
        assert_eq!(Level::new(1).slot_range(), 64);
        assert_eq!(Level::new(2).level_range(), 64 * 64 * 64);
        assert_eq!(Level::new(5).slot_range(), 1 << 30);
        assert_eq!(Level::new(5).level_range(), HORIZON);
        assert_eq!(HORIZON, 68_719_476_736, "64^6 ms ≈ 795.4 days");
    }

    #[test]
    fn slot_for_takes_the_level_digit() {
        let tick = (5 << 12) | (7 << 6) | 3;
        assert_eq!(Level::new(0).slot_for(tick), 3);
        assert_eq!(Level::new(1).slot_for(tick), 7);
        assert_eq!(Level::new(2).slot_for(tick), 5);
        assert_eq!(Level::new(3).slot_for(tick), 0);
        assert_eq!(Level::new(0).slot_for(64), 0);
        assert_eq!(Level::new(0).slot_for(63), 63);
    }

    #[test]
    fn push_and_swap_remove_keep_positions_and_the_occupancy_mask() {
        let mut slots = Slots::new();
        let (b3, b63) = (bucket(0, 3), bucket(0, 63));
        assert_eq!(slots.level(0).occupied(), 0);
        assert_eq!(slots.push(b3, 17), 0);
        assert_eq!(slots.push(b3, 18), 1);
        assert_eq!(slots.push(b3, 19), 2);
        assert_eq!(slots.push(b63, 4), 0);
        assert_eq!(slots.level(0).occupied(), (1 << 3) | (1 << 63));
        // Removing the first moves the last into its place.
        assert_eq!(slots.swap_remove(b3, 0), 19);
        assert_eq!(slots.entries(b3), [19, 18]);
        // Removing the last moves nothing.
        assert_eq!(slots.swap_remove(b3, 1), NONE);
        assert_eq!(slots.entries(b3), [19]);
        assert_eq!(slots.swap_remove(b3, 0), NONE);
        assert_eq!(slots.swap_remove(b3, 0), NONE, "empty: no-op");
        assert_eq!(slots.level(0).occupied(), 1 << 63);
        assert_eq!(slots.take(b63), [4]);
        assert_eq!(slots.level(0).occupied(), 0);
        assert!(slots.entries(b63).is_empty());
        // Another level's mask.
        slots.push(bucket(4, 9), 1);
        assert_eq!(slots.level(4).occupied(), 1 << 9);
        assert_eq!(slots.level(0).occupied(), 0);
    }

    #[test]
    fn bucket_capacity_follows_its_length_down() {
        let mut slots = Slots::new();
        let b = bucket(2, 7);
        for i in 0..10_000 {
            slots.push(b, i);
        }
        assert!(slots.capacity(b) >= 10_000);
        let mut rng = 0x9e37_79b9_u64;
        while !slots.entries(b).is_empty() {
            // Remove from anywhere, not only the end.
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            let pos = ((rng >> 33) % slots.entries(b).len() as u64) as u32;
            slots.swap_remove(b, pos);
            let (len, cap) = (slots.entries(b).len(), slots.capacity(b));
            assert!(cap <= SLOT_KEEP.max(4 * len), "len {len} cap {cap}");
        }
        assert!(slots.capacity(b) <= SLOT_KEEP);
        assert_eq!(slots.level(2).occupied(), 0);
    }

    #[test]
    fn restore_reuses_only_small_allocations_of_an_empty_bucket() {
        let mut slots = Slots::new();
        let b = bucket(1, 5);
        slots.push(b, 1);
        let taken = slots.take(b);
        let cap = taken.capacity();
        assert!(cap > 0 && cap <= SLOT_KEEP);
        slots.restore(b, taken);
        assert_eq!(slots.capacity(b), cap, "allocation reused");
        assert!(slots.entries(b).is_empty());
        assert_eq!(slots.level(1).occupied(), 0);

        // Refilled meanwhile: the bucket keeps its own vector.
        slots.push(b, 1);
        let taken = slots.take(b);
        slots.push(b, 2);
        slots.restore(b, taken);
        assert_eq!(slots.entries(b), [2]);

        // A large allocation is dropped, not kept by an empty bucket.
        let big = (0..1_000).collect::<Vec<u32>>();
        slots.take(b);
        slots.restore(b, big);
        assert_eq!(slots.capacity(b), 0);
    }

    #[test]
    fn next_occupied_wraps_and_includes_from() {
        let mut level = Level::new(0);
        assert_eq!(level.next_occupied(0), None);
        level.occupied = (1 << 10) | (1 << 40);
        assert_eq!(level.next_occupied(0), Some(10));
        assert_eq!(level.next_occupied(10), Some(10));
        assert_eq!(level.next_occupied(11), Some(40));
        assert_eq!(level.next_occupied(41), Some(10));
        assert_eq!(level.next_occupied(64), Some(10), "64 is slot 0 again");
    }

    #[test]
    fn slot_start_is_strictly_after_elapsed() {
        let level = Level::new(1);
        // elapsed = 200 is in slot 3 of level 1 (ticks 192..256).
        assert_eq!(level.slot_start(200, 4), 256);
        assert_eq!(level.slot_start(200, 63), 63 * 64);
        // Slots at or behind the current one start in the next pass.
        assert_eq!(level.slot_start(200, 3), 4096 + 192);
        assert_eq!(level.slot_start(200, 0), 4096);
        // Level 0 at the exact tick of a slot: the slot is behind us.
        assert_eq!(Level::new(0).slot_start(70, 6), 70 + 64);
        assert_eq!(Level::new(0).slot_start(70, 7), 71);
    }

    #[test]
    fn next_expiration_skips_the_current_slot_until_last() {
        let mut level = Level::new(5);
        let elapsed = 3 << 30; // start of top slot 3
        level.occupied |= 1 << 3;
        assert_eq!(
            level.next_expiration(elapsed),
            Some((3, (3 << 30) + HORIZON))
        );
        level.occupied |= 1 << 1;
        assert_eq!(
            level.next_expiration(elapsed),
            Some((1, (1 << 30) + HORIZON))
        );
        level.occupied |= 1 << 9;
        assert_eq!(level.next_expiration(elapsed), Some((9, 9 << 30)));
    }

    #[test]
    fn position_picks_the_highest_differing_digit() {
        assert_eq!(position(0, 1), (0, 1));
        assert_eq!(position(0, 63), (0, 63));
        assert_eq!(position(0, 64), (1, 1));
        assert_eq!(position(63, 64), (1, 1));
        assert_eq!(position(100, 127), (0, 63));
        assert_eq!(position(0, 4096), (2, 1));
        assert_eq!(position(0, (1 << 30) * 7 + 5), (5, 7));
        // Just across a top-level pass boundary but well within the horizon.
        assert_eq!(position(HORIZON - 10, HORIZON + 5), (5, 0));
        // Beyond the horizon: the slot elapsed is in, whatever the tick.
        assert_eq!(position(5 << 30, (5 << 30) + HORIZON), (5, 5));
        assert_eq!(position(5 << 30, u64::MAX >> 2), (5, 5));
    }

    #[test]
    fn filed_slot_starts_after_elapsed_and_not_after_the_tick() {
        let levels: Vec<Level> = (0..LEVELS).map(Level::new).collect();
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let elapsed = (x >> 20) % (4 * HORIZON);
            let distance = 1 + ((x >> 7) % (1 << (x % 40)));
            let tick = elapsed + distance;
            let (level, slot) = position(elapsed, tick);
            let low = (level < LEVELS - 1).then(|| bucket(level, slot));
            assert_eq!(
                low_bucket(elapsed, tick),
                low,
                "elapsed {elapsed} tick {tick}"
            );
            let start = levels[level].slot_start(elapsed, slot);
            assert!(start > elapsed, "elapsed {elapsed} tick {tick}");
            assert!(start <= tick, "elapsed {elapsed} tick {tick}");
        }
    }
}
