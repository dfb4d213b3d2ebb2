//! Socket set-up through socket2: options, non-blocking connect, listeners.
//!
//! The only module besides the reactor that makes system calls. It never
//! blocks: connects are started non-blocking and finished by the reactor.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::config::Heartbeat;

/// The kernel's own keepalive probes: tether's second line of defence.
///
/// With application heartbeats on, a live connection is never idle long
/// enough for these to matter; they catch a dead peer when heartbeats are
/// off, and keep NAT and firewall state warm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (`TCP_KEEPIDLE`). Default 60 s.
    pub idle: Duration,
    /// Time between unanswered probes (`TCP_KEEPINTVL`). Default 10 s.
    pub interval: Duration,
    /// Unanswered probes before the kernel drops the connection
    /// (`TCP_KEEPCNT`). Default 3.
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            count: 3,
        }
    }
}

/// `TCP_USER_TIMEOUT` (Linux): how long written data may stay
/// unacknowledged before the kernel fails the connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UserTimeout {
    /// `I + T` when heartbeats are on (so a write into a dead link fails as
    /// fast as the heartbeat would notice), the kernel default otherwise.
    #[default]
    Auto,
    /// The kernel default (about 15 minutes of retransmissions).
    Off,
    /// This value.
    Fixed(Duration),
}

/// Options applied to every socket of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// `TCP_NODELAY`: send small frames at once (no Nagle delay). Default on.
    pub nodelay: bool,
    /// `SO_KEEPALIVE` and its timings; `None` leaves it off. Default on,
    /// 60 s idle, 10 s interval, 3 probes (a dead peer is noticed by the
    /// kernel within 90 s even with heartbeats off).
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT` (Linux only; ignored elsewhere). Default
    /// [`UserTimeout::Auto`].
    pub user_timeout: UserTimeout,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            keepalive: Some(Keepalive::default()),
            user_timeout: UserTimeout::Auto,
        }
    }
}

impl SocketOptions {
    /// Sets `TCP_NODELAY`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tether::net::{Keepalive, SocketOptions, UserTimeout};
    ///
    /// let options = SocketOptions::default()
    ///     .keepalive(Some(Keepalive { idle: Duration::from_secs(5), ..Keepalive::default() }))
    ///     .user_timeout(UserTimeout::Fixed(Duration::from_secs(8)));
    /// assert!(options.nodelay);
    /// ```
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Sets the kernel keepalive (`None`: off).
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets `TCP_USER_TIMEOUT`.
    pub fn user_timeout(mut self, timeout: UserTimeout) -> Self {
        self.user_timeout = timeout;
        self
    }

    /// The `TCP_USER_TIMEOUT` to set, given the heartbeat settings.
    pub fn user_timeout_for(&self, heartbeat: Option<Heartbeat>) -> Option<Duration> {
        match self.user_timeout {
            UserTimeout::Auto => heartbeat.map(|hb| hb.detection_bound()),
            UserTimeout::Off => None,
            UserTimeout::Fixed(d) => Some(d),
        }
    }
}

/// Applies `options` to a connected (or connecting) socket.
pub(crate) fn configure(
    socket: SockRef<'_>,
    options: &SocketOptions,
    heartbeat: Option<Heartbeat>,
) -> io::Result<()> {
    socket.set_tcp_nodelay(options.nodelay)?;
    match options.keepalive {
        Some(ka) => {
            let params = TcpKeepalive::new()
                .with_time(ka.idle)
                .with_interval(ka.interval)
                .with_retries(ka.count);
            socket.set_tcp_keepalive(&params)?;
        }
        None => socket.set_keepalive(false)?,
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(timeout) = options.user_timeout_for(heartbeat) {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = heartbeat;
    Ok(())
}

/// Starts a non-blocking connect to `addr` and applies `options`. The
/// connect completes later: the socket turns writable, then
/// [`connect_result`] tells how it went.
pub(crate) fn connect(
    addr: SocketAddr,
    options: &SocketOptions,
    heartbeat: Option<Heartbeat>,
) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    configure(SockRef::from(&stream), options, heartbeat)?;
    Ok(stream)
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected,
/// `Ok(false)` still in progress (a spurious wake-up), `Err` failed.
pub(crate) fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Binds a non-blocking listener with `SO_REUSEADDR` (so a restarted
/// server can bind the port its predecessor's connections still linger on)
/// and a deep accept backlog (so a reconnect wave is not dropped).
///
/// The connection options are set on the listener itself: on Linux an
/// accepted socket inherits them (TCP_NODELAY, keepalive and its timings,
/// TCP_USER_TIMEOUT), which saves six system calls per accept (see
/// [`ACCEPTED_INHERIT_OPTIONS`]).
pub(crate) fn listen(
    addr: SocketAddr,
    backlog: i32,
    options: &SocketOptions,
    heartbeat: Option<Heartbeat>,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    if ACCEPTED_INHERIT_OPTIONS {
        configure(SockRef::from(&socket), options, heartbeat)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Whether accepted sockets inherit the listener's TCP options, so they
/// need no options of their own (Linux copies the listening socket's TCP
/// state into each accepted one; a test below checks every option).
pub(crate) const ACCEPTED_INHERIT_OPTIONS: bool = cfg!(target_os = "linux");

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use socket2::SockRef;

    use super::{listen, Keepalive, SocketOptions, UserTimeout, ACCEPTED_INHERIT_OPTIONS};

    #[test]
    fn accepted_sockets_carry_every_option_set_on_the_listener() {
        let options = SocketOptions::default()
            .keepalive(Some(Keepalive {
                idle: Duration::from_secs(7),
                interval: Duration::from_secs(3),
                count: 4,
            }))
            .user_timeout(UserTimeout::Fixed(Duration::from_millis(9_000)));
        let listener = listen("127.0.0.1:0".parse().unwrap(), 16, &options, None).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        if !ACCEPTED_INHERIT_OPTIONS {
            return;
        }
        let s = SockRef::from(&accepted);
        assert!(s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(9_000))
        );
    }
}
