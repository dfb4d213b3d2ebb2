//! One level of the wheel: 64 slots, each `64^level` ticks wide, the list
//! head of every slot, and the occupancy bitmask that says which slots hold
//! timers.
//!
//! Everything here is pure slot arithmetic on `u64` ticks; the linked lists
//! themselves are threaded through the wheel's slab by `mod.rs`.

/// Levels in the wheel.
pub(super) const LEVELS: usize = 6;

/// Slots per level; one bit of the occupancy mask each.
pub(super) const SLOTS: usize = 64;

/// `log2(SLOTS)`: each level's slot index is 6 more bits of the tick.
const SLOT_BITS: u32 = 6;

/// Ticks spanned by all levels together, `64^6` ms ≈ 795 days. A timer
/// further away than this is parked in the top level's furthest slot.
pub(super) const HORIZON: u64 = 1 << (SLOT_BITS * LEVELS as u32);

/// The "no entry" list link (slab indices are `u32`, this one is never used).
pub(super) const NONE: u32 = u32::MAX;

/// One level: the head of each slot's list and which slots are non-empty.
#[derive(Debug)]
pub(super) struct Level {
    /// `6 × level`: a tick's slot index at this level is `(tick >> shift) % 64`.
    shift: u32,
    /// Bit `i` set ⇔ slot `i` holds at least one timer.
    occupied: u64,
    /// First entry of each slot's doubly linked list, or [`NONE`].
    heads: [u32; SLOTS],
}

impl Level {
    /// An empty level number `level` (0 = 1 ms slots).
    #[inline]
    pub(super) fn new(level: usize) -> Self {
        Level {
            shift: SLOT_BITS * level as u32,
            occupied: 0,
            heads: [NONE; SLOTS],
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

    /// The first entry of `slot`'s list, or [`NONE`].
    #[inline]
    pub(super) fn head(&self, slot: usize) -> u32 {
        self.heads[slot % SLOTS]
    }

    /// Makes `index` the first entry of `slot`'s list and keeps the
    /// occupancy bit in step: set for an entry, cleared for [`NONE`].
    #[inline]
    pub(super) fn set_head(&mut self, slot: usize, index: u32) {
        let slot = slot % SLOTS;
        self.heads[slot] = index;
        if index == NONE {
            self.occupied &= !(1 << slot);
        } else {
            self.occupied |= 1 << slot;
        }
    }

    /// Detaches `slot`'s whole list and returns its first entry (or
    /// [`NONE`]); the slot is empty afterwards.
    #[inline]
    pub(super) fn take(&mut self, slot: usize) -> u32 {
        let head = self.head(slot);
        self.set_head(slot, NONE);
        head
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
    let top = LEVELS - 1;
    if tick.saturating_sub(elapsed) >= HORIZON {
        return (top, slot_at(top, elapsed));
    }
    let masked = (elapsed ^ tick) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    let level = ((significant / SLOT_BITS) as usize).min(top);
    (level, slot_at(level, tick))
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
    fn set_head_keeps_the_occupancy_mask() {
        let mut level = Level::new(0);
        assert_eq!(level.occupied(), 0);
        level.set_head(3, 17);
        level.set_head(63, 4);
        assert_eq!(level.occupied(), (1 << 3) | (1 << 63));
        assert_eq!(level.head(3), 17);
        assert_eq!(level.take(3), 17);
        assert_eq!(level.head(3), NONE);
        assert_eq!(level.occupied(), 1 << 63);
        level.set_head(63, NONE);
        assert_eq!(level.occupied(), 0);
    }

    #[test]
    fn next_occupied_wraps_and_includes_from() {
        let mut level = Level::new(0);
        assert_eq!(level.next_occupied(0), None);
        level.set_head(10, 1);
        level.set_head(40, 2);
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
        level.set_head(3, 1);
        assert_eq!(
            level.next_expiration(elapsed),
            Some((3, (3 << 30) + HORIZON))
        );
        level.set_head(1, 2);
        assert_eq!(
            level.next_expiration(elapsed),
            Some((1, (1 << 30) + HORIZON))
        );
        level.set_head(9, 3);
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
            let start = levels[level].slot_start(elapsed, slot);
            assert!(start > elapsed, "elapsed {elapsed} tick {tick}");
            assert!(start <= tick, "elapsed {elapsed} tick {tick}");
        }
    }
}
