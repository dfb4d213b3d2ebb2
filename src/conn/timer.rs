//! The named deadlines of one connection and their table.
//!
//! A connection has a handful of timers, each either armed at an instant or
//! not; the earliest armed one is what the driver schedules. Some are kept
//! lazily (armed no later than the real deadline, re-checked when they fire),
//! so the per-byte path never touches the table.

use std::time::Instant;

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
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 8] = [
        Timer::Connect,
        Timer::Handshake,
        Timer::Idle,
        Timer::Dead,
        Timer::Reconnect,
        Timer::Healthy,
        Timer::Linger,
        Timer::WriteStall,
    ];
}

/// At most one deadline per [`Timer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }

    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.at[timer as usize].is_some()
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.at = [None; Timer::ALL.len()];
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`, with the
    /// instant it was due, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Timer, Instant)> {
        let (i, _) = self
            .at
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.map(|at| (i, at)))
            .filter(|&(_, at)| at <= now)
            .min_by_key(|&(_, at)| at)?;
        let at = self.at[i].take()?;
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
}
