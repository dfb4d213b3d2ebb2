//! The `Send + Clone` handle other threads use to reach a running reactor.
//!
//! Commands go through a channel; a `mio::Waker` wakes the poll loop, at
//! most once per batch (an atomic flag skips the wake-up syscall while one
//! is already pending). The handle never touches a socket itself.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;
use crate::endpoint::Endpoints;
use crate::error::CloseCode;
use crate::error::ConfigError;
use crate::id::ConnId;

/// What another thread asked the reactor to do.
pub(crate) enum Command {
    Send(ConnId, Bytes),
    Close(ConnId, CloseCode, String),
    /// A dial with its own configuration, validated by the sender, or
    /// with the reactor's.
    Dial(Endpoints, Option<Arc<Config>>, Arc<DialReply>),
    /// A TLS dial: as `Dial`, with the server's name and the TLS
    /// configuration.
    #[cfg(feature = "tls")]
    DialTls(
        Endpoints,
        Option<Arc<Config>>,
        Box<(
            rustls::pki_types::ServerName<'static>,
            Arc<rustls::ClientConfig>,
        )>,
        Arc<DialReply>,
    ),
    Shutdown,
    /// Resume (true) or pause (false) reading a connection.
    Reading(ConnId, bool),
    /// The resolver thread's answer to a lookup (boxed: rare, and larger
    /// than the other commands).
    Resolved(Box<Answer>),
}

/// How long [`Handle::dial`] waits for the reactor to take the dial.
pub const DIAL_WAIT: Duration = Duration::from_secs(5);

/// The resolver thread's answer to one lookup, on its way to the
/// reactor as a [`Command::Resolved`].
pub(crate) struct Answer {
    /// The link that asked.
    pub(crate) id: ConnId,
    /// The lookup's number: an answer applies only to the lookup its link
    /// is still waiting for.
    pub(crate) seq: u64,
    /// The host looked up.
    pub(crate) host: Arc<str>,
    pub(crate) result: io::Result<Vec<SocketAddr>>,
}

/// The answer to one [`Handle::dial`]: the reactor fills it in, unless the
/// caller gave up waiting first.
pub(crate) struct DialReply {
    state: Mutex<DialState>,
    ready: Condvar,
}

#[derive(Clone, Copy)]
enum DialState {
    Waiting,
    /// The caller gave up: the reactor must not dial.
    Cancelled,
    Done(ConnId),
}

impl DialReply {
    /// The reactor's side: dials with `dial` unless the caller gave up,
    /// and hands over the id.
    pub(crate) fn answer(&self, dial: impl FnOnce() -> ConnId) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let DialState::Waiting = *state {
            *state = DialState::Done(dial());
            self.ready.notify_one();
        }
    }
}

/// State shared between the reactor and its handles.
pub(crate) struct Shared {
    waker: mio::Waker,
    /// A wake-up is pending: the reactor has not drained the channel yet.
    notified: AtomicBool,
    /// The thread currently running the reactor, to refuse a blocking
    /// `dial` from inside a callback.
    reactor_thread: Mutex<Option<ThreadId>>,
    /// Bytes of messages sent through handles that the reactor has not
    /// taken yet (each counted with its frame header).
    queued: AtomicUsize,
    /// The bound on `queued`: a send beyond it is refused at the call site.
    limit: usize,
    /// A send was refused since the reactor last reported room.
    refused: AtomicBool,
    /// The reactor shut down: it will not answer a dial.
    stopped: AtomicBool,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker, limit: usize) -> Shared {
        Shared {
            waker,
            notified: AtomicBool::new(false),
            reactor_thread: Mutex::new(None),
            queued: AtomicUsize::new(0),
            limit,
            refused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// The reactor finished its shutdown (or is being dropped).
    pub(crate) fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// The reactor took a message of `len` payload bytes off the queue.
    pub(crate) fn taken(&self, len: usize) {
        self.queued.fetch_sub(queue_cost(len), Ordering::AcqRel);
    }

    /// True once after a refused send, when the queue has fallen to half
    /// its bound or below (the reactor then tells the application).
    pub(crate) fn take_drained(&self) -> bool {
        self.refused.load(Ordering::Acquire)
            && self.queued.load(Ordering::Acquire) <= self.limit / 2
            && self.refused.swap(false, Ordering::AcqRel)
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

/// What one message costs in a handle's queue: its payload and its frame
/// header.
fn queue_cost(len: usize) -> usize {
    len.saturating_add(crate::proto::codec::HEADER_LEN)
}

/// Why a [`Handle`] call did not reach the reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The reactor has been dropped or has shut down.
    ReactorGone,
    /// A blocking call was made on the reactor's own thread (from inside a
    /// callback), where it would deadlock; use the [`Context`] instead.
    ///
    /// [`Context`]: crate::Context
    OnReactorThread,
    /// The handles' queue to the reactor holds as many bytes as it may
    /// (the reactor's `max_outbound`): the message was not queued. The
    /// reactor calls [`Handler::on_handle_drain`] once the queue has
    /// room again.
    ///
    /// [`Handler::on_handle_drain`]: crate::Handler::on_handle_drain
    Backpressure,
    /// The reactor did not take a [`Handle::dial`] within [`DIAL_WAIT`]
    /// (it is not being polled); the dial was withdrawn.
    Timeout,
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
            HandleError::Backpressure => f.write_str("the handle queue is full: backpressure"),
            HandleError::Timeout => f.write_str("the reactor did not answer in time"),
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
/// let link = reactor.dial(std::net::SocketAddr::from(([127, 0, 0, 1], 7000)));
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

    /// Queues a message on `link`, to be sent at the reactor's next turn.
    ///
    /// The handles of a reactor share one queue to it, bounded in bytes by
    /// the reactor's `max_outbound` (each message counted with its 5-byte
    /// header): a send beyond it fails here with
    /// [`HandleError::Backpressure`] (a message is always taken while the
    /// queue is empty), and [`Handler::on_handle_drain`] follows once
    /// the queue has fallen to half or less. A message the reactor then
    /// cannot queue on the link (not connected, too large, the link's own
    /// output full) is handed back to [`Handler::on_undelivered`] with
    /// [`UndeliveredCause::Refused`]; one the link drops later, with
    /// [`UndeliveredCause::Dropped`]. Nothing is dropped silently.
    ///
    /// [`Handler::on_handle_drain`]: crate::Handler::on_handle_drain
    /// [`Handler::on_undelivered`]: crate::Handler::on_undelivered
    /// [`UndeliveredCause::Refused`]: crate::UndeliveredCause::Refused
    /// [`UndeliveredCause::Dropped`]: crate::UndeliveredCause::Dropped
    pub fn send(&self, link: ConnId, message: impl Into<Bytes>) -> Result<(), HandleError> {
        // A reactor that shut down takes no more messages: nothing would
        // ever send them or hand them back.
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(HandleError::ReactorGone);
        }
        let message = message.into();
        let cost = queue_cost(message.len());
        let before = self.shared.queued.fetch_add(cost, Ordering::AcqRel);
        if before > 0 && before.saturating_add(cost) > self.shared.limit {
            self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
            self.shared.refused.store(true, Ordering::Release);
            // The reactor may have drained the queue and looked for a
            // refusal just before this one: wake it, so that it looks
            // again (and calls `on_handle_drain` if there is room).
            if !self.shared.notified.swap(true, Ordering::AcqRel) {
                let _ = self.shared.waker.wake();
            }
            return Err(HandleError::Backpressure);
        }
        self.submit(Command::Send(link, message)).inspect_err(|_| {
            self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
        })
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

    /// Dials `to` (an address, a host name and port, or a failover list:
    /// see [`Endpoints`]) with the reactor's default configuration and
    /// returns the new link's id once the reactor has taken it.
    ///
    /// Blocks until the reactor's next turn, at most [`DIAL_WAIT`]: a
    /// reactor that is not being polled (not yet, or no longer) answers
    /// [`HandleError::Timeout`], and then never makes the link. Refused at
    /// once on the thread that owns the reactor (from its construction,
    /// or the last thread that polled it), where it would wait for itself,
    /// and once the reactor has shut down.
    pub fn dial(&self, to: impl Into<Endpoints>) -> Result<ConnId, HandleError> {
        let to = to.into();
        self.dial_inner(|reply| Command::Dial(to, None, reply))
    }

    /// Dials `to` with `config`; see [`dial`](Self::dial). The
    /// configuration is validated here, on the calling thread: an invalid
    /// one is refused with [`HandleError::InvalidConfig`] and never reaches
    /// the reactor.
    pub fn dial_with(
        &self,
        to: impl Into<Endpoints>,
        config: Config,
    ) -> Result<ConnId, HandleError> {
        config.validate().map_err(HandleError::InvalidConfig)?;
        let config = Arc::new(config);
        let to = to.into();
        self.dial_inner(|reply| Command::Dial(to, Some(config), reply))
    }

    /// Dials `to` over TLS, verifying the server as `name` with `tls`
    /// (see [`Reactor::dial_tls`](crate::Reactor::dial_tls)), with
    /// `config` or the reactor's default; waits as [`dial`](Self::dial)
    /// does.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn dial_tls(
        &self,
        to: impl Into<Endpoints>,
        name: rustls::pki_types::ServerName<'static>,
        tls: Arc<rustls::ClientConfig>,
        config: Option<Config>,
    ) -> Result<ConnId, HandleError> {
        let config = match config {
            Some(config) => {
                config.validate().map_err(HandleError::InvalidConfig)?;
                Some(Arc::new(config))
            }
            None => None,
        };
        let tls = Box::new((name, tls));
        let to = to.into();
        self.dial_inner(|reply| Command::DialTls(to, config, tls, reply))
    }

    fn dial_inner(
        &self,
        command: impl FnOnce(Arc<DialReply>) -> Command,
    ) -> Result<ConnId, HandleError> {
        let on_reactor = self
            .shared
            .reactor_thread
            .lock()
            .map(|t| *t == Some(this_thread()))
            .unwrap_or(false);
        if on_reactor {
            return Err(HandleError::OnReactorThread);
        }
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(HandleError::ReactorGone);
        }
        let reply = Arc::new(DialReply {
            state: Mutex::new(DialState::Waiting),
            ready: Condvar::new(),
        });
        self.submit(command(reply.clone()))?;
        let state = reply.state.lock().map_err(|_| HandleError::ReactorGone)?;
        let (mut state, _) = reply
            .ready
            .wait_timeout_while(state, DIAL_WAIT, |s| matches!(s, DialState::Waiting))
            .map_err(|_| HandleError::ReactorGone)?;
        match *state {
            DialState::Done(id) => Ok(id),
            _ => {
                // Too late from now on: the reactor will not dial.
                *state = DialState::Cancelled;
                Err(HandleError::Timeout)
            }
        }
    }

    /// The resolver thread hands the reactor a lookup's answer.
    pub(crate) fn resolved(&self, answer: Answer) -> Result<(), HandleError> {
        self.submit(Command::Resolved(Box::new(answer)))
    }

    /// Pauses reading `link` at the reactor's next turn; see
    /// [`Context::pause_reading`](crate::Context::pause_reading).
    pub fn pause_reading(&self, link: ConnId) -> Result<(), HandleError> {
        self.submit(Command::Reading(link, false))
    }

    /// Resumes reading `link` at the reactor's next turn; see
    /// [`Context::resume_reading`](crate::Context::resume_reading).
    pub fn resume_reading(&self, link: ConnId) -> Result<(), HandleError> {
        self.submit(Command::Reading(link, true))
    }

    /// Asks the reactor to shut down: listeners close, every connection is
    /// closed with CLOSE 1001, and `run` returns once they are flushed (or
    /// after the close linger).
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.submit(Command::Shutdown)
    }
}
