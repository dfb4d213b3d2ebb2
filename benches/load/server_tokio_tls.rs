//! The tokio-rustls baseline: the tokio baseline (`server_tokio`) with a
//! `tokio_rustls::TlsAcceptor` in front, as a Rust user would put TLS on
//! it. Same `current_thread` runtime, one task per connection, the same
//! echo and heartbeat loop ([`server_tokio::serve`]) over the TLS stream;
//! the TLS handshake and HELLO share the 5 s handshake timeout, as in
//! tether. The rustls configuration is the one tether's TLS server gets
//! (see `tls.rs`): only the I/O around rustls differs.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tether::tls::rustls::ServerConfig;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use crate::server_tokio::{self, Heartbeat, HANDSHAKE_TIMEOUT};

/// Serves TLS on `listener` until the process ends.
pub fn run(
    listener: std::net::TcpListener,
    hb: Heartbeat,
    config: Arc<ServerConfig>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let acceptor = TlsAcceptor::from(config);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut session = 0u64;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if server_tokio::is_transient(&e) => continue,
                Err(_) => {
                    // EMFILE & co: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            session += 1;
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if stream.set_nodelay(true).is_err() {
                    return;
                }
                // A refused or stalled TLS handshake: the connection is
                // dropped (rustls has queued its alert, if any).
                let Ok(Ok(tls)) = timeout_at(deadline, acceptor.accept(stream)).await else {
                    return;
                };
                let _ = server_tokio::serve(tls, hb, session, deadline).await;
            });
        }
    })
}
