//! When a connection's wheel entry moves: the timer-filing rule, as pure
//! arithmetic on deadlines and clock ticks.
//!
//! Each connection keeps at most one wheel entry, at (or just after) its
//! earliest deadline. Traffic pushes the PING deadline later on every
//! read; moving the entry each time would cost a wheel operation per read.
//! So a deadline that moved later re-files the entry at once the first
//! time after a filing, and after that only once the clock is 3/4 of the
//! way to the entry; before that the entry stays (it may fire early, find
//! nothing due and be filed again). An earlier deadline always re-files.
//! A filing also says since when its entry is due, which the reactor's
//! lag is measured from (see [`due_tick`]).
//! This module decides; the reactor touches the wheel. It never reads a
//! clock and never touches a wheel.

use std::time::Instant;

/// What the filing of a connection's wheel entry says about moving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Filing {
    /// The deadline the entry was filed for (its tick is this deadline
    /// rounded up to the timer grid).
    pub(super) deadline: Instant,
    /// The clock tick from which a later deadline re-files the entry at
    /// once; before it, a later deadline leaves the entry alone. For an
    /// entry due when filed (its grid tick not after the clock's), it is
    /// also the tick since which the entry is due (see [`due_tick`]): any
    /// tick up to the filing's re-files a later deadline at once.
    pub(super) refile_from: u64,
}

/// What to do with a connection's wheel entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Leave it (or its absence) as it is.
    Keep,
    /// Cancel it: nothing is due any more.
    Cancel,
    /// File it at the deadline (insert, or move the existing entry).
    File,
}

/// The decision for a connection whose entry was filed as `filed` (if it
/// has one) and whose earliest deadline is now `next`, at clock tick
/// `now_tick`.
pub(super) fn decide(filed: Option<Filing>, next: Option<Instant>, now_tick: u64) -> Decision {
    match (filed, next) {
        (None, None) => Decision::Keep,
        (Some(_), None) => Decision::Cancel,
        // Moved later (or not at all) and not yet near the entry: the
        // entry stays; if it comes due first, the connection finds nothing
        // due and is filed again. (Filing rounds up to the grid, which
        // keeps this order.) The usual case on a busy link.
        (Some(f), Some(at)) if at >= f.deadline && now_tick < f.refile_from => Decision::Keep,
        (_, Some(_)) => Decision::File,
    }
}

/// The filing of an entry filed now (tick `now_tick`) for deadline `at`,
/// at tick `want` on the grid, replacing `before` (if it had one).
/// `owed`: when `want` is not after `now_tick`, the tick since which the
/// entry it replaces was due, if that one was due already (the
/// [`due_tick`] of `before` at its wheel tick); ignored otherwise.
pub(super) fn filed(
    before: Option<Filing>,
    at: Instant,
    want: u64,
    now_tick: u64,
    owed: Option<u64>,
) -> Filing {
    let refile_from = match before {
        // Due at once: the next later deadline re-files at once, and the
        // tick says since when the entry is due. The entry it replaces
        // was due already (the reactor owes the connection a turn since
        // then, a stall for instance): since then. Otherwise the deadline
        // was set already past (one counted from an old instant, such as
        // the last receipt before a blackhole): since this filing.
        _ if want <= now_tick => owed.map_or(now_tick, |t| t.min(now_tick)),
        // A later deadline: the next later one waits until 3/4 of the way
        // to this entry. (Ticks stay below 2^48: no overflow.)
        Some(b) if at >= b.deadline => now_tick + (want - now_tick) / 4 * 3,
        // The first filing, or an earlier deadline: the next later one
        // re-files at once.
        _ => now_tick,
    };
    Filing {
        deadline: at,
        refile_from,
    }
}

/// The tick since which an entry filed as `filing` at grid tick `want` is
/// due: `want`, or the later tick its filing recorded for an entry due
/// when filed (see [`filed`]): the filing's own for a deadline set
/// already past, or the one since which the entry it replaced was due.
/// The reactor's lag counts from here, so a deadline a connection sets
/// already past is not taken for lateness of the reactor, while a stall
/// is counted whole.
pub(super) fn due_tick(filing: Filing, want: u64) -> u64 {
    // A future filing's `refile_from` is at most `want`.
    want.max(filing.refile_from)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{decide, due_tick, filed, Decision, Filing};

    #[test]
    fn nothing_due_cancels_and_nothing_filed_with_nothing_due_keeps() {
        let t0 = Instant::now();
        let f = Filing {
            deadline: t0,
            refile_from: 0,
        };
        assert_eq!(decide(None, None, 5), Decision::Keep);
        assert_eq!(decide(Some(f), None, 5), Decision::Cancel);
        assert_eq!(decide(None, Some(t0), 5), Decision::File);
    }

    #[test]
    fn a_later_deadline_moves_the_entry_first_at_once_then_from_three_quarters_of_the_way() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // First filing at tick 0 for a deadline at tick 1000.
        let first = filed(None, at(1000), 1000, 0, None);
        assert_eq!(first.refile_from, 0, "the first later deadline re-files");
        assert_eq!(decide(Some(first), Some(at(1010)), 0), Decision::File);
        // Re-filed at tick 10 for 1010 (tick 1010): the next later one
        // waits until 10 + 3/4 of 1000.
        let second = filed(Some(first), at(1010), 1010, 10, None);
        assert_eq!(second.refile_from, 10 + 750);
        assert_eq!(decide(Some(second), Some(at(1500)), 759), Decision::Keep);
        assert_eq!(decide(Some(second), Some(at(1500)), 760), Decision::File);
        // The same deadline again is a "later" one: kept until then too.
        assert_eq!(decide(Some(second), Some(at(1010)), 100), Decision::Keep);
    }

    #[test]
    fn an_earlier_deadline_always_moves_the_entry_and_resets_the_wait() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let f = Filing {
            deadline: at(1000),
            refile_from: 900,
        };
        assert_eq!(decide(Some(f), Some(at(999)), 0), Decision::File);
        let earlier = filed(Some(f), at(999), 999, 0, None);
        assert_eq!(
            earlier.refile_from, 0,
            "a later one after it re-files at once"
        );
    }

    #[test]
    fn a_deadline_already_due_waits_for_nothing() {
        let t0 = Instant::now();
        // Filed at tick 50 for a grid tick already passed (want < now).
        let f = filed(
            Some(Filing {
                deadline: t0,
                refile_from: 0,
            }),
            t0 + Duration::from_millis(1),
            40,
            50,
            None,
        );
        assert_eq!(f.refile_from, 50);
        assert_eq!(
            decide(Some(f), Some(t0 + Duration::from_millis(2)), 50),
            Decision::File
        );
    }

    #[test]
    fn an_entry_is_due_from_its_grid_tick_or_from_when_it_was_filed_or_owed() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Filed ahead of its tick, first or later or earlier: due there.
        let first = filed(None, at(1000), 1005, 0, None);
        assert_eq!(due_tick(first, 1005), 1005);
        let later = filed(Some(first), at(1200), 1200, 10, None);
        assert_eq!(due_tick(later, 1200), 1200);
        let earlier = filed(Some(later), at(900), 900, 20, None);
        assert_eq!(due_tick(earlier, 900), 900);
        // A deadline set already past, first or replacing a future entry:
        // due from the filing, not from the deadline.
        let past = filed(None, at(100), 105, 5000, None);
        assert_eq!(due_tick(past, 105), 5000);
        let past = filed(Some(first), at(100), 105, 500, None);
        assert_eq!(due_tick(past, 105), 500);
        // Replacing an entry already due (the reactor stalled past it):
        // due since that one was, or since its own tick if later.
        let stalled = filed(Some(first), at(1000), 1005, 3000, Some(1005));
        assert_eq!(due_tick(stalled, 1005), 1005);
        let moved = filed(Some(first), at(900), 900, 3000, Some(1005));
        assert_eq!(due_tick(moved, 900), 1005);
        let moved = filed(Some(first), at(1200), 1200, 3000, Some(1005));
        assert_eq!(due_tick(moved, 1200), 1200);
        // Any of these re-files a later deadline at once.
        for f in [past, stalled, moved] {
            assert_eq!(decide(Some(f), Some(at(4000)), 3000), Decision::File);
        }
    }
}
