//! The socket options a connection asks for (TCP_NODELAY, the kernel's
//! keepalive, TCP_USER_TIMEOUT): plain data with the ranges the kernel
//! takes.
//!
//! Nothing here touches a socket; `net` applies them.

use std::time::Duration;

use super::Heartbeat;
use crate::error::ConfigError;

/// The kernel's own keepalive probes: tether's second line of defence.
///
/// With application heartbeats on, a live connection is never idle long
/// enough for these to matter; they catch a dead peer when heartbeats are
/// off, and keep NAT and firewall state warm.
///
/// The kernel takes whole seconds: sub-second parts of `idle` and
/// `interval` are dropped. [`validate`](Self::validate) checks the ranges
/// Linux accepts (on every platform, so a configuration is portable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (`TCP_KEEPIDLE`), 1 s to
    /// [`MAX_TIME`](Self::MAX_TIME) (32767 s). Default 60 s.
    pub idle: Duration,
    /// Time between unanswered probes (`TCP_KEEPINTVL`), 1 s to
    /// [`MAX_TIME`](Self::MAX_TIME) (32767 s). Default 10 s.
    pub interval: Duration,
    /// Unanswered probes before the kernel drops the connection
    /// (`TCP_KEEPCNT`), 1 to [`MAX_COUNT`](Self::MAX_COUNT) (127).
    /// Default 3.
    pub count: u32,
}

impl Keepalive {
    /// The longest `idle` and `interval` (Linux's `MAX_TCP_KEEPIDLE` and
    /// `MAX_TCP_KEEPINTVL`): 32767 s, and less than a second more.
    pub const MAX_TIME: Duration = Duration::from_secs(32_767);
    /// The most probes (Linux's `MAX_TCP_KEEPCNT`).
    pub const MAX_COUNT: u32 = 127;

    /// Checks the ranges documented on each field: the kernel refuses a
    /// value outside them (`EINVAL`), which would fail every listen and
    /// every dial.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let whole_secs = 1..=Self::MAX_TIME.as_secs();
        if !whole_secs.contains(&self.idle.as_secs()) {
            return Err(ConfigError("keepalive idle must be 1 s to 32767 s"));
        }
        if !whole_secs.contains(&self.interval.as_secs()) {
            return Err(ConfigError("keepalive interval must be 1 s to 32767 s"));
        }
        if !(1..=Self::MAX_COUNT).contains(&self.count) {
            return Err(ConfigError("keepalive count must be 1 to 127"));
        }
        Ok(())
    }
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
///
/// The kernel takes whole milliseconds, 1 to [`MAX`](Self::MAX)
/// (`i32::MAX` ms, about 24.8 days); sub-millisecond parts are dropped.
/// [`SocketOptions::validate`] checks the value on every platform.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UserTimeout {
    /// `I + T` when heartbeats are on (so a write into a dead link fails as
    /// fast as the heartbeat would notice), the kernel default otherwise.
    /// `I + T` must then be at most [`MAX`](Self::MAX).
    #[default]
    Auto,
    /// The kernel default (about 15 minutes of retransmissions).
    Off,
    /// This value: 1 ms to [`MAX`](Self::MAX).
    Fixed(Duration),
}

impl UserTimeout {
    /// The longest timeout the kernel takes: `i32::MAX` ms (and less than
    /// a millisecond more).
    pub const MAX: Duration = Duration::from_millis(i32::MAX as u64);
}

/// Options applied to every socket of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// `TCP_NODELAY`: send small frames at once (no Nagle delay). Default on.
    pub nodelay: bool,
    /// `SO_KEEPALIVE` and its timings (ranges on [`Keepalive`]); `None`
    /// leaves it off. Default on, 60 s idle, 10 s interval, 3 probes (a
    /// dead peer is noticed by the kernel within 90 s even with heartbeats
    /// off).
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT` (Linux only; ignored elsewhere, but validated
    /// everywhere; ranges on [`UserTimeout`]). Default
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
    /// use tether::{Keepalive, SocketOptions, UserTimeout};
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

    /// Checks the keepalive ([`Keepalive::validate`]) and the
    /// `TCP_USER_TIMEOUT` these options set with `heartbeat` (see
    /// [`UserTimeout`]): values the kernel refuses would fail every listen
    /// and every dial. [`Config::validate`](crate::Config::validate) calls
    /// it.
    pub fn validate(&self, heartbeat: Option<Heartbeat>) -> Result<(), ConfigError> {
        if let Some(keepalive) = self.keepalive {
            keepalive.validate()?;
        }
        let Some(timeout) = self.user_timeout_for(heartbeat) else {
            return Ok(());
        };
        // Compared in whole milliseconds, as the kernel takes it.
        let ms = timeout.as_millis();
        if ms > UserTimeout::MAX.as_millis() {
            return Err(ConfigError(match self.user_timeout {
                UserTimeout::Auto => {
                    "TCP_USER_TIMEOUT: with UserTimeout::Auto the heartbeat interval plus \
                     timeout must be at most i32::MAX ms (about 24.8 days); \
                     set UserTimeout::Fixed or Off"
                }
                _ => "TCP_USER_TIMEOUT must be at most i32::MAX ms (about 24.8 days)",
            }));
        }
        if ms == 0 {
            return Err(ConfigError(
                "TCP_USER_TIMEOUT must be at least 1 ms (UserTimeout::Off leaves the kernel default)",
            ));
        }
        Ok(())
    }
}
