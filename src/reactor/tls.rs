//! TLS in a slot's socket I/O (feature `tls`): the rustls session of the
//! current socket, reading ciphertext and handing back plaintext, and
//! writing the connection's output through it.
//!
//! It sits below the frame codec: the connection's state machine sees
//! plaintext in and out exactly as on a plain socket; it learns only of
//! ciphertext that carried no plaintext (proof of life) and of TLS
//! failures ([`DisconnectReason::Tls`]). Never blocks: every socket call
//! stops at WouldBlock.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use log::debug;
use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use crate::error::DisconnectReason;
use crate::proto::conn::{Connection, Event};

/// Slices gathered for one vectored write into rustls.
const MAX_IOV: usize = 64;
/// The most plaintext one TLS record carries: the read path keeps this
/// much room beyond the ciphertext it reads, for a record an earlier read
/// began.
pub(super) const MAX_RECORD_PLAINTEXT: usize = 16 * 1024 + 256;
/// Ciphertext writes tried when closing, at most (a close is best effort:
/// it never waits for the socket).
const CLOSE_WRITES: usize = 4;

/// The TLS side of one slot: how to make a session (a client's, for each
/// dial), and the session of the current socket.
pub(in crate::reactor) struct TlsSession {
    /// The current socket's session; `None` between sockets.
    conn: Option<rustls::Connection>,
    /// Client: the configuration and name each dial's session uses.
    client: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// The peer's close_notify was read: its end of the stream, reported
    /// once the plaintext before it is delivered.
    peer_closed: bool,
    /// The session failed: no close_notify, only the alert already queued.
    failed: bool,
    /// Plaintext was left in the session when the output buffer filled
    /// (not expected: the read keeps room for it); taken first next time.
    plain_left: bool,
}

/// What one TLS read did.
pub(super) enum TlsRead {
    /// `plain` bytes of plaintext were put in the output buffer, from
    /// `cipher` bytes read off the socket (0: nothing read, try again);
    /// `full`: the socket read filled what it was offered (there may be
    /// more).
    Data {
        plain: usize,
        cipher: usize,
        full: bool,
    },
    /// The socket would block.
    WouldBlock,
    /// The peer ended the stream (FIN, or close_notify with all plaintext
    /// before it delivered).
    Eof,
    /// The read failed.
    Io(io::Error),
    /// TLS refused what arrived.
    Failed(DisconnectReason),
}

impl TlsSession {
    /// A server session for a freshly accepted socket.
    pub(super) fn server(config: &Arc<ServerConfig>) -> Result<Box<TlsSession>, rustls::Error> {
        let conn = ServerConnection::new(config.clone())?;
        Ok(Box::new(TlsSession {
            conn: Some(conn.into()),
            client: None,
            peer_closed: false,
            failed: false,
            plain_left: false,
        }))
    }

    /// A client's TLS side; each socket's session starts with
    /// [`start_client`](Self::start_client).
    pub(super) fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Box<TlsSession> {
        Box::new(TlsSession {
            conn: None,
            client: Some((config, name)),
            peer_closed: false,
            failed: false,
            plain_left: false,
        })
    }

    /// Client: a fresh session for a new socket.
    pub(super) fn start_client(&mut self) -> Result<(), rustls::Error> {
        self.end();
        if let Some((config, name)) = &self.client {
            self.conn = Some(ClientConnection::new(config.clone(), name.clone())?.into());
        }
        Ok(())
    }

    /// Forgets the current socket's session.
    pub(super) fn end(&mut self) {
        self.conn = None;
        self.peer_closed = false;
        self.failed = false;
        self.plain_left = false;
    }

    /// Whether the session holds ciphertext for the socket.
    #[inline]
    pub(super) fn wants_write(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.wants_write())
    }

    /// The socket is about to be closed: sends close_notify (unless the
    /// session failed) and what ciphertext the socket takes at once, best
    /// effort, then forgets the session.
    pub(super) fn finish(&mut self, stream: &mut TcpStream) {
        if let Some(conn) = self.conn.as_mut() {
            if !self.failed && !conn.is_handshaking() {
                conn.send_close_notify();
            }
            for _ in 0..CLOSE_WRITES {
                if !conn.wants_write() || conn.write_tls(stream).is_err() {
                    break;
                }
            }
        }
        self.end();
    }

    /// Reads ciphertext from `stream` into `cipher` (at most what leaves
    /// [`MAX_RECORD_PLAINTEXT`] of `out` free beyond it), feeds it to the
    /// session and puts the plaintext it yields at the front of `out`.
    pub(super) fn read(
        &mut self,
        stream: &mut TcpStream,
        cipher: &mut [u8],
        out: &mut [u8],
    ) -> TlsRead {
        let Some(conn) = self.conn.as_mut() else {
            return TlsRead::WouldBlock;
        };
        if self.plain_left {
            let plain = drain_plaintext(conn, out);
            self.plain_left = plain == out.len();
            return TlsRead::Data {
                plain,
                cipher: 0,
                full: true,
            };
        }
        if self.peer_closed {
            return TlsRead::Eof;
        }
        let cap = cipher
            .len()
            .min(out.len().saturating_sub(MAX_RECORD_PLAINTEXT));
        if cap == 0 {
            // Not reached: the caller keeps the room.
            return TlsRead::Data {
                plain: 0,
                cipher: 0,
                full: true,
            };
        }
        let n = match stream.read(&mut cipher[..cap]) {
            Ok(0) => return TlsRead::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return TlsRead::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                return TlsRead::Data {
                    plain: 0,
                    cipher: 0,
                    full: true,
                }
            }
            Err(e) => return TlsRead::Io(e),
        };
        let mut fed = 0;
        let mut plain = 0;
        while fed < n {
            let handshaking = conn.is_handshaking();
            match conn.read_tls(&mut &cipher[fed..n]) {
                Ok(0) => break, // not reached: the slice is not empty
                Ok(k) => fed += k,
                Err(e) => {
                    self.failed = true;
                    return TlsRead::Failed(DisconnectReason::Tls {
                        failure: crate::error::TlsFailure::Other,
                        detail: e.to_string(),
                    });
                }
            }
            let state = match conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    self.failed = true;
                    return TlsRead::Failed(DisconnectReason::Tls {
                        failure: crate::tls::failure_of(&e, handshaking),
                        detail: e.to_string(),
                    });
                }
            };
            if state.plaintext_bytes_to_read() > 0 {
                plain += drain_plaintext(conn, &mut out[plain..]);
                if plain == out.len() {
                    self.plain_left = true;
                    break;
                }
            }
            if state.peer_has_closed() {
                self.peer_closed = true;
                break;
            }
        }
        TlsRead::Data {
            plain,
            cipher: n,
            full: n == cap,
        }
    }

    /// Writes `conn`'s pending output through the session to `stream`
    /// until it is all written or the socket would block: ciphertext the
    /// session holds first, then more plaintext taken into it, so that
    /// the session holds at most one batch (the connection's output queue
    /// keeps the rest, counted for backpressure and the write-stall timer).
    pub(super) fn write_out(
        &mut self,
        stream: &mut TcpStream,
        conn: &mut Connection,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        let Some(tls) = self.conn.as_mut() else {
            return;
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(stream) {
                    Ok(0) => {
                        conn.handle_io_error(now, io::ErrorKind::WriteZero, events);
                        return;
                    }
                    // The peer takes our records: progress, even while
                    // the connection's own queue waits behind them.
                    Ok(_) => conn.note_transport_output(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if conn.state().has_socket() {
                            conn.handle_write_blocked(now);
                        }
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        conn.handle_io_error(now, e.kind(), events);
                        return;
                    }
                }
            }
            if conn.pending_output() == 0 {
                return;
            }
            let taken = match conn.transmit_contiguous() {
                Some(bytes) => tls.writer().write(bytes),
                None => write_gathered(tls, conn),
            };
            match taken {
                // The session takes nothing more before its handshake is
                // done; the rest waits in the connection's queue.
                Ok(0) => return,
                Ok(n) => conn.advance_transmit(now, n, events),
                Err(e) => {
                    debug!("TLS session refused output: {e}");
                    conn.handle_io_error(now, e.kind(), events);
                    return;
                }
            }
        }
    }
}

/// Moves the plaintext the session holds into `out`; the count moved.
fn drain_plaintext(conn: &mut rustls::Connection, out: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < out.len() {
        match conn.reader().read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            // WouldBlock: all taken; UnexpectedEof and the rest: nothing
            // more to take (the read path reports the end).
            Err(_) => break,
        }
    }
    filled
}

/// Writes the connection's pending output, in several slices, into the
/// session.
#[inline(never)]
fn write_gathered(tls: &mut rustls::Connection, conn: &Connection) -> io::Result<usize> {
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    match conn.transmit(&mut iov) {
        1 => tls.writer().write(&iov[0]),
        n => tls.writer().write_vectored(&iov[..n]),
    }
}

/// TLS listeners and dials on the reactor (see [`crate::tls`]).
impl super::Reactor {
    /// Listens on `addr` for TLS connections (port 0 picks a free port):
    /// each accepted socket does the TLS handshake with `tls` first, then
    /// the tether handshake inside it, both within the handshake timeout.
    /// `tls` gets ALPN `tether/1` added if it lacks it. With a client
    /// certificate verifier in `tls`, clients without a certificate it
    /// accepts are refused ([`TlsFailure::ClientCertRequired`]).
    ///
    /// [`TlsFailure::ClientCertRequired`]: crate::TlsFailure::ClientCertRequired
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn listen_tls(
        &mut self,
        addr: std::net::SocketAddr,
        tls: Arc<ServerConfig>,
    ) -> io::Result<crate::ListenerId> {
        self.context().listen_tls(addr, tls)
    }

    /// Dials `to` over TLS, verifying the server's certificate for
    /// `name` with `tls` (ALPN `tether/1` added if it lacks it). `to` is
    /// what [`dial`](Self::dial) takes (an address, a host name and
    /// port, a failover list); `name` is the name every endpoint's
    /// certificate is checked against, whatever `to` says. The link
    /// redials by itself, with a fresh TLS session each time, and keeps
    /// this id for life; a refused handshake ends that attempt with
    /// [`DisconnectReason::Tls`] and the link backs off as after any
    /// failed attempt.
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn dial_tls(
        &mut self,
        to: impl Into<crate::Endpoints>,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
    ) -> crate::ConnId {
        self.context().dial_tls(to, name, tls)
    }

    /// [`dial_tls`](Self::dial_tls) with its own configuration, once
    /// [`Config::validate`](crate::Config::validate) accepts it.
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn dial_tls_with(
        &mut self,
        to: impl Into<crate::Endpoints>,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
        config: crate::Config,
    ) -> Result<crate::ConnId, crate::ConfigError> {
        self.context().dial_tls_with(to, name, tls, config)
    }
}

/// TLS listeners and dials from a callback (see [`crate::tls`]).
impl super::Context<'_> {
    /// [`Reactor::listen_tls`](super::Reactor::listen_tls), with the
    /// reactor's default configuration.
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn listen_tls(
        &mut self,
        addr: std::net::SocketAddr,
        tls: Arc<ServerConfig>,
    ) -> io::Result<crate::ListenerId> {
        let config = self.core.config.clone();
        self.core.listen_tls(addr, config, tls)
    }

    /// [`Reactor::dial_tls`](super::Reactor::dial_tls), with the reactor's
    /// default configuration.
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn dial_tls(
        &mut self,
        to: impl Into<crate::Endpoints>,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
    ) -> crate::ConnId {
        let config = self.core.config.clone();
        self.core.dial_tls(to.into(), config, name, tls)
    }

    /// [`Reactor::dial_tls_with`](super::Reactor::dial_tls_with).
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn dial_tls_with(
        &mut self,
        to: impl Into<crate::Endpoints>,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
        config: crate::Config,
    ) -> Result<crate::ConnId, crate::ConfigError> {
        config.validate()?;
        Ok(self.core.dial_tls(to.into(), Arc::new(config), name, tls))
    }
}
