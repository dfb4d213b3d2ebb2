//! The opt-in busy-poll wait: before the loop would block in `epoll_wait`,
//! it polls without blocking, again and again, for up to a spin budget, and
//! blocks only once the budget is spent with nothing ready. A message that
//! arrives meanwhile is seen within a poll's cost instead of after the
//! kernel's wake-up of a sleeping thread (tens of microseconds).
//!
//! It costs a core: the thread spins while idle, up to the budget after
//! every turn. It never spins past the turn's timeout (a timer due sooner
//! wins), and never when the turn already has work waiting.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

/// What the spinning did, for [`ReactorStats`](crate::ReactorStats).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SpinCounts {
    /// Non-blocking polls made while spinning.
    pub(super) polls: u64,
    /// Waits that a spinning poll ended (something was ready within the
    /// budget).
    pub(super) hits: u64,
}

/// Waits for readiness like `poll.poll(events, timeout)`, spinning first
/// for up to `budget` (see the module docs). A zero budget is a plain poll.
pub(super) fn wait(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
    budget: Duration,
    counts: &mut SpinCounts,
) -> io::Result<()> {
    if budget.is_zero() || timeout == Some(Duration::ZERO) {
        return poll.poll(events, timeout);
    }
    let start = Instant::now();
    let spin = timeout.map_or(budget, |t| t.min(budget));
    loop {
        poll.poll(events, Some(Duration::ZERO))?;
        counts.polls += 1;
        if !events.is_empty() {
            counts.hits += 1;
            return Ok(());
        }
        if start.elapsed() >= spin {
            break;
        }
        std::hint::spin_loop();
    }
    match timeout.map(|t| t.saturating_sub(start.elapsed())) {
        // The timer that bounded the wait is due.
        Some(rest) if rest.is_zero() => Ok(()),
        rest => poll.poll(events, rest),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use mio::{Interest, Token};

    use super::*;

    fn readable_pair(poll: &Poll) -> (TcpStream, mio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let writer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (reader, _) = listener.accept().expect("accept");
        reader.set_nonblocking(true).expect("nonblocking");
        let mut reader = mio::net::TcpStream::from_std(reader);
        poll.registry()
            .register(&mut reader, Token(1), Interest::READABLE)
            .expect("register");
        (writer, reader)
    }

    #[test]
    fn nothing_ready_spins_the_budget_then_waits_out_the_timeout() {
        let mut poll = Poll::new().expect("poll");
        let mut events = Events::with_capacity(8);
        let mut counts = SpinCounts::default();
        let start = Instant::now();
        let timeout = Duration::from_millis(20);
        wait(
            &mut poll,
            &mut events,
            Some(timeout),
            Duration::from_millis(2),
            &mut counts,
        )
        .expect("wait");
        assert!(events.is_empty());
        assert!(start.elapsed() >= timeout, "returned early");
        assert!(counts.polls > 1, "it spun: {counts:?}");
        assert_eq!(counts.hits, 0);
    }

    #[test]
    fn a_spin_never_outlasts_a_shorter_timeout() {
        let mut poll = Poll::new().expect("poll");
        let mut events = Events::with_capacity(8);
        let mut counts = SpinCounts::default();
        wait(
            &mut poll,
            &mut events,
            Some(Duration::ZERO),
            Duration::from_secs(5),
            &mut counts,
        )
        .expect("wait");
        assert_eq!(counts.polls, 0, "work waiting: no spin at all");
        let start = Instant::now();
        wait(
            &mut poll,
            &mut events,
            Some(Duration::from_millis(5)),
            Duration::from_secs(5),
            &mut counts,
        )
        .expect("wait");
        // The 5 s budget is cut to the 5 ms timeout (generous slack for a
        // loaded machine, far below the budget).
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn readiness_during_the_spin_ends_the_wait_without_blocking() {
        let mut poll = Poll::new().expect("poll");
        let mut events = Events::with_capacity(8);
        let (mut writer, _reader) = readable_pair(&poll);
        writer.write_all(b"x").expect("write");
        let mut counts = SpinCounts::default();
        // Without a timeout a plain poll would block until the byte's
        // edge; within a budget of 10 s the spin sees it.
        wait(
            &mut poll,
            &mut events,
            None,
            Duration::from_secs(10),
            &mut counts,
        )
        .expect("wait");
        assert!(!events.is_empty());
        assert_eq!(counts.hits, 1);
    }
}
