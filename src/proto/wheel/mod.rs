//! A hierarchical hashed timing wheel (Varghese & Lauck), after tokio's.
//!
//! Its job: hold every deadline of a reactor — thousands of heartbeat,
//! dead-peer and redial timers — and hand back the due ones in deadline
//! order.
//!
//! # Guarantees
//!
//! - **Never early.** A timer never fires before its deadline: deadlines
//!   round *up* to the millisecond tick, the clock rounds *down*, and when
//!   a slot of a higher level comes due (at its start, the earliest
//!   deadline it may hold) it only re-files its timers into lower levels,
//!   firing just those due exactly then.
//! - **In order.** [`Wheel::poll`] returns due timers earliest first (ties
//!   within one tick in any order).
//! - **Stale keys are harmless.** A key whose timer fired or was cancelled
//!   matches nothing, even after its slab cell is reused (until 2^32
//!   further inserts).
//! - **Bounded memory.** Memory is bounded by the most timers pending at
//!   once, not by how many were ever inserted (see below).
//!
//! # Complexity
//!
//! Insert, cancel and reset are O(1), amortised (a slot vector may grow or
//! shrink). Finding the next expiration is a `trailing_zeros` per level.
//! Cascading moves a timer only to a lower level, except one parked beyond
//! the top level's span (below), and one `poll` that jumps the clock far
//! ahead costs at most 4 096 passes of the top level. Measured against a
//! binary heap: `docs/BENCHMARKS.md`.
//!
//! # What it must never do
//!
//! Read a clock (the caller passes every `Instant`, or ticks), fire a timer
//! early, or panic on a deadline, however far in the past or future (its
//! one panic is running out of `u32` keys, about 2^32 timers pending at
//! once).
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
//! | `cells` | the slab: a `Vec` of cells, each an entry (value, tick, generation, place) or a vacant cell on a free list; a key's `index` is its cell, a vacated cell is reused first |
//! | slot vector | per slot (a *bucket*, numbered `level × 64 + slot`), a `Vec<u32>` of the indices filed there, in no order; an entry's place records its bucket and position, so removal is a `swap_remove` that also updates the position of the one entry it moves |
//! | `occupied` | per level, a `u64` with bit `i` set ⇔ slot `i` is non-empty; `trailing_zeros` finds the next slot |
//! | due list | timers already due, sorted by tick, doubly linked through their places (`Due { prev, next }`), returned one per [`Wheel::poll`] |
//!
//! Why vectors and not lists threaded through the slab (as in tokio's):
//! linking an entry at a list head writes the old head's back-pointer,
//! and unlinking writes both neighbours', entries scattered over the whole
//! slab. A slot vector's tail is hot, so an insert touches its own cell
//! and that tail, and a cancel touches its cell, its position in the
//! vector and, unless it was the last, the one entry moved there. The
//! slab's free list is kept in the wheel (one lookup per cancel, a cell of
//! 32 bytes for an 8-byte value) and the common insert needs no call: an
//! insert + cancel is about 100 instructions of the wheel's own.
//!
//! Memory stays bounded by the pending timers: vacant cells are reused,
//! last vacated first (the slab keeps its peak length, as the `slab` crate
//! does); a slot vector's capacity is kept within `max(16, 4 × its
//! length)` — halved when a removal leaves it a quarter full, amortised
//! O(1) — and a cascaded slot keeps its emptied allocation only if it is at
//! most 16. So the vectors hold at most 4 × pending + 384 × 16 indices,
//! however many timers were inserted and cancelled.
//!
//! A deadline beyond the top level's span (≈ 795 days) keeps its true tick,
//! is parked in the top level's furthest slot and is re-filed, not fired,
//! when that slot comes due, once per ≈ 795-day pass. Ticks are capped at
//! 2^48 (≈ 8 900 years): a deadline that far out never fires, and capping
//! also bounds the passes a single clock jump can cost to 4 096.

mod entries;
mod level;
mod links;
#[cfg(test)]
mod tests;

use std::fmt;
use std::iter::FusedIterator;
use std::time::{Duration, Instant};

use self::level::{Slots, NONE};

/// The largest tick a deadline is rounded to, ≈ 8 900 years. The clock is
/// capped one below, so a deadline at the cap never fires. The cap keeps
/// slot arithmetic far from overflow and bounds the top-level passes (each
/// re-filing the timers parked beyond the horizon) to `MAX_TICK / HORIZON`
/// = 4 096, however far one `poll` jumps.
const MAX_TICK: u64 = 1 << 48;

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

/// One timer: its value, its deadline tick and where it is filed.
struct Entry<T> {
    value: T,
    /// The deadline in ticks after the origin, rounded up.
    tick: u64,
    generation: u32,
    place: Place,
}

/// Where an entry is filed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In bucket `bucket` (`level * 64 + slot`), at position `pos` of its
    /// vector.
    Slot { bucket: u16, pos: u32 },
    /// In the due list, between `prev` and `next` ([`NONE`] at the ends).
    Due { prev: u32, next: u32 },
}

/// Not linked anywhere yet: the place of an entry about to be filed.
const UNFILED: Place = Place::Due {
    prev: NONE,
    next: NONE,
};

/// A cell of the slab: a timer, or a link in the free list of vacant
/// cells. (The compiler keeps the cell's tag in `Place`'s spare tag
/// values: a cell is no larger than its entry, 32 bytes for a `u64`
/// value.)
enum Cell<T> {
    Occupied(Entry<T>),
    Vacant { next_free: u32 },
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
/// use tether::proto::wheel::Wheel;
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
    /// The slab: every timer, indexed by the `index` of its key. Vacant
    /// cells form a free list from `free`, reused last-freed first.
    cells: Vec<Cell<T>>,
    /// First vacant cell, or [`NONE`].
    free: u32,
    /// Occupied cells.
    len: usize,
    slots: Slots,
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
            cells: Vec::with_capacity(capacity),
            free: NONE,
            len: 0,
            slots: Slots::new(),
            due_head: NONE,
            due_tail: NONE,
            generation: 0,
        }
    }

    /// Schedules `value` for `deadline` and returns its key. O(1)
    /// (amortised: the slab or a slot's vector may grow).
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
    #[inline]
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        self.insert_tick(self.deadline_tick(deadline), value)
    }

    /// [`insert`](Self::insert) with the deadline already in ticks (see
    /// [`deadline_tick`](Self::deadline_tick)): for a caller that keeps
    /// its deadlines as ticks, or converts one deadline for several uses,
    /// and so skips std's `Instant` arithmetic (two calls that cannot be
    /// inlined, about 40 % of an insert + cancel). A tick beyond the cap
    /// (≈ 8 900 years) is taken as the cap: it never fires.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tether::proto::wheel::Wheel;
    ///
    /// let start = Instant::now();
    /// let mut wheel = Wheel::new(start);
    /// let tick = wheel.deadline_tick(start + Duration::from_micros(2_500));
    /// assert_eq!(tick, 3, "rounded up to whole milliseconds");
    /// wheel.insert_tick(tick, "late");
    /// wheel.insert_tick(tick - 1, "early");
    /// let fired: Vec<_> = wheel.advance(start + Duration::from_millis(3)).map(|(_, v)| v).collect();
    /// assert_eq!(fired, ["early", "late"]);
    /// ```
    #[inline]
    pub fn insert_tick(&mut self, tick: u64, value: T) -> TimerKey {
        let tick = tick.min(MAX_TICK);
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        // The common case, with no call but the clock arithmetic: a future
        // deadline below the top level, a vacant cell to reuse and room in
        // the slot's vector. Anything else takes `insert_slow`.
        let index = self.free;
        if tick > self.elapsed {
            if let (Some(Cell::Vacant { next_free }), Some(bucket)) = (
                self.cells.get(index as usize),
                level::low_bucket(self.elapsed, tick),
            ) {
                let next_free = *next_free;
                if let Some(pos) = self.slots.push_within_capacity(bucket, index) {
                    let entry = Entry {
                        value,
                        tick,
                        generation,
                        place: Place::Slot {
                            bucket: bucket as u16,
                            pos,
                        },
                    };
                    if let Some(cell) = self.cells.get_mut(index as usize) {
                        *cell = Cell::Occupied(entry);
                    }
                    self.free = next_free;
                    self.len += 1;
                    return TimerKey { index, generation };
                }
            }
        }
        self.insert_slow(tick, generation, value)
    }

    /// [`insert`](Self::insert) when the slab or the slot's vector has to
    /// grow, the deadline is already due, or it goes to the top level.
    #[inline(never)]
    fn insert_slow(&mut self, tick: u64, generation: u32, value: T) -> TimerKey {
        let index = self.vacant_index();
        if tick > self.elapsed {
            let bucket = self.bucket_for(tick);
            let pos = self.slots.push(bucket, index);
            let place = Place::Slot {
                bucket: bucket as u16,
                pos,
            };
            self.occupy(index, value, tick, generation, place);
        } else {
            self.occupy(index, value, tick, generation, UNFILED);
            self.link_due(index, tick);
        }
        TimerKey { index, generation }
    }

    /// Removes a pending timer and returns its value. O(1) (amortised: a
    /// slot's vector may shrink).
    ///
    /// `None` for a stale key (its timer fired or was cancelled); that is a
    /// no-op and never touches another timer.
    #[inline]
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.vacate(key)?;
        self.unlink(entry.place);
        Some(entry.value)
    }

    /// Moves a pending timer to `deadline` (earlier or later). O(1), like
    /// [`insert`](Self::insert). Returns `false`, doing nothing, for a
    /// stale key.
    pub fn reset(&mut self, key: TimerKey, deadline: Instant) -> bool {
        self.reset_tick(key, self.deadline_tick(deadline))
    }

    /// [`reset`](Self::reset) with the deadline already in ticks (see
    /// [`insert_tick`](Self::insert_tick)).
    pub fn reset_tick(&mut self, key: TimerKey, tick: u64) -> bool {
        let Some(entry) = self.entry(key) else {
            return false;
        };
        let place = entry.place;
        let tick = tick.min(MAX_TICK);
        self.unlink(place);
        if let Some(entry) = self.at_mut(key.index) {
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
        self.at_mut(key.index)
            .filter(|e| e.generation == key.generation)
            .map(|e| &mut e.value)
    }

    /// The tick a pending timer is filed at (see
    /// [`deadline_tick`](Self::deadline_tick)); `None` for a stale key.
    pub fn tick(&self, key: TimerKey) -> Option<u64> {
        self.entry(key).map(|e| e.tick)
    }

    /// The deadline of a pending timer, rounded up to its millisecond tick;
    /// `None` for a stale key.
    pub fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.entry(key).and_then(|e| self.instant_at(e.tick))
    }

    /// `deadline` rounded up to the wheel's grid of `granularity`: a whole
    /// number of `granularity` steps (in whole milliseconds, at least 1)
    /// after the wheel's origin. Never earlier than `deadline` (beyond
    /// the tick range it is returned as it is).
    ///
    /// Deadlines that tolerate a little lateness (heartbeats) and are
    /// filed at such instants share their expiries: a reactor holding
    /// thousands of them wakes once per grid step instead of once per
    /// millisecond.
    pub fn coarsen(&self, deadline: Instant, granularity: Duration) -> Instant {
        let tick = self.deadline_tick(deadline);
        if tick >= MAX_TICK {
            // The cap stands for "later than that": keep the deadline.
            return deadline;
        }
        self.instant_at(self.coarsen_tick(tick, granularity))
            .unwrap_or(deadline)
    }

    /// [`coarsen`](Self::coarsen) in ticks: `tick` rounded up to a whole
    /// number of `granularity` steps (whole milliseconds, at least 1). A
    /// tick whose step would reach the cap is returned as it is (so one at
    /// the cap stays there: it never fires).
    pub fn coarsen_tick(&self, tick: u64, granularity: Duration) -> u64 {
        let step = u64::try_from(granularity.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        match tick.div_ceil(step).checked_mul(step) {
            Some(t) if tick < MAX_TICK && t < MAX_TICK => t,
            _ => tick.min(MAX_TICK),
        }
    }

    /// When to poll next: an instant no later than the earliest pending
    /// deadline, or `None` when the wheel is empty.
    ///
    /// Like tokio's, it may be earlier than that deadline: the start of a
    /// higher-level slot, where polling only cascades timers downwards.
    /// It may also be in the past, when timers are already due. Cheap: a
    /// bitmask scan of each level, no walk over the timers.
    pub fn next_expiration(&self) -> Option<Instant> {
        self.instant_at(self.next_expiration_tick()?)
    }

    /// [`next_expiration`](Self::next_expiration) in ticks: whole
    /// milliseconds after the origin, no clock arithmetic.
    pub fn next_expiration_tick(&self) -> Option<u64> {
        match self.tick_of(self.due_head) {
            Some(first_due) => Some(first_due),
            None => Some(self.next_slot()?.2),
        }
    }

    /// Removes and returns one timer whose deadline is at or before `now`,
    /// earliest first (ties within one millisecond tick in any order);
    /// `None` when nothing is due.
    ///
    /// Higher-level slots whose start has passed are cascaded down on the
    /// way, re-filing entries in place (no allocation beyond the slots'
    /// vectors growing). A `now` earlier than a previous one is treated as
    /// that previous one: time does not go backwards, and nothing fires
    /// early.
    pub fn poll(&mut self, now: Instant) -> Option<(TimerKey, T)> {
        self.poll_tick(self.now_tick(now))
    }

    /// [`poll`](Self::poll) with the clock already in ticks
    /// ([`now_tick`](Self::now_tick)): for a caller that reads the clock
    /// once and polls several times, or files in ticks too.
    pub fn poll_tick(&mut self, now_tick: u64) -> Option<(TimerKey, T)> {
        let now = now_tick.min(MAX_TICK - 1).max(self.elapsed);
        loop {
            if self.due_head != NONE {
                return self.pop_due();
            }
            match self.next_slot_kept() {
                Some((level, slot, start)) if start <= now => {
                    self.elapsed = start;
                    self.cascade(level::bucket(level, slot));
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
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `deadline` in the wheel's ticks, as [`insert`](Self::insert) files
    /// it: whole milliseconds after the origin, rounded up
    /// (`ceil((deadline - origin) / 1 ms)`), 0 before the origin, capped
    /// at 2^48 (≈ 8 900 years; a timer at the cap never fires).
    // `(n + 999_999) / 1_000_000` is one multiply; `div_ceil` also computes
    // the remainder, and this runs on every insert.
    #[allow(clippy::manual_div_ceil)]
    #[inline]
    pub fn deadline_tick(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.origin);
        // u64 arithmetic (no u128 division): this runs on every insert.
        let secs = since.as_secs();
        if secs >= MAX_TICK / 1000 {
            return MAX_TICK;
        }
        // At most (MAX_TICK / 1000 - 1) * 1000 + 1000 <= MAX_TICK. (The
        // nanoseconds are below 10^9: adding 999 999 cannot overflow u32.)
        secs * 1000 + u64::from((since.subsec_nanos() + 999_999) / 1_000_000)
    }

    /// The clock `now` in ticks, as [`poll`](Self::poll) reads it: whole
    /// milliseconds after the origin, rounded down
    /// (`floor((now - origin) / 1 ms)`), 0 before the origin, capped below
    /// 2^48. A timer filed at tick `t` is due once this reaches `t`.
    #[inline]
    pub fn now_tick(&self, now: Instant) -> u64 {
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

    /// The bucket a timer due at `tick` (after `elapsed`) is filed in.
    #[inline]
    fn bucket_for(&self, tick: u64) -> usize {
        let (level, slot) = level::position(self.elapsed, tick);
        level::bucket(level, slot)
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("origin", &self.origin)
            .field("elapsed_ms", &self.elapsed)
            .field("len", &self.len())
            .field(
                "occupied",
                &self.slots.levels().each_ref().map(|l| l.occupied()),
            )
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
