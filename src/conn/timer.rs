//! The named deadlines of one connection and their table.
//!
//! A connection has a handful of timers, each either armed at an instant or
//! not; the earliest armed one is what the driver schedules. Some are kept
//! lazily (armed no later than the real deadline, re-checked when they fire),
//! so the per-byte path never touches the table.

use std::time::{Duration, Instant};

/// One deadline a connection may be waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Client: the TCP connect must finish by then.
    Connect,
    /// The HELLO/WELCOME exchange must finish by then.
    Handshake,
    /// Read silence reaches the heartbeat interval: send a PING. Kept
    /// lazily: it may fire early and is then re-armed at the real deadline.
    Idle,
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
    /// Check whether we have been receiving without saying anything; if
    /// so, send an ACK so the peer hears from us (see `on_write_idle`).
    WriteIdle,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 9] = [
        Timer::Connect,
        Timer::Handshake,
        Timer::Idle,
        Timer::Dead,
        Timer::Reconnect,
        Timer::Healthy,
        Timer::Linger,
        Timer::WriteStall,
        Timer::WriteIdle,
    ];
}

/// At most one deadline per [`Timer`], kept compactly: nanoseconds from a
/// base instant (the first deadline ever set), so the table costs 88 bytes
/// instead of 144 on every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerTable {
    base: Option<Instant>,
    /// Signed nanoseconds from `base`; [`UNARMED`] when not armed.
    at: [i64; Timer::ALL.len()],
}

/// The marker of a timer that is not armed.
const UNARMED: i64 = i64::MIN;

/// An instant in a [`TimerTable`]'s compact form, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(i64);

impl Stamp {
    pub(crate) const NONE: Stamp = Stamp(UNARMED);
}

impl Default for TimerTable {
    fn default() -> Self {
        TimerTable {
            base: None,
            at: [UNARMED; Timer::ALL.len()],
        }
    }
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = self.stamp(at).0;
    }

    /// `at` in the table's compact form (8 bytes instead of 16), for other
    /// instants the connection keeps; read back with [`instant_of`].
    ///
    /// [`instant_of`]: TimerTable::instant_of
    pub(crate) fn stamp(&mut self, at: Instant) -> Stamp {
        let base = *self.base.get_or_insert(at);
        // ±292 years either side of the base: saturating is unreachable.
        let offset = if at >= base {
            i64::try_from((at - base).as_nanos()).unwrap_or(i64::MAX)
        } else {
            i64::try_from((base - at).as_nanos()).map_or(UNARMED + 1, |n| -n)
        };
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
        let base = self.base?;
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
        let earliest = self.at.iter().copied().filter(|&o| o != UNARMED).min()?;
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
            .filter(|&(_, o)| o != UNARMED)
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
        table.set(Timer::Idle, t0 + Duration::from_millis(10));
        table.set(Timer::Dead, t0 + Duration::from_millis(20));
        assert_eq!(table.next(), Some(t0 + Duration::from_millis(10)));
        let now = t0 + Duration::from_millis(25);
        assert_eq!(
            table.pop_due(now),
            Some((Timer::Idle, t0 + Duration::from_millis(10)))
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
    fn deadlines_before_the_base_keep_their_exact_instant() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::Idle, t0 + Duration::from_nanos(1_500_000_123));
        table.set(Timer::Dead, t0);
        table.set(Timer::Linger, t0 + Duration::from_secs(3600));
        assert_eq!(table.get(Timer::Dead), Some(t0));
        assert_eq!(table.next(), Some(t0));
        assert_eq!(
            table.get(Timer::Idle),
            Some(t0 + Duration::from_nanos(1_500_000_123))
        );
        assert_eq!(table.pop_due(t0), Some((Timer::Dead, t0)));
        assert_eq!(table.pop_due(t0), None);
        assert!(std::mem::size_of::<TimerTable>() <= 88);
    }
}
