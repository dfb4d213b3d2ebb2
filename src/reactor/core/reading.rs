//! Reading a connection's socket and feeding what it read to the
//! connection: connects that finish, reads into the shared buffer, and the
//! steps of one read's input.
//!
//! Never blocks: a read that would block ends the step.

use std::io::{self, Read};
use std::mem;

use bytes::BytesMut;
use log::debug;

use super::{Core, ReadStep, MIN_READ_SPACE, READ_CHUNK};
use crate::net;
use crate::proto::conn::{ReadInput, State};
use crate::reactor::ConnId;

impl Core {
    /// A readiness event on a connection that is still connecting.
    pub(in crate::reactor) fn on_connect_ready(&mut self, idx: usize) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(stream) = slot.stream.as_ref() else {
            return;
        };
        match net::connect_result(stream) {
            Ok(true) => {
                slot.conn.handle_connected(now);
                if let Some(key) = slot.peer.route_mut().and_then(|r| r.step.take()) {
                    self.wheel.cancel(key);
                }
            }
            Ok(false) => {}
            Err(e) => {
                debug!("{} {}: connect failed: {e}", slot.id, slot.peer);
                if slot.peer.route().is_some() {
                    // The next address of the name, if it has one.
                    self.routed_connect_failed(idx, e.kind());
                } else {
                    slot.conn
                        .handle_connect_failed(now, e.kind(), &mut self.scratch);
                }
            }
        }
        self.collect(idx);
    }

    /// Reads one chunk from connection `idx` into the shared buffer and
    /// returns it, unprocessed (empty if nothing was read), with what the
    /// read says about the socket. The caller feeds it to the connection
    /// with [`Connection::start_input`] and what follows it.
    ///
    /// A read that fills less than the buffer emptied the socket's receive
    /// queue: data arriving after it raises a new edge, so (unless `drain`
    /// asks for the FIN or error that brings no new edge) it counts as
    /// drained, saving the extra `recv` that would only say WouldBlock.
    pub(in crate::reactor) fn read_once(
        &mut self,
        idx: usize,
        drain: bool,
    ) -> (ReadStep, BytesMut) {
        let now = self.now;
        let nothing = (ReadStep::Done, BytesMut::new());
        let Some(slot) = self.slots.get_mut(idx) else {
            return nothing;
        };
        if !matches!(
            slot.conn.state(),
            State::Handshaking | State::Established | State::Closing
        ) || slot.conn.is_read_closed()
        {
            return nothing;
        }
        if slot.stream.is_none() {
            return nothing;
        }
        #[cfg(feature = "tls")]
        if slot.tls.is_some() {
            return self.read_once_tls(idx, drain);
        }
        if self.rbuf.len() < MIN_READ_SPACE {
            // Write out this connection's replies first: queued messages
            // may still point into the buffer, and once they are gone the
            // old allocation is reclaimed instead of a new one made. The
            // zero fill keeps the buffer initialized without unsafe code.
            slot.flush(now, &mut self.scratch);
            self.rbuf.clear();
            self.rbuf.reserve(READ_CHUNK);
            self.rbuf.resize(READ_CHUNK, 0);
            self.stats.read_buffer_fills += 1;
        }
        let Some(stream) = slot
            .stream
            .as_mut()
            .filter(|_| slot.conn.state().has_socket())
        else {
            self.collect(idx);
            return nothing; // the flush failed and ended it
        };
        let result = match stream.read(&mut self.rbuf[..]) {
            Ok(0) => {
                slot.conn.handle_eof(now, &mut self.scratch);
                nothing
            }
            Ok(n) => {
                let short = n < self.rbuf.len();
                let step = if short && !drain {
                    ReadStep::Drained
                } else {
                    ReadStep::Again
                };
                (step, self.rbuf.split_to(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => (ReadStep::Again, BytesMut::new()),
            Err(e) => {
                slot.conn.handle_io_error(now, e.kind(), &mut self.scratch);
                nothing
            }
        };
        self.collect(idx);
        result
    }

    /// Gives the bytes of a read that were consumed in place back to the
    /// read buffer when they lie just in front of it, i.e. the read ended
    /// on a frame boundary (a partial frame at its end, copied out by
    /// `end_input`, sits in between): the next read then lands in the
    /// same memory, still in cache, instead of moving on through the
    /// 64 KiB buffer, and the buffer is zero-filled afresh only when
    /// something keeps its bytes. Messages the handler took as `Bytes`
    /// are not in `spent` and keep their bytes: `spent` only ever starts
    /// after them.
    #[inline]
    pub(in crate::reactor) fn reuse_read(&mut self, mut spent: BytesMut) {
        let adjoins = spent.as_ptr() as usize + spent.len() == self.rbuf.as_ptr() as usize;
        if spent.is_empty() || !adjoins {
            return;
        }
        // Both are views of the one allocation `read_once` split, and
        // nothing reallocated the buffer since: joined without a copy.
        match spent.try_unsplit(mem::take(&mut self.rbuf)) {
            Ok(()) => self.rbuf = spent,
            Err(rbuf) => self.rbuf = rbuf,
        }
    }

    /// Starts feeding one read's bytes to connection `idx`; see
    /// [`Connection::start_input`]. (Nothing is fed to a freed slot.)
    pub(in crate::reactor) fn start_input(&mut self, idx: usize, data: BytesMut) -> ReadInput {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(idx) else {
            return ReadInput::default();
        };
        let input = slot.conn.start_input(now, data);
        self.collect(idx);
        input
    }

    /// The next message of `input` for connection `idx`: its id and the
    /// payload length (see [`Connection::next_message`]). Events the
    /// frames before it produced are queued for the handler first.
    /// (Always inlined: it runs once per message, in the read loop; the
    /// common case, a whole DATA frame, reaches only the connection's
    /// input counting, with its lent run still lent.)
    #[inline(always)]
    pub(in crate::reactor) fn next_message(
        &mut self,
        idx: usize,
        input: &mut ReadInput,
    ) -> Option<(ConnId, usize)> {
        if let Some(next) = self.slots.take_data(idx, input) {
            return Some(next);
        }
        if input.is_used_up() {
            // The read ended on a frame boundary (the usual end).
            return None;
        }
        self.next_message_slow(idx, input)
    }

    /// [`next_message`](Self::next_message) past a whole DATA frame.
    #[inline(never)]
    fn next_message_slow(&mut self, idx: usize, input: &mut ReadInput) -> Option<(ConnId, usize)> {
        // Input other than a plain message may answer (a PONG) or end the
        // connection: `get_mut` makes its output whole first.
        let now = self.now;
        let slot = self.slots.get_mut(idx)?;
        let next = slot.conn.next_message(now, input, &mut self.scratch);
        let id = slot.id;
        self.collect(idx);
        next.map(|len| (id, len))
    }

    /// Whether connection `id`, in slot `idx`, still takes messages (it is
    /// established): a callback may have closed it since its read began.
    pub(in crate::reactor) fn delivers_to(&self, idx: usize, id: ConnId) -> bool {
        self.slots
            .get(idx)
            .is_some_and(|slot| slot.id == id && slot.conn.state() == State::Established)
    }

    /// Ends one read's input on connection `idx` (see
    /// [`Connection::finish_input`]): the bytes of the read gone through in
    /// place, for [`reuse_read`](Self::reuse_read).
    pub(in crate::reactor) fn finish_input(&mut self, idx: usize, input: ReadInput) -> BytesMut {
        let Some(slot) = self.slots.get_mut(idx) else {
            return BytesMut::new();
        };
        let spent = slot.conn.finish_input(input);
        if slot.conn.state() == State::Handshaking && slot.conn.resume_request().is_some() {
            self.resolve_resume(idx);
        }
        spent
    }
}
