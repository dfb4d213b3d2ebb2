//! One connection's place in the reactor, and the socket I/O done on it:
//! vectored writes until WouldBlock, and readiness interest derived from
//! the state machine.
//!
//! Never decides anything about the protocol: it moves bytes between the
//! socket and the [`Connection`] and reports what the OS said.

use std::io::{self, IoSlice, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::filing::Filing;
use super::route::Peer;
use super::ConnId;
use crate::proto::conn::{Connection, Event, State};
use crate::proto::wheel::TimerKey;

/// Slices gathered for one `writev`.
const MAX_IOV: usize = 64;

/// A connection, its socket (while it has one) and its bookkeeping.
///
/// In declaration order (`repr(C)`): the reactor's per-read fields in the
/// first 64 bytes, then the connection (its hot part first), then the
/// peer, which only logging, routing and the application's look-ups read.
#[repr(C)]
pub(super) struct Slot {
    pub(super) id: ConnId,
    /// The wheel entry, if any.
    pub(super) timer: Option<Filed>,
    /// TLS (a TLS listener's connection, or a TLS dial); `None` on a
    /// plain connection, which pays this one pointer.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Box<super::tls::TlsSession>>,
    pub(super) stream: Option<TcpStream>,
    /// The interest registered with the poll, if the stream is registered.
    pub(super) interest: Option<Interest>,
    /// Listed in the reactor's dirty list.
    pub(super) dirty: bool,
    /// The application paused reading this socket (see
    /// `Context::pause_reading`): readiness to read is ignored.
    pub(super) paused: bool,
    /// Server, resume: the connection's detached session is in the
    /// reactor's list of detached sessions.
    pub(super) listed_detached: bool,
    /// The connection's `disconnects` count when its last ending was
    /// counted in the reactor's close stats (compared for change: the
    /// count wraps).
    pub(super) counted_disconnects: u32,
    pub(super) conn: Connection,
    /// The peer: the accepted peer's address, the address dialed, or the
    /// route of a link dialed by name or with a failover list (boxed, so
    /// that it costs no more than an address).
    pub(super) peer: Peer,
}

/// A connection's wheel entry and when traffic may move it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Filed {
    pub(super) key: TimerKey,
    /// The deadline it was filed for and when a later one moves it (see
    /// [`filing`](super::filing)).
    pub(super) filing: Filing,
}

impl Slot {
    /// A slot for connection `id`, with its socket if it has one.
    pub(super) fn new(id: ConnId, conn: Connection, peer: Peer, stream: Option<TcpStream>) -> Slot {
        Slot {
            id,
            conn,
            peer,
            stream,
            interest: None,
            timer: None,
            dirty: false,
            paused: false,
            listed_detached: false,
            counted_disconnects: 0,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Writes pending output until it is all written or the socket would
    /// block. Write errors go to the state machine.
    pub(super) fn flush(&mut self, now: Instant, events: &mut Vec<Event>) {
        if self.conn.state() != State::Established {
            // Messages sent while the link is down wait in the session.
            self.conn.handle_queued_while_down(now);
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if !matches!(
            self.conn.state(),
            State::Handshaking | State::Established | State::Closing
        ) {
            return;
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.write_out(stream, &mut self.conn, now, events);
            self.conn.poll_drain(events);
            return;
        }
        write_out(stream, &mut self.conn, now, events);
        self.conn.poll_drain(events);
    }

    /// The readiness to wait for: writable while connecting or while output
    /// is pending, readable always.
    fn wanted_interest(&self) -> Interest {
        #[cfg(feature = "tls")]
        if self.tls.as_ref().is_some_and(|tls| tls.wants_write()) {
            return Interest::READABLE | Interest::WRITABLE;
        }
        if self.conn.state() == State::Connecting || self.conn.pending_output() > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Registers the stream, or changes its interest, if needed.
    pub(super) fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let want = self.wanted_interest();
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        match self.interest {
            Some(current) if current == want => return Ok(()),
            Some(_) => registry.reregister(stream, token, want)?,
            None => registry.register(stream, token, want)?,
        }
        self.interest = Some(want);
        Ok(())
    }

    /// Deregisters and drops the socket (closing it).
    pub(super) fn drop_stream(&mut self, registry: &Registry) {
        let stream = self.take_stream(registry);
        // A TLS socket says close_notify (after the CLOSE already written)
        // as it goes, best effort.
        #[cfg(feature = "tls")]
        let stream = match (stream, self.tls.as_deref_mut()) {
            (Some(mut stream), Some(tls)) => {
                tls.finish(&mut stream);
                Some(stream)
            }
            (stream, _) => stream,
        };
        drop(stream);
    }

    /// Takes the stream out, no longer registered with the poll (its TLS
    /// session, if any, stays in `tls`: a caller moving the socket moves
    /// that too).
    pub(super) fn take_stream(&mut self, registry: &Registry) -> Option<TcpStream> {
        let mut stream = self.stream.take()?;
        if self.interest.take().is_some() {
            // Closing the fd removes it from epoll anyway; an error here
            // changes nothing.
            let _ = registry.deregister(&mut stream);
        }
        Some(stream)
    }
}

/// Writes `conn`'s pending output to `stream` until it is all written or
/// the socket would block; write errors go to the state machine.
#[inline]
fn write_out(stream: &mut TcpStream, conn: &mut Connection, now: Instant, events: &mut Vec<Event>) {
    while conn.pending_output() > 0 {
        // One slice (the usual case: small messages are packed into
        // runs): `send` costs the kernel less than `writev`, and no
        // slice array is filled.
        let written = match conn.transmit_contiguous() {
            Some(bytes) => stream.write(bytes),
            None => write_gathered(stream, conn),
        };
        match written {
            Ok(0) => {
                conn.handle_io_error(now, io::ErrorKind::WriteZero, events);
                return;
            }
            Ok(n) => conn.advance_transmit(now, n, events),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.handle_write_blocked(now);
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                conn.handle_io_error(now, e.kind(), events);
                return;
            }
        }
    }
}

/// Writes the connection's pending output, in several slices, with one
/// vectored write.
#[inline(never)]
fn write_gathered(stream: &mut TcpStream, conn: &Connection) -> io::Result<usize> {
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    match conn.transmit(&mut iov) {
        1 => stream.write(&iov[0]),
        n => stream.write_vectored(&iov[..n]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slot_fits_the_per_connection_budget() {
        // 512 bytes per idle connection in all: the slot (with the
        // connection inside), its slab tag and its timer wheel entry.
        // The `tls` feature adds one pointer (the TLS session's box,
        // `None` on a plain connection): 8 bytes more.
        let slot = std::mem::size_of::<super::Slot>();
        // (With the `tls` feature a slot holds one more pointer.)
        let budget = if cfg!(feature = "tls") { 472 } else { 464 };
        assert!(slot <= budget, "Slot grew to {slot} bytes");
    }

    #[test]
    fn the_reactors_per_read_fields_share_the_slots_first_line() {
        use std::mem::offset_of;
        // What every read looks at besides the connection: its id, socket,
        // interest, marks and wheel entry, then the connection itself
        // (hot part first); the peer, read for logs and routing, last.
        let conn = offset_of!(super::Slot, conn);
        // (A debug build's mio socket carries a selector id: 8 bytes.)
        let line = if cfg!(debug_assertions) { 72 } else { 64 };
        assert!(conn <= line, "the connection starts at {conn}");
        for at in [
            offset_of!(super::Slot, id),
            offset_of!(super::Slot, stream),
            offset_of!(super::Slot, interest),
            offset_of!(super::Slot, dirty),
            offset_of!(super::Slot, paused),
            offset_of!(super::Slot, counted_disconnects),
            offset_of!(super::Slot, timer),
        ] {
            assert!(at < conn);
        }
        assert!(offset_of!(super::Slot, peer) > conn);
    }
}
