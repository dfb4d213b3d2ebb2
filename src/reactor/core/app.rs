//! The application's own timers and event sources, as the core holds them.
//!
//! Application timers live in the reactor's one wheel, next to the
//! connections' deadlines: a slab cell per timer (its token, its deadline
//! tick, its wheel key) and a wheel entry naming the cell
//! ([`Target::App`]). Setting and cancelling are a slab insert or remove
//! and a wheel insert or cancel, O(1); a cell is reused once its timer
//! fired or was cancelled, so firing allocates nothing once the slab and
//! the due batch have grown to the most timers pending and due at once.
//!
//! A deadline is filed at the wheel tick at or after it (the wheel rounds
//! deadlines up and the clock down), never coarsened to a grid: a timer
//! fires at the first turn whose clock has reached its deadline, never
//! before.
//!
//! Event sources get a slot whose index makes their mio token
//! ([`SOURCE_BASE`] + index); tether never reads or writes them.
//!
//! Never reads the clock and never blocks.

use std::io;
use std::mem;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Interest, Token};
use slab::Slab;

use super::{Core, Target, LISTENER_BASE};
use crate::id::{SourceId, TimerId};
use crate::proto::wheel::TimerKey;

/// Application source tokens start here: above every listener token
/// (listener indices stay far below 2^29), below the waker's, and, since
/// it is at or above [`LISTENER_BASE`], behind the one comparison that
/// keeps connection tokens (slab indices, below 2^24) on the fast path.
pub(in crate::reactor) const SOURCE_BASE: usize = LISTENER_BASE + (1 << 29);
/// Sources a reactor can hold at once: their tokens stay below 2^31, so
/// they fit a 32-bit `usize` and never reach the waker's.
const MAX_SOURCES: usize = 1 << 29;

/// The application's timers and sources.
#[derive(Default)]
pub(super) struct AppState {
    timers: Slab<AppTimer>,
    /// Timers taken from the wheel this turn, waiting for their callbacks.
    due: Vec<Due>,
    sources: Slab<SourceSlot>,
    /// The generation of the last timer or source id given out: one
    /// counter that never repeats (2^64), so a stale id never matches.
    generation: u64,
}

impl AppState {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }
}

/// One pending application timer.
struct AppTimer {
    generation: u64,
    token: u64,
    /// Its deadline in wheel ticks (rounded up).
    tick: u64,
    /// Its wheel entry; `None` once taken from the wheel, due and waiting
    /// for its callback this turn.
    key: Option<TimerKey>,
}

/// A timer that came due: sorted by deadline tick, then by id (ids order
/// by when they were set), which is the order callbacks run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::reactor) struct Due {
    tick: u64,
    id: TimerId,
}

impl Due {
    pub(in crate::reactor) fn id(self) -> TimerId {
        self.id
    }
}

/// One registered application source.
struct SourceSlot {
    generation: u64,
    /// The turn it was registered in: events polled in that turn came
    /// before it and belong to a source it replaced.
    turn: u64,
}

impl Core {
    /// Sets an application timer for `at` (the wheel tick at or after it).
    pub(in crate::reactor) fn set_app_timer_at(&mut self, at: Instant, token: u64) -> TimerId {
        let tick = self.wheel.deadline_tick(at);
        self.set_app_timer_tick(tick, token)
    }

    /// Sets an application timer `after` the turn's `now`; one beyond the
    /// clock's range never fires.
    pub(in crate::reactor) fn set_app_timer_after(
        &mut self,
        after: Duration,
        token: u64,
    ) -> TimerId {
        // u64::MAX is taken as the wheel's cap: never due.
        let tick = self
            .now
            .checked_add(after)
            .map_or(u64::MAX, |at| self.wheel.deadline_tick(at));
        self.set_app_timer_tick(tick, token)
    }

    fn set_app_timer_tick(&mut self, tick: u64, token: u64) -> TimerId {
        let generation = self.app.next_generation();
        let entry = self.app.timers.vacant_entry();
        // The wheel, holding an entry per pending timer, runs out of
        // `u32` keys first.
        let Ok(index) = u32::try_from(entry.key()) else {
            panic!("more than 2^32 application timers pending");
        };
        let key = self
            .wheel
            .insert_tick(tick, Target::App { index, generation });
        entry.insert(AppTimer {
            generation,
            token,
            tick,
            key: Some(key),
        });
        TimerId::new(index, generation)
    }

    /// Cancels a timer that has not fired yet (also one due this turn
    /// whose callback has not run); false for a stale id.
    pub(in crate::reactor) fn cancel_app_timer(&mut self, id: TimerId) -> bool {
        if !self
            .app
            .timers
            .get(id.index())
            .is_some_and(|t| t.generation == id.generation())
        {
            return false;
        }
        let timer = self.app.timers.remove(id.index());
        if let Some(key) = timer.key {
            self.wheel.cancel(key);
        }
        true
    }

    /// The wheel entry of an application timer came due: its callback
    /// waits in the due batch.
    pub(super) fn expire_app_timer(&mut self, index: u32, generation: u64) {
        if let Some(t) = self
            .app
            .timers
            .get_mut(index as usize)
            .filter(|t| t.generation == generation)
        {
            t.key = None;
            self.app.due.push(Due {
                tick: t.tick,
                id: TimerId::new(index, generation),
            });
        }
    }

    /// Whether application timers came due this turn.
    #[inline]
    pub(in crate::reactor) fn has_due_app_timers(&self) -> bool {
        !self.app.due.is_empty()
    }

    /// The timers due this turn, in the order their callbacks run; give
    /// the vector back with [`restore_due`](Self::restore_due).
    pub(in crate::reactor) fn take_due(&mut self) -> Vec<Due> {
        let mut due = mem::take(&mut self.app.due);
        due.sort_unstable();
        due
    }

    /// Hands back the (used) vector of [`take_due`](Self::take_due), to be
    /// reused.
    pub(in crate::reactor) fn restore_due(&mut self, mut due: Vec<Due>) {
        due.clear();
        if self.app.due.is_empty() {
            self.app.due = due;
        }
    }

    /// Retires a due timer just before its callback: its token, or `None`
    /// if it was cancelled since it came due.
    pub(in crate::reactor) fn fire_due(&mut self, due: Due) -> Option<u64> {
        let id = due.id;
        match self.app.timers.get(id.index()) {
            Some(t) if t.generation == id.generation() && t.key.is_none() => {}
            _ => return None,
        }
        Some(self.app.timers.remove(id.index()).token)
    }

    /// Application timers pending (due ones whose callbacks have not run
    /// included).
    #[cfg(test)]
    pub(in crate::reactor) fn app_timers(&self) -> usize {
        self.app.timers.len()
    }

    pub(in crate::reactor) fn register_source<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        interest: Interest,
    ) -> io::Result<SourceId> {
        let generation = self.app.next_generation();
        let turn = self.stats.turns;
        let entry = self.app.sources.vacant_entry();
        let index = entry.key();
        if index >= MAX_SOURCES {
            return Err(io::Error::other(format!(
                "more than {MAX_SOURCES} sources registered"
            )));
        }
        self.poll
            .registry()
            .register(source, Token(SOURCE_BASE + index), interest)?;
        entry.insert(SourceSlot { generation, turn });
        // (Below 2^29.)
        Ok(SourceId::new(index as u32, generation))
    }

    pub(in crate::reactor) fn reregister_source<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        id: SourceId,
        interest: Interest,
    ) -> io::Result<()> {
        self.check_source(id)?;
        self.poll
            .registry()
            .reregister(source, Token(SOURCE_BASE + id.index()), interest)
    }

    /// Deregisters `source` and retires `id` (even if the OS refuses the
    /// deregistration: the error is returned all the same).
    pub(in crate::reactor) fn deregister_source<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        id: SourceId,
    ) -> io::Result<()> {
        self.check_source(id)?;
        let result = self.poll.registry().deregister(source);
        self.app.sources.remove(id.index());
        result
    }

    fn check_source(&self, id: SourceId) -> io::Result<()> {
        match self.app.sources.get(id.index()) {
            Some(s) if SourceId::new(id.index() as u32, s.generation) == id => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{id} is not registered"),
            )),
        }
    }

    /// The source a readiness event polled this turn for source slot
    /// `index` is for; `None` if the slot is empty or was filled after the
    /// poll (the event was for a source deregistered since).
    #[inline]
    pub(in crate::reactor) fn ready_source(&self, index: usize) -> Option<SourceId> {
        let s = self.app.sources.get(index)?;
        if s.turn == self.stats.turns {
            return None;
        }
        Some(SourceId::new(index as u32, s.generation))
    }

    /// Application sources registered.
    #[cfg(test)]
    pub(in crate::reactor) fn app_sources(&self) -> usize {
        self.app.sources.len()
    }
}

#[cfg(test)]
mod tests;
