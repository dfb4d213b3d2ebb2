//! Liveness: the handshake that establishes a socket, and the heartbeat
//! rules after it — every byte is life, a PING after `I` of silence, the
//! death sentence `T` after it, the local-stall allowance, the ACK a quiet
//! receiver sends, and the write-stall verdict — driven by the named
//! timers.
//!
//! It never reads a clock: `now` comes with every input.

use std::mem;
use std::time::{Duration, Instant};

use log::{trace, warn};

use super::flags::Flag;
use super::timer::{Stamp, Timer};
use super::{millis_u32, Connection, Event, PeerInfo, ResumeStatus, Role, State};
use crate::error::DisconnectReason;
use crate::proto::codec::{self, Handshake};

impl Connection {
    pub(super) fn our_handshake(&self) -> Handshake {
        let (interval, timeout) = self.config.heartbeat.map_or((0, 0), |hb| {
            (millis_u32(hb.interval), millis_u32(hb.timeout))
        });
        let (mut flags, session_id, recv_seq) = self.resume_fields();
        let (mut interval_ms, mut timeout_ms) = (interval, timeout);
        if self.offers_liveness() {
            flags |= Handshake::LIVENESS;
        }
        if self.role == Role::Server && self.sock.liveness_ms.0 > 0 {
            // The client's settings on this connection, as negotiated.
            flags |= Handshake::LIVENESS;
            (interval_ms, timeout_ms) = self.sock.liveness_ms;
        }
        Handshake {
            flags,
            interval_ms,
            timeout_ms,
            session_id,
            recv_seq,
        }
    }

    pub(super) fn establish(
        &mut self,
        now: Instant,
        peer: &Handshake,
        resume: ResumeStatus,
        events: &mut Vec<Event>,
    ) {
        self.timers.stop(Timer::Handshake);
        self.set_state(State::Established);
        self.sock.flags.set(Flag::Connected, true);
        self.sock.flags.set(Flag::FrameSinceHandshake, false);
        self.stats.handshakes = self.stats.handshakes.saturating_add(1);
        self.last_recv = self.timers.stamp(now);
        if let Some(hb) = self.heartbeat() {
            self.sock.ping_jitter_ms = self.next_jitter_ms();
            self.timers
                .set(Timer::Ping, now + hb.interval + self.ping_jitter());
        }
        if self.role == Role::Client {
            self.timers
                .set(Timer::Healthy, now + self.config.healthy_period());
        }
        self.sock.session_rx_base = self.stats.messages_received;
        let own = self
            .config
            .heartbeat
            .map_or(0, |hb| millis_u32(hb.interval));
        self.sock.write_idle_ms = match (own, peer.interval_ms) {
            (0, 0) => 0,
            (0, p) | (p, 0) => (p / 2).max(1),
            (a, b) => (a.min(b) / 2).max(1),
        };
        // The handshake needs no answer: talk counts from here.
        self.sock.recv_mark = self.talk_received();
        // What the peer has not received of the session goes first.
        let replayed = self.replay(resume);
        let resume = match resume {
            ResumeStatus::Resumed { .. } => {
                if let Some(s) = self.session.as_deref_mut() {
                    s.resumes = s.resumes.saturating_add(1);
                    s.resent += replayed;
                }
                ResumeStatus::Resumed { resent: replayed }
            }
            other => other,
        };
        events.push(Event::Connected(PeerInfo {
            interval: Duration::from_millis(peer.interval_ms.into()),
            timeout: Duration::from_millis(peer.timeout_ms.into()),
            // The server's assigned id on both ends (HELLO carries 0).
            session_id: self.session_id,
            resume,
            // The reactor fills these in for a link with several
            // endpoints (or a name): the state machine dials no address.
            endpoint: 0,
            moved: false,
        }));
    }

    /// Any byte is proof of life: restart the read-idle clock (the idle
    /// deadline moves with it, so it only comes due after a real silence)
    /// and stand down a pending death sentence.
    pub(super) fn note_life(&mut self, now: Instant) {
        self.last_recv = self.timers.stamp(now);
        if self.state != State::Established {
            return;
        }
        self.timers.stop(Timer::Dead);
        if let Some(hb) = self.heartbeat() {
            let due = self.last_recv.after(hb.interval + self.ping_jitter());
            self.timers.set_stamp(Timer::Ping, due);
        }
    }

    /// After a read: if the peer said something we have not answered, start
    /// the write-idle clock (our next write stops it; see
    /// [`on_write_idle`](Self::on_write_idle)).
    #[inline]
    pub(super) fn note_talk(&mut self) {
        if self.sock.write_idle_ms == 0
            || self.state != State::Established
            || self.timers.is_armed(Timer::WriteIdle)
            || self.talk_received() == self.sock.recv_mark
        {
            return;
        }
        let due = self.last_recv.after(self.write_idle());
        self.timers.set_stamp(Timer::WriteIdle, due);
    }

    /// A PING was received (and answered): this side's own next PING is
    /// due one interval and a jitter after it, and the jitter is drawn
    /// afresh here, as the pinging side draws after each PING it sends.
    /// So every exchange on an idle link is a new draw on both sides, and
    /// either may ping next (and sample the round trip); a side that drew
    /// only after its own PINGs kept its first draw while the peer pinged
    /// first, and with a high one never pinged again.
    pub(super) fn redraw_ping_jitter(&mut self) {
        let Some(hb) = self.heartbeat() else {
            return;
        };
        if self.state != State::Established {
            return;
        }
        self.sock.ping_jitter_ms = self.next_jitter_ms();
        let due = self.last_recv.after(hb.interval + self.ping_jitter());
        self.timers.set_stamp(Timer::Ping, due);
    }

    /// The death deadline `T` after the latest drain of our full socket
    /// since our PING went out, if that is later than `now` (and forgets
    /// the drain).
    fn drain_extension(&mut self, now: Instant) -> Option<Instant> {
        let drained = mem::replace(&mut self.sock.drained_at, Stamp::NONE);
        let hb = self.heartbeat()?;
        let at = self.timers.instant_of(drained)? + hb.timeout;
        (at > now).then_some(at)
    }

    /// The PING timer fired: a whole interval (and the jitter) of silence.
    pub(super) fn on_ping_due(&mut self, now: Instant) {
        let (Some(hb), Some(last)) = (self.heartbeat(), self.last_recv()) else {
            return;
        };
        let due = last + hb.interval + self.ping_jitter();
        if now < due {
            self.timers.set(Timer::Ping, due);
            return;
        }
        self.probe(now, hb.timeout);
        self.sock.drained_at = Stamp::NONE;
        self.sock.ping_jitter_ms = self.next_jitter_ms();
        trace!(
            "{:?}: PING {:#x} after {:?} of silence",
            self.role,
            self.sock.probe_nonce,
            now - last
        );
    }

    /// Probes the peer at `now`: it has `timeout` from now to send anything.
    ///
    /// The probe is a fresh PING, unless our previous PING is still queued
    /// (the socket has not taken all of it yet): that one has not reached
    /// the peer, so it serves as the probe, nonce and all, and no second
    /// PING queues up behind it. So at most one PING ever waits in the
    /// output, however long the socket takes nothing.
    pub(super) fn probe(&mut self, now: Instant, timeout: Duration) {
        if !self.sock.outbox.ping_queued() {
            let nonce = self.rng.next_u64();
            self.sock.outbox.push_ping(nonce);
            self.sock.probe_nonce = nonce;
            self.stats.pings_sent = self.stats.pings_sent.saturating_add(1);
        }
        self.sock.probe_sent = self.timers.stamp(now);
        self.timers.set(Timer::Dead, now + timeout);
    }

    /// The death sentence came due while *we* were not running (a long
    /// callback, SIGSTOP, a suspended VM: it was handled `late`, more than
    /// a timer grain plus the stall tolerance): what the peer sent
    /// meanwhile may still be unread, so convicting it would blame it for
    /// our delay. Give it a fresh `T` instead, and a fresh PING — unless our PING is still
    /// queued (the socket took nothing of it): then that one is the probe
    /// (see [`probe`](Self::probe)), so a driver that never writes while
    /// every deadline is handled late does not pile up a PING per `T`.
    pub(super) fn forgive_stall(&mut self, now: Instant, late: Duration) {
        let Some(hb) = self.heartbeat() else {
            return;
        };
        warn!(
            "{:?}: heartbeat deadline handled {late:?} late (local stall); re-probing the peer",
            self.role
        );
        self.stats.stalls_forgiven = self.stats.stalls_forgiven.saturating_add(1);
        self.probe(now, hb.timeout);
    }

    /// A random extra delay of at most 10 % of the interval, in whole ms.
    /// At most `I/10` less one step of the reactor's timer grid
    /// ([`Config::timer_grain`]): a PING handled on the grid still leaves
    /// within `I/10` of `I`, the jitter the contract allows.
    pub(super) fn next_jitter_ms(&mut self) -> u32 {
        let interval_ms = self.heartbeat().map_or(0, |hb| millis_u32(hb.interval));
        let grain_ms = millis_u32(self.config.timer_grain());
        // At most interval_ms / 10, so it fits.
        self.rng
            .below_inclusive(u64::from((interval_ms / 10).saturating_sub(grain_ms))) as u32
    }

    pub(super) fn on_timer(
        &mut self,
        timer: Timer,
        due: Instant,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        match (timer, self.state) {
            (Timer::Connect, State::Connecting) => {
                self.lose(now, DisconnectReason::ConnectTimeout, events)
            }
            (Timer::Handshake, State::Handshaking) => {
                self.fail(now, DisconnectReason::HandshakeTimeout, events)
            }
            (Timer::Ping, State::Established) => self.on_ping_due(now),
            (Timer::Dead, State::Established) => {
                // Handled within one grain of the reactor's timer grid
                // after `due` is on time: the deadline was filed there.
                let late = now.saturating_duration_since(due);
                let allowed = self
                    .config
                    .timer_grain()
                    .saturating_add(self.config.stall_tolerance);
                if late > allowed {
                    self.forgive_stall(now, late);
                } else if let Some(extended) = self.drain_extension(now) {
                    // The peer's TCP kept taking our output after our PING
                    // went out (its answer waits behind our data): wait
                    // until `T` after that, as the contract allows.
                    self.stats.drain_extensions = self.stats.drain_extensions.saturating_add(1);
                    self.timers.set(Timer::Dead, extended);
                } else {
                    self.fail(now, DisconnectReason::HeartbeatTimeout, events)
                }
            }
            (Timer::Healthy, State::Established) => {
                if self.sock.flags.get(Flag::FrameSinceHandshake) {
                    self.attempts.reset();
                } else {
                    self.sock.flags.set(Flag::HealthyPending, true);
                }
            }
            (Timer::Linger, State::Closing) => self.close_socket(events),
            (Timer::WriteIdle, State::Established) => self.on_write_idle(),
            (Timer::Ack, State::Established) => self.on_ack_timer(),
            (Timer::Trim, _) => self.on_trim(now),
            (Timer::QueueLifetime, _) => self.on_queue_lifetime(now, events),
            (Timer::WriteStall, State::Handshaking | State::Established) => {
                self.on_write_stall_timer(now, events)
            }
            (Timer::Reconnect, State::Closing | State::Detached) if self.role == Role::Server => {
                self.expire_session(events)
            }
            (Timer::Reconnect, State::Closing) => {
                self.drop_socket(events);
                self.begin_connect(now);
            }
            (Timer::Reconnect, State::Backoff) => self.begin_connect(now),
            // A timer that outlived the state it belonged to.
            _ => {}
        }
    }

    pub(super) fn write_idle(&self) -> Duration {
        Duration::from_millis(self.sock.write_idle_ms.into())
    }

    /// Low 32 bits of the bytes received that call for a sign of life back:
    /// everything but PONGs (answers to our own PINGs) and ACKs (the
    /// peer's own signs of life). Only compared for equality, so the low
    /// bits suffice (wrapping).
    pub(super) fn talk_received(&self) -> u32 {
        let quiet = self
            .stats
            .pongs_received
            .wrapping_add(self.stats.acks_received);
        (self.stats.bytes_received as u32)
            .wrapping_sub(quiet.wrapping_mul(codec::HEARTBEAT_FRAME_LEN as u64) as u32)
    }

    /// Receiving but saying nothing: send an ACK (the count of DATA frames
    /// received this session, as the contract defines it) so the peer hears
    /// from us. A peer pushing a large message has its own PINGs queued
    /// behind that message, so without this it could not tell us from a
    /// dead peer.
    ///
    /// The timer is armed by a read that brought talk (anything but PONGs
    /// and ACKs, the peer's own answers; answering those would start an
    /// endless ACK ping-pong between two quiet peers) and stopped by our
    /// next write, so when it fires nothing was written for the write-idle
    /// period since that talk came. On an idle link the PONG answering each
    /// PING stops it, so it never fires there, and a busy connection never
    /// lets it come due either.
    pub(super) fn on_write_idle(&mut self) {
        if self.talk_received() != self.sock.recv_mark && self.pending_output() == 0 {
            self.send_ack();
        }
        self.sock.recv_mark = self.talk_received();
    }

    pub(super) fn on_write_stall_timer(&mut self, now: Instant, events: &mut Vec<Event>) {
        if self.pending_output() == 0 {
            return;
        }
        if self.stats.bytes_sent as u32 != self.stall_mark {
            // Progress in this window, but output is still queued: watch
            // the next window.
            if let Some(timeout) = self.config.write_stall_timeout {
                self.stall_mark = self.stats.bytes_sent as u32;
                self.timers.set(Timer::WriteStall, now + timeout);
            }
            return;
        }
        // Not one byte in a whole window: the peer does not read, so a
        // CLOSE frame could not reach it either.
        self.lose(now, DisconnectReason::WriteStalled, events);
    }
}
