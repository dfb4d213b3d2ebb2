//! The raw mio baseline: the practical limit of an echo server on this
//! wire contract. A minimal hand-written edge-triggered mio loop with no
//! timers and no heartbeats of its own: it answers HELLO with WELCOME,
//! echoes DATA frames byte for byte, answers PING with PONG, and closes on
//! CLOSE, EOF or a protocol error.
//!
//! It does what a careful hand-written loop does and nothing more: one
//! shared 64 KiB read buffer (a connection keeps bytes of its own only
//! while it holds a partial frame), the replies to one read gathered in one
//! shared output buffer and written with one `write` (only what the socket
//! refused is kept per connection, and only then is WRITABLE interest
//! registered), TCP_NODELAY, and a short read taken as "drained" (as tokio
//! does: under edge triggering, bytes that arrive later raise a new edge),
//! which saves the extra `read` that would only return WouldBlock.

use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::wire::{self, Next};

const LISTENER: Token = Token(usize::MAX - 1);
const READ_CHUNK: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    /// A partial frame carried over to the next read (usually empty).
    partial: Vec<u8>,
    /// Output the socket did not take yet (usually empty).
    unsent: Vec<u8>,
    greeted: bool,
    write_interest: bool,
}

/// Serves on `listener` until the process ends.
pub fn run(listener: std::net::TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut rbuf = vec![0u8; READ_CHUNK];
    let mut obuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut session = 0u64;
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&mut listener, &poll, &mut conns);
                continue;
            }
            let idx = event.token().0;
            let Some(conn) = conns.get_mut(idx) else {
                continue;
            };
            let mut close = false;
            if event.is_writable() && !conn.unsent.is_empty() {
                close = flush(conn, &poll, idx).is_err();
            }
            if !close && (event.is_readable() || event.is_read_closed() || event.is_error()) {
                close = on_readable(conn, &poll, idx, &mut rbuf, &mut obuf, &mut session);
            }
            if close {
                let mut conn = conns.remove(idx);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

fn accept(listener: &mut TcpListener, poll: &Poll, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                if poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), Interest::READABLE)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        partial: Vec::new(),
                        unsent: Vec::new(),
                        greeted: false,
                        write_interest: false,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            // EMFILE and the like: the backlog keeps them; the next
            // connection's event retries (good enough for a baseline).
            Err(_) => return,
        }
    }
}

/// Reads until drained; true if the connection must be closed.
fn on_readable(
    conn: &mut Conn,
    poll: &Poll,
    idx: usize,
    rbuf: &mut Vec<u8>,
    obuf: &mut Vec<u8>,
    session: &mut u64,
) -> bool {
    loop {
        let carried = conn.partial.len();
        if rbuf.len() < carried + READ_CHUNK {
            rbuf.resize(carried + READ_CHUNK, 0);
        }
        rbuf[..carried].copy_from_slice(&conn.partial);
        let space = rbuf.len() - carried;
        match conn.stream.read(&mut rbuf[carried..]) {
            Ok(0) => return true,
            Ok(n) => {
                let total = carried + n;
                let (used, close) = answer(&rbuf[..total], obuf, &mut conn.greeted, session);
                conn.partial.clear();
                conn.partial.extend_from_slice(&rbuf[used..total]);
                if !obuf.is_empty() {
                    let sent = send(conn, poll, idx, obuf);
                    obuf.clear();
                    if sent.is_err() {
                        return true;
                    }
                }
                if close {
                    return true;
                }
                if n < space {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Appends the replies to every whole frame of `buf` to `out`; returns the
/// bytes consumed and whether to close after writing `out`.
fn answer(buf: &[u8], out: &mut Vec<u8>, greeted: &mut bool, session: &mut u64) -> (usize, bool) {
    let mut pos = 0;
    loop {
        match wire::next_frame(&buf[pos..], wire::MAX_FRAME) {
            Next::Partial => return (pos, false),
            Next::Error(code) => {
                wire::put_close(out, code);
                return (pos, true);
            }
            Next::Frame { kind, len } => {
                let frame = &buf[pos..pos + len];
                pos += len;
                if !*greeted {
                    if kind != wire::HELLO || !wire::handshake_ok(frame) {
                        wire::put_close(out, wire::CLOSE_PROTOCOL);
                        return (pos, true);
                    }
                    *session += 1;
                    wire::put_handshake(out, wire::WELCOME, 0, 0, 0, *session);
                    *greeted = true;
                    continue;
                }
                match kind {
                    wire::DATA => out.extend_from_slice(frame),
                    wire::PING => wire::put_heartbeat(out, wire::PONG, wire::nonce(frame)),
                    wire::CLOSE => return (pos, true),
                    wire::HELLO | wire::WELCOME => {
                        wire::put_close(out, wire::CLOSE_PROTOCOL);
                        return (pos, true);
                    }
                    _ => {} // PONG, ACK
                }
            }
        }
    }
}

/// Writes `out` (after anything still unsent); keeps what the socket
/// refuses and asks for WRITABLE.
fn send(conn: &mut Conn, poll: &Poll, idx: usize, out: &[u8]) -> io::Result<()> {
    if !conn.unsent.is_empty() {
        conn.unsent.extend_from_slice(out);
        return flush(conn, poll, idx);
    }
    let mut done = 0;
    while done < out.len() {
        match conn.stream.write(&out[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if done < out.len() {
        conn.unsent.extend_from_slice(&out[done..]);
        set_write_interest(conn, poll, idx, true)?;
    }
    Ok(())
}

/// Writes what is unsent; drops WRITABLE interest once it is all out.
fn flush(conn: &mut Conn, poll: &Poll, idx: usize) -> io::Result<()> {
    let mut done = 0;
    while done < conn.unsent.len() {
        match conn.stream.write(&conn.unsent[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.unsent.drain(..done);
    let want = !conn.unsent.is_empty();
    set_write_interest(conn, poll, idx, want)
}

fn set_write_interest(conn: &mut Conn, poll: &Poll, idx: usize, want: bool) -> io::Result<()> {
    if conn.write_interest == want {
        return Ok(());
    }
    let interest = if want {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    poll.registry()
        .reregister(&mut conn.stream, Token(idx), interest)?;
    conn.write_interest = want;
    Ok(())
}
