//! What the application asks of the reactor (through a `Context` or a
//! `Handle`'s commands): sends, the lent run, closes, pauses, dials,
//! listeners, shutdown.
//!
//! Runs on the reactor thread; never blocks, never reads the clock.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use log::{debug, warn};
use mio::{Interest, Token};

use super::{Core, ListenerSlot, ACCEPT_BACKLOG, COMMANDS_PER_TURN, LISTENER_BASE};
use crate::config::Config;
use crate::endpoint::Endpoints;
use crate::error::{CloseCode, DisconnectReason};
use crate::handle::Command;
use crate::net;
use crate::proto::conn::{Connection, Event, SendError, UndeliveredCause};
use crate::reactor::lent_run::LentRun;
use crate::reactor::route::Peer;
use crate::reactor::{ConnId, ListenerId};

impl Core {
    pub(in crate::reactor) fn send(&mut self, id: ConnId, message: Bytes) -> Result<(), SendError> {
        self.queue_on(id, |conn| conn.send(message))
    }

    pub(in crate::reactor) fn send_slice(
        &mut self,
        id: ConnId,
        message: &[u8],
    ) -> Result<(), SendError> {
        self.queue_on(id, |conn| conn.send_slice(message))
    }

    /// (Out of line: the handler's answers to the connection being read
    /// take the lent run instead, see `Context::forward`.)
    #[inline(never)]
    pub(in crate::reactor) fn send_framed(
        &mut self,
        id: ConnId,
        frame: &[u8],
    ) -> Result<(), SendError> {
        self.queue_on(id, |conn| conn.send_framed(frame))
    }

    /// Queues output on connection `id` with `queue`, and marks it for
    /// writing (see [`Slots::queue_on`]): listed for `settle`, unless it
    /// is the connection being read, whose read's end services it.
    ///
    /// [`Slots::queue_on`]: crate::reactor::slots::Slots::queue_on
    #[inline]
    pub(super) fn queue_on(
        &mut self,
        id: ConnId,
        queue: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        if self.slots.queue_on(id, queue)? && !self.slots.is_reading(id) {
            self.dirty.push(id.index());
        }
        Ok(())
    }

    /// The lent run for an answer to connection `id` (see
    /// [`Slots::lent_run_for`]).
    ///
    /// [`Slots::lent_run_for`]: crate::reactor::slots::Slots::lent_run_for
    ///
    /// A run is only lent to the connection being read, which is serviced
    /// when its read ends: it is marked, not listed (listing it would have
    /// `settle` look at its slot again, a cache miss per read at scale).
    #[inline]
    pub(in crate::reactor) fn lent_run(&mut self, id: ConnId) -> Option<&mut LentRun> {
        self.slots.lent_run_for(id)
    }

    pub(in crate::reactor) fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        let Some(idx) = self.slot_index(id) else {
            return false;
        };
        let now = self.now;
        let Some(slot) = self.slots.get_mut(idx) else {
            return false;
        };
        slot.conn.close(now, code, reason, &mut self.scratch);
        self.collect(idx);
        self.mark_dirty(idx);
        true
    }

    /// Pauses (`on` false) or resumes reading connection `id`; false for
    /// an unknown id. A resumed connection is read at the next turn until
    /// WouldBlock: what arrived while it was paused raised no edge.
    pub(in crate::reactor) fn set_reading(&mut self, id: ConnId, on: bool) -> bool {
        let Some(idx) = self.slot_index(id) else {
            return false;
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return false;
        };
        if slot.paused == on {
            slot.paused = !on;
            if on {
                self.backlog.push((idx, true));
            }
        }
        true
    }

    /// Dials `to` with `config`, which every caller has validated
    /// (`Config::validate`): its durations are added to instants.
    pub(in crate::reactor) fn dial(&mut self, to: Endpoints, config: Arc<Config>) -> ConnId {
        let seed = self.next_seed();
        let mut conn = Connection::client(config, seed);
        conn.start(self.now);
        match self.insert(conn, Peer::of(&to), None) {
            Some(id) => {
                self.service(id.index());
                id
            }
            None => self.dial_refused(&to),
        }
    }

    pub(in crate::reactor) fn listen(
        &mut self,
        addr: SocketAddr,
        config: Arc<Config>,
    ) -> io::Result<ListenerId> {
        let mut listener = net::listen(addr, ACCEPT_BACKLOG, &config.socket, config.heartbeat)?;
        let generation = self.next_generation();
        let entry = self.listeners.vacant_entry();
        let index = entry.key();
        let id = ListenerId::new(index, generation);
        self.poll.registry().register(
            &mut listener,
            Token(LISTENER_BASE + index),
            Interest::READABLE,
        )?;
        entry.insert(ListenerSlot {
            id,
            listener,
            config,
            paused: false,
            #[cfg(feature = "tls")]
            tls: None,
        });
        Ok(id)
    }

    pub(in crate::reactor) fn unlisten(&mut self, id: ListenerId) -> bool {
        let idx = id.index();
        if !self.listeners.get(idx).is_some_and(|l| l.id == id) {
            return false;
        }
        let mut l = self.listeners.remove(idx);
        let _ = self.poll.registry().deregister(&mut l.listener);
        true
    }

    pub(in crate::reactor) fn local_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        let l = self.listeners.get(id.index())?;
        if l.id != id {
            return None;
        }
        l.listener.local_addr().ok()
    }

    pub(in crate::reactor) fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let now = self.now;
        self.shutdown = Some(now + self.config.close_linger + Duration::from_millis(100));
        debug!("shutting down: {} connections", self.slots.len());
        let listeners: Vec<ListenerId> = self.listeners.iter().map(|(_, l)| l.id).collect();
        for id in listeners {
            self.unlisten(id);
        }
        let ids = self.slots.ids();
        for id in ids {
            self.close(id, CloseCode::GOING_AWAY, "shutdown");
        }
    }

    pub(in crate::reactor) fn drain_commands(&mut self) {
        self.shared.clear_notified();
        self.commands_left = false;
        for _ in 0..COMMANDS_PER_TURN {
            let Ok(command) = self.commands.try_recv() else {
                return;
            };
            match command {
                Command::Send(id, message) => {
                    self.shared.taken(message.len());
                    // A clone shares the payload (a reference count), so a
                    // refused message can be handed back whole.
                    if let Err(e) = self.send(id, message.clone()) {
                        debug!("{id}: message from a handle refused: {e}");
                        self.pending.push_back((
                            id,
                            Event::Undelivered {
                                messages: vec![message],
                                cause: UndeliveredCause::Refused(e),
                            },
                        ));
                    }
                }
                Command::Close(id, code, reason) => {
                    self.close(id, code, &reason);
                }
                Command::Dial(to, config, reply) => {
                    let config = config.unwrap_or_else(|| self.config.clone());
                    // Not if the caller gave up waiting: it has no id.
                    reply.answer(|| self.dial(to, config));
                }
                #[cfg(feature = "tls")]
                Command::DialTls(to, config, tls, reply) => {
                    let config = config.unwrap_or_else(|| self.config.clone());
                    let (name, tls) = *tls;
                    reply.answer(|| self.dial_tls(to, config, name, tls));
                }
                Command::Resolved(answer) => self.on_resolved(*answer),
                Command::Shutdown => self.begin_shutdown(),
                Command::Reading(id, on) => {
                    self.set_reading(id, on);
                }
            }
        }
        self.commands_left = true;
    }

    /// A dial the slab has no slot for (it holds all an id can name): the
    /// link gives up at once, under an id that names no slot.
    pub(super) fn dial_refused(&mut self, to: &Endpoints) -> ConnId {
        let id = ConnId::nowhere(self.next_generation());
        warn!("{id} {to}: not dialed: the reactor holds its maximum of connections");
        let reason = DisconnectReason::ConnectFailed(io::ErrorKind::OutOfMemory);
        self.pending.push_back((
            id,
            Event::GaveUp {
                attempts: 0,
                reason,
            },
        ));
        id
    }
}
