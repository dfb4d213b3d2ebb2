//! Where entries sit: the doubly linked bucket lists of each level's
//! slots and the due list, the occupancy bits that find the next
//! non-empty slot, and the cascade of a higher level's slot into lower
//! ones as time reaches it.
//!
//! Links are entry indices; a bucket list grows (amortised) only when it
//! passes its largest size so far.

use super::level::NONE;
use super::{Place, TimerKey, Wheel};

impl<T> Wheel<T> {
    /// The earliest slot to process over all levels: `(level, slot, start)`.
    /// (A lower level's slots always start before a higher level's, as in
    /// tokio; taking the minimum does not rely on it.)
    ///
    /// The scan over the six levels is kept (by [`poll`](Self::poll))
    /// until an occupancy bit changes: while none does, the answer found
    /// at an earlier `elapsed` stands for any later one before its start
    /// (each level's answer is the earliest start after `elapsed` of its
    /// occupied slots, and none of those starts lies between the two), so
    /// a reactor turn that filed nothing new costs no scan. (Since a due
    /// slot is cascaded, which changes its bit, the start check only
    /// guards that reasoning.)
    #[inline]
    pub(super) fn next_slot(&self) -> Option<(usize, usize, u64)> {
        match self.slots.kept_next() {
            Some(None) => None,
            Some(Some(next)) if self.elapsed < next.2 => Some(next),
            _ => self.scan_next_slot(),
        }
    }

    /// [`next_slot`](Self::next_slot), keeping a fresh scan's result.
    #[inline]
    pub(super) fn next_slot_kept(&mut self) -> Option<(usize, usize, u64)> {
        let next = self.next_slot();
        self.slots.keep_next(next);
        next
    }

    pub(super) fn scan_next_slot(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for (n, level) in self.slots.levels().iter().enumerate() {
            if let Some((slot, start)) = level.next_expiration(self.elapsed) {
                if best.map_or(true, |(_, _, b)| start < b) {
                    best = Some((n, slot, start));
                }
            }
        }
        best
    }

    /// Files entry `index` (filed nowhere) by its tick: into the due list
    /// if it is due at `elapsed`, else into its slot.
    pub(super) fn link(&mut self, index: u32) {
        let Some(tick) = self.tick_of(index) else {
            return;
        };
        if tick <= self.elapsed {
            let tail = self.due_tail;
            if self.tick_of(tail).map_or(true, |t| t <= tick) {
                // Due after everything already due (as when a slot comes
                // due): append.
                self.append_due(index, tail);
            } else {
                self.link_due(index, tick);
            }
            return;
        }
        let bucket = self.bucket_for(tick);
        let pos = self.slots.push(bucket, index);
        if let Some(entry) = self.at_mut(index) {
            entry.place = Place::Slot {
                bucket: bucket as u16,
                pos,
            };
        }
    }

    /// The due-list links `(prev, next)` of entry `index`; both [`NONE`]
    /// for [`NONE`] or an entry not in the due list.
    pub(super) fn due_links(&self, index: u32) -> (u32, u32) {
        match self.at(index).map(|e| e.place) {
            Some(Place::Due { prev, next }) => (prev, next),
            _ => (NONE, NONE),
        }
    }

    /// Points the `next` link (`forward`) or the `prev` link of due entry
    /// `index` at `to`; a no-op for [`NONE`].
    pub(super) fn set_due_link(&mut self, index: u32, forward: bool, to: u32) {
        if let Some(Place::Due { prev, next }) = self.at_mut(index).map(|e| &mut e.place) {
            if forward {
                *next = to;
            } else {
                *prev = to;
            }
        }
    }

    /// Sorts entry `index` into the due list. Timers come due from a slot
    /// one tick at a time, each tick later than all due before it, so they
    /// append at the tail; only a deadline inserted in the past walks the
    /// list, from the head.
    pub(super) fn link_due(&mut self, index: u32, tick: u64) {
        let mut before = NONE;
        if self.tick_of(self.due_tail).is_some_and(|t| t > tick) {
            before = self.due_head;
            while let Some(t) = self.tick_of(before) {
                if t > tick {
                    break;
                }
                before = self.due_links(before).1;
            }
        }
        let prev = if before == NONE {
            self.due_tail
        } else {
            self.due_links(before).0
        };
        if let Some(entry) = self.at_mut(index) {
            entry.place = Place::Due { prev, next: before };
        }
        match prev {
            NONE => self.due_head = index,
            _ => self.set_due_link(prev, true, index),
        }
        match before {
            NONE => self.due_tail = index,
            _ => self.set_due_link(before, false, index),
        }
    }

    /// Appends entry `index` to the due list after `tail` (the list's
    /// tail, [`NONE`] when it is empty).
    #[inline]
    pub(super) fn append_due(&mut self, index: u32, tail: u32) {
        if let Some(entry) = self.at_mut(index) {
            entry.place = Place::Due {
                prev: tail,
                next: NONE,
            };
        }
        match tail {
            NONE => self.due_head = index,
            _ => self.set_due_link(tail, true, index),
        }
        self.due_tail = index;
    }

    /// Takes the entry filed at `place` out of its slot or the due list.
    /// The entry itself is not touched (it may already be out of the
    /// slab): in a slot, the slot's last entry moves into its position,
    /// and that entry's recorded position is updated.
    #[inline]
    pub(super) fn unlink(&mut self, place: Place) {
        match place {
            Place::Slot { bucket, pos } => {
                let moved = self.slots.swap_remove(usize::from(bucket), pos);
                if moved != NONE {
                    self.moved_to(moved, pos);
                }
            }
            Place::Due { prev, next } => self.unlink_due(prev, next),
        }
    }

    /// Records that entry `index` now sits at position `pos` of its slot.
    pub(super) fn moved_to(&mut self, index: u32, pos: u32) {
        if let Some(Place::Slot { pos: at, .. }) = self.at_mut(index).map(|e| &mut e.place) {
            *at = pos;
        }
    }

    /// Joins the due-list neighbours of an entry taken out of the list.
    pub(super) fn unlink_due(&mut self, prev: u32, next: u32) {
        match prev {
            NONE => self.due_head = next,
            _ => self.set_due_link(prev, true, next),
        }
        match next {
            NONE => self.due_tail = prev,
            _ => self.set_due_link(next, false, prev),
        }
    }

    /// Empties a slot whose start is `elapsed`: its timers due now join the
    /// due list, the rest are re-filed closer to their tick (a lower level;
    /// a deadline still beyond the horizon parks in the top level again).
    /// The slot's vector is detached first, so re-filing into the same slot
    /// cannot disturb the walk; its allocation is handed back afterwards.
    pub(super) fn cascade(&mut self, bucket: usize) {
        let entries = self.slots.take(bucket);
        for &index in &entries {
            self.link(index);
        }
        self.slots.restore(bucket, entries);
    }

    pub(super) fn pop_due(&mut self) -> Option<(TimerKey, T)> {
        let index = self.due_head;
        let entry = self.vacate_at(index, None)?;
        self.unlink(entry.place);
        let key = TimerKey {
            index,
            generation: entry.generation,
        };
        Some((key, entry.value))
    }
}
