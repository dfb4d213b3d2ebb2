//! The generator's TLS side (feature `tls`): one rustls client session
//! per connection. Ciphertext is read into one buffer shared by all
//! connections, the plaintext it yields goes through the same frame
//! handling as a plain connection's bytes, and frames are written into the
//! session and out as records. Never blocks: every socket call stops at
//! WouldBlock; used only on connections opened with TLS.
#![cfg(feature = "tls")]

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::Poll;

use super::{set_write_interest, Gen, READ_CHUNK};

/// The most plaintext one TLS record carries (a record begun in an
/// earlier read can complete in this one).
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024 + 256;

impl Gen {
    /// A fresh TLS session for connection `idx`, whose TCP connect just
    /// completed.
    pub(super) fn start_tls(&mut self, idx: usize) -> io::Result<()> {
        let Some(client) = &self.opts.tls else {
            return Ok(());
        };
        let mut session = crate::tls::Session::new(client.config.clone(), client.name.clone())
            .map_err(io::Error::other)?;
        // What the session holds is bounded by the window (the generator
        // never has more than `window` messages in flight).
        session.set_buffer_limit(None);
        self.conns[idx].tls = Some(Box::new(session));
        if self.cbuf.is_empty() {
            self.cbuf = vec![0; READ_CHUNK];
        }
        Ok(())
    }

    /// Reads ciphertext until drained (a short read counts as drained),
    /// hands the plaintext to the frame handling and answers.
    pub(super) fn read_tls(&mut self, poll: &Poll, idx: usize) {
        loop {
            let conn = &mut self.conns[idx];
            let (Some(stream), Some(session)) = (conn.stream.as_mut(), conn.tls.as_mut()) else {
                return;
            };
            let n = match stream.read(&mut self.cbuf) {
                Ok(0) => {
                    self.lost(idx, &io::ErrorKind::UnexpectedEof.into());
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.lost(idx, &e);
                    return;
                }
            };
            let carried = conn.partial.len();
            if self.rbuf.len() < carried + n + MAX_RECORD_PLAINTEXT {
                self.rbuf.resize(carried + n + MAX_RECORD_PLAINTEXT, 0);
            }
            self.rbuf[..carried].copy_from_slice(&conn.partial);
            let mut total = carried;
            let mut fed = 0;
            let mut failed = None;
            while fed < n {
                match session.read_tls(&mut &self.cbuf[fed..n]) {
                    Ok(0) => break,
                    Ok(k) => fed += k,
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
                if let Err(e) = session.process_new_packets() {
                    failed = Some(e.to_string());
                    break;
                }
                loop {
                    if total == self.rbuf.len() {
                        self.rbuf.resize(total + MAX_RECORD_PLAINTEXT, 0);
                    }
                    match session.reader().read(&mut self.rbuf[total..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => total += k,
                    }
                }
            }
            if let Some(e) = failed {
                self.error(format!("conn {idx}: TLS: {e}"));
                self.lost(idx, &io::ErrorKind::InvalidData.into());
                return;
            }
            if !self.take_read(idx, total, Instant::now()) {
                return;
            }
            // The answers, and whatever the session has to say (its
            // handshake flight, HELLO once the handshake is done).
            self.send_tls(poll, idx);
            if n < self.cbuf.len() {
                return;
            }
        }
    }

    /// Writes `obuf` into connection `idx`'s session and the session's
    /// records to the socket.
    pub(super) fn send_tls(&mut self, poll: &Poll, idx: usize) {
        let conn = &mut self.conns[idx];
        let Some(session) = conn.tls.as_mut() else {
            self.obuf.clear();
            return;
        };
        if !self.obuf.is_empty() {
            if self.opts.window == 1 {
                conn.sent_at = Instant::now();
            }
            // Buffered until the handshake is done; the session has no
            // buffer limit, so it takes everything.
            let taken = session.writer().write_all(&self.obuf);
            self.obuf.clear();
            if let Err(e) = taken {
                self.lost(idx, &e);
                return;
            }
        }
        if let Err(e) = self.flush_tls(poll, idx) {
            self.lost(idx, &e);
        }
    }

    /// Writes the session's records until done or the socket would block;
    /// writable interest while records wait.
    pub(super) fn flush_tls(&mut self, poll: &Poll, idx: usize) -> io::Result<()> {
        let conn = &mut self.conns[idx];
        let (Some(stream), Some(session)) = (conn.stream.as_mut(), conn.tls.as_mut()) else {
            return Ok(());
        };
        while session.wants_write() {
            match session.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let want = session.wants_write();
        set_write_interest(conn, poll, idx, want)
    }
}
