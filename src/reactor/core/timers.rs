//! The wheel entry of each connection (filed by the rule of `filing`) and
//! the timers that come due: connection deadlines, listener pauses,
//! application timers (whose callbacks run after), the shutdown deadline.
//!
//! Never reads the clock: `now` is the turn's.

use std::time::{Duration, Instant};

use log::debug;

use super::{Core, Target};
use crate::proto::wheel::Wheel;
use crate::reactor::filing::{self, Decision, Filing};
use crate::reactor::slot::Filed;

impl Core {
    /// Keeps one wheel entry per connection at (or just after) its earliest
    /// deadline. Entries are filed on a grid (see [`Config::timer_grain`])
    /// so that the deadlines of many connections share wake-ups.
    ///
    /// A deadline that moved later (traffic pushes the PING deadline on
    /// every read) re-files the entry at once the first time after a
    /// filing, and after that only once the clock is 3/4 of the way to the
    /// entry; before that it leaves the entry alone, at the cost of a
    /// compare. So a busy connection costs the wheel one re-file per
    /// interval, made while its slot is in cache, and an idle one whose
    /// peer pings (its deadline moves once per interval, just before it
    /// would come due) none that fire early and find nothing due.
    pub(super) fn sync_timer(&mut self, idx: usize) {
        let Some(next) = self.slots.get(idx).map(|slot| slot.conn.poll_timeout()) else {
            return;
        };
        self.file_timer(idx, next);
    }

    /// [`sync_timer`](Self::sync_timer) with the connection's earliest
    /// deadline already known.
    pub(super) fn file_timer(&mut self, idx: usize, next: Option<Instant>) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let now_tick = self.now_tick;
        let before = slot.timer.map(|f| f.filing);
        match (filing::decide(before, next, now_tick), next) {
            (Decision::Keep, _) => {}
            (Decision::Cancel, _) | (Decision::File, None) => {
                if let Some(f) = slot.timer.take() {
                    self.wheel.cancel(f.key);
                }
            }
            (Decision::File, Some(at)) => {
                let grain = slot.conn.config().timer_grain();
                // In ticks: one clock conversion for the filing.
                let want = self.wheel.coarsen_tick(self.wheel.deadline_tick(at), grain);
                let target = Target::Conn(slot.id);
                // Due at once: since when the entry it replaces was due,
                // if it was already (see `filing::filed`).
                let owed = match slot.timer {
                    Some(f) if want <= now_tick => self
                        .wheel
                        .tick(f.key)
                        .filter(|&t| t <= now_tick)
                        .map(|t| filing::due_tick(f.filing, t)),
                    _ => None,
                };
                let key = match slot.timer {
                    Some(f) if self.wheel.tick(f.key) == Some(want) => f.key,
                    Some(f) if self.wheel.reset_tick(f.key, want) => f.key,
                    _ => self.wheel.insert_tick(want, target),
                };
                slot.timer = Some(Filed {
                    key,
                    filing: filing::filed(before, at, want, now_tick, owed),
                });
            }
        }
    }

    /// Hands every due wheel entry to its connection or listener; an
    /// application timer's goes to the due batch, whose callbacks the
    /// reactor runs next (`app::fire_app_timers`).
    pub(in crate::reactor) fn fire_timers(&mut self) {
        let now = self.now;
        self.expired.clear();
        while let Some(entry) = self.wheel.poll_tick(self.now_tick) {
            self.expired.push(entry);
        }
        let mut lag = None;
        for i in 0..self.expired.len() {
            let (key, target) = self.expired[i];
            match target {
                Target::Conn(id) => {
                    let Some(idx) = self.slot_index(id) else {
                        continue;
                    };
                    let Some(slot) = self.slots.get_mut(idx) else {
                        continue;
                    };
                    match slot.timer {
                        Some(filed) if filed.key == key => {
                            let grain = slot.conn.config().timer_grain();
                            let due = due_since(&self.wheel, filed.filing, grain);
                            let late = now.saturating_duration_since(due);
                            lag = Some(lag.map_or(late, |l: Duration| l.max(late)));
                            slot.timer = None;
                        }
                        _ => continue,
                    }
                    let next = slot.conn.poll_timeout();
                    if next.is_some_and(|at| at > now) {
                        // The lazy entry of a deadline that moved later
                        // (traffic came) and was not re-filed on the way
                        // (see `file_timer`): nothing is due, only re-file
                        // it.
                        self.stats.early_timers += 1;
                        self.file_timer(idx, next);
                        continue;
                    }
                    slot.conn.handle_timeout(now, &mut self.scratch);
                    self.collect(idx);
                    self.service(idx);
                }
                Target::Listener(id) => {
                    let index = id.index();
                    if let Some(l) = self.listeners.get_mut(index).filter(|l| l.id == id) {
                        l.paused = false;
                        self.accept(index);
                    }
                }
                Target::Route(id) => self.on_route_step(id, key),
                Target::App { index, generation } => self.expire_app_timer(index, generation),
            }
        }
        if let Some(lag) = lag {
            self.stats.lag = lag;
            self.stats.max_lag = self.stats.max_lag.max(lag);
        }
    }

    /// Past the shutdown deadline: whatever has not finished closing is
    /// dropped (its sockets closed).
    pub(in crate::reactor) fn finish_shutdown_if_due(&mut self) {
        if self.shutdown.is_some_and(|deadline| self.now >= deadline) && !self.slots.is_empty() {
            debug!(
                "shutdown deadline passed: dropping {} connections",
                self.slots.len()
            );
            let now = self.now;
            let left = self.slots.indices();
            for idx in left {
                // What they still held is handed back (the caller
                // dispatches the events).
                if let Some(slot) = self.slots.get_mut(idx) {
                    slot.conn.abort(now, &mut self.scratch);
                }
                self.collect(idx);
            }
            for mut slot in self.slots.drain() {
                slot.drop_stream(self.poll.registry());
            }
            self.reap.clear();
        }
    }
}

/// The instant since which a connection's entry filed as `filing` is due
/// (see [`filing::due_tick`]): its deadline on the connection's grid of
/// `grain`, or later, when the deadline had passed when it was filed.
/// The reactor's lag is measured from here.
fn due_since(wheel: &Wheel<Target>, filing: Filing, grain: Duration) -> Instant {
    let grid = wheel.coarsen(filing.deadline, grain);
    let want = wheel.coarsen_tick(wheel.deadline_tick(filing.deadline), grain);
    let after = filing::due_tick(filing, want).saturating_sub(want);
    grid.checked_add(Duration::from_millis(after))
        .unwrap_or(grid)
}
