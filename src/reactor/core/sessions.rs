//! The server's resumable sessions: which connection holds each session
//! id, the detached ones kept within `max_detached`, and a resume HELLO
//! moved onto the connection that holds its session (the application's
//! `ConnId` goes on), with a takeover of a socket still open.
//!
//! Never reads a clock; never hands a session to a HELLO that does not
//! name it, and never lets a resume touch a session it cannot resume
//! (a `recv_seq` out of range is refused on the new socket).

use log::debug;

use super::Core;
use crate::proto::conn::{Event, ResumeStatus, Role, State};
use crate::reactor::route::Peer;
use crate::reactor::ConnId;

impl Core {
    /// Notes what connection `id`'s events say about sessions: a server
    /// session begun is held under its id; a client that lost its session
    /// is counted. (Only for `Connected` events: once per handshake.)
    pub(super) fn note_sessions(&mut self, id: ConnId, event: &Event) {
        let Event::Connected(peer) = event else {
            return;
        };
        match peer.resume {
            ResumeStatus::New if self.is_server(id) => {
                self.sessions.insert(peer.session_id, id);
                self.stats.sessions_started += 1;
            }
            ResumeStatus::Lost => self.stats.sessions_lost += 1,
            _ => {}
        }
    }

    fn is_server(&self, id: ConnId) -> bool {
        self.slot_index(id)
            .and_then(|idx| self.slots.get(idx))
            .is_some_and(|s| s.conn.role() == Role::Server)
    }

    /// Answers a resume HELLO read on connection `idx`: its socket moves
    /// to the connection holding the session it names, or, when none does,
    /// it begins a new session.
    pub(super) fn resolve_resume(&mut self, idx: usize) {
        let now = self.now;
        let Some(request) = self.slots.get(idx).and_then(|s| s.conn.resume_request()) else {
            return;
        };
        let held = self
            .sessions
            .get(&request.session_id)
            .and_then(|&id| self.slot_index(id))
            .filter(|&h| h != idx);
        let Some(held) = held else {
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.conn.grant_new_session(now, &mut self.scratch);
            }
            self.collect(idx);
            self.mark_dirty(idx);
            return;
        };
        let resumable = self
            .slots
            .get(held)
            .is_some_and(|s| s.conn.can_resume(request.recv_seq));
        if !resumable {
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.conn.refuse_resume(now, &mut self.scratch);
            }
            self.collect(idx);
            self.mark_dirty(idx);
            return;
        }
        // The new socket leaves the connection that accepted it, which
        // ends unseen (it never connected).
        let Some((moved, stream)) = self.slots.get_mut(idx).and_then(|slot| {
            let moved = slot.conn.take_socket(&mut self.scratch)?;
            let stream = slot.take_stream(self.poll.registry())?;
            Some((moved, stream))
        }) else {
            return;
        };
        // A TLS socket's session goes with it.
        #[cfg(feature = "tls")]
        let tls = self.slots.get_mut(idx).and_then(|slot| slot.tls.take());
        self.scratch.clear();
        self.mark_dirty(idx);
        let Some(slot) = self.slots.get_mut(held) else {
            return;
        };
        debug!(
            "{} {}: session {:#x} resumed from {}",
            slot.id,
            slot.peer,
            request.session_id,
            stream
                .peer_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string())
        );
        if slot.stream.is_some() {
            // Taken over: the old socket hears CLOSE 1001 (as far as it
            // takes it now) and goes.
            slot.conn.yield_socket(now, &mut self.scratch);
            slot.flush(now, &mut self.scratch);
            slot.drop_stream(self.poll.registry());
        }
        slot.conn.resume_on(now, moved, &mut self.scratch);
        // What the connection asked of its socket so far was for the old
        // one, closed above; none of it may reach the new one.
        while slot.conn.poll_action().is_some() {}
        if let Ok(addr) = stream.peer_addr() {
            slot.peer = Peer::Addr(addr);
        }
        slot.stream = Some(stream);
        #[cfg(feature = "tls")]
        {
            slot.tls = tls;
        }
        slot.paused = false;
        self.stats.sessions_resumed += 1;
        self.collect(held);
        self.mark_dirty(held);
    }

    /// A server connection's socket ended with its session held: keeps
    /// the detached sessions within `max_detached`, forgetting the oldest.
    pub(super) fn note_detached(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let detached = slot.conn.state() == State::Detached;
        if detached == slot.listed_detached {
            return;
        }
        slot.listed_detached = detached;
        if !detached {
            // Resumed (its entry in the list is dropped lazily).
            return;
        }
        let max = slot.conn.config().resume.map_or(0, |r| r.max_detached);
        self.detached.push_back(slot.id);
        self.stats.sessions_detached += 1;
        if self.detached.len() <= max.saturating_add(max / 2) {
            return;
        }
        // Drop the entries of sessions no longer detached, then forget the
        // oldest beyond the bound.
        let mut queue = std::mem::take(&mut self.detached);
        queue.retain(|&id| self.is_detached(id));
        while queue.len() > max {
            let Some(id) = queue.pop_front() else {
                break;
            };
            if let Some(oldest) = self.slot_index(id) {
                if let Some(slot) = self.slots.get_mut(oldest) {
                    slot.conn.expire_session(&mut self.scratch);
                }
                self.stats.sessions_evicted += 1;
                self.collect(oldest);
                self.mark_dirty(oldest);
            }
        }
        self.detached = queue;
    }

    fn is_detached(&self, id: ConnId) -> bool {
        self.slot_index(id)
            .and_then(|idx| self.slots.get(idx))
            .is_some_and(|s| s.conn.state() == State::Detached)
    }

    /// A closed server connection's session id is no longer held.
    pub(super) fn forget_session(&mut self, id: ConnId, session_id: u64) {
        if self.sessions.get(&session_id) == Some(&id) {
            self.sessions.remove(&session_id);
        }
    }
}
