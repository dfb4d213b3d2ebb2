//! Where a dialed link goes: an [`Endpoint`] (a socket address, or a host
//! name and port looked up again at every redial) and [`Endpoints`], the
//! failover list a link is dialed with.
//!
//! Plain values: parsing and validation only. This module never resolves a
//! name and never touches a socket.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;
use std::sync::Arc;

/// The longest host name a lookup takes (RFC 1035: 253 characters, a
/// trailing dot aside).
const MAX_HOST_LEN: usize = 253;
/// The longest label between dots (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// One place to dial: a socket address, used as it is, or a host name and
/// port, resolved afresh at every attempt (so a server whose address
/// changed is found at the next redial).
///
/// Made from a [`SocketAddr`] (or an `(IpAddr, u16)` pair) without any
/// cost, or parsed from text: `"feed.example.com:7000"`,
/// `"localhost:7000"`, `"127.0.0.1:7000"`, `"[::1]:7000"`. An address
/// literal never goes near the resolver.
///
/// ```
/// use tether::Endpoint;
///
/// let by_name: Endpoint = "feed.example.com:7000".parse()?;
/// assert_eq!(by_name.host(), Some("feed.example.com"));
/// assert_eq!(by_name.port(), 7000);
///
/// let literal: Endpoint = "[::1]:7000".parse()?;
/// assert_eq!(literal.addr(), Some("[::1]:7000".parse().unwrap()));
///
/// assert!("feed.example.com".parse::<Endpoint>().is_err()); // no port
/// # Ok::<(), tether::EndpointError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Addr(SocketAddr),
    /// A validated host name (never an address literal) and a port.
    Name(Arc<str>, u16),
}

impl Endpoint {
    /// The endpoint `host`:`port`. An address literal (`"10.0.0.7"`,
    /// `"::1"`, with or without brackets) gives that address; anything
    /// else must be a host name: letters, digits, `-`, `_` and dots, at
    /// most 253 characters in labels of at most 63. Port 0 is refused.
    pub fn new(host: &str, port: u16) -> Result<Endpoint, EndpointError> {
        if port == 0 {
            return Err(EndpointError::BadPort);
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Endpoint(Repr::Addr(SocketAddr::new(ip, port))));
        }
        if bare.len() != host.len() {
            // Brackets hold an IPv6 literal and nothing else.
            return Err(EndpointError::BadHost);
        }
        check_host(host)?;
        Ok(Endpoint(Repr::Name(Arc::from(host), port)))
    }

    /// The address, for an endpoint given as one.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self.0 {
            Repr::Addr(addr) => Some(addr),
            Repr::Name(..) => None,
        }
    }

    /// The host name, for an endpoint given as one.
    pub fn host(&self) -> Option<&str> {
        match &self.0 {
            Repr::Addr(_) => None,
            Repr::Name(host, _) => Some(host),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self.0 {
            Repr::Addr(addr) => addr.port(),
            Repr::Name(_, port) => port,
        }
    }

    /// The host name as shared inside the endpoint (for the resolver).
    pub(crate) fn shared_host(&self) -> Option<&Arc<str>> {
        match &self.0 {
            Repr::Addr(_) => None,
            Repr::Name(host, _) => Some(host),
        }
    }
}

/// Checks a host name: 1 to 253 characters in labels of 1 to 63 letters,
/// digits, `-` and `_` (a trailing dot allowed).
fn check_host(host: &str) -> Result<(), EndpointError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err(EndpointError::BadHost);
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(EndpointError::BadHost)
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint(Repr::Addr(addr))
    }
}

impl From<SocketAddrV4> for Endpoint {
    fn from(addr: SocketAddrV4) -> Endpoint {
        SocketAddr::V4(addr).into()
    }
}

impl From<SocketAddrV6> for Endpoint {
    fn from(addr: SocketAddrV6) -> Endpoint {
        SocketAddr::V6(addr).into()
    }
}

impl From<(IpAddr, u16)> for Endpoint {
    fn from(pair: (IpAddr, u16)) -> Endpoint {
        SocketAddr::from(pair).into()
    }
}

impl From<(Ipv4Addr, u16)> for Endpoint {
    fn from(pair: (Ipv4Addr, u16)) -> Endpoint {
        SocketAddr::from(pair).into()
    }
}

impl From<(Ipv6Addr, u16)> for Endpoint {
    fn from(pair: (Ipv6Addr, u16)) -> Endpoint {
        SocketAddr::from(pair).into()
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    /// `host:port`, `ipv4:port` or `[ipv6]:port`.
    fn from_str(s: &str) -> Result<Endpoint, EndpointError> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = s.rsplit_once(':').ok_or(EndpointError::MissingPort)?;
        if host.contains(':') && !host.starts_with('[') {
            // "::1" or "::1:7000": an IPv6 literal's port needs brackets.
            return Err(EndpointError::MissingPort);
        }
        let port = port.parse::<u16>().map_err(|_| EndpointError::BadPort)?;
        Endpoint::new(host, port)
    }
}

impl TryFrom<&str> for Endpoint {
    type Error = EndpointError;

    fn try_from(s: &str) -> Result<Endpoint, EndpointError> {
        s.parse()
    }
}

impl TryFrom<String> for Endpoint {
    type Error = EndpointError;

    fn try_from(s: String) -> Result<Endpoint, EndpointError> {
        s.parse()
    }
}

impl fmt::Display for Endpoint {
    /// As it parses back: `host:port`, `1.2.3.4:port`, `[::1]:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Addr(addr) => write!(f, "{addr}"),
            Repr::Name(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

/// The endpoints one link is dialed with, in order of preference: a
/// failover list (never empty). A single endpoint is one too.
///
/// Every dial takes `impl Into<Endpoints>`: a [`SocketAddr`], an
/// `(IpAddr, u16)` pair, an [`Endpoint`], or a list made with
/// [`Endpoints::new`] or parsed from comma-separated endpoints.
///
/// A link starts at the first endpoint. After a failed attempt (nothing
/// connected, or a connection lost before the backoff counted it healthy)
/// its redial goes to the next one, round the list; after a healthy
/// connection is lost, the redial starts at the first again, the
/// preferred one. A link stays on an endpoint that works until that
/// connection is lost. [`PeerInfo::endpoint`] and [`ConnStats::endpoint`]
/// say which one a link is on.
///
/// [`PeerInfo::endpoint`]: crate::PeerInfo::endpoint
/// [`ConnStats::endpoint`]: crate::ConnStats::endpoint
///
/// ```no_run
/// use tether::{Endpoints, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// let servers: Endpoints = "primary.example.com:7000, backup.example.com:7000".parse()?;
/// let link = reactor.dial(servers);
/// # let _ = link;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoints(List);

#[derive(Clone, PartialEq, Eq, Hash)]
enum List {
    One(Endpoint),
    Many(Arc<[Endpoint]>),
}

impl Endpoints {
    /// The list `endpoints`, first preferred; an empty one is refused
    /// ([`EndpointError::Empty`]).
    pub fn new<E: Into<Endpoint>>(
        endpoints: impl IntoIterator<Item = E>,
    ) -> Result<Endpoints, EndpointError> {
        let mut list: Vec<Endpoint> = endpoints.into_iter().map(Into::into).collect();
        match list.len() {
            0 => Err(EndpointError::Empty),
            1 => Ok(Endpoints(List::One(list.remove(0)))),
            _ => Ok(Endpoints(List::Many(list.into()))),
        }
    }

    /// The endpoints, first preferred.
    pub fn as_slice(&self) -> &[Endpoint] {
        match &self.0 {
            List::One(one) => std::slice::from_ref(one),
            List::Many(many) => many,
        }
    }

    /// How many endpoints the list holds (at least one).
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Always false: a list holds at least one endpoint.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The one address of a list that is a single socket address: such a
    /// link needs no lookup and no route.
    pub(crate) fn single_addr(&self) -> Option<SocketAddr> {
        match &self.0 {
            List::One(one) => one.addr(),
            List::Many(_) => None,
        }
    }
}

impl From<Endpoint> for Endpoints {
    fn from(endpoint: Endpoint) -> Endpoints {
        Endpoints(List::One(endpoint))
    }
}

impl From<SocketAddr> for Endpoints {
    fn from(addr: SocketAddr) -> Endpoints {
        Endpoint::from(addr).into()
    }
}

impl From<SocketAddrV4> for Endpoints {
    fn from(addr: SocketAddrV4) -> Endpoints {
        Endpoint::from(addr).into()
    }
}

impl From<SocketAddrV6> for Endpoints {
    fn from(addr: SocketAddrV6) -> Endpoints {
        Endpoint::from(addr).into()
    }
}

impl From<(IpAddr, u16)> for Endpoints {
    fn from(pair: (IpAddr, u16)) -> Endpoints {
        Endpoint::from(pair).into()
    }
}

impl From<(Ipv4Addr, u16)> for Endpoints {
    fn from(pair: (Ipv4Addr, u16)) -> Endpoints {
        Endpoint::from(pair).into()
    }
}

impl From<(Ipv6Addr, u16)> for Endpoints {
    fn from(pair: (Ipv6Addr, u16)) -> Endpoints {
        Endpoint::from(pair).into()
    }
}

impl FromStr for Endpoints {
    type Err = EndpointError;

    /// Endpoints separated by commas (spaces around them ignored):
    /// `"a.example.com:7000,b.example.com:7000"`.
    fn from_str(s: &str) -> Result<Endpoints, EndpointError> {
        let list = s
            .split(',')
            .map(|part| part.trim().parse::<Endpoint>())
            .collect::<Result<Vec<_>, _>>()?;
        Endpoints::new(list)
    }
}

impl TryFrom<&str> for Endpoints {
    type Error = EndpointError;

    fn try_from(s: &str) -> Result<Endpoints, EndpointError> {
        s.parse()
    }
}

impl fmt::Display for Endpoints {
    /// As it parses back: comma-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, endpoint) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{endpoint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Why text is not an endpoint (or a list of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// No `:port` at the end (an IPv6 literal's port needs brackets:
    /// `[::1]:7000`).
    MissingPort,
    /// The port is not a number from 1 to 65535.
    BadPort,
    /// The host is neither an address literal nor a host name (letters,
    /// digits, `-`, `_` and dots; at most 253 characters in labels of at
    /// most 63).
    BadHost,
    /// A list with no endpoint in it.
    Empty,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointError::MissingPort => "endpoint without a port (host:port, [ipv6]:port)",
            EndpointError::BadPort => "endpoint port is not a number from 1 to 65535",
            EndpointError::BadHost => "endpoint host is neither an address nor a host name",
            EndpointError::Empty => "no endpoint given",
        })
    }
}

impl std::error::Error for EndpointError {}

#[cfg(test)]
mod tests;
