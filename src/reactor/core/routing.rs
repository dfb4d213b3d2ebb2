//! Carrying out a dialed link's attempts: a connect to its address, or,
//! for a routed link (a name, a failover list), the endpoint its route
//! picks, a lookup on the resolver thread, and its addresses one after
//! another within the connect timeout; the lookup answers and what a
//! handshake tells the route.
//!
//! Never blocks and never waits for a lookup: an attempt that needs one
//! asks and returns; the answer comes as a command. An answer is applied
//! only to the attempt that asked for it (link id, lookup number,
//! endpoint, and a connection still connecting without a socket).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use log::debug;

use super::{Core, Target};
use crate::endpoint::Endpoint;
use crate::handle::Answer;
use crate::net;
use crate::proto::conn::{Event, State, Timer};
use crate::reactor::route::{Peer, Start};
use crate::reactor::ConnId;

impl Core {
    /// The connection in slot `idx` asked for a socket (its old one is
    /// gone): a connect to its address, or the start of a routed attempt.
    pub(super) fn begin_attempt(&mut self, idx: usize) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let addr = match &slot.peer {
            Peer::Addr(addr) => *addr,
            Peer::Routed(_) => return self.begin_routed(idx),
        };
        if let Err(e) = self.connect_to(idx, addr) {
            if let Some(slot) = self.slots.get_mut(idx) {
                debug!("{} {}: connect failed at once: {e}", slot.id, slot.peer);
                slot.conn
                    .handle_connect_failed(now, e.kind(), &mut self.scratch);
            }
        }
    }

    /// Starts a non-blocking connect of slot `idx` to `addr` (and a fresh
    /// TLS session on it, on a TLS link). An error is a connect that
    /// failed at once; the connection has not been told.
    fn connect_to(&mut self, idx: usize, addr: SocketAddr) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(idx) else {
            return Ok(());
        };
        self.stats.connects += 1;
        let config = slot.conn.config();
        let stream = net::connect(addr, &config.socket, config.heartbeat)?;
        slot.stream = Some(stream);
        #[cfg(feature = "tls")]
        if slot.tls.is_some() {
            super::tls::start_client_session(slot, self.now, &mut self.scratch);
        }
        Ok(())
    }

    /// A routed link's attempt: its endpoint, then a lookup (or the
    /// endpoint's address).
    fn begin_routed(&mut self, idx: usize) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let id = slot.id;
        let attempt = slot.conn.reconnect_attempt();
        let Some(route) = slot.peer.route_mut() else {
            return;
        };
        if let Some(key) = route.step.take() {
            self.wheel.cancel(key);
        }
        if route.begin(attempt) == Start::Addresses {
            return self.dial_next_addr(idx, None);
        }
        let endpoint = route.endpoint();
        route.resolving = true;
        if route
            .lookup
            .is_some_and(|(seq, e)| e == endpoint && self.lookups.is_current(seq))
        {
            // A lookup of this endpoint asked for by an attempt that
            // timed out is still running: its answer serves this one (a
            // hung resolver gets one lookup per link, not one per attempt).
            debug!("{id} {}: waiting for the lookup in flight", route.current());
            return;
        }
        let current = route.current();
        let (Some(host), port) = (current.shared_host().cloned(), current.port()) else {
            return;
        };
        debug!("{id} {current}: looking up");
        match self.lookups.ask(&self.handle, id, Arc::clone(&host), port) {
            Ok(seq) => route.lookup = Some((seq, endpoint)),
            Err(e) => {
                log::warn!("{id} {host}: cannot start the resolver thread: {e}");
                route.resolving = false;
                let detail = e.to_string();
                slot.conn
                    .handle_resolve_failed(now, &host, e.kind(), detail, &mut self.scratch);
            }
        }
    }

    /// Connects slot `idx` to the next address of its attempt, skipping
    /// those that fail at once; with none left, the attempt has failed
    /// (with `last`, the error of the last address tried). With addresses
    /// left after it, the connect gets an equal share of the connect
    /// timeout left before the attempt moves on.
    fn dial_next_addr(&mut self, idx: usize, mut last: Option<io::ErrorKind>) {
        let now = self.now;
        loop {
            let Some(slot) = self.slots.get_mut(idx) else {
                return;
            };
            let id = slot.id;
            let connect_deadline = slot.conn.timer(Timer::Connect);
            let Some(route) = slot.peer.route_mut() else {
                return;
            };
            if let Some(key) = route.step.take() {
                self.wheel.cancel(key);
            }
            let Some((addr, left)) = route.next_addr() else {
                let kind = last.unwrap_or(io::ErrorKind::TimedOut);
                debug!("{id} {}: no address answered", route.current());
                slot.conn
                    .handle_connect_failed(now, kind, &mut self.scratch);
                return;
            };
            match self.connect_to(idx, addr) {
                Ok(()) => {
                    if let (Some(deadline), true) = (connect_deadline, left > 0) {
                        let ways = u32::try_from(left + 1).unwrap_or(u32::MAX);
                        let share = deadline.saturating_duration_since(now) / ways;
                        let tick = self.wheel.deadline_tick(now + share);
                        let key = self.wheel.insert_tick(tick, Target::Route(id));
                        if let Some(route) =
                            self.slots.get_mut(idx).and_then(|s| s.peer.route_mut())
                        {
                            route.step = Some(key);
                        }
                    }
                    return;
                }
                Err(e) => {
                    debug!("{id} {addr}: connect failed at once: {e}");
                    last = Some(e.kind());
                }
            }
        }
    }

    /// A routed link's connect failed: its attempt goes on to the next
    /// address (the socket dropped), or fails with `kind`.
    pub(super) fn routed_connect_failed(&mut self, idx: usize, kind: io::ErrorKind) {
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.drop_stream(self.poll.registry());
        }
        self.dial_next_addr(idx, Some(kind));
    }

    /// The wheel entry of a routed link's address came due: the connect
    /// to it has had its share of the connect timeout; the attempt moves
    /// on to the next address.
    pub(super) fn on_route_step(&mut self, id: ConnId, key: crate::proto::wheel::TimerKey) {
        let Some(idx) = self.slot_index(id) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let connecting = slot.conn.state() == State::Connecting && slot.stream.is_some();
        let Some(route) = slot.peer.route_mut() else {
            return;
        };
        if route.step != Some(key) {
            return;
        }
        route.step = None;
        if connecting {
            debug!(
                "{id} {}: no answer in its share of the connect timeout",
                route.addr
            );
            self.routed_connect_failed(idx, io::ErrorKind::TimedOut);
            self.collect(idx);
            self.service(idx);
        }
    }

    /// The resolver thread's answer: applied to the attempt that asked
    /// for it, if that attempt is still waiting for it; dropped otherwise
    /// (the link closed, redialled, or gone on without it).
    pub(in crate::reactor) fn on_resolved(&mut self, answer: Answer) {
        let now = self.now;
        let Some(idx) = self.slot_index(answer.id) else {
            debug!(
                "{}: lookup of {} answered after the link ended",
                answer.id, answer.host
            );
            return;
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let waiting = slot.conn.state() == State::Connecting && slot.stream.is_none();
        let Some(route) = slot.peer.route_mut() else {
            return;
        };
        let Some((_, endpoint)) = route.lookup.filter(|&(seq, _)| seq == answer.seq) else {
            return; // an older lookup's
        };
        route.lookup = None;
        if !(waiting && route.resolving && route.endpoint() == endpoint) {
            debug!(
                "{} {}: lookup answered after its attempt ended",
                answer.id, answer.host
            );
            return;
        }
        match answer.result {
            Ok(addrs) if route.resolved(&addrs) => {
                debug!("{} {}: resolved to {addrs:?}", answer.id, answer.host);
                self.dial_next_addr(idx, None);
            }
            result => {
                let (kind, detail) = match result {
                    Ok(_) => (io::ErrorKind::NotFound, "no address".to_owned()),
                    Err(e) => (e.kind(), e.to_string()),
                };
                route.resolving = false;
                slot.conn
                    .handle_resolve_failed(now, &answer.host, kind, detail, &mut self.scratch);
            }
        }
        self.collect(idx);
        self.service(idx);
    }

    /// A routed link's connection completed its handshake (its
    /// `Connected` events are in `events`): the route remembers the
    /// address, and the events say which endpoint it reached and whether
    /// the link moved.
    pub(super) fn note_route(&mut self, idx: usize, events: &mut [Event]) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let id = slot.id;
        let Some(route) = slot.peer.route_mut() else {
            return;
        };
        for event in events {
            if let Event::Connected(peer) = event {
                peer.moved = route.note_connected();
                peer.endpoint = route.endpoint();
                if peer.moved {
                    log::info!("{id}: moved to {} ({})", route.current(), route.addr);
                }
            }
        }
    }

    /// The endpoint connection `id` is on (or trying): a dialed link's
    /// current entry of its list, an accepted connection's peer address.
    pub(in crate::reactor) fn endpoint(&self, id: ConnId) -> Option<Endpoint> {
        let slot = self.slots.get(self.slot_index(id)?)?;
        Some(match &slot.peer {
            Peer::Addr(addr) => Endpoint::from(*addr),
            Peer::Routed(route) => route.current().clone(),
        })
    }

    /// Looks host names up with `resolver` from now on.
    pub(in crate::reactor) fn set_resolver(&mut self, resolver: Arc<dyn crate::Resolver>) {
        self.lookups.set_resolver(resolver);
    }

    /// No resolver thread has been started.
    #[cfg(test)]
    pub(super) fn lookups_idle(&self) -> bool {
        !self.lookups.started()
    }

    /// Cancels the wheel entry of a routed link's address (the slot is
    /// going).
    pub(super) fn forget_route(&mut self, peer: &mut Peer) {
        if let Some(key) = peer.route_mut().and_then(|r| r.step.take()) {
            self.wheel.cancel(key);
        }
    }
}

#[cfg(test)]
mod tests;
