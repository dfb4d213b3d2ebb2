//! TLS on the reactor's paths (feature `tls`): TLS listeners and the
//! sessions of the sockets they accept, TLS dials and a fresh session per
//! dial, and the read path of a TLS socket, which feeds plaintext to the
//! connection exactly as the plain path feeds what it reads.
//!
//! Never blocks; a TLS failure ends that one socket with
//! [`DisconnectReason::Tls`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use log::warn;
use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use super::{Core, ReadStep, READ_CHUNK};
use crate::config::Config;
use crate::error::DisconnectReason;
use crate::proto::conn::{Connection, Event};
use crate::reactor::slot::Slot;
use crate::reactor::tls::{TlsRead, TlsSession, MAX_RECORD_PLAINTEXT};
use crate::reactor::{ConnId, ListenerId};

/// Below this much space left, the read buffer is refilled before a TLS
/// read: a read offers the socket this much less a record's plaintext.
const TLS_MIN_READ_SPACE: usize = 32 * 1024;

/// A client's TLS dial got a new socket: starts its session (a failure
/// to make one ends the attempt like any failed connect).
pub(super) fn start_client_session(slot: &mut Slot, now: Instant, events: &mut Vec<Event>) {
    let Some(tls) = slot.tls.as_deref_mut() else {
        return;
    };
    if let Err(e) = tls.start_client() {
        warn!("{} {}: cannot start a TLS session: {e}", slot.id, slot.peer);
        let reason = DisconnectReason::Tls {
            failure: crate::tls::failure_of(&e, true),
            detail: e.to_string(),
        };
        slot.conn.handle_transport_failure(now, reason, events);
    }
}

impl Core {
    /// Listens on `addr` for TLS connections with `tls` (ALPN `tether/1`
    /// added if it lacks it).
    pub(in crate::reactor) fn listen_tls(
        &mut self,
        addr: SocketAddr,
        config: Arc<Config>,
        tls: Arc<ServerConfig>,
    ) -> io::Result<ListenerId> {
        let id = self.listen(addr, config)?;
        if let Some(l) = self.listeners.get_mut(id.index()) {
            l.tls = Some(crate::tls::with_alpn_server(tls));
        }
        Ok(id)
    }

    /// An accepted socket of a TLS listener: its connection, with a fresh
    /// server session (a socket no session can be made for is closed).
    pub(super) fn adopt_tls(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        config: Arc<Config>,
        tls: &Arc<ServerConfig>,
    ) {
        let session = match TlsSession::server(tls) {
            Ok(session) => session,
            Err(e) => {
                warn!("{addr}: cannot start a TLS session: {e}; closed");
                return;
            }
        };
        if let Some(idx) = self.adopt_unserviced(stream, addr, config) {
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.tls = Some(session);
            }
            self.service(idx);
        }
    }

    /// Dials `to` over TLS, verifying the server as `name`, with `config`
    /// (validated by every caller); every redial makes a fresh session.
    pub(in crate::reactor) fn dial_tls(
        &mut self,
        to: crate::endpoint::Endpoints,
        config: Arc<Config>,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
    ) -> ConnId {
        let tls = crate::tls::with_alpn_client(tls);
        let seed = self.next_seed();
        let conn = Connection::client(config, seed);
        match self.insert(conn, crate::reactor::route::Peer::of(&to), None) {
            Some(id) => {
                let idx = id.index();
                if let Some(slot) = self.slots.get_mut(idx) {
                    slot.tls = Some(TlsSession::client(tls, name));
                    // Started with its TLS side in place: the first
                    // connect makes a session.
                    slot.conn.start(self.now);
                }
                self.service(idx);
                id
            }
            None => self.dial_refused(&to),
        }
    }

    /// [`read_once`](Self::read_once) on a TLS socket: reads ciphertext
    /// into the reactor's TLS buffer, and returns the plaintext it yields
    /// (in the shared read buffer, as the plain path does).
    pub(super) fn read_once_tls(&mut self, idx: usize, drain: bool) -> (ReadStep, BytesMut) {
        let now = self.now;
        let nothing = (ReadStep::Done, BytesMut::new());
        if self.rbuf.len() < TLS_MIN_READ_SPACE {
            // As on the plain path: this connection's replies may point
            // into the buffer; written out first.
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.flush(now, &mut self.scratch);
            }
            self.rbuf.clear();
            self.rbuf.reserve(READ_CHUNK);
            self.rbuf.resize(READ_CHUNK, 0);
            self.stats.read_buffer_fills += 1;
        }
        if self.tls_in.is_empty() {
            self.tls_in = vec![0; READ_CHUNK - MAX_RECORD_PLAINTEXT];
        }
        let Some(slot) = self.slots.get_mut(idx) else {
            return nothing;
        };
        let has_socket = slot.conn.state().has_socket();
        let (Some(stream), Some(tls)) = (
            slot.stream.as_mut().filter(|_| has_socket),
            slot.tls.as_deref_mut(),
        ) else {
            self.collect(idx);
            return nothing; // the flush failed and ended it
        };
        let result = match tls.read(stream, &mut self.tls_in, &mut self.rbuf[..]) {
            TlsRead::Data {
                plain,
                cipher,
                full,
            } => {
                if cipher > 0 {
                    // TLS records count as life, plaintext or not.
                    slot.conn.note_transport_input(now);
                }
                let step = if full || drain {
                    ReadStep::Again
                } else {
                    ReadStep::Drained
                };
                (step, self.rbuf.split_to(plain))
            }
            TlsRead::WouldBlock => nothing,
            TlsRead::Eof => {
                slot.conn.handle_eof(now, &mut self.scratch);
                nothing
            }
            TlsRead::Io(e) if e.kind() == io::ErrorKind::Interrupted => {
                (ReadStep::Again, BytesMut::new())
            }
            TlsRead::Io(e) => {
                slot.conn.handle_io_error(now, e.kind(), &mut self.scratch);
                nothing
            }
            TlsRead::Failed(reason) => {
                // Logged once, with the peer's address, where the close is
                // counted. The alert rustls queued for the peer goes out
                // with the socket's close (see `TlsSession::finish`).
                slot.conn
                    .handle_transport_failure(now, reason, &mut self.scratch);
                nothing
            }
        };
        self.collect(idx);
        result
    }
}
