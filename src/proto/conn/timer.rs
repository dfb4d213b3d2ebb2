//! The named deadlines of one connection and their table.
//!
//! A connection has a handful of timers, each either armed at an instant or
//! not; the earliest armed one is what the driver schedules. The ones the
//! per-read path moves (idle, write-idle) are set from a [`Stamp`] with
//! integer arithmetic, so a read costs no clock conversion beyond the one
//! that stamps it, and that one is remembered per thread: every connection
//! a reactor turn reads stamps the turn's `now`, converted once.
//!
//! Stamps count from one epoch for the whole process, so a stamp means the
//! same instant in every connection (a socket moved to a resumed session
//! keeps its stamps). It never reads the clock: the epoch is the first
//! instant converted.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One deadline a connection may be waiting for. More may come: match
/// with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// Client: the TCP connect must finish by then.
    Connect,
    /// The HELLO/WELCOME exchange must finish by then.
    Handshake,
    /// Read silence reaches the heartbeat interval: send a PING. Pushed
    /// later by every read (integer arithmetic on a stamp, no clock read),
    /// so it only comes due on a connection that has really gone quiet.
    Ping,
    /// A PING is out and nothing has been received: the peer is dead then.
    Dead,
    /// Client: redial then.
    Reconnect,
    /// Client: the connection has been up long enough to count as healthy.
    Healthy,
    /// Closing: close the socket then, flushed or not.
    Linger,
    /// Output is queued and the socket would not take it: if no byte has
    /// been written by then, the peer is not reading.
    WriteStall,
    /// Armed by a read that brought the peer's talk while we had nothing
    /// to say, disarmed by our next write: if it comes due, we have been
    /// silent for the write-idle period, so send an ACK and the peer hears
    /// from us (see `on_write_idle`).
    WriteIdle,
    /// A resumed session's replay log took a buffer for messages: give it
    /// back then if nothing in it is unacknowledged, or look again one
    /// period later (see `on_trim`).
    Trim,
    /// Resume: DATA was received and not yet acknowledged; tell the peer
    /// our receipt count then, if no ACK has gone out since.
    Ack,
    /// Messages wait unsent (a full socket, or a link down with resume)
    /// under a queue lifetime: hand back the ones that outlived it, note
    /// when the newer ones were seen, and look again (see
    /// `queue_lifetime.rs`).
    QueueLifetime,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 12] = [
        Timer::Connect,
        Timer::Handshake,
        Timer::Ping,
        Timer::Dead,
        Timer::Reconnect,
        Timer::Healthy,
        Timer::Linger,
        Timer::WriteStall,
        Timer::WriteIdle,
        Timer::Trim,
        Timer::Ack,
        Timer::QueueLifetime,
    ];
}

/// At most one deadline per [`Timer`], kept compactly: signed nanoseconds
/// from the process's epoch (see the module docs), 96 bytes on every
/// connection where `Instant`s would take 192.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerTable {
    /// Signed nanoseconds from the epoch; [`UNARMED`] when not armed.
    at: [i64; Timer::ALL.len()],
}

/// The instant stamps count from: the first one any table converted.
static EPOCH: OnceLock<Instant> = OnceLock::new();

thread_local! {
    /// The last instant this thread stamped, and its stamp: a reactor
    /// stamps the same `now` for every connection it reads in a turn.
    static LAST_STAMPED: Cell<Option<(Instant, i64)>> = const { Cell::new(None) };
}

/// The epoch, set to `at` if none is yet.
#[inline]
fn epoch(at: Instant) -> Instant {
    *EPOCH.get_or_init(|| at)
}

/// `at` as nanoseconds from the epoch, saturating: ±292 years either side
/// of it.
fn offset_of(at: Instant) -> i64 {
    let epoch = epoch(at);
    if at >= epoch {
        i64::try_from((at - epoch).as_nanos()).map_or(LATEST, |n| n.min(LATEST))
    } else {
        i64::try_from((epoch - at).as_nanos()).map_or(i64::MIN, |n| -n)
    }
}

/// The marker of a timer that is not armed.
/// The largest value, so that the earliest deadline is a plain minimum
/// over the table; armed stamps are at most one below it.
const UNARMED: i64 = i64::MAX;
/// The latest instant a stamp holds.
const LATEST: i64 = i64::MAX - 1;

/// An instant in a [`TimerTable`]'s compact form, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(i64);

impl Default for Stamp {
    /// [`Stamp::NONE`].
    fn default() -> Self {
        Stamp::NONE
    }
}

impl Stamp {
    pub(crate) const NONE: Stamp = Stamp(UNARMED);

    /// The instant `by` after this one, in the same compact form: integer
    /// arithmetic only, for deadlines re-armed on every read. `NONE` stays
    /// `NONE`.
    #[inline]
    pub(crate) fn after(self, by: Duration) -> Stamp {
        if self.0 == UNARMED {
            return self;
        }
        // ±292 years either side of the base: saturating is unreachable.
        let by = i64::try_from(by.as_nanos()).unwrap_or(LATEST);
        Stamp(self.0.saturating_add(by).min(LATEST))
    }
}

impl Default for TimerTable {
    fn default() -> Self {
        TimerTable {
            at: [UNARMED; Timer::ALL.len()],
        }
    }
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = self.stamp(at).0;
    }

    /// Arms `timer` at a stamp of this table ([`Stamp::NONE`] disarms it).
    #[inline]
    pub(crate) fn set_stamp(&mut self, timer: Timer, at: Stamp) {
        self.at[timer as usize] = at.0;
    }

    /// `at` in the table's compact form (8 bytes instead of 16), for other
    /// instants the connection keeps; read back with [`instant_of`].
    ///
    /// [`instant_of`]: TimerTable::instant_of
    #[inline]
    pub(crate) fn stamp(&self, at: Instant) -> Stamp {
        let last = LAST_STAMPED.with(Cell::get);
        if let Some((instant, offset)) = last {
            if instant == at {
                return Stamp(offset);
            }
        }
        let offset = offset_of(at);
        LAST_STAMPED.with(|last| last.set(Some((at, offset))));
        Stamp(offset)
    }

    /// The instant a [`Stamp`] stands for (`None` for [`Stamp::NONE`]).
    pub(crate) fn instant_of(&self, stamp: Stamp) -> Option<Instant> {
        self.instant(stamp.0)
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.at[timer as usize] = UNARMED;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.instant(self.at[timer as usize])
    }

    fn instant(&self, offset: i64) -> Option<Instant> {
        if offset == UNARMED {
            return None;
        }
        // Set by the stamp this offset came from.
        let base = *EPOCH.get()?;
        let magnitude = Duration::from_nanos(offset.unsigned_abs());
        if offset >= 0 {
            base.checked_add(magnitude)
        } else {
            base.checked_sub(magnitude)
        }
    }

    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.at[timer as usize] != UNARMED
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.at = [UNARMED; Timer::ALL.len()];
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        // No filter: an unarmed entry is the largest value.
        let earliest = self.at.iter().copied().min()?;
        self.instant(earliest)
    }

    /// Disarms and returns the earliest timer due at `now`, with the
    /// instant it was due, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Timer, Instant)> {
        let (i, offset) = self
            .at
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(_, o)| o)?;
        let at = self.instant(offset)?;
        if at > now {
            return None;
        }
        self.at[i] = UNARMED;
        Some((Timer::ALL[i], at))
    }
}

#[cfg(test)]
mod tests {
    use super::{Timer, TimerTable};
    use std::time::{Duration, Instant};

    #[test]
    fn next_is_the_earliest_and_pop_due_goes_in_order() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Linger, t0 + Duration::from_millis(30));
        table.set(Timer::Ping, t0 + Duration::from_millis(10));
        table.set(Timer::Dead, t0 + Duration::from_millis(20));
        assert_eq!(table.next(), Some(t0 + Duration::from_millis(10)));
        let now = t0 + Duration::from_millis(25);
        assert_eq!(
            table.pop_due(now),
            Some((Timer::Ping, t0 + Duration::from_millis(10)))
        );
        assert_eq!(
            table.pop_due(now),
            Some((Timer::Dead, t0 + Duration::from_millis(20)))
        );
        assert_eq!(table.pop_due(now), None);
        assert!(table.is_armed(Timer::Linger));
        table.stop(Timer::Linger);
        assert_eq!(table.next(), None);
    }

    #[test]
    fn deadlines_before_the_epoch_keep_their_exact_instant() {
        let mut table = TimerTable::default();
        let now = Instant::now();
        let _ = table.stamp(now); // the epoch is set, at `now` or before
        let epoch = *super::EPOCH.get().expect("set by the first stamp");
        let t0 = epoch
            .checked_sub(Duration::from_millis(1_500))
            .expect("the clock runs for more than 1.5 s before a test");
        table.set(Timer::Ping, t0 + Duration::from_nanos(1_500_000_123));
        table.set(Timer::Dead, t0);
        table.set(Timer::Linger, now + Duration::from_secs(3600));
        assert_eq!(table.get(Timer::Dead), Some(t0));
        assert_eq!(table.next(), Some(t0));
        assert_eq!(
            table.get(Timer::Ping),
            Some(t0 + Duration::from_nanos(1_500_000_123))
        );
        assert_eq!(table.pop_due(t0), Some((Timer::Dead, t0)));
        assert_eq!(table.pop_due(t0), None);
        // One i64 per timer.
        assert_eq!(std::mem::size_of::<TimerTable>(), 8 * Timer::ALL.len());
    }

    #[test]
    fn a_stamp_is_the_same_instant_in_every_table_and_on_every_thread() {
        let at = Instant::now() + Duration::from_nanos(987_654_321);
        let mut a = TimerTable::default();
        let b = TimerTable::default();
        // The memo of the last instant stamped: a hit, then a miss.
        assert_eq!(a.stamp(at), b.stamp(at));
        let other = at + Duration::from_nanos(1);
        assert_eq!(a.stamp(other).0, b.stamp(at).0 + 1);
        let there = std::thread::spawn(move || TimerTable::default().stamp(at))
            .join()
            .expect("thread");
        assert_eq!(there, b.stamp(at));
        a.set_stamp(Timer::Ping, there);
        assert_eq!(a.get(Timer::Ping), Some(at));
    }

    #[test]
    fn a_stamp_moved_later_is_the_instant_that_much_later() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::Linger, t0 + Duration::from_secs(5));
        for at in [t0, t0 + Duration::from_nanos(1_234_567_891)] {
            let by = Duration::from_millis(1_050);
            let stamp = table.stamp(at).after(by);
            table.set_stamp(Timer::Ping, stamp);
            assert_eq!(table.get(Timer::Ping), Some(at + by));
            assert_eq!(table.instant_of(stamp), Some(at + by));
        }
        assert_eq!(
            super::Stamp::NONE.after(Duration::from_secs(1)),
            super::Stamp::NONE
        );
        table.set_stamp(Timer::Ping, super::Stamp::NONE);
        assert!(!table.is_armed(Timer::Ping));
    }
}
