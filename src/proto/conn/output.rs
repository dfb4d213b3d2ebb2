//! Output: what the application sends (checked against the limits),
//! the run lent to the reactor for answers, the bytes the driver writes,
//! backpressure and the drain that follows it, and the trimming of idle
//! output buffers.
//!
//! It never writes to a socket: the driver gathers the slices, writes what
//! it can and reports the count.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::flags::Flag;
use super::replay_log::ReplayLog;
use super::timer::Timer;
use super::{Connection, Event, SendError, State, COPY_MAX};

/// Where a message accepted for sending goes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Route {
    /// Onto the current socket's queue.
    pub(super) wire: bool,
    /// Into the session's log (numbered; sent again on resume).
    pub(super) log: bool,
}
use crate::proto::codec::HEADER_LEN;

impl Connection {
    /// Queues one message. Refused unless established (or, for a client
    /// in a resumed session, redialling: then it is kept for the session
    /// and sent once it resumes), when larger than `max_frame`, when the
    /// output queue would pass `max_outbound`, or when the session's
    /// unacknowledged bytes would pass its `max_unacked`.
    pub fn send(&mut self, payload: Bytes) -> Result<(), SendError> {
        let route = self.may_send(payload.len())?;
        if route.log {
            self.log_sent(|log| log.push(&payload), 1);
        }
        if route.wire {
            self.sock.outbox.push_data(payload);
        }
        self.note_send();
        Ok(())
    }

    /// Queues a copy of one message, refused as by [`send`](Self::send).
    /// A small message is copied straight into the output (no allocation).
    pub fn send_slice(&mut self, payload: &[u8]) -> Result<(), SendError> {
        let route = self.may_send(payload.len())?;
        if route.log {
            self.log_sent(|log| log.push_slice(payload), 1);
        }
        if route.wire {
            self.sock.outbox.push_slice(payload);
        }
        self.note_send();
        Ok(())
    }

    /// Numbers `frames` DATA frames in the session and logs them with
    /// `log`.
    #[inline]
    fn log_sent(&mut self, log: impl FnOnce(&mut ReplayLog), frames: u64) {
        if let Some(session) = self.session.as_deref_mut() {
            log(&mut session.log);
            session.sent += frames;
        }
    }

    /// Queues a copy of one whole DATA frame — its header and a payload of
    /// at most [`COPY_MAX`] bytes — as received (a message forwarded as it
    /// came off the wire): one copy into the output instead of encoding
    /// the header and copying the payload. Refused as by [`send`](Self::send).
    #[inline]
    pub(crate) fn send_framed(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let route = self.may_send(frame.len().saturating_sub(HEADER_LEN))?;
        if route.log {
            self.log_sent(|log| log.push_framed(frame, 1), 1);
        }
        if route.wire {
            self.sock.outbox.push_framed(frame);
        }
        self.note_send();
        Ok(())
    }

    /// Lends the driver the packed run at the back of the output, to append
    /// whole small DATA frames to directly while it answers this
    /// connection's input (the reactor's lent run): the run, how many
    /// bytes may be appended (its cap and `max_outbound` both counted), and
    /// the largest payload allowed. Frames appended within those limits
    /// are exactly what [`send`](Self::send) would accept. `None` unless
    /// established with such a run open. Nothing else may touch the output
    /// until [`return_run`](Self::return_run).
    pub(crate) fn lend_run(&mut self) -> Option<(BytesMut, usize, usize)> {
        if self.state != State::Established {
            return None;
        }
        let (run, room) = self.sock.outbox.take_open_run()?;
        let queued = self.sock.outbox.len() + run.len();
        let room = room
            .min(self.config.max_outbound.saturating_sub(queued))
            .min(self.unacked_room());
        let max_payload = self.config.max_frame.min(COPY_MAX);
        Some((run, room, max_payload))
    }

    /// [`lend_run`](Self::lend_run) with no DATA queued: a fresh run from
    /// the thread's pool, for the first answer of a read. `None` unless
    /// established with no DATA (or closing frames) queued; queued control
    /// frames stay ahead of it, as ahead of any unstarted DATA.
    #[inline]
    pub(crate) fn lend_fresh_run(&mut self) -> Option<(BytesMut, usize, usize)> {
        if self.state != State::Established {
            return None;
        }
        let (run, room) = self.sock.outbox.take_fresh_run()?;
        let room = room
            .min(
                self.config
                    .max_outbound
                    .saturating_sub(self.sock.outbox.len()),
            )
            .min(self.unacked_room());
        let max_payload = self.config.max_frame.min(COPY_MAX);
        Some((run, room, max_payload))
    }

    /// Whether the session's log holds at most half its bound (always, out
    /// of a session): a refused sender may send again.
    fn unacked_half_free(&self) -> bool {
        match (&self.session, self.config.max_unacked()) {
            (Some(s), Some(max)) => s.log.bytes() <= max / 2,
            _ => true,
        }
    }

    /// Bytes the session's log may still take on this socket (no limit
    /// when the socket does not carry a session).
    fn unacked_room(&self) -> usize {
        match (&self.session, self.config.max_unacked()) {
            (Some(s), Some(max)) if self.sock.flags.get(Flag::Resumable) => {
                max.saturating_sub(s.log.bytes())
            }
            _ => usize::MAX,
        }
    }

    /// Takes back a run lent by [`lend_run`](Self::lend_run) or
    /// [`lend_fresh_run`](Self::lend_fresh_run), with `messages` frames
    /// appended to it since, from byte `from` on.
    #[inline]
    pub(crate) fn return_run(&mut self, run: BytesMut, from: usize, messages: u64) {
        if messages > 0 && self.sock.flags.get(Flag::Resumable) {
            let appended = run.get(from..).unwrap_or_default();
            self.log_sent(|log| log.push_framed(appended, messages as u32), messages);
        }
        self.sock.outbox.put_back_run(run);
        if messages > 0 {
            // As `note_send` for each: counted, and the trim timer armed
            // (a fresh run's first message did not pass `note_send`).
            self.stats.messages_sent += messages - 1;
            self.note_send();
        }
    }

    /// Bookkeeping for every message queued: the count, and, in a resumed
    /// session, the trim timer that gives the replay log's buffer back once
    /// the connection stops sending. (The send queue needs no timer: it
    /// goes to the thread's spare as soon as all of it is written.)
    #[inline]
    pub(super) fn note_send(&mut self) {
        self.stats.messages_sent += 1;
        if self.session.is_some() && !self.timers.is_armed(Timer::Trim) {
            // From the last receipt (a stamp: no clock read here); a
            // deadline already past only means an early first look.
            let due = self.last_recv.after(self.trim_period());
            self.timers.set_stamp(Timer::Trim, due);
        }
    }

    /// How long the replay log's buffer stays with a connection that
    /// stopped sending: the heartbeat interval, or 1 s without heartbeats.
    pub(super) fn trim_period(&self) -> Duration {
        self.config
            .heartbeat
            .map_or(Duration::from_secs(1), |hb| hb.interval)
    }

    /// The trim timer fired: give back the replay log's buffer if nothing
    /// in it is unacknowledged, and the send queue if it is empty and
    /// still held (so a connection that went quiet holds neither). It
    /// looks again one period later if output is queued or if it just
    /// freed something, and stops once a look finds nothing to free, until
    /// the next message arms it. So a session that sends all the time
    /// gives its log's buffer back at most once per period — an allocation
    /// per period, not per message — and one that stopped sending is
    /// looked at at most twice more.
    pub(super) fn on_trim(&mut self, now: Instant) {
        let log_freed = self
            .session
            .as_deref_mut()
            .is_some_and(|s| s.log.release_idle_memory());
        if !self.sock.outbox.is_empty() || self.sock.outbox.release_idle_memory() || log_freed {
            let due = now + self.trim_period();
            self.timers.set(Timer::Trim, due);
        }
    }

    /// Whether a message of `len` bytes may be sent now, and where it
    /// goes: on the wire, into the session's log, or both.
    #[inline]
    pub(super) fn may_send(&mut self, len: usize) -> Result<Route, SendError> {
        let wire = self.state == State::Established;
        if !wire && !self.queues_while_down() {
            return Err(SendError::NotConnected);
        }
        let max = self.config.max_frame;
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        if wire {
            let queued = self.sock.outbox.len();
            let limit = self.config.max_outbound;
            // Saturating: `queued` counts a shared payload once per send,
            // and on a 32-bit target `max_frame` alone may approach
            // `usize::MAX`.
            if queued.saturating_add(HEADER_LEN).saturating_add(len) > limit {
                self.sock.flags.set(Flag::Refused, true);
                return Err(SendError::Backpressure { queued, limit });
            }
        }
        let log = !wire || self.sock.flags.get(Flag::Resumable);
        if log {
            let held = self.session.as_deref().map_or(0, |s| s.log.bytes());
            let limit = self.config.max_unacked().unwrap_or(usize::MAX);
            if held.saturating_add(HEADER_LEN).saturating_add(len) > limit {
                self.sock.flags.set(Flag::Refused, true);
                return Err(SendError::Backpressure {
                    queued: held,
                    limit,
                });
            }
        }
        Ok(Route { wire, log })
    }

    /// After output was written (see [`advance_transmit`](Self::advance_transmit)):
    /// pushes [`Event::Drained`] if a send was refused with backpressure
    /// and the queued output has fallen to half of `max_outbound` or
    /// below since. Cheap when nothing was refused.
    #[inline]
    pub fn poll_drain(&mut self, events: &mut Vec<Event>) {
        if self.sock.flags.get(Flag::Refused)
            && self.sock.outbox.len() <= self.config.max_outbound / 2
            && self.unacked_half_free()
        {
            self.sock.flags.set(Flag::Refused, false);
            if self.state == State::Established {
                events.push(Event::Drained);
            }
        }
    }

    /// Records that the first `n` bytes of [`transmit`](Self::transmit)'s
    /// slices were written to the socket at `now`.
    #[inline]
    pub fn advance_transmit(&mut self, now: Instant, n: usize, events: &mut Vec<Event>) {
        self.advance(Some(now), n, events);
    }

    /// [`advance_transmit`](Self::advance_transmit), the time of the write
    /// known or not (without it, a full socket taking bytes is not taken
    /// as the peer's acknowledgement). Inlined into the driver's write
    /// loop: it runs once per write; the rare cases are out of line.
    #[inline]
    fn advance(&mut self, now: Option<Instant>, n: usize, events: &mut Vec<Event>) {
        // Whether our PING was out before this write: asked only when the
        // socket was full (see `took_after_full`).
        let ping_was_out = self.sock.flags.get(Flag::SocketFull) && !self.sock.outbox.ping_queued();
        self.sock.outbox.advance(n);
        self.stats.bytes_sent += n as u64;
        if n > 0 {
            // We said something: whatever the peer said so far is
            // answered (see `on_write_idle`).
            self.timers.stop(Timer::WriteIdle);
            self.sock.recv_mark = self.talk_received();
            if self.sock.flags.get(Flag::SocketFull) {
                self.took_after_full(now, ping_was_out);
            }
        }
        if self.state == State::Closing {
            self.advanced_closing(events);
        }
    }

    /// A full socket took bytes: room in a full send buffer appears only
    /// as the peer's TCP acknowledges. It counts as the peer's life only
    /// once our PING is on the wire (`ping_was_out`), and from the moment
    /// it happened.
    #[cold]
    #[inline(never)]
    fn took_after_full(&mut self, now: Option<Instant>, ping_was_out: bool) {
        self.sock.flags.set(Flag::SocketFull, false);
        if ping_was_out {
            if let Some(now) = now {
                self.sock.drained_at = self.timers.stamp(now);
            }
        }
    }

    /// Output advanced while closing: once all is written, what a failing
    /// connection withheld is handed back with the socket.
    #[cold]
    #[inline(never)]
    fn advanced_closing(&mut self, events: &mut Vec<Event>) {
        if self.sock.outbox.is_empty() {
            self.close_socket(events);
        }
    }

    /// The socket would not take more output while some is pending. Starts
    /// the queue lifetime's rounds, if one is set, and arms
    /// the write-stall timer: if not one byte is written before it fires,
    /// the peer is not reading and the connection is closed.
    ///
    /// It also lets a sender whose PING is queued behind a large message
    /// tell a live, reading peer from a dead one: when a full socket takes
    /// more output, the peer acknowledged data, and that counts as life.
    pub fn handle_write_blocked(&mut self, now: Instant) {
        self.sock.flags.set(Flag::SocketFull, true);
        // Messages wait from here: under a queue lifetime they age.
        self.start_lifetime_looks(now);
        let Some(timeout) = self.config.write_stall_timeout else {
            return;
        };
        if self.pending_output() > 0 && !self.timers.is_armed(Timer::WriteStall) {
            self.stall_mark = self.stats.bytes_sent as u32;
            self.timers.set(Timer::WriteStall, now + timeout);
        }
    }

    /// Fills `dst` with the next slices to write, in order, and returns how
    /// many it filled (0: nothing to write). Write them with one vectored
    /// write, then report the count with [`advance_transmit`](Self::advance_transmit).
    pub fn transmit<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.sock.outbox.chunks(dst)
    }

    /// All pending output when it is one contiguous slice, to write with
    /// one plain `send` (then [`advance_transmit`](Self::advance_transmit));
    /// `None` when it is not (use [`transmit`](Self::transmit)) or when
    /// nothing is pending.
    #[inline]
    pub(crate) fn transmit_contiguous(&self) -> Option<&[u8]> {
        self.sock.outbox.contiguous()
    }

    /// Moves all pending output into `dst` (for tests and simple drivers
    /// that copy anyway).
    pub fn transmit_into(&mut self, dst: &mut BytesMut, events: &mut Vec<Event>) {
        loop {
            let mut iov = [IoSlice::new(&[]); 16];
            let n = self.sock.outbox.chunks(&mut iov);
            if n == 0 {
                return;
            }
            let mut written = 0;
            for s in &iov[..n] {
                dst.extend_from_slice(s);
                written += s.len();
            }
            self.advance(None, written, events);
        }
    }

    /// Bytes waiting to be written. While non-zero the driver wants
    /// writable readiness.
    pub fn pending_output(&self) -> usize {
        self.sock.outbox.len()
    }
}
