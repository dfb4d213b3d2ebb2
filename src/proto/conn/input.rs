//! Input: the bytes of each read, taken in steps — a frame an earlier
//! read left incomplete is finished first, then frames are processed up to
//! each DATA frame, whose payload stays in the caller's buffer — and what
//! each frame does to the connection (handshake, PING → PONG, PONG → RTT,
//! CLOSE, the ping-flood policy).
//!
//! It never copies a payload (the caller takes or skips it), never keeps
//! more than one incomplete frame, and never panics on peer input.

use std::mem;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use log::debug;

use super::flags::Flag;
use super::timer::Stamp;
use super::{Connection, Event, ReadInput, Role, State, PARTIAL_RESERVE_CAP, PONG_BACKLOG};
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{self, Decoder, Frame, Handshake, InPlace, Kind, HEADER_LEN};

impl Connection {
    /// Bytes read from the socket, all at once. Consumes all of `data`:
    /// whole frames are processed (DATA payloads are split off without
    /// copying, each pushed as an [`Event::Message`]), the bytes of an
    /// incomplete frame are kept until the rest arrives.
    ///
    /// The same as [`start_input`](Self::start_input), then
    /// [`next_message`](Self::next_message) until it returns `None`, each
    /// message taken with [`ReadInput::take_message`], then
    /// [`finish_input`](Self::finish_input).
    pub fn handle_input(&mut self, now: Instant, data: &mut BytesMut, events: &mut Vec<Event>) {
        let mut input = self.start_input(now, mem::take(data));
        while let Some(len) = self.next_message(now, &mut input, events) {
            let payload = input.take_message(len);
            events.push(Event::Message(payload));
        }
        // Nothing is given back: the payloads hold on to the read.
        let _ = self.finish_input(input);
    }

    /// Starts taking `data`, the bytes of one read: the one way input
    /// enters a connection, for a driver that hands messages to the
    /// application in place (see [`handle_input`](Self::handle_input)
    /// for the one-call form). Counts the bytes as received (proof of
    /// life), and completes a frame an earlier read left incomplete with
    /// the bytes of `data` it needs.
    ///
    /// Then call [`next_message`](Self::next_message) until it returns
    /// `None`, handing each message over with [`ReadInput::deliver`],
    /// and end with [`finish_input`](Self::finish_input).
    pub fn start_input(&mut self, now: Instant, mut data: BytesMut) -> ReadInput {
        let head = self.begin_input(now, &mut data);
        ReadInput::new(head, data)
    }

    /// Processes the frames of `input` up to the next DATA frame: returns
    /// the length of its payload (for [`ReadInput::deliver`], which must
    /// be called before this is called again), events of the frames before
    /// it pushed to `events`. `None` once no whole frame is left, or the
    /// connection stopped reading (a protocol error, a CLOSE, an
    /// application close).
    #[inline]
    pub fn next_message(
        &mut self,
        now: Instant,
        input: &mut ReadInput,
        events: &mut Vec<Event>,
    ) -> Option<usize> {
        if let Some(len) = self.take_data(input) {
            return Some(len);
        }
        if input.is_used_up() {
            return None;
        }
        self.next_message_slow(now, input, events)
    }

    /// The first half of [`next_message`](Self::next_message), for the
    /// common case, which a driver may take on its own: the payload
    /// length of a whole DATA frame next in `input` on an established
    /// link, counted as received; `None` otherwise. Touches only the
    /// connection's input accounting (never its output), and moves
    /// nothing: the frame is gone past by [`ReadInput::deliver`].
    #[inline(always)]
    pub(crate) fn take_data(&mut self, input: &ReadInput) -> Option<usize> {
        if self.state != State::Established {
            return None;
        }
        let len = self.decoder().complete_data(input.rest())?;
        self.on_frame_start();
        self.stats.messages_received += 1;
        Some(len)
    }

    /// [`next_message`](Self::next_message) past the common case: control
    /// frames, errors, an incomplete frame, and the move from the head of
    /// the read to the rest. Out of line: a stream of messages does not
    /// come here.
    #[inline(never)]
    fn next_message_slow(
        &mut self,
        now: Instant,
        input: &mut ReadInput,
        events: &mut Vec<Event>,
    ) -> Option<usize> {
        loop {
            let buf = input.consume_done();
            if !buf.is_empty() {
                if let Some(len) = self.poll_input_framed(now, buf, events) {
                    return Some(len);
                }
            }
            if !input.in_head() || !self.is_reading() {
                return None;
            }
            // The head is gone through: what is left of it is an
            // incomplete frame (only when the read was used up completing
            // it), kept for the next read; on to the rest of the read.
            let mut head = input.leave_head();
            self.keep_incomplete(&mut head);
            if let Some(len) = self.take_data(input) {
                return Some(len);
            }
        }
    }

    /// Ends the input of one read: the start of a frame still incomplete
    /// is kept for the next read. Returns the bytes of the read that were
    /// gone through in place when the read ended on a frame boundary
    /// (for a driver that reuses its read buffer: nothing in them is
    /// needed any more), else nothing.
    pub fn finish_input(&mut self, input: ReadInput) -> BytesMut {
        let (head, mut data, pos) = input.into_parts();
        if let Some(mut head) = head {
            self.keep_incomplete(&mut head);
        }
        let spent = if pos >= data.len() {
            mem::take(&mut data)
        } else {
            data.advance(pos);
            self.keep_incomplete(&mut data);
            BytesMut::new()
        };
        self.note_talk();
        self.ack_after_read();
        spent
    }

    /// Takes the bytes of one read up to a frame boundary: returns the
    /// frame an earlier read left incomplete, with the bytes of `data`
    /// that complete it moved over; `None` when there was no such frame,
    /// or when it is still incomplete (all of `data` was kept and `data`
    /// is empty).
    fn begin_input(&mut self, now: Instant, data: &mut BytesMut) -> Option<BytesMut> {
        if data.is_empty() {
            return None;
        }
        if self.awaits_resume() {
            // Kept for the connection that takes this socket over, within
            // the bound of an incomplete frame.
            if self.sock.recv.len() + data.len() > PARTIAL_RESERVE_CAP {
                self.protocol_error(now, "too much before WELCOME", &mut Vec::new());
            } else {
                self.sock.recv.extend_from_slice(data);
            }
            data.clear();
            return None;
        }
        if !self.is_reading() {
            data.clear();
            return None;
        }
        self.stats.bytes_received += data.len() as u64;
        self.note_life(now);
        if self.sock.recv.is_empty() {
            return None;
        }
        // Move over just the bytes that finish the kept frame: its header
        // first, then (its length known) the rest, so `data` goes on from
        // a frame boundary.
        if self.sock.recv.len() < HEADER_LEN {
            let n = (HEADER_LEN - self.sock.recv.len()).min(data.len());
            self.sock.recv.extend_from_slice(&data[..n]);
            data.advance(n);
        }
        // A header this side refuses (a first frame of the wrong kind) is
        // not completed: `poll_input` rejects it on its own.
        let pending = self
            .decoder()
            .pending_frame_len(&self.sock.recv)
            .filter(|_| !self.refuses_first(&self.sock.recv));
        if let Some(total) = pending {
            let n = total.saturating_sub(self.sock.recv.len()).min(data.len());
            self.sock.recv.extend_from_slice(&data[..n]);
            data.advance(n);
            if self.sock.recv.len() < total {
                // Still incomplete (and `data` used up): keep growing it
                // in place.
                return None;
            }
        }
        // A whole frame, or a header to reject, or (with `data` used up)
        // a header still too short to know: `poll_input` tells which.
        Some(mem::take(&mut self.sock.recv))
    }

    /// Processes the frames at the front of `buf` up to the next DATA
    /// frame: `Some(len)` with that frame at the front of `buf`, its
    /// payload `buf[HEADER_LEN..HEADER_LEN + len]`; `None` once no whole
    /// frame is left (or the connection stopped reading).
    fn poll_input_framed(
        &mut self,
        now: Instant,
        buf: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Option<usize> {
        while self.is_reading() {
            if self.state == State::Established {
                if let Some(len) = self.decoder().complete_data(buf) {
                    self.on_frame_start();
                    self.stats.messages_received += 1;
                    return Some(len);
                }
            }
            if self.refuses_first(buf) {
                // Refused at its header: nothing of its payload is waited
                // for or kept.
                self.protocol_error(now, self.expected_first(), events);
                break;
            }
            match self.decoder().decode_in_place(buf) {
                Ok(Some(InPlace::Data(len))) => {
                    // Not reached: DATA is refused at its header before the
                    // handshake, and on an established link `complete_data`
                    // above takes every whole DATA frame. Handled as
                    // `on_frame` would.
                    debug_assert_ne!(self.state, State::Established);
                    buf.advance(len);
                    self.on_frame(now, Frame::Data(Bytes::new()), events);
                }
                Ok(Some(InPlace::Frame(frame))) => self.on_frame(now, frame, events),
                Ok(None) => return None,
                Err(e) => {
                    debug!("{:?}: protocol error: {e}", self.role);
                    let reason = DisconnectReason::ProtocolError {
                        code: e.close_code(),
                        detail: e.detail(),
                    };
                    self.fail(now, reason, events);
                }
            }
        }
        None
    }

    /// Keeps what is left of `buf` (the start of a frame still
    /// incomplete) for the next read, while reading; empties `buf`.
    fn keep_incomplete(&mut self, buf: &mut BytesMut) {
        if !buf.is_empty() && (self.is_reading() || self.awaits_resume()) {
            if self.sock.recv.is_empty() {
                let want = self
                    .decoder()
                    .pending_frame_len(buf)
                    .unwrap_or(HEADER_LEN)
                    .min(PARTIAL_RESERVE_CAP)
                    .max(buf.len());
                self.sock.recv.reserve(want);
            }
            self.sock.recv.extend_from_slice(buf);
        }
        buf.clear();
    }

    /// Whether `buf` starts with a valid, complete header of a frame this
    /// side refuses as the first of a connection: a server takes only
    /// HELLO; a client takes WELCOME, or CLOSE (a server refusing it, or
    /// timing out its handshake, says so before any WELCOME). Checked as
    /// soon as the header is in, so a refused frame's payload is never
    /// waited for. False once the handshake is done, and for a header the
    /// decoder rejects on its own (it names the error: 1009 for a frame
    /// too large).
    fn refuses_first(&self, buf: &[u8]) -> bool {
        if self.state != State::Handshaking {
            return false;
        }
        let Some(&kind) = buf.get(HEADER_LEN - 1) else {
            return false;
        };
        let accepted = match self.role {
            Role::Server => kind == Kind::Hello as u8,
            Role::Client => kind == Kind::Welcome as u8 || kind == Kind::Close as u8,
        };
        !accepted && self.decoder().pending_frame_len(buf).is_some()
    }

    /// The detail of the protocol error for a refused first frame.
    fn expected_first(&self) -> &'static str {
        match self.role {
            Role::Server => "expected HELLO first",
            Role::Client => "expected WELCOME first",
        }
    }

    /// The decoder is only a length limit: made on the spot, not stored.
    fn decoder(&self) -> Decoder {
        Decoder::new(self.config.max_frame)
    }

    fn is_reading(&self) -> bool {
        matches!(self.state, State::Handshaking | State::Established) && !self.awaits_resume()
    }

    /// Server: a resume HELLO waits for the driver's answer; what follows
    /// it is kept, not processed.
    #[inline]
    fn awaits_resume(&self) -> bool {
        // Only a server handshaking can wait: an established connection
        // pays one compare, not a look into its session.
        self.state == State::Handshaking
            && self.role == Role::Server
            && self
                .rare
                .as_deref()
                .is_some_and(|r| r.pending_hello.is_some())
    }

    /// Bookkeeping for every whole frame received. (Once a frame has come
    /// since the handshake and no healthy mark is pending, the usual case
    /// on a stream of messages, it only reads the flags: no store per
    /// message.)
    #[inline]
    fn on_frame_start(&mut self) {
        let flags = self.sock.flags;
        if self.state == State::Established
            && (!flags.get(Flag::FrameSinceHandshake) || flags.get(Flag::HealthyPending))
        {
            self.sock.flags.set(Flag::FrameSinceHandshake, true);
            if self.sock.flags.take(Flag::HealthyPending) {
                self.attempts.reset();
            }
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Frame, events: &mut Vec<Event>) {
        self.on_frame_start();
        match (self.state, self.role, frame) {
            (_, _, Frame::Close { code, reason }) => {
                if self.role == Role::Server && code == CloseCode::NORMAL {
                    // The client's application closed the link: its
                    // session ends here, it will not be resumed.
                    self.stopping = true;
                }
                let reason = String::from_utf8_lossy(&reason).into_owned();
                self.lose(now, DisconnectReason::PeerClosed { code, reason }, events);
            }
            (State::Handshaking, Role::Server, Frame::Hello(hello))
                if hello.has(Handshake::RESUME)
                    && hello.session_id != 0
                    && self.config.resume.is_some() =>
            {
                // The driver answers (see `resume_request`); input waits.
                self.await_resume(hello);
            }
            (State::Handshaking, Role::Server, Frame::Hello(hello)) => {
                let resume = self.server_resume(&hello);
                self.negotiate_liveness(&hello);
                let welcome = self.our_handshake();
                codec::encode_welcome(&welcome, self.sock.outbox.ctrl());
                self.establish(now, &hello, resume, events);
            }
            (State::Handshaking, Role::Client, Frame::Welcome(welcome)) => {
                match self.client_resume(&welcome, events) {
                    Ok(resume) => {
                        self.adopt_liveness(&welcome);
                        self.establish(now, &welcome, resume, events)
                    }
                    Err(detail) => self.protocol_error(now, detail, events),
                }
            }
            (State::Handshaking, _, _) => {
                self.protocol_error(now, self.expected_first(), events);
            }
            (_, _, Frame::Data(payload)) => {
                // Not from `poll_input` (it reports DATA in place), but
                // handled the same.
                self.stats.messages_received += 1;
                events.push(Event::Message(payload));
            }
            (_, _, Frame::Ping(nonce)) => {
                self.stats.pings_received = self.stats.pings_received.saturating_add(1);
                if self.ping_flood(now) {
                    let detail = "too many pings";
                    self.fail(now, DisconnectReason::PolicyViolation { detail }, events);
                } else if self.sock.outbox.len() + codec::HEARTBEAT_FRAME_LEN
                    > self.config.max_outbound.saturating_add(PONG_BACKLOG)
                {
                    // The peer keeps pinging but does not read our answers:
                    // PONGs must not grow the queue past max_outbound.
                    let detail = "PONGs not read";
                    self.fail(now, DisconnectReason::PolicyViolation { detail }, events);
                } else {
                    codec::encode_pong(nonce, self.sock.outbox.ctrl());
                    self.redraw_ping_jitter();
                }
            }
            (_, _, Frame::Pong(nonce)) => {
                self.stats.pongs_received = self.stats.pongs_received.saturating_add(1);
                if let Some(sent_at) = self.timers.instant_of(self.sock.probe_sent) {
                    if self.sock.probe_nonce == nonce {
                        self.sock.probe_sent = Stamp::NONE;
                        self.rtt.sample(now.saturating_duration_since(sent_at));
                    }
                }
            }
            (_, _, Frame::Ack(count)) => {
                self.stats.acks_received = self.stats.acks_received.saturating_add(1);
                if let Err(detail) = self.on_ack_frame(count, events) {
                    self.protocol_error(now, detail, events);
                }
            }
            (_, _, Frame::Hello(_) | Frame::Welcome(_)) => {
                self.protocol_error(now, "handshake frame after the handshake", events);
            }
        }
    }

    /// Counts a PING that came too soon after the previous one; true once
    /// the peer has used up its strikes.
    fn ping_flood(&mut self, now: Instant) -> bool {
        let Some(policy) = self.config.ping_flood else {
            return false;
        };
        let too_soon = self
            .timers
            .instant_of(self.sock.last_ping_rx)
            .is_some_and(|last| {
                now.saturating_duration_since(last) < self.min_ping_gap(policy.min_interval)
            });
        self.sock.last_ping_rx = self.timers.stamp(now);
        if too_soon {
            self.sock.ping_strikes = self.sock.ping_strikes.saturating_add(1);
        } else {
            self.sock.ping_strikes = 0;
        }
        u32::from(self.sock.ping_strikes) > policy.max_strikes
    }
}
