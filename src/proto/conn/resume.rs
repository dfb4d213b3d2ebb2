//! Session resume on a connection: the RESUME flag in the handshake, what
//! WELCOME means for a client's session (resumed, new, lost, refused),
//! sending the unacknowledged DATA again, counting what is received, the
//! ACKs both ways, and handing back what a session ends without.
//!
//! The session's numbers live in [`Session`]; this decides when they
//! move. It never reads a clock and never drops a message without an
//! [`Event::Undelivered`].

use std::time::{Duration, Instant};

use log::debug;

use super::flags::Flag;
use super::replay_log::Logged;
use super::socket::Socket;
use super::timer::Timer;
use super::{Connection, Event, ResumeStatus, Role, State, UndeliveredCause};
use crate::error::DisconnectReason;
use crate::proto::codec::{self, Handshake, HEADER_LEN};

/// A session's figures (see [`Connection::session_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Messages sent (or queued while the link was down) that the peer
    /// has not acknowledged yet.
    pub unacked_messages: u64,
    /// Their bytes, as DATA frames on the wire.
    pub unacked_bytes: usize,
    /// Messages sent again after resume handshakes.
    pub messages_resent: u64,
    /// Connections that resumed the session.
    pub resumes: u32,
}

/// A resuming receiver tells its receipt count after this many DATA frames
/// (for 64-byte messages the ACKs are about 0.3 % of the DATA bytes; each
/// ACK also costs its sender a second slice in a write)…
pub(super) const ACK_EVERY: u64 = 64;
/// …or this long after DATA it has not yet acknowledged arrived, whichever
/// comes first: the sender's log stays small while data flows and empties
/// soon after it stops.
pub(super) const ACK_DELAY: Duration = Duration::from_millis(20);

impl Connection {
    /// The RESUME flag, session id and receipt count of our handshake.
    pub(super) fn resume_fields(&self) -> (u8, u64, u64) {
        match (&self.session, self.role) {
            (Some(_), _) => (Handshake::RESUME, self.session_id, self.receipts()),
            // A HELLO without resume asks for a new session; a WELCOME
            // carries the id the server assigned.
            (None, Role::Client) => (0, 0, 0),
            (None, Role::Server) => (0, self.session_id, 0),
        }
    }

    /// Our receipt count in the session: the DATA frames received on
    /// earlier sockets and on this one (when it carries the session).
    pub(super) fn receipts(&self) -> u64 {
        let Some(s) = self.session.as_deref() else {
            return 0;
        };
        let here = if self.sock.flags.get(Flag::Resumable) {
            self.stats.messages_received - self.sock.session_rx_base
        } else {
            0
        };
        s.received_before + here
    }

    /// Server: a HELLO that does not resume an earlier session arrived;
    /// grants resume when it asks and this side allows it.
    pub(super) fn server_resume(&mut self, hello: &Handshake) -> ResumeStatus {
        if !hello.has(Handshake::RESUME) || self.config.resume.is_none() {
            return ResumeStatus::Off;
        }
        self.fresh_session();
        ResumeStatus::New
    }

    /// Client: WELCOME arrived. Decides what became of the session, hands
    /// back what cannot be sent again, and frees what the server reports
    /// received; the rest is sent again by [`replay`](Self::replay) once
    /// established. `Err` for a `recv_seq` the contract forbids.
    pub(super) fn client_resume(
        &mut self,
        welcome: &Handshake,
        events: &mut Vec<Event>,
    ) -> Result<ResumeStatus, &'static str> {
        let Some(session) = self.session.as_deref_mut() else {
            self.session_id = welcome.session_id;
            return Ok(ResumeStatus::Off);
        };
        let asked = self.session_id;
        if !welcome.has(Handshake::RESUME) {
            self.session_id = welcome.session_id;
            if asked != 0 {
                // What the old connections did not get acknowledged may or
                // may not have arrived: the application decides.
                self.restart_session(UndeliveredCause::NotResumable, events);
                return Ok(ResumeStatus::Refused);
            }
            // Nothing was ever on a wire: queued while connecting, it is
            // simply sent now, without a guarantee.
            return Ok(ResumeStatus::Refused);
        }
        if asked != 0 && welcome.session_id == asked {
            session.on_resume(welcome.recv_seq)?;
            return Ok(ResumeStatus::Resumed { resent: 0 });
        }
        if welcome.recv_seq != 0 {
            return Err("recv_seq of a new session above 0");
        }
        self.session_id = welcome.session_id;
        if asked != 0 {
            self.restart_session(UndeliveredCause::SessionLost, events);
            return Ok(ResumeStatus::Lost);
        }
        Ok(ResumeStatus::New)
    }

    /// A new session, numbered from its first frame (none of which has
    /// been on a socket yet).
    pub(super) fn fresh_session(&mut self) {
        self.session = Some(Box::default());
        if let Some(unsent) = self
            .rare
            .as_deref_mut()
            .and_then(|r| r.unsent.as_deref_mut())
        {
            unsent.on_wire = 0;
        }
    }

    /// Starts the session's counts over, handing back every message it
    /// held, as `cause`.
    fn restart_session(&mut self, cause: UndeliveredCause, events: &mut Vec<Event>) {
        if let Some(session) = self.session.as_deref_mut() {
            let messages = session.log.take_payloads();
            self.fresh_session();
            self.hand_back_as(messages, cause, events);
        }
    }

    /// Established: sends again every frame of the session the peer has
    /// not received, in order, ahead of anything new; returns how many.
    /// On a connection that does not resume, a client's frames queued
    /// while connecting are sent (and leave the session, which no ACK
    /// will ever free).
    pub(super) fn replay(&mut self, status: ResumeStatus) -> u64 {
        let Some(session) = self.session.as_deref_mut() else {
            return 0;
        };
        let outbox = &mut self.sock.outbox;
        let frames = session.log.frames();
        session.log.replay(|logged| match logged {
            Logged::Packed(mut wire) => {
                // Frame by frame: the queue packs each as a sent one.
                while wire.len() >= HEADER_LEN {
                    let length = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]);
                    let len = (4 + length as usize).min(wire.len());
                    let (frame, rest) = wire.split_at(len);
                    outbox.push_framed(frame);
                    wire = rest;
                }
            }
            Logged::Large(payload) => outbox.push_data(payload.clone()),
        });
        if status == ResumeStatus::Refused {
            // Handed over to this connection's queue: the session is done.
            self.fresh_session();
            self.sock.flags.set(Flag::Resumable, false);
        } else {
            self.sock.flags.set(Flag::Resumable, true);
        }
        frames
    }

    /// After a read: tells the peer our receipt count once `ACK_EVERY`
    /// frames or a quarter of the unacknowledged bound's bytes arrived
    /// since we last did, else makes sure it is told within `ACK_DELAY`.
    pub(super) fn ack_after_read(&mut self) {
        if !self.sock.flags.get(Flag::Resumable) || self.state != State::Established {
            return;
        }
        let receipts = self.receipts();
        let Some(s) = self.session.as_deref() else {
            return;
        };
        let unacked = receipts - s.told;
        if unacked == 0 {
            return;
        }
        let quarter = self.config.max_unacked().map_or(0, |max| max / 4) as u64;
        if unacked >= ACK_EVERY || self.stats.bytes_received - s.told_at_bytes >= quarter {
            self.send_ack();
        } else if !self.timers.is_armed(Timer::Ack) {
            // From this read's stamp: no clock read here.
            let due = self.last_recv.after(ACK_DELAY);
            self.timers.set_stamp(Timer::Ack, due);
        }
    }

    /// The ACK timer fired: tell the count if it moved since.
    pub(super) fn on_ack_timer(&mut self) {
        if self.state == State::Established
            && self.sock.flags.get(Flag::Resumable)
            && self
                .session
                .as_deref()
                .is_some_and(|s| s.told < self.receipts())
        {
            self.send_ack();
        }
    }

    /// Queues an ACK with our receipt count (in a session) or the DATA
    /// received on this socket (as a sign of life without one).
    pub(super) fn send_ack(&mut self) {
        let count = if self.sock.flags.get(Flag::Resumable) {
            let count = self.receipts();
            if let Some(s) = self.session.as_deref_mut() {
                s.told = count;
                s.told_at_bytes = self.stats.bytes_received;
            }
            count
        } else {
            self.stats.messages_received - self.sock.session_rx_base
        };
        self.timers.stop(Timer::Ack);
        codec::encode_ack(count, self.sock.outbox.ctrl());
        self.stats.acks_sent = self.stats.acks_sent.saturating_add(1);
    }

    /// An ACK arrived: in a session, frees what it counts (and may end a
    /// backpressure); `Err` for a count the contract forbids.
    pub(super) fn on_ack_frame(
        &mut self,
        count: u64,
        events: &mut Vec<Event>,
    ) -> Result<(), &'static str> {
        if !self.sock.flags.get(Flag::Resumable) {
            // A sign of life only.
            return Ok(());
        }
        if let Some(s) = self.session.as_deref_mut() {
            s.on_ack(count)?;
        }
        self.poll_drain(events);
        Ok(())
    }

    /// The socket goes: its receipts join the session's count.
    pub(super) fn detach_session(&mut self) {
        let receipts = self.receipts();
        if let Some(s) = self.session.as_deref_mut() {
            s.received_before = receipts;
        }
        self.sock.flags.set(Flag::Resumable, false);
    }

    /// The session ends: what the peer did not acknowledge is handed back.
    pub(super) fn end_session(&mut self, events: &mut Vec<Event>) {
        if let Some(mut session) = self.session.take() {
            let messages = session.log.take_payloads();
            self.hand_back_as(messages, UndeliveredCause::SessionEnded, events);
        }
    }

    /// Whether a send now goes to the session's log only (a client whose
    /// link is down, redialling; a server holding the session detached):
    /// it is sent when the session resumes.
    pub(super) fn queues_while_down(&self) -> bool {
        self.session.is_some()
            && !self.stopping
            && match self.role {
                Role::Client => matches!(
                    self.state,
                    State::Idle | State::Backoff | State::Connecting | State::Handshaking
                ),
                Role::Server => self.state == State::Detached,
            }
    }

    /// Resume: the session's figures (zero without one).
    pub fn session_stats(&self) -> SessionStats {
        self.session
            .as_deref()
            .map_or(SessionStats::default(), |s| SessionStats {
                unacked_messages: s.log.frames(),
                unacked_bytes: s.log.bytes(),
                messages_resent: s.resent,
                resumes: s.resumes,
            })
    }
}

/// Server: a resume HELLO the driver is to answer (see
/// [`Connection::resume_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The session the client resumes.
    pub session_id: u64,
    /// Its receipt count in that session.
    pub recv_seq: u64,
}

/// The state of one socket, moved from the connection that accepted it to
/// the one holding the session it resumes (see
/// [`Connection::take_socket`]).
#[derive(Debug)]
pub struct MovedSocket {
    sock: Socket,
    hello: Handshake,
}

impl Connection {
    /// Server: whether the socket's connection ends without ending the
    /// session (resume granted, a session to keep, not closed by us).
    pub(super) fn holds_session_detached(&self) -> bool {
        self.role == Role::Server
            && !self.stopping
            && self.session.is_some()
            && self.sock.flags.get(Flag::Resumable)
    }

    /// Server: the held session expired (or is forgotten to hold newer
    /// ones): the application hears it is over, with what the client did
    /// not acknowledge.
    pub fn expire_session(&mut self, events: &mut Vec<Event>) {
        if self.role != Role::Server || self.session.is_none() {
            return;
        }
        debug!("server: session {:#x} expired", self.session_id);
        if self.state.has_socket() {
            self.drop_socket(events);
        }
        events.push(Event::Disconnected {
            reason: DisconnectReason::SessionExpired,
        });
        self.rare_mut().close_reason = Some(DisconnectReason::SessionExpired);
        self.stopping = true;
        self.finish(events);
    }

    /// Server: a HELLO resuming session `session_id` (not 0) arrived and
    /// waits for the driver: input stops until it calls
    /// [`grant_new_session`](Self::grant_new_session) (the session is not
    /// held here) or moves this socket to the connection holding it
    /// ([`take_socket`](Self::take_socket), then
    /// [`resume_on`](Self::resume_on) there).
    pub fn resume_request(&self) -> Option<ResumeRequest> {
        if self.role != Role::Server || self.state != State::Handshaking {
            return None;
        }
        let hello = self.rare.as_deref()?.pending_hello.as_deref()?;
        Some(ResumeRequest {
            session_id: hello.session_id,
            recv_seq: hello.recv_seq,
        })
    }

    /// Server: holds a resume HELLO for the driver's answer.
    pub(super) fn await_resume(&mut self, hello: Handshake) {
        self.fresh_session();
        self.rare_mut().pending_hello = Some(Box::new(hello));
    }

    /// Server: the session a resume HELLO names is not held: a new one
    /// begins, under this connection's own id.
    pub fn grant_new_session(&mut self, now: Instant, events: &mut Vec<Event>) {
        let Some(hello) = self
            .rare
            .as_deref_mut()
            .and_then(|r| r.pending_hello.take())
            .map(|h| *h)
        else {
            return;
        };
        debug!(
            "server: session {:#x} not held: a new one",
            hello.session_id
        );
        self.fresh_session();
        self.negotiate_liveness(&hello);
        let welcome = self.our_handshake();
        codec::encode_welcome(&welcome, self.sock.outbox.ctrl());
        self.establish(now, &hello, ResumeStatus::New, events);
    }

    /// Server: whether this held session can resume with a client that
    /// received `recv_seq` of its frames (between what the client already
    /// acknowledged and what was sent).
    pub fn can_resume(&self, recv_seq: u64) -> bool {
        self.role == Role::Server
            && !self
                .rare
                .as_deref()
                .is_some_and(|r| r.pending_hello.is_some())
            && self
                .session
                .as_deref()
                .is_some_and(|s| s.acked <= recv_seq && recv_seq <= s.sent)
    }

    /// Server: refuses a resume HELLO whose `recv_seq` the held session
    /// cannot take (CLOSE 1002); the held session is untouched.
    pub fn refuse_resume(&mut self, now: Instant, events: &mut Vec<Event>) {
        self.session = None;
        self.protocol_error(now, "recv_seq out of the session's range", events);
    }

    /// Server: hands the socket of a pending resume over (see
    /// [`resume_request`](Self::resume_request)); this connection ends
    /// without a word to the application (it never connected).
    pub fn take_socket(&mut self, events: &mut Vec<Event>) -> Option<MovedSocket> {
        let hello = *self.rare.as_deref_mut()?.pending_hello.take()?;
        self.session = None;
        let sock = std::mem::take(&mut self.sock);
        self.stopping = true;
        // The socket's state went with it: nothing to hand back.
        self.finish(events);
        Some(MovedSocket { sock, hello })
    }

    /// Server: a newer connection resumes this session while this one
    /// still has a socket: CLOSE 1001 is queued on it, the application
    /// told ([`DisconnectReason::TakenOver`]); the driver writes what it
    /// can, closes that socket, then calls [`resume_on`](Self::resume_on).
    pub fn yield_socket(&mut self, now: Instant, events: &mut Vec<Event>) {
        if matches!(self.state, State::Handshaking | State::Established) {
            self.fail(now, DisconnectReason::TakenOver, events);
        }
    }

    /// Server: the held session resumes on `moved`, the socket of a
    /// resume HELLO whose `recv_seq` passed [`can_resume`](Self::can_resume):
    /// WELCOME with the same id and our receipt count, then every frame
    /// the client did not receive, in order.
    pub fn resume_on(&mut self, now: Instant, moved: MovedSocket, events: &mut Vec<Event>) {
        if self.state.has_socket() {
            // The old socket (yielded): gone without another word.
            self.drop_socket(events);
        }
        self.timers.stop(Timer::Reconnect);
        let MovedSocket { sock, hello } = moved;
        self.sock = sock;
        self.set_state(State::Handshaking);
        let held = self
            .session
            .as_deref_mut()
            .map(|s| s.on_resume(hello.recv_seq));
        if !matches!(held, Some(Ok(()))) {
            self.protocol_error(now, "recv_seq out of the session's range", events);
            return;
        }
        self.note_life(now);
        self.negotiate_liveness(&hello);
        let welcome = self.our_handshake();
        codec::encode_welcome(&welcome, self.sock.outbox.ctrl());
        self.establish(now, &hello, ResumeStatus::Resumed { resent: 0 }, events);
    }
}
