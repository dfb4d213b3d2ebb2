//! How a connection ends: failing with a CLOSE, losing the socket,
//! reporting the disconnect and deciding on a redial, closing the socket,
//! and handing back the messages it will not send.
//!
//! Every drop of queued output goes through [`Connection::hand_back`], so
//! no message is dropped without an [`Event::Undelivered`].

use std::mem;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use log::debug;

use super::flags::Flag;
use super::timer::Timer;
use super::{Connection, Event, Role, State, UndeliveredCause};
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec;

impl Connection {
    pub(super) fn protocol_error(
        &mut self,
        now: Instant,
        detail: &'static str,
        events: &mut Vec<Event>,
    ) {
        let code = CloseCode::PROTOCOL_ERROR;
        self.fail(
            now,
            DisconnectReason::ProtocolError { code, detail },
            events,
        );
    }

    /// We end the connection for `reason` and tell the peer why: unstarted
    /// output is dropped, CLOSE goes out at the next frame boundary.
    pub(super) fn fail(&mut self, now: Instant, reason: DisconnectReason, events: &mut Vec<Event>) {
        let code = reason
            .close_code_sent()
            .unwrap_or(CloseCode::INTERNAL_ERROR);
        debug!("{:?}: closing with {code}: {reason}", self.role);
        // Handed back when the socket goes, behind the frame being written
        // if that is not finished by then: in send order.
        self.sock.outbox.discard_unstarted();
        let text = match &reason {
            DisconnectReason::ProtocolError { detail, .. } => detail,
            DisconnectReason::HeartbeatTimeout => "heartbeat timeout",
            DisconnectReason::HandshakeTimeout => "handshake timeout",
            DisconnectReason::PolicyViolation { detail } => detail,
            _ => "",
        };
        codec::encode_close(code, text, self.sock.outbox.ctrl());
        self.disconnect(now, reason, events);
        self.enter_closing(now, events);
    }

    /// The socket is unusable or the peer said goodbye: close it at once,
    /// sending nothing more.
    pub(super) fn lose(&mut self, now: Instant, reason: DisconnectReason, events: &mut Vec<Event>) {
        debug!("{:?}: lost: {reason}", self.role);
        self.disconnect(now, reason, events);
        self.close_socket(events);
    }

    /// Reports the end of the current socket's session and decides what
    /// comes next (a redial, or nothing).
    pub(super) fn disconnect(
        &mut self,
        now: Instant,
        reason: DisconnectReason,
        events: &mut Vec<Event>,
    ) {
        for timer in [
            Timer::Connect,
            Timer::Handshake,
            Timer::Ping,
            Timer::Dead,
            Timer::Healthy,
            Timer::WriteStall,
            Timer::WriteIdle,
            Timer::Ack,
        ] {
            self.timers.stop(timer);
        }
        // The rest of the socket's state goes with the socket (see
        // `drop_socket`); a socket still flushing (Closing) reads nothing
        // and runs none of the timers stopped here. A refused sender
        // learns of the end, not of room.
        self.sock.flags.set(Flag::Refused, false);
        if self.sock.flags.take(Flag::Connected) {
            events.push(Event::Disconnected {
                reason: reason.clone(),
            });
        }
        if self.holds_session_detached() {
            // Server: the session outlives its socket until it expires.
            if let Some(resume) = self.config.resume {
                self.timers
                    .set(Timer::Reconnect, now + resume.session_expiry);
            }
        } else if self.role == Role::Client && !self.stopping {
            match self
                .attempts
                .next_delay(&self.config.backoff, &mut self.rng)
            {
                Some(delay) => {
                    self.timers.set(Timer::Reconnect, now + delay);
                    events.push(Event::Reconnecting {
                        attempt: self.attempts.get(),
                        delay,
                        reason: reason.clone(),
                    });
                }
                None => {
                    self.stopping = true;
                    events.push(Event::GaveUp {
                        attempts: self.attempts.get(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        self.rare_mut().close_reason = Some(reason);
        self.stats.disconnects = self.stats.disconnects.wrapping_add(1);
    }

    pub(super) fn enter_closing(&mut self, now: Instant, events: &mut Vec<Event>) {
        self.sock.recv = BytesMut::new();
        self.set_state(State::Closing);
        self.timers
            .set(Timer::Linger, now + self.config.close_linger);
        if self.sock.outbox.is_empty() {
            self.close_socket(events);
        }
    }

    /// Asks the driver to close the socket and moves on to backoff or to
    /// the end.
    pub(super) fn close_socket(&mut self, events: &mut Vec<Event>) {
        if !self.state.has_socket() {
            return;
        }
        self.drop_socket(events);
        if self.timers.is_armed(Timer::Reconnect) {
            self.set_state(match self.role {
                Role::Client => State::Backoff,
                Role::Server => State::Detached,
            });
        } else {
            self.finish(events);
        }
    }

    /// Asks the driver to close the socket and forgets everything tied to
    /// it. Messages not completely written are handed back.
    pub(super) fn drop_socket(&mut self, events: &mut Vec<Event>) {
        self.actions.close_socket = true;
        self.forget_socket(events);
        self.timers.stop(Timer::Linger);
        // Armed while Closing, it watched this socket, not the next one.
        self.timers.stop(Timer::WriteStall);
        // The buffers it watched are gone.
        self.timers.stop(Timer::Trim);
    }

    /// Terminal.
    pub(super) fn finish(&mut self, events: &mut Vec<Event>) {
        self.timers.stop_all();
        self.forget_socket(events);
        self.end_session(events);
        self.set_state(State::Closed);
    }

    /// Drops the socket's state whole (a redial starts from a fresh one),
    /// handing back the messages its output still held — unless they are
    /// in the session's log, to be sent again when the session resumes.
    fn forget_socket(&mut self, events: &mut Vec<Event>) {
        let in_session = self.sock.flags.get(Flag::Resumable) && self.session.is_some();
        self.detach_session();
        let mut old = mem::take(&mut self.sock);
        if in_session && self.config.queue_lifetime.is_some() {
            // What never left this socket may still be withdrawn.
            let sent = self.session.as_deref().map_or(0, |s| s.sent);
            self.unsent_ages().on_wire = sent.saturating_sub(old.outbox.unstarted_frames());
        }
        let mut dropped = Vec::new();
        old.outbox.clear(&mut dropped);
        if !in_session {
            self.hand_back(dropped, events);
        }
    }

    /// Hands `messages`, dropped from the output, back to the application
    /// in one [`Event::Undelivered`] (nothing if there are none).
    pub(super) fn hand_back(&mut self, messages: Vec<Bytes>, events: &mut Vec<Event>) {
        self.hand_back_as(messages, UndeliveredCause::Dropped, events);
    }

    /// [`hand_back`](Self::hand_back) for `cause`.
    pub(super) fn hand_back_as(
        &mut self,
        messages: Vec<Bytes>,
        cause: UndeliveredCause,
        events: &mut Vec<Event>,
    ) {
        if !messages.is_empty() {
            self.stats.messages_undelivered += messages.len() as u64;
            debug!(
                "{:?}: {} messages not delivered: {cause}",
                self.role,
                messages.len()
            );
            events.push(Event::Undelivered { messages, cause });
        }
    }

    pub(super) fn begin_connect(&mut self, now: Instant) {
        self.set_state(State::Connecting);
        self.timers
            .set(Timer::Connect, now + self.config.connect_timeout);
        self.actions.connect = true;
    }

    pub(super) fn set_state(&mut self, next: State) {
        if self.state != next {
            debug!("{:?}: {} => {}", self.role, self.state, next);
            self.state = next;
        }
    }
}
