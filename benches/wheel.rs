//! Micro benchmarks of the timer wheel ([`tether::proto::wheel::Wheel`]) against a
//! binary heap with lazy deletion, side by side in the same groups.
//!
//! Run with `cargo bench --bench wheel` (one case:
//! `cargo bench --bench wheel -- insert_cancel/heap/1M`). The defaults are
//! shortened to 1 s of warm-up and 3 s of measurement per case so the whole
//! file finishes in well under 2 minutes; `--warm-up-time` and
//! `--measurement-time` override them. `cargo test --benches` runs every
//! case once as a smoke test.
//!
//! # What is measured
//!
//! Each structure is first filled with N live "background" timers (N = 1 k,
//! 100 k, 1 M) with random deadlines spread over 60 s; they stay pending for
//! the whole case (asserted afterwards). Then, per operation
//! (`Throughput::Elements(1)`):
//!
//! - `insert_cancel`: insert one timer at a random deadline in the same
//!   0–60 s window, then cancel it. The clock does not move. This is the
//!   life of most reactor timers: armed, then disarmed before they fire.
//!   The deadlines are drawn before the clock starts (65 536 of them,
//!   cycled, read in order), so the timed loop does not also time the
//!   PRNG and std's out-of-line `Instant + Duration`: about 7 ns of the
//!   13 ns the harness cost per op when it drew them in the loop, a floor
//!   that no structure could go below and that compressed every ratio.
//! - `insert_expire`: insert one timer 1 ms after the current time, move the
//!   clock forward 1 ms and poll until nothing is due (exactly that timer
//!   fires). The background timers sit in a 60 s window one year ahead, so
//!   the clock never reaches them and every op fires exactly one timer.
//!
//! - `insert_cancel/1M paired` (printed after criterion's cases, not a
//!   criterion case): the wheel and the heap at 1 M timed in alternating
//!   batches of 100 000 `insert_cancel`s, 40 M each, and the ratio of the
//!   total times. Criterion times the cases one after the other, and on a
//!   shared VM the machine's speed can change between them; interleaving
//!   gives both the same machine. `cargo bench --bench wheel -- paired`
//!   runs only this. It runs twice: with the deadlines as `Instant`s
//!   (each insert converts one to a tick with std's arithmetic, two
//!   calls that cannot be inlined and cost the same in both structures:
//!   about 40 % of the wheel's op) and as ticks converted before the
//!   clock starts (`Wheel::insert_tick`, which tether's reactor files
//!   with): the structures' own costs.
//!
//! Both structures are driven by the same generic code (the [`Timers`]
//! trait, monomorphised, no dynamic dispatch) with the same PRNG seed, so
//! they see identical deadline sequences, and both round deadlines up and
//! the clock down to whole milliseconds after one origin.
//!
//! # The baseline: a binary heap with lazy deletion
//!
//! [`HeapTimers`] is the textbook alternative to a timing wheel, written the
//! way a competent reactor would write it (Python's asyncio, for one, uses
//! this exact scheme):
//!
//! - a `std::collections::BinaryHeap` of `(tick, slot, generation)` min-
//!   ordered by tick; values live in a slot table (`Vec`, free list) indexed
//!   by `slot`, so heap entries stay 16 bytes and handles are `Copy`;
//! - `insert` takes a free slot and pushes onto the heap: O(log n) worst
//!   case, O(1) expected for random deadlines;
//! - `cancel` is O(1): it bumps the slot's generation, which turns the heap
//!   entry into a tombstone, and frees the slot. The tombstone stays in the
//!   heap until it reaches the top (`poll` pops and skips it) or until the
//!   heap is compacted;
//! - compaction keeps the heap from growing without bound: when tombstones
//!   outnumber live entries (heap length > 2 × live, and > 64 entries), one
//!   `BinaryHeap::retain` drops them all and re-heapifies in O(n). That
//!   happens at most once per `live` cancels, so it is amortised O(1) per
//!   cancel, and its cost is timed (it is part of what the heap costs), not
//!   hidden in setup;
//! - `poll` peeks at the top, pops it if due and skips tombstones.
//!
//! It is fair: it does no more work than it must (O(1) cancel, no
//! per-entry allocation, capacity reserved up front just like the wheel's
//! slab), and its weak points — O(log n) sift-up for a deadline earlier
//! than everything pending, O(log n) sift-down on every pop, periodic O(n)
//! compaction — are inherent to a heap, not introduced here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use tether::proto::wheel::{TimerKey, Wheel};

/// Background sizes, with the label used in benchmark ids.
const SIZES: [(usize, &str); 3] = [(1_000, "1k"), (100_000, "100k"), (1_000_000, "1M")];

/// Width of the window the deadlines are spread over.
const SPREAD: Duration = Duration::from_secs(60);

/// Where `insert_expire` parks its background window: far enough that the
/// clock (1 ms per op) never gets there, whatever the measurement time.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// How far `insert_expire` moves the clock per op: one wheel tick.
const TICK: Duration = Duration::from_millis(1);

// ----- a tiny deterministic PRNG (the crate's own is private) --------------

#[path = "common/splitmix.rs"]
mod splitmix;
use splitmix::SplitMix64;

/// Durations for the timers.
trait Spread {
    /// A duration in `[1 ns, SPREAD]`, nanosecond-grained so that rounding
    /// up to the millisecond tick is exercised.
    fn in_spread(&mut self) -> Duration;
}

impl Spread for SplitMix64 {
    fn in_spread(&mut self) -> Duration {
        // Multiply-shift maps the 64-bit value onto the range without a
        // division.
        let span = SPREAD.as_nanos() as u64;
        let nanos = ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64;
        Duration::from_nanos(nanos + 1)
    }
}

// ----- the interface both structures are driven through --------------------

/// What the benchmarks need from a timer structure.
trait Timers {
    type Key: Copy;
    fn insert(&mut self, deadline: Instant, value: u64) -> Self::Key;
    /// `insert` with the deadline already in whole milliseconds after the
    /// shared origin, rounded up (what both structures turn an `Instant`
    /// into first).
    fn insert_tick(&mut self, tick: u64, value: u64) -> Self::Key;
    fn cancel(&mut self, key: Self::Key) -> Option<u64>;
    fn poll(&mut self, now: Instant) -> Option<u64>;
    fn len(&self) -> usize;
}

impl Timers for Wheel<u64> {
    type Key = TimerKey;

    #[inline]
    fn insert(&mut self, deadline: Instant, value: u64) -> TimerKey {
        Wheel::insert(self, deadline, value)
    }

    #[inline]
    fn insert_tick(&mut self, tick: u64, value: u64) -> TimerKey {
        Wheel::insert_tick(self, tick, value)
    }

    #[inline]
    fn cancel(&mut self, key: TimerKey) -> Option<u64> {
        Wheel::cancel(self, key)
    }

    #[inline]
    fn poll(&mut self, now: Instant) -> Option<u64> {
        Wheel::poll(self, now).map(|(_, value)| value)
    }

    fn len(&self) -> usize {
        Wheel::len(self)
    }
}

// ----- the baseline ---------------------------------------------------------

/// Handle of a heap timer: its slot and the slot's generation at insert.
#[derive(Clone, Copy, Debug)]
struct HeapKey {
    slot: u32,
    generation: u32,
}

/// A slot of the value table. Its generation is bumped whenever the timer
/// in it is cancelled or fires, which makes its heap entry a tombstone.
#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A min-heap of deadlines with lazy deletion (see the file header).
#[derive(Debug)]
struct HeapTimers<T> {
    /// Tick 0; ticks are whole milliseconds after it, as in the wheel.
    origin: Instant,
    /// `(tick, slot, generation)`, earliest tick on top.
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    /// Timers pending (the heap also holds tombstones).
    live: usize,
}

/// Below this many heap entries compaction is not worth it.
const COMPACT_MIN: usize = 64;

impl<T> HeapTimers<T> {
    fn with_capacity(origin: Instant, capacity: usize) -> Self {
        HeapTimers {
            origin,
            // Room for `capacity` live entries plus as many tombstones,
            // the most it holds before compacting.
            heap: BinaryHeap::with_capacity(2 * capacity + COMPACT_MIN + 1),
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            live: 0,
        }
    }

    /// `ceil((deadline - origin) / 1 ms)`, as the wheel rounds deadlines.
    #[inline]
    fn deadline_tick(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.origin);
        let partial = since.subsec_nanos() % 1_000_000 != 0;
        since.as_millis() as u64 + u64::from(partial)
    }

    /// `floor((now - origin) / 1 ms)`, as the wheel reads the clock.
    #[inline]
    fn clock_tick(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    #[inline]
    fn insert(&mut self, deadline: Instant, value: T) -> HeapKey {
        self.insert_tick(self.deadline_tick(deadline), value)
    }

    #[inline]
    fn insert_tick(&mut self, tick: u64, value: T) -> HeapKey {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].value = Some(value);
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: Some(value),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.slots[slot as usize].generation;
        self.heap.push(Reverse((tick, slot, generation)));
        self.live += 1;
        HeapKey { slot, generation }
    }

    /// O(1): the heap entry becomes a tombstone; compacts when tombstones
    /// outnumber live entries.
    #[inline]
    fn cancel(&mut self, key: HeapKey) -> Option<T> {
        let value = self.release(key.slot, key.generation)?;
        if self.heap.len() > COMPACT_MIN && self.heap.len() > 2 * self.live {
            self.compact();
        }
        Some(value)
    }

    /// Takes the value out of a live slot and frees it; `None` for a stale
    /// handle.
    #[inline]
    fn release(&mut self, slot: u32, generation: u32) -> Option<T> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.generation != generation {
            return None;
        }
        let value = s.value.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        Some(value)
    }

    /// Drops every tombstone and restores the heap property: O(n).
    #[cold]
    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap.retain(|&Reverse((_, slot, generation))| {
            slots[slot as usize].generation == generation
        });
    }

    #[inline]
    fn poll(&mut self, now: Instant) -> Option<T> {
        let now = self.clock_tick(now);
        while let Some(&Reverse((tick, slot, generation))) = self.heap.peek() {
            if tick > now {
                return None;
            }
            self.heap.pop();
            if let Some(value) = self.release(slot, generation) {
                return Some(value);
            }
            // A tombstone: skip it.
        }
        None
    }
}

impl Timers for HeapTimers<u64> {
    type Key = HeapKey;

    #[inline]
    fn insert(&mut self, deadline: Instant, value: u64) -> HeapKey {
        HeapTimers::insert(self, deadline, value)
    }

    #[inline]
    fn insert_tick(&mut self, tick: u64, value: u64) -> HeapKey {
        HeapTimers::insert_tick(self, tick, value)
    }

    #[inline]
    fn cancel(&mut self, key: HeapKey) -> Option<u64> {
        HeapTimers::cancel(self, key)
    }

    #[inline]
    fn poll(&mut self, now: Instant) -> Option<u64> {
        HeapTimers::poll(self, now)
    }

    fn len(&self) -> usize {
        self.live
    }
}

// ----- the floor: the harness alone -----------------------------------------

/// Keeps no timers at all, but does the per-operation work both real
/// structures share: the deadline (drawn and added to the clock by the
/// harness) converted to a millisecond tick after the origin. Its time is
/// the harness's floor: what no timer structure can go below here, so the
/// report can give each structure's own cost (its time minus the floor)
/// next to the plain ratio.
#[derive(Debug)]
struct NoTimers {
    origin: Instant,
    /// The fixture's background count (`capacity - 1`) and how many of
    /// those inserts have come: the ones after them are the benchmark's.
    background: usize,
    filled: usize,
    /// The tick of the timer the benchmark inserted, until cancelled or
    /// polled.
    pending: Option<u64>,
}

impl NoTimers {
    fn with_capacity(origin: Instant, capacity: usize) -> Self {
        NoTimers {
            origin,
            background: capacity.saturating_sub(1),
            filled: 0,
            pending: None,
        }
    }

    #[inline]
    fn tick(&self, at: Instant) -> u64 {
        ceil_ms_after(self.origin, at)
    }
}

/// `at` in whole milliseconds after `origin`, rounded up: the tick both
/// structures file a deadline at.
#[inline]
fn ceil_ms_after(origin: Instant, at: Instant) -> u64 {
    let since = at.saturating_duration_since(origin);
    since.as_secs() * 1000 + u64::from(since.subsec_nanos().div_ceil(1_000_000))
}

impl Timers for NoTimers {
    type Key = u64;

    #[inline]
    fn insert(&mut self, deadline: Instant, value: u64) -> u64 {
        self.insert_tick(self.tick(deadline), value)
    }

    #[inline]
    fn insert_tick(&mut self, tick: u64, _value: u64) -> u64 {
        let tick = black_box(tick);
        if self.filled < self.background {
            self.filled += 1;
        } else {
            self.pending = Some(tick);
        }
        tick
    }

    #[inline]
    fn cancel(&mut self, key: u64) -> Option<u64> {
        self.pending = None;
        Some(key)
    }

    #[inline]
    fn poll(&mut self, now: Instant) -> Option<u64> {
        let now = self.tick(now);
        self.pending
            .filter(|&t| t <= now)
            .inspect(|_| self.pending = None)
    }

    fn len(&self) -> usize {
        self.filled
    }
}

// ----- the benchmarks -------------------------------------------------------

/// How many deadlines `insert_cancel` cycles through (a power of two):
/// drawn before the clock starts, so the timed loop reads one instead of
/// drawing it (1 MiB, read in order).
const DRAWN: usize = 1 << 16;

/// One structure ready to bench: `n` background timers in, its clock, the
/// deadlines `insert_cancel` uses and the next value to insert.
struct Fixture<S> {
    timers: S,
    now: Instant,
    /// `now` + a random duration in the window, `DRAWN` of them.
    deadlines: Vec<Instant>,
    /// The same deadlines in ticks, for `insert_cancel_tick`.
    ticks: Vec<u64>,
    next_id: u64,
    background: usize,
}

impl<S: Timers> Fixture<S> {
    /// Fills `timers` with `n` timers due at `origin + offset + [0, 60 s]`.
    fn new(mut timers: S, origin: Instant, n: usize, offset: Duration) -> Self {
        let mut rng = SplitMix64(0x5EED_7E7E);
        for id in 0..n as u64 {
            timers.insert(origin + offset + rng.in_spread(), id);
        }
        let deadlines: Vec<Instant> = (0..DRAWN).map(|_| origin + rng.in_spread()).collect();
        let ticks = deadlines
            .iter()
            .map(|&d| ceil_ms_after(origin, d))
            .collect();
        Fixture {
            timers,
            now: origin,
            deadlines,
            ticks,
            next_id: n as u64,
            background: n,
        }
    }

    /// Insert one timer at a random deadline in the background's window,
    /// cancel it.
    #[inline]
    fn insert_cancel(&mut self) {
        let deadline = self.deadlines[self.next_id as usize % DRAWN];
        let key = self.timers.insert(deadline, self.next_id);
        self.next_id += 1;
        black_box(self.timers.cancel(black_box(key)));
    }

    /// [`insert_cancel`](Self::insert_cancel) with the deadline given in
    /// ticks: the structure's own work, without std's `Instant`
    /// arithmetic.
    #[inline]
    fn insert_cancel_tick(&mut self) {
        let tick = self.ticks[self.next_id as usize % DRAWN];
        let key = self.timers.insert_tick(tick, self.next_id);
        self.next_id += 1;
        black_box(self.timers.cancel(black_box(key)));
    }

    /// Insert one timer 1 ms ahead, move the clock 1 ms, poll until nothing
    /// is due.
    #[inline]
    fn insert_expire(&mut self) {
        self.timers.insert(self.now + TICK, self.next_id);
        self.next_id += 1;
        self.now += TICK;
        let mut fired = 0;
        while let Some(value) = self.timers.poll(self.now) {
            black_box(value);
            fired += 1;
        }
        debug_assert_eq!(fired, 1, "exactly the new timer fires");
    }

    /// The background is intact: nothing but the benchmark's own timers
    /// was removed or left behind.
    fn check(&self) {
        assert_eq!(self.timers.len(), self.background, "background changed");
    }
}

#[derive(Clone, Copy)]
enum Op {
    InsertCancel,
    InsertExpire,
}

fn bench_op(c: &mut Criterion, op: Op) {
    let (group_name, offset) = match op {
        Op::InsertCancel => ("insert_cancel", Duration::ZERO),
        Op::InsertExpire => ("insert_expire", FAR),
    };
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    for (n, label) in SIZES {
        bench_one(&mut group, "wheel", label, op, || {
            let origin = Instant::now();
            Fixture::new(Wheel::with_capacity(origin, n + 1), origin, n, offset)
        });
        bench_one(&mut group, "heap", label, op, || {
            let origin = Instant::now();
            Fixture::new(HeapTimers::with_capacity(origin, n + 1), origin, n, offset)
        });
        bench_one(&mut group, "floor", label, op, || {
            let origin = Instant::now();
            Fixture::new(NoTimers::with_capacity(origin, n + 1), origin, n, offset)
        });
    }
    group.finish();
}

/// Benches `op` on one structure. The fixture is built on first use, so a
/// filtered-out case costs no setup, and dropped when the case is done.
fn bench_one<S: Timers>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    label: &str,
    op: Op,
    setup: impl Fn() -> Fixture<S>,
) {
    let mut fixture: Option<Fixture<S>> = None;
    group.bench_function(BenchmarkId::new(name, label), |b| {
        let f = fixture.get_or_insert_with(&setup);
        match op {
            Op::InsertCancel => b.iter(|| f.insert_cancel()),
            Op::InsertExpire => b.iter(|| f.insert_expire()),
        }
        f.check();
    });
}

fn insert_cancel(c: &mut Criterion) {
    bench_op(c, Op::InsertCancel);
}

fn insert_expire(c: &mut Criterion) {
    bench_op(c, Op::InsertExpire);
}

// ----- the paired run: wheel and heap interleaved ---------------------------

/// Operations per timed batch of the paired run (about 1.3 ms of the
/// wheel's at 1 M, 2 ms of the heap's outside its compactions).
const PAIRED_BATCH: u64 = 100_000;
/// Batches of each structure in the paired run: 40 M operations, about
/// 40 of the heap's compactions (one per million cancels), so that where
/// the run starts in the heap's compaction cycle moves the total by ~2 %.
const PAIRED_ROUNDS: usize = 400;

/// How the paired run hands deadlines to the structures.
#[derive(Clone, Copy, Debug)]
enum Given {
    /// As `Instant`s: each insert converts with std's arithmetic.
    Instants,
    /// As ticks, converted before the clock starts.
    Ticks,
}

/// Times one batch of `insert_cancel` (or `insert_cancel_tick`) on `f`.
fn batch<S: Timers>(f: &mut Fixture<S>, ops: u64, given: Given) -> Duration {
    let start = Instant::now();
    match given {
        Given::Instants => (0..ops).for_each(|_| f.insert_cancel()),
        Given::Ticks => (0..ops).for_each(|_| f.insert_cancel_tick()),
    }
    start.elapsed()
}

/// `insert_cancel` at 1 M for the wheel and the heap side by side: short
/// batches of each, alternated (their order swapped every round), so that
/// both are timed on the same machine. Criterion times one case after the
/// other, seconds apart, and on this VM the speed of the whole machine
/// changes between such stretches (see docs/BENCHMARKS.md), which moves
/// the ratio of two cases more than either structure does. The ratio is
/// of the total times: the heap's cost is mostly its periodic compaction,
/// which a median of batches would leave out.
fn paired_insert_cancel(rounds: usize, ops: u64, given: Given) {
    let (n, label) = SIZES[SIZES.len() - 1];
    let origin = Instant::now();
    let mut wheel = Fixture::new(
        Wheel::with_capacity(origin, n + 1),
        origin,
        n,
        Duration::ZERO,
    );
    let mut heap = Fixture::new(
        HeapTimers::with_capacity(origin, n + 1),
        origin,
        n,
        Duration::ZERO,
    );
    // Warm both up (caches, page faults).
    batch(&mut wheel, ops, given);
    batch(&mut heap, ops, given);
    let (mut wheel_time, mut heap_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        if round % 2 == 0 {
            wheel_time += batch(&mut wheel, ops, given);
            heap_time += batch(&mut heap, ops, given);
        } else {
            heap_time += batch(&mut heap, ops, given);
            wheel_time += batch(&mut wheel, ops, given);
        }
    }
    wheel.check();
    heap.check();
    let total = (rounds as u64 * ops) as f64;
    let wheel_ns = wheel_time.as_nanos() as f64 / total;
    let heap_ns = heap_time.as_nanos() as f64 / total;
    println!(
        "insert_cancel/{label} paired, deadlines as {} ({rounds} alternating batches of {ops} \
         ops each): wheel {wheel_ns:.1} ns, heap {heap_ns:.1} ns per op; heap/wheel {:.2}x",
        match given {
            Given::Instants => "Instants",
            Given::Ticks => "ticks",
        },
        heap_ns / wheel_ns
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = insert_cancel, insert_expire
}

/// The benchmark filter among criterion's arguments, if any: the first
/// argument that is neither an option nor an option's value.
fn filter(args: &[String]) -> Option<&str> {
    /// Criterion's options that take no value.
    const FLAGS: [&str; 9] = [
        "--bench",
        "--noplot",
        "--list",
        "--exact",
        "--quiet",
        "--verbose",
        "--discard-baseline",
        "--quick",
        "--test",
    ];
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if !arg.starts_with('-') {
            return Some(arg);
        }
        if arg.starts_with("--") && !arg.contains('=') && !FLAGS.contains(&arg.as_str()) {
            args.next(); // the option's value
        }
    }
    None
}

fn main() {
    benches();
    // The paired run: under `cargo bench` with no filter or one that names
    // it; `cargo test --benches` runs it once, small, as a smoke test.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    for given in [Given::Instants, Given::Ticks] {
        if !benching {
            paired_insert_cancel(2, 1_000, given);
        } else if filter(&args).map_or(true, |f| "insert_cancel/paired".contains(f)) {
            paired_insert_cancel(PAIRED_ROUNDS, PAIRED_BATCH, given);
        }
    }
    Criterion::default().configure_from_args().final_summary();
}
