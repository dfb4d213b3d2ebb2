//! Where a dialed link goes at each attempt: its slot's [`Peer`], and for
//! a link dialed by name or with a failover list, its [`Route`] (out of
//! line: one pointer in the slot). Which endpoint an attempt dials, the
//! order its addresses are tried in (IPv6 and IPv4 interleaved, the
//! address that worked last first), and what the link remembers.
//!
//! Pure bookkeeping: it never resolves, never connects and never reads a
//! clock; the reactor (`core/routing.rs`) does, and asks this module what
//! comes next.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::endpoint::{Endpoint, Endpoints};
use crate::proto::wheel::TimerKey;

/// The most addresses of one lookup an attempt tries (the first ones the
/// resolver gave): each gets a share of the connect timeout, and a
/// lookup's answer is not the link's to hold without bound.
pub(super) const MAX_ADDRESSES: usize = 16;

/// Whom a slot's socket talks to.
pub(super) enum Peer {
    /// An accepted peer, or a link dialed to one socket address: that
    /// address (no route, no lookup).
    Addr(SocketAddr),
    /// A link dialed by name or with several endpoints.
    Routed(Box<Route>),
}

impl Peer {
    /// The peer of a link dialed to `to`: its address, or a route.
    pub(super) fn of(to: &Endpoints) -> Peer {
        match to.single_addr() {
            Some(addr) => Peer::Addr(addr),
            None => Peer::Routed(Box::new(Route::new(to.clone()))),
        }
    }

    /// The peer's address: for a routed link, the address of the current
    /// (or last) socket, the unspecified address before the first one.
    pub(super) fn addr(&self) -> SocketAddr {
        match self {
            Peer::Addr(addr) => *addr,
            Peer::Routed(route) => route.addr,
        }
    }

    /// The route, for a routed link.
    pub(super) fn route_mut(&mut self) -> Option<&mut Route> {
        match self {
            Peer::Addr(_) => None,
            Peer::Routed(route) => Some(route),
        }
    }

    /// The route, for a routed link.
    pub(super) fn route(&self) -> Option<&Route> {
        match self {
            Peer::Addr(_) => None,
            Peer::Routed(route) => Some(route),
        }
    }
}

impl fmt::Display for Peer {
    /// The address; a routed link's endpoint too (`name:port (address)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(addr) => write!(f, "{addr}"),
            Peer::Routed(route) => match route.current().host() {
                Some(_) => write!(f, "{} ({})", route.current(), route.addr),
                None => write!(f, "{}", route.addr),
            },
        }
    }
}

/// A routed link's endpoints and what its attempts learned.
pub(super) struct Route {
    endpoints: Endpoints,
    /// The endpoint of the current (or last) attempt.
    endpoint: usize,
    /// The endpoint of the last connection that completed its handshake.
    connected: Option<usize>,
    /// The current attempt completed its handshake.
    attempt_connected: bool,
    /// An attempt has been made.
    started: bool,
    /// Per endpoint, the address its last connection went to: tried first
    /// next time.
    worked: Box<[Option<SocketAddr>]>,
    /// The current socket's address (or the last one's).
    pub(super) addr: SocketAddr,
    /// The current attempt's addresses not tried yet, the next one last.
    untried: Vec<SocketAddr>,
    /// The lookup in flight, if any: its number and its endpoint.
    pub(super) lookup: Option<(u64, usize)>,
    /// The current attempt waits for a lookup of its endpoint.
    pub(super) resolving: bool,
    /// The wheel entry that moves the attempt on to its next address.
    pub(super) step: Option<TimerKey>,
}

/// How an attempt begins.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// Dial these addresses in turn (an endpoint given as an address).
    Addresses,
    /// Look this endpoint's name up first.
    Lookup,
}

impl Route {
    pub(super) fn new(endpoints: Endpoints) -> Route {
        let first = &endpoints.as_slice()[0];
        let addr = first
            .addr()
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), first.port()));
        Route {
            worked: vec![None; endpoints.len()].into_boxed_slice(),
            endpoints,
            endpoint: 0,
            connected: None,
            attempt_connected: false,
            started: false,
            addr,
            untried: Vec::new(),
            lookup: None,
            resolving: false,
            step: None,
        }
    }

    /// The endpoint of the current (or last) attempt, and its index.
    pub(super) fn current(&self) -> &Endpoint {
        &self.endpoints.as_slice()[self.endpoint]
    }

    /// The index of the current (or last) attempt's endpoint.
    pub(super) fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// Begins an attempt, `attempt` being the link's backoff count (0 for
    /// the first dial, 1 for the first redial since a healthy
    /// connection): picks its endpoint and says how it starts.
    ///
    /// The first attempt, and the first one after a connection the
    /// backoff counted healthy, go to the preferred endpoint; an attempt
    /// after a failed one (no connection, or one lost before it was
    /// healthy) goes to the next endpoint, round the list.
    pub(super) fn begin(&mut self, attempt: u32) -> Start {
        let n = self.endpoints.len();
        self.endpoint = if !self.started || (self.attempt_connected && attempt <= 1) {
            0
        } else {
            (self.endpoint + 1) % n
        };
        self.started = true;
        self.attempt_connected = false;
        self.resolving = false;
        self.untried.clear();
        match self.current().addr() {
            Some(addr) => {
                self.untried.push(addr);
                Start::Addresses
            }
            None => Start::Lookup,
        }
    }

    /// The current attempt's addresses from a lookup: the first
    /// [`MAX_ADDRESSES`], IPv6 and IPv4 interleaved (starting with the
    /// family the resolver put first), duplicates dropped, the address the
    /// endpoint's last connection went to first. False if the lookup found
    /// none.
    pub(super) fn resolved(&mut self, addrs: &[SocketAddr]) -> bool {
        self.resolving = false;
        self.untried.clear();
        let mut order = interleave(&addrs[..addrs.len().min(MAX_ADDRESSES)]);
        if let Some(worked) = self.worked[self.endpoint] {
            if let Some(at) = order.iter().position(|&a| a == worked) {
                let addr = order.remove(at);
                order.insert(0, addr);
            }
        }
        order.reverse(); // popped from the back
        self.untried = order;
        !self.untried.is_empty()
    }

    /// The next address of the attempt to dial (it becomes the current
    /// one), and how many remain after it.
    pub(super) fn next_addr(&mut self) -> Option<(SocketAddr, usize)> {
        let addr = self.untried.pop()?;
        self.addr = addr;
        Some((addr, self.untried.len()))
    }

    /// The attempt's connection completed its handshake: its address is
    /// the one the endpoint starts with next time. True if the link moved
    /// to another endpoint than its previous connection's.
    pub(super) fn note_connected(&mut self) -> bool {
        self.attempt_connected = true;
        self.worked[self.endpoint] = Some(self.addr);
        let moved = self.connected.is_some_and(|before| before != self.endpoint);
        self.connected = Some(self.endpoint);
        self.untried.clear();
        moved
    }
}

/// `addrs` without duplicates, IPv6 and IPv4 alternating from the family
/// of the first (each family in its own order), as RFC 8305 suggests.
pub(super) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        if !unique.contains(&addr) {
            unique.push(addr);
        }
    }
    let Some(first) = unique.first() else {
        return unique;
    };
    let first_v6 = first.is_ipv6();
    let (mut same, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        unique.iter().partition(|a| a.is_ipv6() == first_v6);
    same.reverse();
    other.reverse();
    let mut out = Vec::with_capacity(unique.len());
    loop {
        match (same.pop(), other.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[cfg(test)]
mod tests;
