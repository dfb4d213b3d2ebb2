//! A hierarchical hashed timing wheel (Varghese & Lauck), after tokio's.
//!
//! Its job: hold every deadline of a reactor — thousands of heartbeat,
//! dead-peer and redial timers — with O(1) insert, cancel and reset, and
//! hand back the due ones in deadline order. It never reads a clock (the
//! caller passes every `Instant`) and never fires a timer before its
//! deadline: deadlines round *up* to the millisecond tick, the clock rounds
//! *down*, and when a slot of a higher level comes due (at its start, the
//! earliest deadline it may hold) it only re-files its timers into lower
//! levels, firing just those due exactly then.
//!
//! # Layout
//!
//! Time is counted in whole-millisecond ticks after the wheel's origin.
//! Six levels of 64 slots each; a slot of level `n` is `64^n` ticks wide:
//!
//! | level | slot width  | level span  | holds timers due (roughly) within |
//! |-------|-------------|-------------|-----------------------------------|
//! | 0     | 1 ms        | 64 ms       | 64 ms                             |
//! | 1     | 64 ms       | ≈ 4.1 s     | 4.1 s                             |
//! | 2     | ≈ 4.1 s     | ≈ 4.4 min   | 4.4 min                           |
//! | 3     | ≈ 4.4 min   | ≈ 4.7 h     | 4.7 h                             |
//! | 4     | ≈ 4.7 h     | ≈ 12.4 days | 12.4 days                         |
//! | 5     | ≈ 12.4 days | ≈ 795 days  | 795 days, and anything later      |
//!
//! A timer goes to the level of the highest 6-bit digit in which its tick
//! differs from the wheel's current tick (`elapsed`), into the slot given
//! by that digit of its own tick. When that slot's start tick arrives the
//! slot is emptied: timers due exactly then become *due*, the others are
//! re-filed (cascaded) into lower levels, now closer to `elapsed`.
//!
//! | piece | what it is |
//! |-------|------------|
//! | `entries` | a `Slab` of entries: value, tick, `prev`/`next` links, generation, level and slot |
//! | slot list | a doubly linked list threaded through the slab by `u32` indices, so removal is O(1) |
//! | `occupied` | per level, a `u64` with bit `i` set ⇔ slot `i` is non-empty; `trailing_zeros` finds the next slot |
//! | due list | timers already due, sorted by tick, returned one per [`Wheel::poll`] |
//!
//! A deadline beyond the top level's span (≈ 795 days) keeps its true tick,
//! is parked in the top level's furthest slot and is re-filed, not fired,
//! when that slot comes due, once per ≈ 795-day pass. Ticks are capped at
//! 2^48 (≈ 8 900 years): a deadline that far out never fires, and capping
//! also bounds the passes a single clock jump can cost to 4 096.

mod level;
#[cfg(test)]
mod tests;

use std::fmt;
use std::iter::FusedIterator;
use std::time::{Duration, Instant};

use slab::Slab;

use self::level::{Level, LEVELS, NONE};

/// The largest tick a deadline is rounded to, ≈ 8 900 years. The clock is
/// capped one below, so a deadline at the cap never fires. The cap keeps
/// slot arithmetic far from overflow and bounds the top-level passes (each
/// re-filing the timers parked beyond the horizon) to `MAX_TICK / HORIZON`
/// = 4 096, however far one `poll` jumps.
const MAX_TICK: u64 = 1 << 48;

/// `Entry::level` of an entry in the due list rather than in a slot.
const DUE: u8 = LEVELS as u8;

/// Identifies one scheduled timer.
///
/// It carries a generation, so a stale key — its timer already fired or
/// was cancelled, and its slab index perhaps reused by a newer timer — is
/// harmless: [`Wheel::cancel`], [`Wheel::reset`] and [`Wheel::get`] treat it
/// as unknown. (Generations come from one wheel-wide `u32` counter; a stale
/// key could only match again after exactly 2^32 further inserts.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// One timer: its value, its deadline tick and its place in a list.
struct Entry<T> {
    value: T,
    /// The deadline in ticks after the origin, rounded up.
    tick: u64,
    prev: u32,
    next: u32,
    generation: u32,
    /// `0..LEVELS` for a slot list, [`DUE`] for the due list.
    level: u8,
    slot: u8,
}

/// A hierarchical timing wheel of millisecond resolution holding values of
/// type `T` (see the [module docs](self) for the layout).
///
/// The wheel owns no clock: the caller passes the `Instant`s. Deadlines
/// round up to the next whole millisecond after `origin`, so a timer never
/// fires early, and fires at most one tick late when polled every
/// millisecond.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tether::wheel::Wheel;
///
/// let start = Instant::now();
/// let mut wheel = Wheel::new(start);
/// let ping = wheel.insert(start + Duration::from_millis(250), "send PING");
/// let dead = wheel.insert(start + Duration::from_secs(10), "peer dead");
///
/// // Sleep at most until the next expiration (possibly an earlier
/// // cascade point), then collect whatever is due.
/// let wake = wheel.next_expiration().unwrap();
/// assert!(wake <= start + Duration::from_millis(250));
/// let fired: Vec<_> = wheel.advance(start + Duration::from_millis(300)).collect();
/// assert_eq!(fired, [(ping, "send PING")]);
///
/// // A frame arrived: push the dead-peer deadline out.
/// assert!(wheel.reset(dead, start + Duration::from_secs(20)));
/// assert_eq!(wheel.advance(start + Duration::from_secs(15)).count(), 0);
/// assert_eq!(wheel.len(), 1);
/// ```
pub struct Wheel<T> {
    /// Tick 0.
    origin: Instant,
    /// The tick the wheel has been advanced to. Every timer in a slot is due
    /// after it; every timer due at or before it is in the due list.
    elapsed: u64,
    entries: Slab<Entry<T>>,
    levels: [Level; LEVELS],
    /// The due list, sorted by tick, all ticks `<= elapsed`.
    due_head: u32,
    due_tail: u32,
    /// Bumped by every insert and stored in the entry and its key.
    generation: u32,
}

impl<T> Wheel<T> {
    /// An empty wheel whose tick 0 is `origin`; ticks are whole
    /// milliseconds after it.
    pub fn new(origin: Instant) -> Self {
        Self::with_capacity(origin, 0)
    }

    /// An empty wheel with room for `capacity` timers before it allocates.
    pub fn with_capacity(origin: Instant, capacity: usize) -> Self {
        Wheel {
            origin,
            elapsed: 0,
            entries: Slab::with_capacity(capacity),
            levels: std::array::from_fn(Level::new),
            due_head: NONE,
            due_tail: NONE,
            generation: 0,
        }
    }

    /// Schedules `value` for `deadline` and returns its key. O(1).
    ///
    /// The deadline is rounded up to a whole millisecond. A deadline in the
    /// past (or before the origin) fires at the next [`poll`](Self::poll),
    /// ordered by its own tick among the other due timers (sorting it in
    /// walks only the timers already due and not yet polled).
    ///
    /// # Panics
    ///
    /// If `u32::MAX - 1` timers are already pending (keys index the slab
    /// with a `u32`; that many entries would take over 100 GB).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let index = match u32::try_from(self.entries.vacant_key()) {
            Ok(index) if index != NONE => index,
            _ => panic!("tether::wheel: too many pending timers for u32 keys"),
        };
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let tick = self.deadline_tick(deadline);
        // `vacant_key` is the key this insert receives.
        self.entries.insert(Entry {
            value,
            tick,
            prev: NONE,
            next: NONE,
            generation,
            level: DUE,
            slot: 0,
        });
        self.link(index);
        TimerKey { index, generation }
    }

    /// Removes a pending timer and returns its value. O(1).
    ///
    /// `None` for a stale key (its timer fired or was cancelled); that is a
    /// no-op and never touches another timer.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.get(key)?;
        self.unlink(key.index);
        self.entries.try_remove(key.index as usize).map(|e| e.value)
    }

    /// Moves a pending timer to `deadline` (earlier or later). O(1), like
    /// [`insert`](Self::insert). Returns `false`, doing nothing, for a
    /// stale key.
    pub fn reset(&mut self, key: TimerKey, deadline: Instant) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        let tick = self.deadline_tick(deadline);
        self.unlink(key.index);
        if let Some(entry) = self.entries.get_mut(key.index as usize) {
            entry.tick = tick;
        }
        self.link(key.index);
        true
    }

    /// The value of a pending timer; `None` for a stale key.
    pub fn get(&self, key: TimerKey) -> Option<&T> {
        self.entry(key).map(|e| &e.value)
    }

    /// The value of a pending timer, mutably; `None` for a stale key.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        self.entries
            .get_mut(key.index as usize)
            .filter(|e| e.generation == key.generation)
            .map(|e| &mut e.value)
    }

    /// The deadline of a pending timer, rounded up to its millisecond tick;
    /// `None` for a stale key.
    pub fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.entry(key).and_then(|e| self.instant_at(e.tick))
    }

    /// When to poll next: an instant no later than the earliest pending
    /// deadline, or `None` when the wheel is empty.
    ///
    /// Like tokio's, it may be earlier than that deadline: the start of a
    /// higher-level slot, where polling only cascades timers downwards.
    /// It may also be in the past, when timers are already due. Cheap: a
    /// bitmask scan of each level, no walk over the timers.
    pub fn next_expiration(&self) -> Option<Instant> {
        let tick = match self.tick_of(self.due_head) {
            Some(first_due) => first_due,
            None => self.next_slot()?.2,
        };
        self.instant_at(tick)
    }

    /// Removes and returns one timer whose deadline is at or before `now`,
    /// earliest first (ties within one millisecond tick in any order);
    /// `None` when nothing is due.
    ///
    /// Higher-level slots whose start has passed are cascaded down on the
    /// way, re-linking entries in place (no allocation). A `now` earlier
    /// than a previous one is treated as that previous one: time does not
    /// go backwards, and nothing fires early.
    pub fn poll(&mut self, now: Instant) -> Option<(TimerKey, T)> {
        let now = self.clock_tick(now).max(self.elapsed);
        loop {
            if self.due_head != NONE {
                return self.pop_due();
            }
            match self.next_slot() {
                Some((level, slot, start)) if start <= now => {
                    self.elapsed = start;
                    self.cascade(level, slot);
                }
                _ => {
                    self.elapsed = now;
                    return None;
                }
            }
        }
    }

    /// Every timer due at `now`, earliest first: an iterator calling
    /// [`poll(now)`](Self::poll) until it returns `None`. Timers it does
    /// not get to stay in the wheel, due.
    pub fn advance(&mut self, now: Instant) -> Expired<'_, T> {
        Expired { wheel: self, now }
    }

    /// How many timers are pending (due ones not yet polled included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    // ----- ticks -----

    /// `deadline` in ticks: `ceil((deadline - origin) / 1 ms)`, 0 before
    /// the origin, capped at [`MAX_TICK`].
    #[inline]
    fn deadline_tick(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.origin);
        // u64 arithmetic (no u128 division): this runs on every insert.
        let ms = since
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(since.subsec_nanos().div_ceil(1_000_000)));
        ms.min(MAX_TICK)
    }

    /// `now` in ticks: `floor((now - origin) / 1 ms)`, 0 before the origin,
    /// capped below [`MAX_TICK`].
    #[inline]
    fn clock_tick(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        let ms = since
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(since.subsec_millis()));
        ms.min(MAX_TICK - 1)
    }

    fn instant_at(&self, tick: u64) -> Option<Instant> {
        self.origin.checked_add(Duration::from_millis(tick))
    }

    // ----- entries and lists -----

    fn entry(&self, key: TimerKey) -> Option<&Entry<T>> {
        self.entries
            .get(key.index as usize)
            .filter(|e| e.generation == key.generation)
    }

    /// The entry at a list link, `None` for [`NONE`].
    fn at_mut(&mut self, index: u32) -> Option<&mut Entry<T>> {
        if index == NONE {
            return None;
        }
        self.entries.get_mut(index as usize)
    }

    fn tick_of(&self, index: u32) -> Option<u64> {
        if index == NONE {
            return None;
        }
        self.entries.get(index as usize).map(|e| e.tick)
    }

    /// The earliest slot to process over all levels: `(level, slot, start)`.
    /// (A lower level's slots always start before a higher level's, as in
    /// tokio; taking the minimum does not rely on it.)
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for (n, level) in self.levels.iter().enumerate() {
            if let Some((slot, start)) = level.next_expiration(self.elapsed) {
                if best.map_or(true, |(_, _, b)| start < b) {
                    best = Some((n, slot, start));
                }
            }
        }
        best
    }

    /// Files entry `index` by its tick: into the due list if it is due at
    /// `elapsed`, else into its slot.
    fn link(&mut self, index: u32) {
        let Some(tick) = self.tick_of(index) else {
            return;
        };
        if tick <= self.elapsed {
            self.link_due(index, tick);
            return;
        }
        let (level, slot) = level::position(self.elapsed, tick);
        let head = self.levels[level].head(slot);
        if let Some(entry) = self.at_mut(index) {
            entry.prev = NONE;
            entry.next = head;
            entry.level = level as u8;
            entry.slot = slot as u8;
        }
        if let Some(first) = self.at_mut(head) {
            first.prev = index;
        }
        self.levels[level].set_head(slot, index);
    }

    /// Sorts entry `index` into the due list. Timers come due from a slot
    /// one tick at a time, each tick later than all due before it, so they
    /// append at the tail; only a deadline inserted in the past walks the
    /// list, from the head.
    fn link_due(&mut self, index: u32, tick: u64) {
        let mut before = NONE;
        if self.tick_of(self.due_tail).is_some_and(|t| t > tick) {
            before = self.due_head;
            while let Some(t) = self.tick_of(before) {
                if t > tick {
                    break;
                }
                before = self.entries.get(before as usize).map_or(NONE, |e| e.next);
            }
        }
        let prev = if before == NONE {
            self.due_tail
        } else {
            self.entries.get(before as usize).map_or(NONE, |e| e.prev)
        };
        if let Some(entry) = self.at_mut(index) {
            entry.prev = prev;
            entry.next = before;
            entry.level = DUE;
            entry.slot = 0;
        }
        match self.at_mut(prev) {
            Some(p) => p.next = index,
            None => self.due_head = index,
        }
        match self.at_mut(before) {
            Some(b) => b.prev = index,
            None => self.due_tail = index,
        }
    }

    /// Takes entry `index` out of whichever list holds it, clearing the
    /// slot's occupancy bit when its list becomes empty.
    fn unlink(&mut self, index: u32) {
        let Some(entry) = self.at_mut(index) else {
            return;
        };
        let (prev, next, level, slot) = (entry.prev, entry.next, entry.level, entry.slot);
        entry.prev = NONE;
        entry.next = NONE;
        match self.at_mut(prev) {
            Some(p) => p.next = next,
            None => match self.levels.get_mut(usize::from(level)) {
                Some(l) => l.set_head(usize::from(slot), next),
                None => self.due_head = next,
            },
        }
        match self.at_mut(next) {
            Some(n) => n.prev = prev,
            None if level == DUE => self.due_tail = prev,
            None => {}
        }
    }

    /// Empties a slot whose start is `elapsed`: its timers due now join the
    /// due list, the rest are re-filed closer to their tick (a lower level;
    /// a deadline still beyond the horizon parks in the top level again).
    /// Re-links in place: the slot's list is detached first, so re-filing
    /// into the same slot cannot disturb the walk.
    fn cascade(&mut self, level: usize, slot: usize) {
        let mut index = self.levels[level].take(slot);
        while let Some(entry) = self.at_mut(index) {
            let next = entry.next;
            self.link(index);
            index = next;
        }
    }

    fn pop_due(&mut self) -> Option<(TimerKey, T)> {
        let index = self.due_head;
        self.unlink(index);
        let entry = self.entries.try_remove(index as usize)?;
        let key = TimerKey {
            index,
            generation: entry.generation,
        };
        Some((key, entry.value))
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("origin", &self.origin)
            .field("elapsed_ms", &self.elapsed)
            .field("len", &self.len())
            .field("occupied", &self.levels.each_ref().map(Level::occupied))
            .finish_non_exhaustive()
    }
}

/// The timers due at one instant, earliest first; see [`Wheel::advance`].
pub struct Expired<'a, T> {
    wheel: &'a mut Wheel<T>,
    now: Instant,
}

impl<T> Iterator for Expired<'_, T> {
    type Item = (TimerKey, T);

    fn next(&mut self) -> Option<(TimerKey, T)> {
        self.wheel.poll(self.now)
    }
}

// Nothing can be inserted while the iterator borrows the wheel, so once
// `poll` says nothing is due it keeps saying so.
impl<T> FusedIterator for Expired<'_, T> {}

impl<T> fmt::Debug for Expired<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expired")
            .field("now", &self.now)
            .field("wheel", &self.wheel)
            .finish()
    }
}
