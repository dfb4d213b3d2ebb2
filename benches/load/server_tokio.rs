//! The tokio baseline: what a competent Rust user would write instead of
//! tether. A `current_thread` runtime (tether is single-threaded too), one
//! task per connection, the same framing and the same heartbeat rules with
//! `tokio::time`:
//!
//! - HELLO must arrive within the handshake timeout (5 s), WELCOME answers;
//! - every byte read is proof of life; after `I` (+ up to 10 % jitter, as
//!   tether) of read silence a PING goes out, at most one outstanding;
//! - nothing at all within `T` after the PING: CLOSE 1001 and close;
//! - PING is answered with PONG in the same write as the echoes of the
//!   same read.
//!
//! The idle deadline is kept lazily (as tether and tokio's own
//! `tokio::time::timeout` users who care do): a read only records the
//! instant; the one `Sleep` per connection is moved only when it fires.
//! Reads go into one reusable `BytesMut` per connection (4 KiB, grown for a
//! large frame), the replies to a read are batched in one `BytesMut` and
//! written with one `write_all`; TCP_NODELAY is on. Not weakened anywhere
//! on purpose. [`serve`] is generic over the stream: the tokio-rustls
//! baseline (`server_tokio_tls`) runs the same loop over a TLS stream.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::wire::{self, Next};

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const READ_BUF: usize = 4 * 1024;

/// Heartbeat interval `I` and timeout `T`.
#[derive(Clone, Copy)]
pub struct Heartbeat {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Serves on `listener` until the process ends.
pub fn run(listener: std::net::TcpListener, hb: Heartbeat) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut session = 0u64;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if is_transient(&e) => continue,
                Err(_) => {
                    // EMFILE & co: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            session += 1;
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            tokio::spawn(async move {
                if stream.set_nodelay(true).is_ok() {
                    let _ = serve(stream, hb, session, deadline).await;
                }
            });
        }
    })
}

pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Makes sure a read has room for at least the frame at the front.
fn make_room(rbuf: &mut BytesMut) {
    let need = match wire::next_frame(rbuf, wire::MAX_FRAME) {
        Next::Partial if rbuf.len() >= 5 => {
            u32::from_be_bytes([rbuf[0], rbuf[1], rbuf[2], rbuf[3]]) as usize + 4
        }
        _ => 0,
    };
    let want = (need.saturating_sub(rbuf.len())).max(READ_BUF / 4);
    if rbuf.capacity() - rbuf.len() < want {
        rbuf.reserve(want.max(READ_BUF));
    }
}

/// Serves one connection: HELLO by `deadline`, then echo and heartbeats.
/// Every batch of replies is written with one `write_all` and then
/// flushed (a no-op on a `TcpStream`; a TLS stream may keep the last
/// records until then).
pub async fn serve<S>(
    mut stream: S,
    hb: Heartbeat,
    session: u64,
    deadline: Instant,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::with_capacity(READ_BUF);
    let mut wbuf = BytesMut::new();

    // Handshake: a well-formed HELLO first, within the handshake timeout.
    loop {
        match wire::next_frame(&rbuf, wire::MAX_FRAME) {
            Next::Frame { kind, len } => {
                if kind != wire::HELLO || !wire::handshake_ok(&rbuf[..len]) {
                    return close(&mut stream, wire::CLOSE_PROTOCOL).await;
                }
                rbuf.advance(len);
                break;
            }
            Next::Error(code) => return close(&mut stream, code).await,
            Next::Partial => {
                make_room(&mut rbuf);
                match timeout_at(deadline, stream.read_buf(&mut rbuf)).await {
                    Err(_) => return close(&mut stream, wire::CLOSE_GOING_AWAY).await,
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
        }
    }
    wire::put_handshake(
        &mut wbuf,
        wire::WELCOME,
        0,
        hb.interval.as_millis() as u32,
        hb.timeout.as_millis() as u32,
        session,
    );
    stream.write_all(&wbuf).await?;
    stream.flush().await?;
    wbuf.clear();

    let mut rng = session.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let jitter_ms = (hb.interval.as_millis() as u64 / 10).max(1);
    let mut jitter = Duration::from_millis(xorshift(&mut rng) % jitter_ms);
    let mut last_recv = Instant::now();
    // The PING in flight: when it was sent.
    let mut probe: Option<Instant> = None;
    let idle = sleep_until(last_recv + hb.interval + jitter);
    tokio::pin!(idle);
    loop {
        // Answer every whole frame already read.
        let mut end = false;
        loop {
            match wire::next_frame(&rbuf, wire::MAX_FRAME) {
                Next::Partial => break,
                Next::Error(code) => {
                    wire::put_close(&mut wbuf, code);
                    end = true;
                    break;
                }
                Next::Frame { kind, len } => {
                    match kind {
                        wire::DATA => wbuf.extend_from_slice(&rbuf[..len]),
                        wire::PING => {
                            wire::put_heartbeat(&mut wbuf, wire::PONG, wire::nonce(&rbuf[..len]))
                        }
                        wire::CLOSE => end = true,
                        wire::HELLO | wire::WELCOME => {
                            wire::put_close(&mut wbuf, wire::CLOSE_PROTOCOL);
                            end = true;
                        }
                        _ => {} // PONG (any byte already counted), ACK
                    }
                    rbuf.advance(len);
                    if end {
                        break;
                    }
                }
            }
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            stream.flush().await?;
            wbuf.clear();
        }
        if end {
            return Ok(());
        }
        make_room(&mut rbuf);
        tokio::select! {
            biased;
            read = stream.read_buf(&mut rbuf) => {
                if read? == 0 {
                    return Ok(());
                }
                last_recv = Instant::now();
                if probe.take().is_some() {
                    idle.as_mut().reset(last_recv + hb.interval + jitter);
                }
            }
            () = &mut idle => {
                let now = Instant::now();
                match probe {
                    Some(sent) if now >= sent + hb.timeout => {
                        return close(&mut stream, wire::CLOSE_GOING_AWAY).await;
                    }
                    Some(sent) => idle.as_mut().reset(sent + hb.timeout),
                    None => {
                        let due = last_recv + hb.interval + jitter;
                        if now >= due {
                            wire::put_heartbeat(&mut wbuf, wire::PING, xorshift(&mut rng));
                            probe = Some(now);
                            jitter = Duration::from_millis(xorshift(&mut rng) % jitter_ms);
                            idle.as_mut().reset(now + hb.timeout);
                        } else {
                            idle.as_mut().reset(due);
                        }
                    }
                }
            }
        }
    }
}

async fn close<S: AsyncWrite + Unpin>(stream: &mut S, code: u16) -> io::Result<()> {
    let mut buf = Vec::with_capacity(7);
    wire::put_close(&mut buf, code);
    stream.write_all(&buf).await?;
    stream.flush().await
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}
