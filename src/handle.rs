//! The `Send + Clone` handle other threads use to reach a running reactor.
//!
//! Commands go through a channel; a `mio::Waker` wakes the poll loop, at
//! most once per batch (an atomic flag skips the wake-up syscall while one
//! is already pending). The handle never touches a socket itself.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use bytes::Bytes;

use crate::config::{Config, ConfigError};
use crate::error::CloseCode;
use crate::reactor::ConnId;

/// What another thread asked the reactor to do.
pub(crate) enum Command {
    Send(ConnId, Bytes),
    Close(ConnId, CloseCode, String),
    /// A dial with its own configuration, validated by the sender, or
    /// with the reactor's.
    Dial(SocketAddr, Option<Arc<Config>>, SyncSender<ConnId>),
    Shutdown,
}

/// State shared between the reactor and its handles.
pub(crate) struct Shared {
    waker: mio::Waker,
    /// A wake-up is pending: the reactor has not drained the channel yet.
    notified: AtomicBool,
    /// The thread currently running the reactor, to refuse a blocking
    /// `dial` from inside a callback.
    reactor_thread: Mutex<Option<ThreadId>>,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Shared {
        Shared {
            waker,
            notified: AtomicBool::new(false),
            reactor_thread: Mutex::new(None),
        }
    }

    /// Called by the reactor before it drains the channel.
    pub(crate) fn clear_notified(&self) {
        self.notified.store(false, Ordering::Release);
    }

    /// Records `id` as the thread running the reactor.
    pub(crate) fn set_reactor_thread(&self, id: ThreadId) {
        if let Ok(mut t) = self.reactor_thread.lock() {
            *t = Some(id);
        }
    }
}

thread_local! {
    static THIS_THREAD: ThreadId = thread::current().id();
}

/// The calling thread's id, read from a thread-local copy: no lock and no
/// reference count touched, so the reactor can check it every turn.
pub(crate) fn this_thread() -> ThreadId {
    THIS_THREAD
        .try_with(|id| *id)
        .unwrap_or_else(|_| thread::current().id())
}

/// Why a [`Handle`] call did not reach the reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The reactor has been dropped.
    ReactorGone,
    /// A blocking call was made on the reactor's own thread (from inside a
    /// callback), where it would deadlock; use the [`Context`] instead.
    ///
    /// [`Context`]: crate::Context
    OnReactorThread,
    /// The configuration given to [`Handle::dial_with`] is invalid (see
    /// [`Config::validate`]); nothing was sent to the reactor.
    InvalidConfig(ConfigError),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::ReactorGone => f.write_str("the reactor is gone"),
            HandleError::OnReactorThread => {
                f.write_str("blocking handle call on the reactor thread; use the Context")
            }
            HandleError::InvalidConfig(e) => write!(f, "dial refused: {e}"),
        }
    }
}

impl std::error::Error for HandleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandleError::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}

/// A cheap, cloneable handle to a reactor, usable from any thread: send on
/// a link, close it, dial, or shut the reactor down.
///
/// ```no_run
/// use std::thread;
/// use tether::{CloseCode, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// let link = reactor.dial("127.0.0.1:7000".parse().unwrap());
/// let handle = reactor.handle();
/// thread::spawn(move || {
///     handle.send(link, &b"hello from another thread"[..]).ok();
///     handle.close(link, CloseCode::NORMAL, "done").ok();
///     handle.shutdown().ok();
/// });
/// reactor.run(&mut ())?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Command>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> (Handle, Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        (Handle { tx, shared }, rx)
    }

    fn submit(&self, command: Command) -> Result<(), HandleError> {
        self.tx
            .send(command)
            .map_err(|_| HandleError::ReactorGone)?;
        if !self.shared.notified.swap(true, Ordering::AcqRel) {
            self.shared
                .waker
                .wake()
                .map_err(|_| HandleError::ReactorGone)?;
        }
        Ok(())
    }

    /// Queues a message on `link` (errors such as backpressure are logged
    /// by the reactor, as there is no one to return them to).
    pub fn send(&self, link: ConnId, message: impl Into<Bytes>) -> Result<(), HandleError> {
        self.submit(Command::Send(link, message.into()))
    }

    /// Closes `link` with `code` and `reason`; a dialed link stops redialling.
    pub fn close(
        &self,
        link: ConnId,
        code: CloseCode,
        reason: impl Into<String>,
    ) -> Result<(), HandleError> {
        self.submit(Command::Close(link, code, reason.into()))
    }

    /// Dials `addr` with the reactor's default configuration and returns
    /// the new link's id once the reactor has taken it. Blocks until the
    /// reactor's next turn; refused on the reactor's own thread.
    pub fn dial(&self, addr: SocketAddr) -> Result<ConnId, HandleError> {
        self.dial_inner(addr, None)
    }

    /// Dials `addr` with `config`; see [`dial`](Self::dial). The
    /// configuration is validated here, on the calling thread: an invalid
    /// one is refused with [`HandleError::InvalidConfig`] and never reaches
    /// the reactor.
    pub fn dial_with(&self, addr: SocketAddr, config: Config) -> Result<ConnId, HandleError> {
        config.validate().map_err(HandleError::InvalidConfig)?;
        self.dial_inner(addr, Some(Arc::new(config)))
    }

    fn dial_inner(
        &self,
        addr: SocketAddr,
        config: Option<Arc<Config>>,
    ) -> Result<ConnId, HandleError> {
        let on_reactor = self
            .shared
            .reactor_thread
            .lock()
            .map(|t| *t == Some(thread::current().id()))
            .unwrap_or(false);
        if on_reactor {
            return Err(HandleError::OnReactorThread);
        }
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.submit(Command::Dial(addr, config, reply_tx))?;
        reply_rx.recv().map_err(|_| HandleError::ReactorGone)
    }

    /// Asks the reactor to shut down: listeners close, every connection is
    /// closed with CLOSE 1001, and `run` returns once they are flushed (or
    /// after the close linger).
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.submit(Command::Shutdown)
    }
}
