//! The invariants checked after every step.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tether::proto::codec::{Decoder, Frame, Handshake};
use tether::proto::conn::{Event, Role, State, Timer};
use tether::{CloseCode, DisconnectReason};

use super::super::track;
use super::{ms, Before, Bug, Step, World, CTRL_SLACK, SERVER_SESSION};

impl World {
    /// Checks the frames we wrote on this socket.
    pub(super) fn parse_output(&mut self) {
        let decoder = Decoder::new(self.config.max_frame);
        loop {
            let s = self.sock.as_mut().expect("the socket is open");
            let start = s.out_parsed;
            let frame = match decoder.decode(&mut s.out) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => {
                    let what = format!("we wrote a malformed frame at offset {start}: {e}");
                    return self.require(None, false, || what);
                }
            };
            s.out_parsed += frame.encoded_len() as u64;
            let first = !std::mem::replace(&mut s.out_first, true);
            let closed = std::mem::replace(&mut s.out_closed, matches!(frame, Frame::Close { .. }));
            let pong_due = s.pongs_due.front().copied();
            let expected_data = match &frame {
                Frame::Data(_) => Some(s.sent.pop_front()),
                _ => None,
            };
            if let Frame::Pong(_) = frame {
                s.pongs_due.pop_front();
            }
            if let Frame::Ping(nonce) = frame {
                s.our_ping = Some(nonce);
                // The connection's probe is its latest PING.
                let queued = s.pings_queued.pop_front();
                s.probe = queued
                    .filter(|_| s.pings_queued.is_empty())
                    .map(|at| (nonce, at));
            }
            self.require(None, !closed, || {
                format!("{frame:?} written after our CLOSE")
            });
            let first_ok = match (self.role, &frame) {
                (Role::Client, Frame::Hello(_)) => first,
                (Role::Server, Frame::Welcome(_)) => first,
                (Role::Server, Frame::Close { .. }) => true,
                (_, Frame::Hello(_) | Frame::Welcome(_)) => false,
                _ => !first,
            };
            self.require(None, first_ok, || {
                format!(
                    "{frame:?} written by a {:?} (first frame: {first})",
                    self.role
                )
            });
            let (interval, timeout) = self
                .heartbeat()
                .map_or((0, 0), |hb| (ms(hb.interval), ms(hb.timeout)));
            match frame {
                Frame::Hello(hs) | Frame::Welcome(hs) => {
                    self.require(
                        None,
                        hs.interval_ms == interval && hs.timeout_ms == timeout,
                        || {
                            format!(
                                "handshake {hs:?} does not announce I = {interval}, T = {timeout}"
                            )
                        },
                    );
                    // A server answers a client's LIVENESS offer with the
                    // flag, giving its own settings (no range configured).
                    let allowed = match self.role {
                        Role::Server => tether::proto::codec::Handshake::LIVENESS,
                        Role::Client => 0,
                    };
                    self.require(None, hs.flags & !allowed == 0 && hs.recv_seq == 0, || {
                        format!("handshake {hs:?} uses reserved fields")
                    });
                    let session = match self.role {
                        Role::Client => 0,
                        Role::Server => SERVER_SESSION,
                    };
                    self.require(Some(Bug::HelloSessionId), hs.session_id == session, || {
                        format!("handshake {hs:?}: session id should be {session}")
                    });
                }
                Frame::Data(payload) => {
                    if let Some((_, at)) = pong_due {
                        self.require(Some(Bug::PackedRunOrder), start < at, || {
                            format!("a DATA frame starting at {start} went out before the PONG for a PING received at offset {at}")
                        });
                    }
                    let expected = expected_data.flatten();
                    self.require(None, expected.as_ref() == Some(&payload), || {
                        format!("wrote DATA {payload:?}, expected {expected:?}")
                    });
                }
                Frame::Ack(count) => {
                    // An ACK counts the DATA frames received this session.
                    let s = self.sock.as_mut().expect("the socket is open");
                    let (received, acked) = (s.received, std::mem::replace(&mut s.acked, count));
                    self.require(None, acked <= count && count <= received, || {
                        format!("ACK {count} after ACK {acked}, with {received} messages received")
                    });
                }
                Frame::Pong(nonce) => {
                    self.require(None, pong_due.is_some_and(|(n, _)| n == nonce), || {
                        format!("PONG {nonce:#x}, but the oldest unanswered PING is {pong_due:?}")
                    });
                }
                Frame::Close { code, .. } => {
                    let want = self
                        .conn
                        .close_reason()
                        .and_then(DisconnectReason::close_code_sent)
                        .unwrap_or(CloseCode::INTERNAL_ERROR);
                    self.require(None, code == want, || {
                        format!(
                            "CLOSE {code} written, close reason {:?}",
                            self.conn.close_reason()
                        )
                    });
                }
                _ => {}
            }
        }
    }

    /// Every invariant after a step (see [`run`]).
    pub(super) fn check(&mut self, before: &Before, events: &[Event], step: &Step) {
        let disconnected = self.conn.stats().disconnects > before.stats.disconnects;
        let reasons: Vec<DisconnectReason> = events
            .iter()
            .filter_map(|e| match e {
                Event::Disconnected { reason }
                | Event::Reconnecting { reason, .. }
                | Event::GaveUp { reason, .. } => Some(reason),
                _ => None,
            })
            .chain(self.conn.close_reason().filter(|_| disconnected))
            .cloned()
            .collect();
        self.check_states();
        self.check_events(before, events, step, &reasons);
        self.check_liveness(before, step, &reasons);
    }

    /// The socket, the timers that end each state, the output bound.
    fn check_states(&mut self) {
        let state = self.conn.state();

        self.require(
            None,
            self.conn.role() == self.role && self.conn.is_closed() == (state == State::Closed),
            || "role or is_closed disagree".into(),
        );

        // The socket and the timers that end each state.
        self.require(None, state.has_socket() == self.sock.is_some(), || {
            format!(
                "state {state} but the driver {} a socket",
                if self.sock.is_some() {
                    "holds"
                } else {
                    "holds no"
                }
            )
        });
        let owner = match state {
            State::Connecting => Some(Timer::Connect),
            State::Handshaking => Some(Timer::Handshake),
            State::Closing => Some(Timer::Linger),
            State::Backoff => Some(Timer::Reconnect),
            _ => None,
        };
        if let Some(timer) = owner {
            self.require(None, self.conn.timer(timer).is_some(), || {
                format!("{state} without its {timer:?} timer: it can stay there for ever")
            });
        }
        if matches!(state, State::Idle | State::Backoff | State::Closed) {
            for timer in Timer::ALL {
                if timer == Timer::Reconnect {
                    continue;
                }
                let bug = (timer == Timer::WriteStall).then_some(Bug::StaleWriteStall);
                self.require(bug, self.conn.timer(timer).is_none(), || {
                    format!("{timer:?} timer still armed in {state}, with no socket")
                });
            }
        }
        if matches!(state, State::Idle | State::Closed) {
            self.require(
                None,
                self.conn.poll_timeout().is_none() && self.conn.pending_output() == 0,
                || format!("{state} with a deadline or output"),
            );
        }
        self.require(
            None,
            self.role == Role::Client
                || !matches!(state, State::Idle | State::Connecting | State::Backoff),
            || format!("a server in {state}"),
        );

        // Output stays within max_outbound plus a few control frames.
        // Always checked: the PONG backlog that once broke it is fixed, and
        // a new way past the bound is not that bug.
        let pending = self.conn.pending_output();
        self.peak_pending = self.peak_pending.max(pending);
        let limit = self.config.max_outbound + CTRL_SLACK;
        self.require(None, pending <= limit, || {
            format!("{pending} bytes of output pending, max_outbound + control frames = {limit}")
        });
    }

    /// Events, deliveries and what they must have caused.
    fn check_events(
        &mut self,
        before: &Before,
        events: &[Event],
        step: &Step,
        reasons: &[DisconnectReason],
    ) {
        let stats = *self.conn.stats();
        let now = self.now;
        let since = |t: Instant| now.saturating_duration_since(t);
        // Messages only between Connected and Disconnected.
        let mut up = before.connected;
        for event in events {
            match event {
                Event::Connected(_) => up = true,
                Event::Message(_) | Event::Disconnected { .. } => {
                    self.require(None, up, || format!("{event:?} while not connected"));
                    up = !matches!(event, Event::Disconnected { .. });
                }
                _ => {}
            }
        }

        // Deliveries: bytes counted, messages and PONGs exactly as sent.
        let messages: Vec<&Bytes> = events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect();
        let received = stats.bytes_received - before.stats.bytes_received;
        match &step.delivery {
            None => self.require(None, messages.is_empty() && received == 0, || {
                "messages without bytes".into()
            }),
            Some(d) => {
                let want = if d.reading { d.len as u64 } else { 0 };
                self.require(None, received == want, || {
                    format!(
                        "bytes_received grew by {received} for {} bytes delivered",
                        d.len
                    )
                });
                if d.reading {
                    let last = self.conn.last_recv();
                    let bug = self.huge.then_some(Bug::ConfigOverflow);
                    self.require(bug, last == Some(now), || {
                        format!(
                            "last_recv t+{:?} after bytes arrived",
                            last.map(|t| t - self.t0)
                        )
                    });
                }
                let n_msgs = (stats.messages_received - before.stats.messages_received) as usize;
                let data: Vec<&Bytes> = d
                    .frames
                    .iter()
                    .filter_map(|f| match f {
                        Frame::Data(p) => Some(p),
                        _ => None,
                    })
                    .take(n_msgs)
                    .collect();
                self.require(None, messages == data, || {
                    format!("message events {messages:?}, delivered DATA {data:?}")
                });
                if let Some(s) = self.sock.as_mut() {
                    s.received += messages.len() as u64;
                }
                let n_pings = (stats.pings_received - before.stats.pings_received) as usize;
                let flood = reasons
                    .iter()
                    .any(|r| matches!(r, DisconnectReason::PolicyViolation { .. }));
                let answered = n_pings - usize::from(flood && n_pings > 0);
                if let Some(s) = self.sock.as_mut() {
                    let pings = d.frames.iter().filter_map(|f| match f {
                        Frame::Ping(n) => Some((*n, d.out_at)),
                        _ => None,
                    });
                    s.pongs_due.extend(pings.take(answered));
                }
                // A PONG echoing the outstanding PING is one RTT sample.
                let n_pongs = (stats.pongs_received - before.stats.pongs_received) as usize;
                // (The socket may be gone by now: a CLOSE after the PONG.)
                let mut probe = before.probe;
                let mut sample = None;
                let pongs = d.frames.iter().filter_map(|f| match f {
                    Frame::Pong(n) => Some(*n),
                    _ => None,
                });
                for nonce in pongs.take(n_pongs) {
                    if let Some((_, at)) = probe.filter(|&(n, _)| n == nonce) {
                        sample = Some(now - at);
                        probe = None;
                    }
                }
                if let Some(s) = self.sock.as_mut() {
                    s.probe = probe;
                }
                let rtt = self.conn.rtt();
                let samples = rtt.samples() - before.rtt_samples;
                self.require(None, samples == u32::from(sample.is_some()), || {
                    format!("{samples} RTT samples, expected {sample:?}")
                });
                if sample.is_some() {
                    self.require(None, rtt.latest() == sample, || {
                        format!("RTT sample {:?}, expected {sample:?}", rtt.latest())
                    });
                }
                if reasons
                    .iter()
                    .any(|r| matches!(r, DisconnectReason::PeerClosed { .. }))
                {
                    self.require(
                        None,
                        self.sock.is_none() && self.conn.pending_output() == 0,
                        || "a peer CLOSE left output or a socket".into(),
                    );
                }
            }
        }

        // Connected events: one per socket, after a handshake frame.
        for event in events {
            if let Event::Connected(info) = event {
                let hs = delivered_handshake(step);
                self.require(None, hs.is_some(), || {
                    "Connected without a handshake frame".into()
                });
                let want = match self.role {
                    Role::Server => SERVER_SESSION,
                    Role::Client => hs.map_or(0, |h| h.session_id),
                };
                self.require(None, info.session_id == want, || {
                    format!("Connected with {info:?}")
                });
                // The socket may be gone already (a CLOSE after WELCOME).
                let again = self.sock.as_mut().is_some_and(|s| {
                    s.established_at = Some(now);
                    std::mem::replace(&mut s.connected, true)
                });
                self.require(None, !again, || "Connected twice on one socket".into());
            }
            if matches!(event, Event::Reconnecting { .. } | Event::GaveUp { .. }) {
                self.require(None, self.role == Role::Client, || {
                    format!("a server reported {event:?}")
                });
            }
        }

        // The reconnect attempt counter resets only after a healthy period
        // with a frame received after the handshake.
        let connected_now = events.iter().any(|e| matches!(e, Event::Connected(_)));
        let frame_after = step.delivery.as_ref().is_some_and(|d| match before.state {
            State::Established => !d.frames.is_empty(),
            _ => connected_now && d.frames.len() > 1,
        });
        if let Some(s) = self.sock.as_mut().filter(|s| s.connected) {
            s.frame_after_handshake |= frame_after;
        }
        let attempt = self.conn.reconnect_attempt();
        if attempt < before.attempt {
            let established = before.established_at.or(connected_now.then_some(now));
            let healthy = established.is_some_and(|e| since(e) >= self.config.healthy_period());
            self.require(None, healthy && (before.frame_after_handshake || frame_after), || {
                format!(
                    "attempt counter reset ({} to {attempt}) {:?} after the handshake, frames after it: {}",
                    before.attempt,
                    established.map(since),
                    before.frame_after_handshake || frame_after
                )
            });
        }
    }

    /// PINGs, death deadlines, convictions and write stalls.
    fn check_liveness(&mut self, before: &Before, step: &Step, reasons: &[DisconnectReason]) {
        let state = self.conn.state();
        let stats = *self.conn.stats();
        let now = self.now;
        let since = |t: Instant| now.saturating_duration_since(t);
        // Probes: one outstanding at most, and only after I of silence. A
        // probe queues a fresh PING, or reuses ours if it is still queued:
        // then only the death deadline shows it.
        let pings = stats.pings_sent - before.stats.pings_sent;
        let forgiven = stats.stalls_forgiven - before.stats.stalls_forgiven;
        // Deadlines are handled on the reactor's timer grid: up to a grain
        // after one falls due is on time, and the stall tolerance counts
        // from there.
        let tolerance = self.config.timer_grain() + self.config.stall_tolerance;
        let late = |d: Option<Instant>| d.map(|d| now.saturating_duration_since(d));
        let dead_armed = before.state == State::Established
            && state == State::Established
            && before.dead_at.is_none()
            && self.conn.timer(Timer::Dead).is_some();
        if pings > 0 || forgiven > 0 || dead_armed {
            let hb = self.heartbeat().expect("PINGs only with heartbeats");
            self.require(None, step.timers && pings <= 1 && forgiven <= 1, || {
                format!("{pings} PINGs ({forgiven} forgiven stalls) in one step")
            });
            self.require(None, before.state == State::Established, || {
                format!("PING sent in {}", before.state)
            });
            // At most one PING queued: a fresh one only when ours is out.
            let fresh = u32::from(!before.ping_queued);
            self.require(None, pings == fresh, || {
                if before.ping_queued {
                    format!("{pings} PINGs queued behind ours, which is not written yet")
                } else {
                    "a probe without a PING, though none was queued".into()
                }
            });
            let last_rx = before.last_rx.expect("established after bytes arrived");
            match before.ping_out {
                None => {
                    self.require(None, forgiven == 0, || {
                        "stall forgiven with no PING out".into()
                    });
                    self.require(None, since(last_rx) >= hb.interval + before.jitter, || {
                        format!(
                            "PING after {:?} of silence, I = {:?} + jitter {:?}",
                            since(last_rx),
                            hb.interval,
                            before.jitter
                        )
                    });
                    self.drained_at = None;
                }
                Some(p) => {
                    self.require(None, forgiven == 1, || {
                        format!(
                            "a second PING {:?} after the first, with no byte received since",
                            since(p)
                        )
                    });
                    self.require(None, late(before.dead_at) > Some(tolerance), || {
                        format!(
                            "stall forgiven {:?} after the death deadline",
                            late(before.dead_at)
                        )
                    });
                }
            }
            if state == State::Established {
                let dead = self.conn.timer(Timer::Dead);
                self.require(None, dead == Some(now + hb.timeout), || {
                    format!(
                        "probed at t+{:?}, but the Dead timer is {:?}",
                        now - self.t0,
                        dead.map(|d| d - self.t0)
                    )
                });
            }
            // (If the socket ended in this step, later timers closed it, and
            // the one the driver holds now, if any, is a new one.)
            let same_socket = stats.disconnects == before.stats.disconnects;
            if let Some(s) = self.sock.as_mut().filter(|_| same_socket) {
                s.ping_out = Some(now);
                s.dead_at = Some(now + hb.timeout);
                match s.pings_queued.back_mut() {
                    Some(at) if pings == 0 => *at = now,
                    _ => s.pings_queued.push_back(now),
                }
                s.probe = None;
            }
        }
        if let Some(s) = self.sock.as_ref() {
            let queued = s.pings_queued.len();
            self.require(None, queued <= 1, || format!("{queued} PINGs queued"));
        }

        // A death deadline that came due without a conviction or a probe
        // was extended: only while a full socket kept taking our output.
        if let (true, State::Established, Some(hb), Some(due)) = (
            step.timers,
            state,
            self.heartbeat(),
            before.dead_at.filter(|&d| d <= now),
        ) {
            if pings == 0 && forgiven == 0 && before.state == State::Established {
                let dead = self.conn.timer(Timer::Dead);
                let extended = before.drained_at.map(|d| d + hb.timeout);
                let ok = extended.is_some_and(|e| e > now)
                    && late(Some(due)) <= Some(tolerance)
                    && dead == extended;
                self.require(None, ok, || {
                    format!(
                        "death deadline t+{:?} passed at t+{:?} with no conviction (drained at: {:?}, Dead timer {:?})",
                        due - self.t0,
                        now - self.t0,
                        before.drained_at.map(|d| d - self.t0),
                        dead.map(|d| d - self.t0)
                    )
                });
                self.drained_at = None;
                if let Some(s) = self.sock.as_mut() {
                    s.dead_at = dead;
                }
            }
        }

        // Deaths and stalls only when earned.
        for reason in reasons {
            match reason {
                DisconnectReason::HeartbeatTimeout => {
                    let hb = self.heartbeat().expect("heartbeat timeout with heartbeats");
                    let last_rx = before.last_rx.expect("established after bytes arrived");
                    self.require(None, since(last_rx) >= hb.interval + hb.timeout, || {
                        format!(
                            "declared dead {:?} after the last byte; I + T = {:?}",
                            since(last_rx),
                            hb.interval + hb.timeout
                        )
                    });
                    let on_time = before.dead_at.is_some_and(|d| now >= d)
                        && late(before.dead_at) <= Some(tolerance);
                    self.require(None, on_time, || {
                        format!(
                            "declared dead at t+{:?}; the death deadline was t+{:?}",
                            now - self.t0,
                            before.dead_at.map(|d| d - self.t0)
                        )
                    });
                    let drained_lately = before.drained_at.is_some_and(|d| d + hb.timeout > now);
                    self.require(None, !drained_lately, || {
                        "declared dead though a full socket took output less than T ago, after our PING went out".into()
                    });
                }
                DisconnectReason::WriteStalled => {
                    let w = self
                        .config
                        .write_stall_timeout
                        .expect("write stall with a timeout");
                    let earned = before.first_blocked.is_some_and(|b| since(b) >= w)
                        && before.last_progress.is_some_and(|p| since(p) >= w);
                    self.require(Some(Bug::StaleWriteStall), earned, || {
                        format!(
                            "write stall declared: first blocked {:?} ago, last write {:?} ago, timeout {w:?}",
                            before.first_blocked.map(since),
                            before.last_progress.map(since)
                        )
                    });
                }
                _ => {}
            }
        }
        if stats.disconnects > before.stats.disconnects {
            self.socket_full = false;
            self.drained_at = None;
        }

        // Established with heartbeats: always a deadline by the next PING or
        // death, so a silent peer cannot go unnoticed; the death deadline is
        // exactly the model's.
        if let (State::Established, Some(hb), Some(s)) =
            (state, self.heartbeat(), self.sock.as_ref())
        {
            let dead = self.conn.timer(Timer::Dead);
            self.require(None, dead == s.dead_at, || {
                format!(
                    "Dead timer {:?}, expected {:?}",
                    dead.map(|d| d - self.t0),
                    s.dead_at.map(|d| d - self.t0)
                )
            });
            let jitter = self.conn.ping_jitter();
            self.require(
                None,
                jitter <= Duration::from_millis(u64::from(ms(hb.interval) / 10)),
                || format!("jitter {jitter:?} above I/10"),
            );
            let bound = match (s.dead_at, s.last_rx) {
                (Some(d), _) => Some(d),
                (None, Some(l)) => Some(l + hb.interval + jitter),
                (None, None) => None,
            };
            let next = self.conn.poll_timeout();
            let rel = |t: Instant| t - self.t0;
            let bug = self.huge.then_some(Bug::ConfigOverflow);
            self.require(
                bug,
                bound.is_some() && next.is_some() && next <= bound,
                || {
                    format!(
                        "next deadline t+{:?}, but a PING or death is due at t+{:?}",
                        next.map(rel),
                        bound.map(rel)
                    )
                },
            );
        }
    }

    pub(super) fn check_memory(&self) {
        let live = track::live_bytes();
        let frame = self.config.max_frame + 5 + self.peak_read;
        let bound = 4 * frame + 24 * self.peak_pending + 16 * 1024;
        self.require(None, !track::overflowed() && live <= bound, || {
            format!(
                "the connection holds {live} bytes of heap (max_frame {}, largest read {}, peak output {}; bound {bound})",
                self.config.max_frame, self.peak_read, self.peak_pending
            )
        });
    }
}

/// The handshake frame a step delivered, if any.
fn delivered_handshake(step: &Step) -> Option<Handshake> {
    step.delivery.as_ref()?.frames.iter().find_map(|f| match f {
        Frame::Hello(h) | Frame::Welcome(h) => Some(*h),
        _ => None,
    })
}
