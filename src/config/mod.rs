//! Connection configuration: every tunable with its documented default.
//!
//! Plain data plus validation; nothing here reads a clock or touches a socket.

use std::time::Duration;

mod backoff;
mod liveness;
mod resume;
mod socket;

pub use self::backoff::BackoffConfig;
pub use self::liveness::ClientLiveness;
pub use self::resume::ResumeConfig;
pub use self::socket::{Keepalive, SocketOptions, UserTimeout};
use crate::error::ConfigError;

/// Application heartbeats: PING after `interval` of read silence, peer dead
/// if nothing arrives within `timeout` after the PING.
///
/// Both are announced to the peer in whole milliseconds (0 would mean "no
/// heartbeats"), so [`Config::validate`] wants each between 1 ms and
/// `u32::MAX` ms (about 49 days).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// `I`: read silence after which a PING is sent. Default 10 s.
    pub interval: Duration,
    /// `T`: how long after a PING the peer may stay silent before it is
    /// declared dead. Default 10 s.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Protection from a peer that PINGs far more often than any sane
/// interval (as gRPC's `too_many_pings`).
///
/// A PING that arrives less than `min_interval` after the peer's previous
/// PING is a strike; one that arrives later clears the strikes. More than
/// `max_strikes` strikes in a row close the connection with CLOSE 1008. A
/// peer heartbeating normally sends at most one PING per its interval, so
/// only intervals below `min_interval` are affected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingFlood {
    /// Shortest accepted gap between two PINGs. Default 100 ms.
    pub min_interval: Duration,
    /// Strikes tolerated before closing, at most
    /// [`MAX_STRIKES`](Self::MAX_STRIKES). Default 5.
    pub max_strikes: u32,
}

impl PingFlood {
    /// The most strikes a connection counts: a limit above it could never
    /// be reached (use `None` to turn the protection off).
    pub const MAX_STRIKES: u32 = u8::MAX as u32 - 1;
}

impl Default for PingFlood {
    fn default() -> Self {
        PingFlood {
            min_interval: Duration::from_millis(100),
            max_strikes: 5,
        }
    }
}

impl Heartbeat {
    /// The worst-case time from a peer's last frame to its being declared
    /// dead, not counting the ping jitter (at most `I/10`) and one step of
    /// the timer grid ([`Config::timer_grain`]): `I + T` (saturating at
    /// `Duration::MAX`).
    pub fn detection_bound(&self) -> Duration {
        self.interval.saturating_add(self.timeout)
    }
}

/// Configuration of a connection (both roles; the client-only fields are
/// ignored on accepted connections).
///
/// ```
/// use std::time::Duration;
/// use tether::Config;
///
/// let config = Config::builder()
///     .heartbeat(Duration::from_millis(500), Duration::from_millis(500))
///     .handshake_timeout(Duration::from_secs(2))
///     .build()
///     .expect("valid config");
/// assert_eq!(config.heartbeat.unwrap().detection_bound(), Duration::from_secs(1));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Application heartbeats; `None` turns them off (then only the kernel
    /// can notice a dead peer). Default: interval 10 s, timeout 10 s.
    pub heartbeat: Option<Heartbeat>,
    /// Largest DATA payload accepted from the peer and allowed in a local
    /// `send`. Default 1 MiB.
    pub max_frame: usize,
    /// Time allowed from TCP accept (server) or TCP connect (client) until
    /// the handshake completes. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time allowed for a TCP connect to complete (client). Default 5 s.
    pub connect_timeout: Duration,
    /// Reconnect delays (client). Default 100 ms, ×2, 30 s max, ±20 % jitter.
    pub backoff: BackoffConfig,
    /// How long a connection must stay established, with frames received
    /// from the peer after the handshake, before the reconnect attempt
    /// counter resets. `None` means one heartbeat interval (or 10 s with
    /// heartbeats off).
    pub healthy_after: Option<Duration>,
    /// Bytes of unsent output a connection may hold; a `send` beyond it is
    /// refused with backpressure. Default 4 MiB.
    pub max_outbound: usize,
    /// How long a closing connection may take to flush its output and CLOSE
    /// frame before the socket is closed anyway. Default 1 s.
    pub close_linger: Duration,
    /// Ping-flood protection; `None` turns it off. Default: PINGs less than
    /// 100 ms apart, more than 5 times in a row, close with 1008.
    pub ping_flood: Option<PingFlood>,
    /// How long output may stay queued without the socket accepting a
    /// single byte before the connection is closed (a peer that does not
    /// read). Detected within one to two times this value. `None` turns it
    /// off; a value must be above zero (zero would end a connection the
    /// first time its socket is full). Default 30 s.
    pub write_stall_timeout: Option<Duration>,
    /// How late a heartbeat deadline may be handled before tether blames
    /// itself rather than the peer. Deadlines are filed on the reactor's
    /// timer grid ([`timer_grain`](Self::timer_grain)), so one handled
    /// within a grain after it fell due is on time; one handled more than
    /// a grain plus this later means the local process was stalled (a long
    /// callback, SIGSTOP, a suspended VM), and the peer then gets a fresh
    /// PING and a fresh timeout instead of being declared dead for our
    /// delay.
    ///
    /// At least [`MIN_STALL_TOLERANCE`] (10 ms), at most one year. Below
    /// that, an ordinary wake-up — the poll's timeout rounded up to a whole
    /// millisecond, then the scheduler's delay — would count as a stall,
    /// every deadline would look late, and a silent peer would get a fresh
    /// PING every `T` instead of being declared dead. Default 250 ms.
    pub stall_tolerance: Duration,
    /// Socket options (TCP_NODELAY, keepalive, TCP_USER_TIMEOUT), within
    /// the kernel's ranges ([`SocketOptions::validate`]).
    pub socket: SocketOptions,
    /// Seed for jitter and PING nonces; connections mix in their own id.
    /// Default: a fixed constant (the reactor seeds from the clock).
    pub seed: u64,
    /// Client: offer to adopt the heartbeat the server sets (the LIVENESS
    /// flag, proposing this side's own interval and timeout); a server
    /// that answers with it sets this connection's `I` and `T`. Default
    /// true (with heartbeats on).
    pub adopt_liveness: bool,
    /// Server: the heartbeat settings a client that offers to adopt the
    /// server's may use: its proposal clamped into this range. `None`: it
    /// is given this side's own interval and timeout. Either way the
    /// ping-flood limit follows what was set.
    pub client_liveness: Option<ClientLiveness>,
    /// Session resume: a dialed link asks for it, a server grants it.
    /// `None` turns it off (a peer then gets no resume guarantee). Default
    /// on, with [`ResumeConfig::default`].
    pub resume: Option<ResumeConfig>,
    /// How long a message may wait unsent before it is handed back
    /// ([`UndeliveredCause::Expired`](crate::UndeliveredCause::Expired))
    /// instead of sent late: stale prices or commands are worse than none.
    /// Counted from `send`; a message waits while the socket will not take
    /// more (a slow peer) or, with resume, while the link is down. One
    /// already written, or partly written, to a socket the peer may have
    /// read is never taken back (resume sends it again if needed). Handed
    /// back no earlier than this, and at most an eighth of it (or one
    /// timer grain, if longer) later. `None` (the default): messages wait
    /// as long as the connection or session lasts. At least 10 ms.
    pub queue_lifetime: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Some(Heartbeat::default()),
            max_frame: 1 << 20,
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
            healthy_after: None,
            max_outbound: 4 << 20,
            close_linger: Duration::from_secs(1),
            stall_tolerance: Duration::from_millis(250),
            ping_flood: Some(PingFlood::default()),
            write_stall_timeout: Some(Duration::from_secs(30)),
            socket: SocketOptions::default(),
            seed: 0x7E7E_7E7E_7E7E_7E7E,
            resume: Some(ResumeConfig::default()),
            adopt_liveness: true,
            client_liveness: None,
            queue_lifetime: None,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// The healthy period after which the reconnect attempt counter resets.
    pub fn healthy_period(&self) -> Duration {
        self.healthy_after.unwrap_or_else(|| {
            self.heartbeat
                .map_or(Duration::from_secs(10), |h| h.interval)
        })
    }

    /// The grid a reactor files this configuration's deadlines on: 1/64 of
    /// the shorter heartbeat period, between 1 and 16 ms (16 ms without
    /// heartbeats), in whole milliseconds. Deadlines are rounded *up* to it, never earlier, so
    /// that the deadlines of many connections share one wake-up: with
    /// 10 000 connections on 1 s heartbeats every millisecond holds
    /// someone's deadline, and on a 15 ms grid the reactor wakes for timers
    /// 67 times a second instead of 1 000.
    ///
    /// It is the "timer tick" of the liveness rules: a dead peer is
    /// detected within `I + T` plus the ping jitter plus one grid step. The
    /// jitter is drawn at most `I/10` minus one grid step, so that a PING
    /// handled on the grid still leaves at most `I/10` after `I` of
    /// silence, as the contract allows.
    pub fn timer_grain(&self) -> Duration {
        const MAX_GRAIN_MS: u64 = 16;
        let ms = self.heartbeat.map_or(MAX_GRAIN_MS, |hb| {
            let shorter = hb.interval.min(hb.timeout).as_millis();
            // Whole milliseconds: the wheel's tick.
            u64::try_from(shorter / 64).map_or(MAX_GRAIN_MS, |g| g.clamp(1, MAX_GRAIN_MS))
        });
        Duration::from_millis(ms)
    }

    /// Resume: the bound on a session's unacknowledged bytes (its
    /// `max_unacked`, or `max_outbound`); `None` without resume.
    pub fn max_unacked(&self) -> Option<usize> {
        self.resume
            .map(|r| r.max_unacked.unwrap_or(self.max_outbound))
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(hb) = self.heartbeat {
            if hb.interval < Duration::from_millis(1) || hb.timeout < Duration::from_millis(1) {
                return Err(ConfigError(
                    "heartbeat interval and timeout must be at least 1 ms",
                ));
            }
            if hb.interval.as_millis() > u128::from(u32::MAX)
                || hb.timeout.as_millis() > u128::from(u32::MAX)
            {
                return Err(ConfigError(
                    "heartbeat interval and timeout must fit in u32 ms",
                ));
            }
        }
        self.socket.validate(self.heartbeat)?;
        if self
            .ping_flood
            .is_some_and(|p| p.max_strikes > PingFlood::MAX_STRIKES)
        {
            return Err(ConfigError(
                "ping_flood max_strikes must be at most 254 (None turns the protection off)",
            ));
        }
        if self.max_frame > u32::MAX as usize - 1 {
            return Err(ConfigError("max_frame must be below 2^32 - 1"));
        }
        if self.handshake_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError("handshake and connect timeouts must be > 0"));
        }
        if self.write_stall_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError(
                "write_stall_timeout must be > 0 (None turns it off)",
            ));
        }
        if self.queue_lifetime.is_some_and(|l| l < MIN_QUEUE_LIFETIME) {
            return Err(ConfigError(
                "queue_lifetime must be at least 10 ms (None turns it off)",
            ));
        }
        if self.stall_tolerance < MIN_STALL_TOLERANCE {
            return Err(ConfigError("stall_tolerance must be at least 10 ms"));
        }
        self.backoff.validate()?;
        if let Some(resume) = &self.resume {
            resume.validate()?;
        }
        if let Some(range) = &self.client_liveness {
            range.validate()?;
        }
        // Deadlines are `now + duration` (an Instant overflow panics) and
        // are kept as i64 nanoseconds from the first one (±292 years).
        let durations = [
            Some(self.handshake_timeout),
            Some(self.connect_timeout),
            Some(self.close_linger),
            Some(self.stall_tolerance),
            self.write_stall_timeout,
            self.healthy_after,
            self.queue_lifetime,
        ];
        if durations.into_iter().flatten().any(|d| d > MAX_DURATION) {
            return Err(ConfigError("timeouts and delays must be at most one year"));
        }
        Ok(())
    }
}

/// The longest timeout or delay a configuration may set.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The shortest [`Config::queue_lifetime`]: it is looked after an eighth
/// of it at a time, on a timer grid of up to 16 ms.
pub const MIN_QUEUE_LIFETIME: Duration = Duration::from_millis(10);

/// The shortest [`Config::stall_tolerance`]: a timer's ordinary wake-up
/// delay (a millisecond of rounding and the scheduler's latency) stays
/// well within it.
pub const MIN_STALL_TOLERANCE: Duration = Duration::from_millis(10);

/// Builds a [`Config`]; every setter documents its default.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Heartbeat interval `I` and timeout `T`, each 1 ms to `u32::MAX` ms.
    /// Default 10 s and 10 s.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.heartbeat = Some(Heartbeat { interval, timeout });
        self
    }

    /// Turns application heartbeats off.
    pub fn no_heartbeat(mut self) -> Self {
        self.config.heartbeat = None;
        self
    }

    /// Largest DATA payload. Default 1 MiB.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Handshake timeout. Default 5 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// TCP connect timeout. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Reconnect backoff. Default 100 ms, ×2, 30 s max, ±20 % jitter.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Healthy period before the attempt counter resets. Default: one
    /// heartbeat interval.
    pub fn healthy_after(mut self, period: Duration) -> Self {
        self.config.healthy_after = Some(period);
        self
    }

    /// Output high-water mark in bytes. Default 4 MiB.
    pub fn max_outbound(mut self, bytes: usize) -> Self {
        self.config.max_outbound = bytes;
        self
    }

    /// Close linger. Default 1 s.
    pub fn close_linger(mut self, linger: Duration) -> Self {
        self.config.close_linger = linger;
        self
    }

    /// Ping-flood protection (`None`: off). Default 100 ms, 5 strikes.
    pub fn ping_flood(mut self, policy: Option<PingFlood>) -> Self {
        self.config.ping_flood = policy;
        self
    }

    /// Write-stall timeout, above zero (`None`: off). Default 30 s.
    pub fn write_stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.write_stall_timeout = timeout;
        self
    }

    /// Queue lifetime, at least [`MIN_QUEUE_LIFETIME`] (`None`: messages
    /// wait as long as the link or session lasts, the default). See
    /// [`Config::queue_lifetime`].
    pub fn queue_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config.queue_lifetime = lifetime;
        self
    }

    /// Local-stall tolerance, at least [`MIN_STALL_TOLERANCE`]. Default
    /// 250 ms.
    pub fn stall_tolerance(mut self, tolerance: Duration) -> Self {
        self.config.stall_tolerance = tolerance;
        self
    }

    /// Socket options. Default: TCP_NODELAY on, keepalive 60 s / 10 s / 3,
    /// TCP_USER_TIMEOUT `I + T`.
    pub fn socket(mut self, options: SocketOptions) -> Self {
        self.config.socket = options;
        self
    }

    /// Seed for jitter and nonces.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Session resume settings; `None` turns resume off. Default on, with
    /// [`ResumeConfig::default`].
    pub fn resume(mut self, resume: Option<ResumeConfig>) -> Self {
        self.config.resume = resume;
        self
    }

    /// Turns session resume off.
    pub fn no_resume(self) -> Self {
        self.resume(None)
    }

    /// Client: whether to adopt the heartbeat the server sets. Default
    /// true.
    pub fn adopt_liveness(mut self, adopt: bool) -> Self {
        self.config.adopt_liveness = adopt;
        self
    }

    /// Server: the heartbeat range clients that adopt the server's are
    /// clamped into; `None` (the default) gives them this side's own.
    pub fn client_liveness(mut self, range: Option<ClientLiveness>) -> Self {
        self.config.client_liveness = range;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_grain_is_a_64th_of_the_shorter_period_within_1_to_16_ms() {
        let hb = |i, t| Config {
            heartbeat: Some(Heartbeat {
                interval: Duration::from_millis(i),
                timeout: Duration::from_millis(t),
            }),
            ..Config::default()
        };
        let ms = Duration::from_millis;
        assert_eq!(hb(1000, 1000).timer_grain(), ms(15));
        assert_eq!(hb(1000, 320).timer_grain(), ms(5));
        assert_eq!(hb(10_000, 10_000).timer_grain(), ms(16));
        assert_eq!(hb(50, 50).timer_grain(), ms(1));
        let none = Config {
            heartbeat: None,
            ..Config::default()
        };
        assert_eq!(none.timer_grain(), ms(16));
    }

    #[test]
    fn the_detection_bound_of_any_heartbeat_is_computed_without_panic() {
        let hb = Heartbeat {
            interval: Duration::MAX,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(hb.detection_bound(), Duration::MAX);
    }

    fn rejected(config: Config, why: &str) {
        assert!(config.validate().is_err(), "{why} accepted: {config:?}");
    }

    #[test]
    fn validation_rejects_heartbeats_below_a_millisecond() {
        // The handshake announces whole milliseconds, where 0 means "no
        // heartbeats": a 500 µs interval would tell the peer we send none.
        let hb = |interval, timeout| Config {
            heartbeat: Some(Heartbeat { interval, timeout }),
            ..Config::default()
        };
        let us = Duration::from_micros;
        rejected(hb(us(999), Duration::from_secs(1)), "I = 999 µs");
        rejected(hb(Duration::from_secs(1), us(999)), "T = 999 µs");
        rejected(
            hb(Duration::from_nanos(1), Duration::from_secs(1)),
            "I = 1 ns",
        );
        assert!(hb(Duration::from_millis(1), Duration::from_millis(1))
            .validate()
            .is_ok());
    }

    #[test]
    fn validation_rejects_stall_tolerances_the_timer_grid_cannot_honour() {
        let tolerance = |t| Config {
            stall_tolerance: t,
            ..Config::default()
        };
        let min = MIN_STALL_TOLERANCE;
        assert_eq!(min, Duration::from_millis(10));
        rejected(tolerance(Duration::ZERO), "a zero stall tolerance");
        rejected(
            tolerance(Duration::from_millis(1)),
            "a 1 ms stall tolerance",
        );
        rejected(
            tolerance(min - Duration::from_nanos(1)),
            "just below the minimum",
        );
        assert!(tolerance(min).validate().is_ok());
        assert!(tolerance(MAX_DURATION).validate().is_ok());
        rejected(
            tolerance(MAX_DURATION + Duration::from_secs(1)),
            "a tolerance above one year",
        );
    }

    #[test]
    fn validation_rejects_strike_limits_that_cannot_be_counted() {
        // The strike counter saturates at 255: a limit of 255 or more
        // would never be reached, silently turning the protection off.
        let strikes = |max_strikes| Config {
            ping_flood: Some(PingFlood {
                min_interval: Duration::from_millis(100),
                max_strikes,
            }),
            ..Config::default()
        };
        rejected(strikes(255), "255 strikes");
        rejected(strikes(u32::MAX), "u32::MAX strikes");
        assert!(strikes(254).validate().is_ok());
        assert!(strikes(0).validate().is_ok());
    }

    #[test]
    fn validation_rejects_a_zero_write_stall_timeout() {
        // Zero would end a connection the first time its socket is full.
        rejected(
            Config {
                write_stall_timeout: Some(Duration::ZERO),
                ..Config::default()
            },
            "a zero write-stall timeout",
        );
        let off = Config {
            write_stall_timeout: None,
            ..Config::default()
        };
        assert!(off.validate().is_ok());
    }

    #[test]
    fn a_queue_lifetime_must_be_at_least_its_minimum_and_at_most_a_year() {
        let lifetime = |l: Duration| Config::builder().queue_lifetime(Some(l)).build();
        assert!(lifetime(MIN_QUEUE_LIFETIME - Duration::from_millis(1)).is_err());
        assert!(lifetime(Duration::ZERO).is_err());
        assert!(lifetime(MIN_QUEUE_LIFETIME).is_ok());
        assert!(lifetime(MAX_DURATION).is_ok());
        assert!(lifetime(MAX_DURATION + Duration::from_secs(1)).is_err());
        assert!(Config::builder().queue_lifetime(None).build().is_ok());
    }
}
