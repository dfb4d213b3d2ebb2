//! The queue lifetime: a message that waits unsent longer than
//! [`Config::queue_lifetime`](crate::Config::queue_lifetime) is handed back
//! ([`UndeliveredCause::Expired`]) instead of sent late.
//!
//! A message waits behind a full socket, or, with resume, while the link is
//! down (the session keeps it). While any wait, the connection looks at
//! them in rounds an eighth of the lifetime apart. Each round notes how
//! many messages had been queued in all by then (a *mark*: every message
//! numbered below it was queued at or before that instant), hands back the
//! waiting messages below a mark a lifetime old, and forgets the marks
//! whose messages have all left. A message's mark is never earlier than its
//! `send`, so nothing is handed back early, and at most one round later
//! than due.
//!
//! It keeps no time per message (at most a few marks per connection, and
//! only while messages wait), reads no clock, and never takes back a frame
//! that has started onto a socket: the peer may have it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::flags::Flag;
use super::timer::Timer;
use super::{Connection, Event, State, UndeliveredCause};

/// Looks per lifetime.
const ROUNDS: u32 = 8;
/// Marks kept at most: a round's mark is due `ROUNDS` rounds later, so
/// more are only ever kept when marks come between rounds; beyond this
/// the newest absorbs the next (later, so never early).
const MAX_MARKS: usize = 2 * ROUNDS as usize + 2;

/// When the waiting messages were seen (see the module docs).
#[derive(Debug, Default)]
pub(super) struct UnsentAges {
    /// (messages queued in all, when): oldest first, counts rising.
    marks: VecDeque<(u64, Instant)>,
    /// With resume: how many of the session's frames had started onto a
    /// socket when the last one went; the rest of its `sent` never left.
    pub(super) on_wire: u64,
}

impl UnsentAges {
    /// Every message below `queued` was queued by `now`.
    fn note(&mut self, queued: u64, now: Instant) {
        if self.marks.back().is_some_and(|&(n, _)| n >= queued) {
            return;
        }
        if self.marks.len() >= MAX_MARKS {
            self.marks.pop_back();
        }
        self.marks.push_back((queued, now));
    }

    /// The messages below `first_waiting` have left: their marks go.
    fn forget_left(&mut self, first_waiting: u64) {
        while self.marks.front().is_some_and(|&(n, _)| n <= first_waiting) {
            self.marks.pop_front();
        }
    }

    /// Takes out the marks a `lifetime` old at `now` and returns the
    /// count below which messages are due (0 if none are).
    fn take_due(&mut self, now: Instant, lifetime: Duration) -> u64 {
        let mut due = 0;
        while let Some(&(n, at)) = self.marks.front() {
            if at + lifetime > now {
                break;
            }
            due = n;
            self.marks.pop_front();
        }
        due
    }
}

impl Connection {
    /// The queue lifetime's bookkeeping, allocated on first use.
    pub(super) fn unsent_ages(&mut self) -> &mut UnsentAges {
        self.rare_mut().unsent.get_or_insert_with(Box::default)
    }

    /// Tells the connection that the driver had no socket to write its
    /// output to at `now`: with a queue lifetime, messages the session
    /// keeps while the link is down start to age. The reactor calls it
    /// whenever it services a connection that is not established; cheap
    /// without a lifetime.
    pub fn handle_queued_while_down(&mut self, now: Instant) {
        if self.config.queue_lifetime.is_some() && self.queues_while_down() {
            self.start_lifetime_looks(now);
        }
    }

    /// Messages may have started to wait at `now` (the socket is full, or
    /// the link is down): starts the rounds unless they run already.
    pub(super) fn start_lifetime_looks(&mut self, now: Instant) {
        let Some(lifetime) = self.config.queue_lifetime else {
            return;
        };
        if self.timers.is_armed(Timer::QueueLifetime) || self.waiting_messages() == 0 {
            return;
        }
        let queued = self.stats.messages_sent;
        self.unsent_ages().note(queued, now);
        self.timers
            .set(Timer::QueueLifetime, now + lifetime / ROUNDS);
    }

    /// A round (see the module docs): hands back what outlived the
    /// lifetime, then looks again a round later while messages wait.
    pub(super) fn on_queue_lifetime(&mut self, now: Instant, events: &mut Vec<Event>) {
        let Some(lifetime) = self.config.queue_lifetime else {
            return;
        };
        let mut waiting = self.waiting_messages();
        let queued = self.stats.messages_sent;
        let first_waiting = queued.saturating_sub(waiting);
        let ages = self.unsent_ages();
        ages.forget_left(first_waiting);
        let due = ages.take_due(now, lifetime);
        if due > first_waiting {
            waiting -= self.withdraw_waiting(due - first_waiting, waiting, events);
        }
        if waiting == 0 {
            self.unsent_ages().marks.clear();
            return;
        }
        self.unsent_ages().note(queued, now);
        self.timers
            .set(Timer::QueueLifetime, now + lifetime / ROUNDS);
    }

    /// Messages queued that have not started onto a socket: behind a full
    /// one, or kept by the session while the link is down.
    fn waiting_messages(&self) -> u64 {
        match self.state {
            State::Established => self.sock.outbox.unstarted_frames(),
            _ if self.queues_while_down() => {
                let on_wire = self
                    .rare
                    .as_deref()
                    .and_then(|r| r.unsent.as_deref())
                    .map_or(0, |u| u.on_wire);
                self.session
                    .as_deref()
                    .map_or(0, |s| s.sent.saturating_sub(on_wire))
            }
            _ => 0,
        }
    }

    /// Hands back the oldest `k` of the `waiting` messages, taking them out
    /// of the output and the session's log (they were never on the wire,
    /// so the messages after them take their numbers); returns how many.
    fn withdraw_waiting(&mut self, k: u64, waiting: u64, events: &mut Vec<Event>) -> u64 {
        let mut out = Vec::new();
        let resumable = self.sock.flags.get(Flag::Resumable);
        if self.state == State::Established {
            self.sock.outbox.withdraw_unstarted(k, &mut out);
            if let (true, Some(s)) = (resumable, self.session.as_deref_mut()) {
                // The newest `waiting` of the log are the ones waiting.
                let skip = s.log.frames().saturating_sub(waiting);
                let taken = s.log.withdraw(skip, out.len() as u64);
                s.sent -= taken.len() as u64;
            }
        } else if let Some(s) = self.session.as_deref_mut() {
            let skip = s.log.frames().saturating_sub(waiting);
            out = s.log.withdraw(skip, k);
            s.sent -= out.len() as u64;
        }
        let taken = out.len() as u64;
        self.hand_back_as(out, UndeliveredCause::Expired, events);
        self.poll_drain(events);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_say_what_is_due_never_early_and_forget_what_left() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut ages = UnsentAges::default();
        ages.note(10, t0);
        ages.note(10, t0 + ms(5)); // nothing new: no mark
        ages.note(25, t0 + ms(10));
        ages.note(40, t0 + ms(20));
        assert_eq!(ages.marks.len(), 3);
        let lifetime = ms(100);
        assert_eq!(
            ages.take_due(t0 + ms(99), lifetime),
            0,
            "not a moment early"
        );
        assert_eq!(ages.take_due(t0 + ms(110), lifetime), 25);
        assert_eq!(ages.marks.len(), 1);
        ages.forget_left(40);
        assert!(ages.marks.is_empty(), "all of them left");
    }

    #[test]
    fn a_full_set_of_marks_moves_its_newest_later() {
        let t0 = Instant::now();
        let mut ages = UnsentAges::default();
        for i in 0..(MAX_MARKS as u64 + 3) {
            ages.note(i + 1, t0 + Duration::from_millis(i));
        }
        assert_eq!(ages.marks.len(), MAX_MARKS);
        let &(n, at) = ages.marks.back().unwrap();
        assert_eq!(n, MAX_MARKS as u64 + 3);
        assert_eq!(at, t0 + Duration::from_millis(MAX_MARKS as u64 + 2));
    }
}
