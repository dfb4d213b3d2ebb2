//! Host name lookups off the reactor thread: the [`Resolver`] trait (the
//! system's resolver by default, or one of the application's, as in
//! tests), and the one resolver thread a reactor starts at its first
//! name, which answers through the reactor's command channel and waker.
//!
//! Never blocks the reactor: the reactor only queues a request; the
//! lookup, however slow, runs on the resolver thread.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;

use log::{debug, warn};

use crate::handle::{Answer, Handle};
use crate::id::ConnId;

/// Looks host names up for the links dialed by name.
///
/// The reactor calls it on its resolver thread, one lookup at a time, at
/// every attempt of such a link; it may block (the reactor's thread never
/// waits for it). An error, or an answer with no address, ends that
/// attempt with [`DisconnectReason::Resolve`] and the link backs off as
/// after a refused connect. A lookup that takes longer than the connect
/// timeout ends the attempt with [`DisconnectReason::ConnectTimeout`]
/// (the next attempt uses its answer if it comes in time, or asks again).
///
/// Any `Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync` is a
/// resolver, which is how tests point names at loopback addresses:
///
/// ```no_run
/// use std::io;
/// use std::net::SocketAddr;
/// use tether::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// reactor.set_resolver(|host: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
///     match host {
///         "feed.test" => Ok(vec![SocketAddr::from(([127, 0, 0, 2], port))]),
///         _ => Err(io::Error::new(io::ErrorKind::NotFound, "unknown host")),
///     }
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// [`DisconnectReason::Resolve`]: crate::DisconnectReason::Resolve
/// [`DisconnectReason::ConnectTimeout`]: crate::DisconnectReason::ConnectTimeout
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host` for `port`, in the order the system
    /// prefers them (the link interleaves IPv6 and IPv4 from there).
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

impl<F> Resolver for F
where
    F: Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
{
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self(host, port)
    }
}

/// The system's resolver (`getaddrinfo`, through std's `ToSocketAddrs`):
/// `/etc/hosts`, DNS, and whatever else the system is set up to ask. The
/// reactor's resolver unless [`Reactor::set_resolver`] gives another.
///
/// [`Reactor::set_resolver`]: crate::Reactor::set_resolver
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// One lookup for the resolver thread.
struct Request {
    id: ConnId,
    seq: u64,
    host: Arc<str>,
    port: u16,
}

/// The reactor's side of name resolution: the resolver in use and, from
/// the first lookup on, the thread that runs it.
pub(crate) struct Lookups {
    resolver: Arc<dyn Resolver>,
    /// The resolver thread's queue; `None` until the first lookup (and
    /// after the resolver changed). Dropping it ends the thread once its
    /// lookup in progress returns.
    tx: Option<Sender<Request>>,
    /// The number of the last lookup asked for.
    seq: u64,
    /// The number of the first lookup asked of the current resolver.
    first: u64,
}

impl fmt::Debug for Lookups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lookups")
            .field("started", &self.tx.is_some())
            .field("seq", &self.seq)
            .finish()
    }
}

impl Default for Lookups {
    fn default() -> Lookups {
        Lookups {
            resolver: Arc::new(SystemResolver),
            tx: None,
            seq: 0,
            first: 1,
        }
    }
}

impl Lookups {
    /// Uses `resolver` for the lookups asked from now on (a thread running
    /// the previous one ends after its lookup in progress).
    pub(crate) fn set_resolver(&mut self, resolver: Arc<dyn Resolver>) {
        self.resolver = resolver;
        self.tx = None;
        self.first = self.seq + 1;
    }

    /// Whether lookup `seq` was asked of the current resolver (an attempt
    /// waits for such a lookup in flight rather than ask again; one asked
    /// of a resolver since replaced is not waited for).
    pub(crate) fn is_current(&self, seq: u64) -> bool {
        seq >= self.first
    }

    /// A resolver thread has been started (and not replaced since).
    #[cfg(test)]
    pub(crate) fn started(&self) -> bool {
        self.tx.is_some()
    }

    /// How many lookups have been asked for.
    #[cfg(test)]
    pub(crate) fn asked(&self) -> u64 {
        self.seq
    }

    /// Asks for `host`:`port` on behalf of link `id`, starting the
    /// resolver thread if none runs; returns the lookup's number. The
    /// answer comes through `handle` (the reactor's command channel and
    /// waker). Fails only if no thread can be started.
    pub(crate) fn ask(
        &mut self,
        handle: &Handle,
        id: ConnId,
        host: Arc<str>,
        port: u16,
    ) -> io::Result<u64> {
        self.seq += 1;
        let mut request = Request {
            id,
            seq: self.seq,
            host,
            port,
        };
        // A thread that is gone (its resolver panicked past the guard,
        // or it could not answer) is replaced once.
        for _ in 0..2 {
            let tx = match &self.tx {
                Some(tx) => tx,
                None => self
                    .tx
                    .insert(spawn(self.resolver.clone(), handle.clone())?),
            };
            match tx.send(request) {
                Ok(()) => return Ok(self.seq),
                Err(mpsc::SendError(back)) => {
                    request = back;
                    self.tx = None;
                }
            }
        }
        Err(io::Error::other("the resolver thread is gone"))
    }
}

/// Starts a resolver thread running `resolver`, answering through
/// `handle`.
fn spawn(resolver: Arc<dyn Resolver>, handle: Handle) -> io::Result<Sender<Request>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("tether-resolver".into())
        .spawn(move || serve(&*resolver, &handle, &rx))?;
    debug!("resolver thread started");
    Ok(tx)
}

/// The resolver thread: one lookup after another until the reactor drops
/// its end of the queue (or can no longer take answers).
fn serve(resolver: &dyn Resolver, handle: &Handle, requests: &Receiver<Request>) {
    while let Ok(request) = requests.recv() {
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            resolver.resolve(&request.host, request.port)
        }))
        .unwrap_or_else(|_| {
            warn!("the resolver panicked looking up {}", request.host);
            Err(io::Error::other("the resolver panicked"))
        });
        let answer = Answer {
            id: request.id,
            seq: request.seq,
            host: request.host,
            result,
        };
        if handle.resolved(answer).is_err() {
            break; // the reactor is gone
        }
    }
    debug!("resolver thread ended");
}
