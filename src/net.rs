//! Socket set-up through socket2: options, non-blocking connect, listeners.
//!
//! The only module besides the reactor that makes system calls. It never
//! blocks: connects are started non-blocking and finished by the reactor.

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::config::{Heartbeat, SocketOptions};

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

    use super::{listen, ACCEPTED_INHERIT_OPTIONS};
    use crate::config::{Config, Heartbeat, Keepalive, SocketOptions, UserTimeout};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn keepalive(idle: Duration, interval: Duration, count: u32) -> SocketOptions {
        SocketOptions::default().keepalive(Some(Keepalive {
            idle,
            interval,
            count,
        }))
    }

    fn with_heartbeat(interval: Duration, timeout: Duration) -> Option<Heartbeat> {
        Some(Heartbeat { interval, timeout })
    }

    /// Socket options just past each range the kernel takes (Linux:
    /// seconds of idle and interval from 1 to 32767, 1 to 127 probes, a
    /// user timeout of at most `i32::MAX` ms), with the heartbeat they go
    /// with.
    fn past_the_kernels_ranges() -> Vec<(&'static str, SocketOptions, Option<Heartbeat>)> {
        let ms = Duration::from_millis;
        let max_ms = u64::from(i32::MAX.unsigned_abs());
        let hb = with_heartbeat(secs(10), secs(10));
        vec![
            ("idle 0", keepalive(secs(0), secs(10), 3), hb),
            ("idle 999 ms", keepalive(ms(999), secs(10), 3), hb),
            ("idle 32768 s", keepalive(secs(32_768), secs(10), 3), hb),
            ("interval 999 ms", keepalive(secs(60), ms(999), 3), hb),
            ("interval 32768 s", keepalive(secs(60), secs(32_768), 3), hb),
            ("count 0", keepalive(secs(60), secs(10), 0), hb),
            ("count 128", keepalive(secs(60), secs(10), 128), hb),
            (
                "count u32::MAX",
                keepalive(secs(60), secs(10), u32::MAX),
                hb,
            ),
            (
                "user timeout i32::MAX ms + 1 ms",
                SocketOptions::default().user_timeout(UserTimeout::Fixed(ms(max_ms + 1))),
                hb,
            ),
            (
                "user timeout Duration::MAX",
                SocketOptions::default().user_timeout(UserTimeout::Fixed(Duration::MAX)),
                hb,
            ),
            (
                "user timeout Auto, I + T = i32::MAX ms + 1 ms",
                SocketOptions::default(),
                with_heartbeat(ms(max_ms - 9_999), secs(10)),
            ),
            (
                "user timeout Auto, I = T = u32::MAX ms",
                SocketOptions::default(),
                with_heartbeat(ms(u32::MAX.into()), ms(u32::MAX.into())),
            ),
        ]
    }

    /// Socket options at the edges of the kernel's ranges.
    fn at_the_kernels_bounds() -> Vec<(&'static str, SocketOptions, Option<Heartbeat>)> {
        let ms = Duration::from_millis;
        let max_ms = u64::from(i32::MAX.unsigned_abs());
        let hb = with_heartbeat(secs(10), secs(10));
        vec![
            (
                "idle 1 s, interval 1 s, 127 probes",
                keepalive(secs(1), secs(1), 127),
                hb,
            ),
            (
                "idle and interval 32767 s, 1 probe",
                keepalive(secs(32_767), secs(32_767), 1),
                hb,
            ),
            (
                "sub-second parts (truncated)",
                keepalive(ms(1_999), ms(32_767_999), 3),
                hb,
            ),
            (
                "user timeout i32::MAX ms",
                SocketOptions::default().user_timeout(UserTimeout::Fixed(ms(max_ms))),
                hb,
            ),
            (
                "user timeout 1 ms",
                SocketOptions::default().user_timeout(UserTimeout::Fixed(ms(1))),
                hb,
            ),
            (
                "user timeout Auto, I + T = i32::MAX ms",
                SocketOptions::default(),
                with_heartbeat(ms(max_ms - 10_000), secs(10)),
            ),
            (
                "user timeout Auto, heartbeats off",
                SocketOptions::default(),
                None,
            ),
        ]
    }

    fn config(socket: SocketOptions, heartbeat: Option<Heartbeat>) -> Config {
        Config {
            socket,
            heartbeat,
            ..Config::default()
        }
    }

    #[test]
    fn validation_rejects_socket_options_the_kernel_refuses() {
        for (what, socket, heartbeat) in past_the_kernels_ranges() {
            let config = config(socket, heartbeat);
            assert!(config.validate().is_err(), "{what}: accepted");
        }
        let zero = config(
            SocketOptions::default().user_timeout(UserTimeout::Fixed(Duration::ZERO)),
            None,
        );
        assert!(zero.validate().is_err(), "a zero user timeout: accepted");
    }

    #[test]
    fn options_at_the_kernels_bounds_pass_validation_and_apply() {
        let addr = "127.0.0.1:0".parse().unwrap();
        for (what, socket, heartbeat) in at_the_kernels_bounds() {
            let config = config(socket, heartbeat);
            assert_eq!(config.validate(), Ok(()), "{what}");
            let applied = listen(addr, 16, &config.socket, config.heartbeat);
            assert!(applied.is_ok(), "{what}: {applied:?}");
            let stream = std::net::TcpStream::connect(applied.unwrap().local_addr().unwrap());
            let stream = mio::net::TcpStream::from_std(stream.unwrap());
            let applied =
                super::configure(SockRef::from(&stream), &config.socket, config.heartbeat);
            assert!(applied.is_ok(), "{what}: {applied:?}");
        }
    }

    /// The ranges validation enforces are the kernel's: one step past
    /// each, it refuses the option.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_refuses_options_just_past_the_validated_ranges() {
        let addr = "127.0.0.1:0".parse().unwrap();
        for (what, socket, heartbeat) in past_the_kernels_ranges() {
            let refused = listen(addr, 16, &socket, heartbeat);
            let kind = refused.as_ref().map_err(std::io::Error::kind).err();
            assert_eq!(kind, Some(std::io::ErrorKind::InvalidInput), "{what}");
        }
    }

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
