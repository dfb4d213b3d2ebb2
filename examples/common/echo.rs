//! The echo handler of `echo_server`, with flow control: it never drops an
//! echo.
//!
//! Every message goes straight back (a small one copied into the output, a
//! large one shared with the read buffer). When a client does
//! not read its echoes, its output fills to `max_outbound` and `forward`
//! refuses with backpressure; the handler then keeps the refused echo (and
//! the few more that were already read), stops reading that client, and on
//! `on_drain` — the output has room again — sends what it kept and reads
//! on. A client that never reads therefore gets its socket buffers filled,
//! nothing more is read from it, and the write-stall timeout closes it.
//!
//! With session resume a client's connection can break and come back
//! under the same id: the echoes held for it are kept while its session is
//! detached and sent, in order and ahead of new ones, when it resumes.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use log::{debug, info};
use tether::{
    ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, ResumeStatus, SendError, State,
    UndeliveredCause,
};

/// Messages up to this size are echoed by copy (as `forward` does).
const SMALL: usize = 1024;

/// Echoes every message to its sender, pausing a sender whose echoes
/// cannot be queued.
#[derive(Default)]
pub struct Echo {
    /// Echoes refused with backpressure, in order, per paused client: at
    /// most what one read brought after the first refusal.
    held: HashMap<ConnId, VecDeque<Bytes>>,
}

impl Echo {
    /// Echoes held for `id` (for tests and stats).
    #[allow(dead_code)]
    pub fn held(&self, id: ConnId) -> usize {
        self.held.get(&id).map_or(0, VecDeque::len)
    }
}

impl Handler for Echo {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        let Some(stats) = cx.conn_stats(id) else {
            return;
        };
        // `peer` is what the client announced in its HELLO; the session id
        // is the one this server assigned.
        let session = match peer.resume {
            ResumeStatus::New => "new session",
            ResumeStatus::Resumed { .. } => "resumed session",
            _ => "session",
        };
        info!(
            "{} connected ({id}, {session} {:#x}, client heartbeat {}/{} ms)",
            stats.peer_addr,
            stats.session_id,
            peer.interval.as_millis(),
            peer.timeout.as_millis(),
        );
        if let ResumeStatus::Resumed { resent } = peer.resume {
            info!("{id}: resumed, {resent} echoes sent again");
        }
        if self.held.contains_key(&id) {
            // Resumed with echoes held from before the break: they go
            // first, and reading waits until they are queued.
            cx.pause_reading(id);
            self.on_drain(cx, id);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        if let Some(held) = self.held.get_mut(&id) {
            // Paused: this was read before the pause took effect. It goes
            // after the echoes already held.
            held.push_back(message.into_bytes());
            return;
        }
        // The message is borrowed from the read buffer. A small one is
        // copied straight into the output (no allocation) and, if refused,
        // kept as `Bytes`; a large one is shared with the read buffer (no
        // copy either way).
        let refused = if message.len() <= SMALL {
            match cx.send_slice(id, &message) {
                Ok(()) => return,
                Err(e) => (e, message.into_bytes()),
            }
        } else {
            let echo = message.into_bytes();
            match cx.send(id, echo.clone()) {
                Ok(()) => return,
                Err(e) => (e, echo),
            }
        };
        match refused {
            (SendError::Backpressure { .. }, echo) => {
                // Keep it, and read no more from this client until its
                // output has room (`on_drain`).
                self.held.entry(id).or_default().push_back(echo);
                cx.pause_reading(id);
            }
            // Closed in the same read as its message: no one to echo to.
            (e, _) => debug!("{id}: not echoed: {e}"),
        }
    }

    fn on_drain(&mut self, cx: &mut Context<'_>, id: ConnId) {
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        while let Some(echo) = held.front() {
            match cx.send(id, echo.clone()) {
                Ok(()) => {
                    held.pop_front();
                }
                // Full again: the next drain goes on from here.
                Err(SendError::Backpressure { .. }) => return,
                // Detached again before it drained: keep them for the
                // next resume (`on_disconnected` decides).
                Err(SendError::NotConnected) => return,
                Err(e) => {
                    debug!("{id}: {} echoes not sent: {e}", held.len());
                    break;
                }
            }
        }
        self.held.remove(&id);
        cx.resume_reading(id);
    }

    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        messages: Vec<Bytes>,
        cause: UndeliveredCause,
    ) {
        // The client went away with echoes still queued for it: there is no
        // one to send them to. With resume this comes only when its session
        // ends (closed, or expired while detached): forget what was held.
        if cause == UndeliveredCause::SessionEnded {
            self.held.remove(&id);
        }
        debug!("{id}: {} echoes not delivered: {cause}", messages.len());
    }

    fn on_disconnected(&mut self, cx: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        let stats = cx.conn_stats(id);
        // A detached session may be resumed: its held echoes wait for it.
        let detached = stats.as_ref().is_some_and(|s| s.state == State::Detached);
        if !detached {
            self.held.remove(&id);
        }
        let who = stats.map_or_else(|| id.to_string(), |s| s.peer_addr.to_string());
        let session = if detached { ", session held" } else { "" };
        info!("{who} disconnected ({id}{session}): {reason}");
    }
}
