//! The application's side of the reactor: the [`Handler`] callbacks and
//! the [`Context`] they receive.
//!
//! Callbacks run on the reactor thread, between socket operations; they
//! must not block. Everything they ask through the context (send, close,
//! dial, listen) is queued and carried out before the reactor polls again.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::warn;

use super::core::Core;
use super::{ConnId, ConnStats, ListenerId, Message, ReactorStats, Ready};
use crate::config::Config;
use crate::endpoint::{Endpoint, Endpoints};
use crate::error::ConfigError;
use crate::error::{CloseCode, DisconnectReason};
use crate::handle::Handle;
use crate::id::{SourceId, TimerId};
use crate::proto::conn::{PeerInfo, SendError, UndeliveredCause};

/// What the application does when something happens on a connection, or
/// to one of its own timers ([`on_timer`](Self::on_timer)) and event
/// sources ([`on_source`](Self::on_source)). Every method has an empty
/// default; implement the ones you need.
///
/// ```no_run
/// use tether::{ConnId, Context, Handler, Message, Reactor};
///
/// /// Echoes every message back to its sender.
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
///         if let Err(e) = cx.forward(id, message) {
///             log::warn!("{id}: echo dropped: {e}");
///         }
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// reactor.listen("127.0.0.1:7000".parse().unwrap())?;
/// reactor.run(&mut Echo)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Handler {
    /// The handshake completed: messages can flow. For a dialed link this
    /// is called again after every successful redial; for one dialed with
    /// a failover list, [`PeerInfo::endpoint`] says which endpoint it
    /// reached and [`PeerInfo::moved`] that it moved to another one than
    /// its previous connection's.
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        let _ = (cx, id, peer);
    }

    /// A message arrived. `message` is borrowed from the reactor's read
    /// buffer: read it in place, answer it with
    /// [`Context::send_slice`], or keep it with
    /// [`Message::into_bytes`] (no copy: the `Bytes` shares the read
    /// buffer, which stays allocated while it lives).
    ///
    /// Messages are delivered even when the peer closed the connection
    /// right behind them (in the same read); a reply to such a message is
    /// refused with [`SendError::NotConnected`], and
    /// [`on_disconnected`](Self::on_disconnected) follows. Once the
    /// application closes a connection (from any callback), no further
    /// message of it is delivered: never one after its `on_disconnected`.
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let _ = (cx, id, message);
    }

    /// A connection that had been reported connected ended. A dialed link
    /// will redial unless it was closed by the application. An accepted
    /// connection is gone after this, unless it holds a resumed session
    /// (session resume, on by default): then its `ConnId` stays, held
    /// detached for the client, and either connects again
    /// ([`PeerInfo::resume`] is [`ResumeStatus::Resumed`]) or gets a second
    /// `on_disconnected` with [`DisconnectReason::SessionExpired`] when the
    /// session expires or is evicted, after which it is gone.
    ///
    /// [`ResumeStatus::Resumed`]: crate::ResumeStatus::Resumed
    fn on_disconnected(&mut self, cx: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        let _ = (cx, id, reason);
    }

    /// A dialed link will redial after `delay` (attempt `attempt` since it
    /// was last healthy). `reason` says what ended the previous attempt.
    fn on_reconnecting(
        &mut self,
        cx: &mut Context<'_>,
        id: ConnId,
        attempt: u32,
        delay: Duration,
        reason: &DisconnectReason,
    ) {
        let _ = (cx, id, attempt, delay, reason);
    }

    /// Messages tether accepted for `id` will not be sent; they are handed
    /// back, in the order they were sent, so that nothing is lost
    /// silently. With [`UndeliveredCause::Dropped`] the connection's
    /// socket ended (or the connection failed) while they were queued or
    /// partly written; it comes with the events of that ending. With
    /// [`UndeliveredCause::Refused`] a send made through a [`Handle`] was
    /// refused on the reactor thread (one message each).
    ///
    /// Messages already written whole to the socket are not handed back,
    /// although the kernel may still have held some of them when the link
    /// broke: without session resume, delivery of what was written is not
    /// confirmed. The default logs a warning with the count.
    fn on_undelivered(
        &mut self,
        cx: &mut Context<'_>,
        id: ConnId,
        messages: Vec<Bytes>,
        cause: UndeliveredCause,
    ) {
        let _ = cx;
        let bytes: usize = messages.iter().map(Bytes::len).sum();
        warn!(
            "{id}: {} messages ({bytes} bytes) not delivered: {cause}",
            messages.len()
        );
    }

    /// A connection whose output refused a send with
    /// [`SendError::Backpressure`] has room again: its queued output fell
    /// to half of `max_outbound` or below. Called once per refusal
    /// episode, so an application that stopped sending (or paused reading
    /// the peer it answers, see [`Context::pause_reading`]) knows when to
    /// go on.
    fn on_drain(&mut self, cx: &mut Context<'_>, id: ConnId) {
        let _ = (cx, id);
    }

    /// The queue that [`Handle::send`] fills has room again after a send
    /// was refused with [`HandleError::Backpressure`]: it has fallen to
    /// half its bound or below. Called once per refusal episode, on the
    /// reactor thread; tell the sending threads from here.
    ///
    /// [`HandleError::Backpressure`]: crate::HandleError::Backpressure
    fn on_handle_drain(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// A dialed link used up its `max_attempts` and is closed for good.
    fn on_gave_up(
        &mut self,
        cx: &mut Context<'_>,
        id: ConnId,
        attempts: u32,
        reason: &DisconnectReason,
    ) {
        let _ = (cx, id, attempts, reason);
    }

    /// Application timer `id`, set with `token` by [`Context::set_timer`]
    /// or [`Context::set_timer_at`], is due: the turn's clock
    /// ([`Context::now`]) has reached its deadline. It fires once; set it
    /// again from here for a periodic one (drift-free: see
    /// [`Context::set_timer_at`]). Timers due in one turn come in
    /// deadline order, those of the same millisecond in the order they
    /// were set; one set from here for a deadline already passed comes at
    /// the next turn.
    fn on_timer(&mut self, cx: &mut Context<'_>, id: TimerId, token: u64) {
        let _ = (cx, id, token);
    }

    /// Application source `id` (see [`Context::register`]) is ready as
    /// `ready` says. tether never reads or writes it: that is this
    /// callback's job.
    ///
    /// Readiness is edge-triggered: it is not reported again until the
    /// source has returned `WouldBlock`. So read (or write) until
    /// `WouldBlock` here. To keep a busy source from holding up the
    /// connections, read a portion and, if the source is not drained yet,
    /// set a timer for now ([`Context::set_timer`] with
    /// `Duration::ZERO`): it fires at the next turn, after the loop has
    /// polled again, and its callback reads on.
    fn on_source(&mut self, cx: &mut Context<'_>, id: SourceId, ready: Ready) {
        let _ = (cx, id, ready);
    }
}

/// A handler that ignores everything (for reactors driven only through
/// their [`Handle`]).
impl Handler for () {}

/// What a callback can do: send, close, dial, listen, read stats, set
/// timers and register event sources.
pub struct Context<'a> {
    pub(super) core: &'a mut Core,
}

impl Context<'_> {
    /// The time of the current turn of the loop.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// Queues `message` on connection `id` (`Bytes`, `Vec<u8>`,
    /// `&'static [u8]`, `String`, …). A large one is queued without
    /// copying; a small one (up to 1 KiB) is copied into the connection's
    /// packed output, as by [`send_slice`](Self::send_slice). It is written
    /// before the reactor polls again.
    #[inline]
    pub fn send(&mut self, id: ConnId, message: impl Into<Bytes>) -> Result<(), SendError> {
        let message = message.into();
        // A small answer to the connection being read goes into its lent
        // run, as `send_slice` does: the queue would copy it all the same,
        // and going there would return the run and lend it again.
        if let Some(run) = self.core.lent_run(id) {
            if run.push_payload(id, &message) {
                return Ok(());
            }
        }
        self.core.send(id, message)
    }

    /// Queues a copy of `message` on connection `id`. A small message
    /// (up to 1 KiB) is copied straight into the connection's output, so
    /// echoing or answering a [`Message`] this way allocates nothing.
    #[inline]
    pub fn send_slice(&mut self, id: ConnId, message: &[u8]) -> Result<(), SendError> {
        // An answer to the connection being read goes into its lent run.
        if let Some(run) = self.core.lent_run(id) {
            if run.push_payload(id, message) {
                return Ok(());
            }
        }
        self.core.send_slice(id, message)
    }

    /// Queues a received message on connection `id` — back to its sender
    /// or on to another connection — the cheapest way: a message of up to
    /// 1 KiB is copied into the output as by [`send_slice`](Self::send_slice)
    /// (no allocation, no reference count), a larger one is shared with
    /// the read buffer as by [`send`](Self::send) (no copy).
    #[inline]
    pub fn forward(&mut self, id: ConnId, message: Message<'_>) -> Result<(), SendError> {
        if message.len() <= crate::proto::conn::COPY_MAX {
            match message.frame() {
                // As it came in: header and payload in one copy.
                Some(frame) => {
                    // An answer to the connection being read goes into
                    // its lent run.
                    if let Some(run) = self.core.lent_run(id) {
                        if run.push_frame(id, frame) {
                            return Ok(());
                        }
                    }
                    self.core.send_framed(id, frame)
                }
                None => self.core.send_slice(id, &message),
            }
        } else {
            self.forward_shared(id, message)
        }
    }

    /// [`forward`](Self::forward) of a large message: shared, not copied.
    /// (Out of line, so the small messages' path stays short.)
    #[inline(never)]
    fn forward_shared(&mut self, id: ConnId, message: Message<'_>) -> Result<(), SendError> {
        self.core.send(id, message.into_bytes())
    }

    /// Closes connection `id`: queued messages are flushed, then CLOSE
    /// `code` with `reason` is sent. A dialed link stops redialling.
    /// Returns false for an unknown id.
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.core.close(id, code, reason)
    }

    /// Stops reading connection `id`, so that TCP's own flow control
    /// pushes back on the peer once the socket's receive buffer is full:
    /// for a peer whose messages cannot be answered now (the answers met
    /// [`SendError::Backpressure`]). Returns false for an unknown id.
    ///
    /// It takes effect at the next read: messages already read (at most
    /// the rest of the current read, 64 KiB, or one message of up to
    /// `max_frame` it completes) are still delivered, so keep the answers
    /// a paused peer's last messages get refused, and send them on
    /// [`Handler::on_drain`] before [`resume_reading`](Self::resume_reading).
    ///
    /// Writing, timers and liveness go on: output still flows and frames
    /// already read are answered (a PING with a PONG). Nothing more is
    /// read, though, and that includes the peer's PONGs and PINGs: a pause
    /// longer than the heartbeat timeout `T`, after the idle interval `I`,
    /// can get either side to declare the other dead (a heartbeat timeout),
    /// and a peer that also stops reading is closed by the write-stall
    /// timeout. Pause for a short while — until the output drains — not
    /// as a way to hold an idle connection. The pause ends with
    /// `resume_reading` or with the socket: a redialled link reads again.
    pub fn pause_reading(&mut self, id: ConnId) -> bool {
        self.core.set_reading(id, false)
    }

    /// Reads connection `id` again after [`pause_reading`](Self::pause_reading):
    /// at the reactor's next turn, what arrived meanwhile is read until
    /// the socket is empty. Returns false for an unknown id.
    pub fn resume_reading(&mut self, id: ConnId) -> bool {
        self.core.set_reading(id, true)
    }

    /// Dials `to` with the reactor's default configuration: see
    /// [`Reactor::dial`](super::Reactor::dial).
    pub fn dial(&mut self, to: impl Into<Endpoints>) -> ConnId {
        let config = self.core.config.clone();
        self.core.dial(to.into(), config)
    }

    /// Dials `to` with its own configuration, once
    /// [`Config::validate`] accepts it (a refused one dials nothing).
    pub fn dial_with(
        &mut self,
        to: impl Into<Endpoints>,
        config: Config,
    ) -> Result<ConnId, ConfigError> {
        config.validate()?;
        Ok(self.core.dial(to.into(), Arc::new(config)))
    }

    /// The endpoint connection `id` is on, or trying: for a dialed link,
    /// the entry of its list (see [`ConnStats::endpoint`] for its index;
    /// a name's current address is [`ConnStats::peer_addr`]); for an
    /// accepted connection, its peer's address. `None` for an unknown id.
    pub fn endpoint(&self, id: ConnId) -> Option<Endpoint> {
        self.core.endpoint(id)
    }

    /// Listens on `addr` with the reactor's default configuration.
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        let config = self.core.config.clone();
        self.core.listen(addr, config)
    }

    /// Stops listening (established connections stay).
    pub fn unlisten(&mut self, id: ListenerId) -> bool {
        self.core.unlisten(id)
    }

    /// The local address of a listener (useful after binding port 0).
    pub fn local_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.core.local_addr(id)
    }

    /// A snapshot of connection `id`.
    pub fn conn_stats(&self, id: ConnId) -> Option<ConnStats> {
        self.core.conn_stats(id)
    }

    /// Reactor-wide counters.
    pub fn stats(&self) -> ReactorStats {
        self.core.stats()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.core.handle.clone()
    }

    /// Starts a graceful shutdown (see [`Handle::shutdown`]).
    pub fn shutdown(&mut self) {
        self.core.begin_shutdown();
    }
}
