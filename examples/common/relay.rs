//! The handler of `feed_relay`: a UDP feed relayed to every connected
//! tether client, on the reactor's one thread.
//!
//! The UDP socket is one of the application's own event sources: the
//! reactor polls it with its connections and calls
//! [`Handler::on_source`] when datagrams wait. Readiness is
//! edge-triggered, so the handler reads until `WouldBlock`; each datagram
//! becomes one `Bytes` (one copy out of the receive buffer) that every
//! client's output shares. A client whose output is full (it does not
//! read) misses datagrams rather than holding up the others: that is what
//! a live feed wants, and the count is in the stats.
//!
//! A periodic stats line comes from an application timer, re-armed
//! drift-free: the next deadline is the previous one plus the period, not
//! the clock plus the period.

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, info, warn};
use tether::mio::net::UdpSocket;
use tether::{
    ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Ready, Role, SendError,
    SourceId, TimerId, UndeliveredCause,
};

/// The token of the stats timer.
pub const STATS: u64 = 1;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// What the relay did, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams read from the feed.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Copies queued to clients.
    pub relayed: u64,
    /// Copies a client's full output refused (the client missed them).
    pub missed: u64,
    /// Stats lines logged (timer callbacks).
    pub reports: u64,
}

/// Relays every datagram of `feed` to every connected client.
pub struct Relay {
    /// The feed socket (registered with the reactor by the caller).
    pub feed: UdpSocket,
    /// Its id, once registered.
    pub feed_id: Option<SourceId>,
    /// Connected clients, in the order they connected.
    clients: Vec<ConnId>,
    buf: Vec<u8>,
    period: Duration,
    /// The deadline of the pending stats timer.
    next_report: Instant,
    stats: RelayStats,
}

impl Relay {
    /// A relay for `feed` logging stats every `period`; start the stats
    /// timer with [`start`](Self::start).
    pub fn new(feed: UdpSocket, period: Duration) -> Relay {
        Relay {
            feed,
            feed_id: None,
            clients: Vec::new(),
            buf: vec![0; MAX_DATAGRAM],
            period,
            next_report: Instant::now(),
            stats: RelayStats::default(),
        }
    }

    /// Arms the first stats timer, `period` after `now`.
    pub fn start(&mut self, now: Instant) -> Instant {
        self.next_report = now + self.period;
        self.next_report
    }

    /// The deadline of the pending stats timer.
    #[allow(dead_code)]
    pub fn next_report(&self) -> Instant {
        self.next_report
    }

    /// Clients connected now.
    #[allow(dead_code)]
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The counters.
    #[allow(dead_code)]
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Queues one datagram on every client.
    fn relay(&mut self, cx: &mut Context<'_>, datagram: Bytes) {
        for &id in &self.clients {
            match cx.send(id, datagram.clone()) {
                Ok(()) => self.stats.relayed += 1,
                Err(SendError::Backpressure { .. }) => self.stats.missed += 1,
                Err(e) => debug!("{id}: datagram not relayed: {e}"),
            }
        }
    }
}

impl Handler for Relay {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        // Accepted clients only (the reactor may dial links of its own).
        if cx.conn_stats(id).is_some_and(|s| s.role == Role::Server) {
            info!("{id}: client connected");
            self.clients.push(id);
        }
    }

    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, why: &DisconnectReason) {
        if let Some(at) = self.clients.iter().position(|&c| c == id) {
            self.clients.remove(at);
            info!("{id}: client gone: {why}");
        }
    }

    fn on_message(&mut self, _: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        debug!("{id}: {} bytes from a client, ignored", message.len());
    }

    fn on_source(&mut self, cx: &mut Context<'_>, id: SourceId, ready: Ready) {
        if Some(id) != self.feed_id || !ready.is_readable() {
            return;
        }
        // Edge-triggered: drain the socket, or no new event comes.
        loop {
            match self.feed.recv(&mut self.buf) {
                Ok(n) => {
                    self.stats.datagrams += 1;
                    self.stats.bytes += n as u64;
                    let datagram = Bytes::copy_from_slice(&self.buf[..n]);
                    self.relay(cx, datagram);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. an ICMP error from an earlier send: the socket
                    // stays usable; read on next time.
                    warn!("feed: {e}");
                    return;
                }
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, _: TimerId, token: u64) {
        if token != STATS {
            return;
        }
        self.stats.reports += 1;
        let s = self.stats;
        info!(
            "{} clients; {} datagrams ({} bytes) in, {} copies out, {} missed; lag {:?}",
            self.clients.len(),
            s.datagrams,
            s.bytes,
            s.relayed,
            s.missed,
            cx.now().saturating_duration_since(self.next_report),
        );
        // Drift-free: from the deadline, not from the clock.
        self.next_report += self.period;
        cx.set_timer_at(self.next_report, STATS);
    }

    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        messages: Vec<Bytes>,
        cause: UndeliveredCause,
    ) {
        // A live feed does not resend: a client that left misses them.
        debug!("{id}: {} datagrams not delivered: {cause}", messages.len());
    }
}
