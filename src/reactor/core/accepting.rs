//! Accepting connections on the listeners: adopt each, refuse those over
//! the connection limit, pause on accept errors instead of spinning.
//!
//! Never blocks and never spins.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use log::{debug, warn};
use mio::net::TcpStream;
use socket2::SockRef;

use super::{Core, Target, ACCEPT_PAUSE};
use crate::config::Config;
use crate::error::CloseCode;
use crate::net;
use crate::proto::conn::Connection;
use crate::reactor::route::Peer;

impl Core {
    /// Accepts until the listen queue is empty (or accepting must pause).
    pub(in crate::reactor) fn accept(&mut self, index: usize) {
        loop {
            let Some(l) = self.listeners.get_mut(index) else {
                return;
            };
            if l.paused {
                return;
            }
            match l.listener.accept() {
                Ok((stream, addr)) => {
                    // (An id names at most `slot_limit` slots.)
                    if self.slots.len() >= self.max_connections.min(self.slot_limit) {
                        #[cfg(feature = "tls")]
                        if l.tls.is_some() {
                            // A plain CLOSE would not be TLS: just closed.
                            self.stats.refused += 1;
                            debug!("{addr}: refused, {} connections held", self.slots.len());
                            continue;
                        }
                        self.refuse(stream, addr);
                        continue;
                    }
                    self.stats.accepted += 1;
                    let config = l.config.clone();
                    #[cfg(feature = "tls")]
                    if let Some(tls) = l.tls.clone() {
                        self.adopt_tls(stream, addr, config, &tls);
                        continue;
                    }
                    self.adopt(stream, addr, config);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying now would
                    // spin; the pending connections wait in the backlog.
                    self.stats.accept_errors += 1;
                    l.paused = true;
                    let id = l.id;
                    warn!("{id}: accept failed: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                    self.wheel
                        .insert(self.now + ACCEPT_PAUSE, Target::Listener(id));
                    return;
                }
            }
        }
    }

    /// Over the connection limit: tell the peer why (best effort, on a
    /// fresh socket whose buffer is empty) and close at once.
    pub(super) fn refuse(&mut self, mut stream: TcpStream, addr: SocketAddr) {
        self.stats.refused += 1;
        let mut close = BytesMut::new();
        crate::proto::codec::encode_close(CloseCode::POLICY_VIOLATION, "server full", &mut close);
        let _ = io::Write::write(&mut stream, &close);
        debug!("{addr}: refused, {} connections held", self.slots.len());
    }

    pub(super) fn adopt(&mut self, stream: TcpStream, addr: SocketAddr, config: Arc<Config>) {
        if let Some(idx) = self.adopt_unserviced(stream, addr, config) {
            self.service(idx);
        }
    }

    /// Puts an accepted socket's connection in a slot, not yet serviced:
    /// its slot index.
    pub(super) fn adopt_unserviced(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        config: Arc<Config>,
    ) -> Option<usize> {
        if !net::ACCEPTED_INHERIT_OPTIONS {
            if let Err(e) = net::configure(SockRef::from(&stream), &config.socket, config.heartbeat)
            {
                debug!("{addr}: socket options not applied: {e}");
            }
        }
        // Never the id of a session this reactor holds (64 random bits
        // make a repeat all but impossible; this makes it impossible).
        let session = loop {
            let id = self.session_ids.next();
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        let seed = self.next_seed();
        let conn = Connection::server(config, self.now, session, seed);
        // `accept` refuses before the slab is full.
        let id = self.insert(conn, Peer::Addr(addr), Some(stream))?;
        debug!("{id} {addr}: accepted");
        Some(id.index())
    }
}
