//! The wheel's entry storage: a slab of entries addressed by index, each
//! with the generation that makes a stale key find nothing, and the tick
//! and place it is filed at.
//!
//! Only storage: which bucket or due list an entry sits in is `links`'s
//! business.

use std::mem;

use super::level::NONE;
use super::{Cell, Entry, Place, TimerKey, Wheel};

impl<T> Wheel<T> {
    /// The index the next [`occupy`](Self::occupy) fills: the first vacant
    /// cell, or a new one at the end.
    #[inline]
    pub(super) fn vacant_index(&self) -> u32 {
        if self.free != NONE {
            return self.free;
        }
        match u32::try_from(self.cells.len()) {
            Ok(index) if index != NONE => index,
            _ => panic!("tether::proto::wheel: too many pending timers for u32 keys"),
        }
    }

    /// Puts a new entry, already filed at `place`, in cell `index`, which
    /// must be [`vacant_index`](Self::vacant_index).
    #[inline]
    pub(super) fn occupy(
        &mut self,
        index: u32,
        value: T,
        tick: u64,
        generation: u32,
        place: Place,
    ) {
        let entry = Entry {
            value,
            tick,
            generation,
            place,
        };
        self.len += 1;
        if let Some(cell) = self.cells.get_mut(index as usize) {
            if let Cell::Vacant { next_free } = *cell {
                self.free = next_free;
            }
            *cell = Cell::Occupied(entry);
        } else {
            self.cells.push(Cell::Occupied(entry));
        }
    }

    /// Takes the entry of a live key out of the slab (it is still filed in
    /// its list, at `entry.place`); `None` for a stale key.
    #[inline]
    pub(super) fn vacate(&mut self, key: TimerKey) -> Option<Entry<T>> {
        self.vacate_at(key.index, Some(key.generation))
    }

    /// Takes the entry in cell `index` out of the slab, if the cell is
    /// occupied (by `generation`, when given), and puts the cell on the free
    /// list.
    #[inline]
    pub(super) fn vacate_at(&mut self, index: u32, generation: Option<u32>) -> Option<Entry<T>> {
        let cell = self.cells.get_mut(index as usize)?;
        match cell {
            Cell::Occupied(e) if generation.map_or(true, |g| g == e.generation) => {}
            _ => return None,
        }
        let vacant = Cell::Vacant {
            next_free: self.free,
        };
        let Cell::Occupied(entry) = mem::replace(cell, vacant) else {
            return None;
        };
        self.free = index;
        self.len -= 1;
        Some(entry)
    }

    pub(super) fn entry(&self, key: TimerKey) -> Option<&Entry<T>> {
        match self.cells.get(key.index as usize) {
            Some(Cell::Occupied(e)) if e.generation == key.generation => Some(e),
            _ => None,
        }
    }

    /// The entry at a link, `None` for [`NONE`] (or a vacant cell).
    #[inline]
    pub(super) fn at_mut(&mut self, index: u32) -> Option<&mut Entry<T>> {
        match self.cells.get_mut(index as usize) {
            Some(Cell::Occupied(e)) => Some(e),
            _ => None,
        }
    }

    pub(super) fn at(&self, index: u32) -> Option<&Entry<T>> {
        match self.cells.get(index as usize) {
            Some(Cell::Occupied(e)) => Some(e),
            _ => None,
        }
    }

    pub(super) fn tick_of(&self, index: u32) -> Option<u64> {
        self.at(index).map(|e| e.tick)
    }
}
