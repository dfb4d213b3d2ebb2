//! Close codes and the reasons a connection ends.
//!
//! This module only names outcomes; it decides nothing and performs no I/O.

use std::fmt;
use std::io;

/// A close code carried by a CLOSE frame (the WebSocket codes of RFC 6455).
///
/// Any `u16` may arrive from a peer; the associated constants name the codes
/// tether itself sends.
///
/// ```
/// use tether::CloseCode;
/// assert_eq!(CloseCode::PROTOCOL_ERROR.as_u16(), 1002);
/// assert_eq!(CloseCode::from(1009), CloseCode::TOO_LARGE);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal close.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: going away (shutdown, or heartbeat timeout).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error (malformed frame, bad handshake).
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1008: policy violation (for example a ping flood).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: frame too large.
    pub const TOO_LARGE: CloseCode = CloseCode(1009);
    /// 1011: internal error.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            CloseCode::NORMAL => "normal",
            CloseCode::GOING_AWAY => "going away",
            CloseCode::PROTOCOL_ERROR => "protocol error",
            CloseCode::POLICY_VIOLATION => "policy violation",
            CloseCode::TOO_LARGE => "frame too large",
            CloseCode::INTERNAL_ERROR => "internal error",
            _ => return write!(f, "{}", self.0),
        };
        write!(f, "{} ({})", self.0, name)
    }
}

/// Why a connection (or one attempt at one) ended.
///
/// Connection loss is an *event* carrying one of these, never an `Err`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// A PING went unanswered: nothing at all was received within the
    /// heartbeat timeout after it. We sent CLOSE 1001.
    HeartbeatTimeout,
    /// The handshake (HELLO/WELCOME) did not complete in time.
    HandshakeTimeout,
    /// The TCP connect did not complete within the connect timeout.
    ConnectTimeout,
    /// The TCP connect failed (refused, unreachable, …); for a name with
    /// several addresses, the error of the last one tried.
    ConnectFailed(io::ErrorKind),
    /// The host name of the endpoint being dialed did not resolve: the
    /// resolver failed, or found no address. The attempt ends before any
    /// connect, and the link backs off as after a refused one.
    Resolve {
        /// The kind of the resolver's error ([`io::ErrorKind::NotFound`]
        /// for an answer without addresses). The system's resolver
        /// reports most failures as [`io::ErrorKind::Other`] or
        /// `Uncategorized`; its detail says more.
        kind: io::ErrorKind,
        /// The name looked up and the resolver's own words for what
        /// went wrong: `"feed.example.com: no address"`.
        detail: String,
    },
    /// The peer sent CLOSE with this code and reason.
    PeerClosed {
        /// The peer's close code.
        code: CloseCode,
        /// The peer's UTF-8 reason (possibly empty).
        reason: String,
    },
    /// The peer closed the TCP stream (EOF) without sending CLOSE.
    PeerEof,
    /// A read or write failed (for example a connection reset).
    Io(io::ErrorKind),
    /// The peer broke the wire protocol; we sent CLOSE with `code`.
    ProtocolError {
        /// The code we sent (1002 or 1009).
        code: CloseCode,
        /// What was wrong.
        detail: &'static str,
    },
    /// The peer broke a local policy (for example a ping flood); we sent
    /// CLOSE 1008.
    PolicyViolation {
        /// What was wrong.
        detail: &'static str,
    },
    /// Our output made no progress for the write-stall timeout: the peer
    /// does not read.
    WriteStalled,
    /// The local application closed the connection with this code.
    LocalClose(CloseCode),
    /// Server, resume: the client resumed the session on a new connection
    /// while this one still looked alive; we sent CLOSE 1001 on this one.
    /// The session goes on (the same `ConnId` connects again at once).
    TakenOver,
    /// Server, resume: the session was held detached for its expiry (or
    /// forgotten to hold newer ones, past `max_detached`) and the client
    /// did not come back: it is over for good.
    SessionExpired,
    /// The TLS layer failed (feature `tls`): the handshake was refused —
    /// an untrusted or expired certificate, a name mismatch, a client
    /// certificate missing where one is required, a peer that does not
    /// speak TLS — or a record could not be decrypted. No CLOSE frame is
    /// sent; the peer gets a TLS alert where TLS can carry one.
    Tls {
        /// What failed, in kinds an application can act on.
        failure: TlsFailure,
        /// rustls's own words for it.
        detail: String,
    },
}

/// What failed in the TLS layer (see [`DisconnectReason::Tls`]).
///
/// Both ends name the same failure where TLS tells them: a client that
/// refuses the server's certificate sends an alert, and the server sees
/// [`PeerAlert`](Self::PeerAlert) with the alert in the detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The peer's certificate does not chain to a trusted root (unknown
    /// issuer, bad signature, wrong purpose, self-signed).
    UntrustedCertificate,
    /// The server's certificate is not valid for the name dialed.
    NameMismatch,
    /// The peer's certificate has expired (or is not valid yet).
    Expired,
    /// The server requires a client certificate and none was presented.
    ClientCertRequired,
    /// The peer does not speak TLS: what arrived is not a TLS record (for
    /// example plain tether on a TLS port, or garbage instead of a
    /// ClientHello), or plain tether answered our ClientHello.
    NotTls,
    /// The peer sent a fatal alert: it refused our handshake or
    /// certificate (the detail names the alert).
    PeerAlert,
    /// The peers share no protocol version, cipher suite or ALPN id.
    Incompatible,
    /// Anything else TLS refused (a record that does not decrypt, a peer
    /// that broke TLS).
    Other,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFailure::UntrustedCertificate => "certificate not trusted",
            TlsFailure::NameMismatch => "certificate not valid for the name",
            TlsFailure::Expired => "certificate expired or not yet valid",
            TlsFailure::ClientCertRequired => "client certificate required",
            TlsFailure::NotTls => "peer does not speak TLS",
            TlsFailure::PeerAlert => "peer refused the handshake",
            TlsFailure::Incompatible => "no common TLS parameters",
            TlsFailure::Other => "TLS error",
        })
    }
}

impl DisconnectReason {
    /// The close code tether sends to the peer for a close it initiates for
    /// this reason, if it sends one at all.
    pub fn close_code_sent(&self) -> Option<CloseCode> {
        match self {
            DisconnectReason::HeartbeatTimeout => Some(CloseCode::GOING_AWAY),
            DisconnectReason::HandshakeTimeout => Some(CloseCode::PROTOCOL_ERROR),
            DisconnectReason::ProtocolError { code, .. } => Some(*code),
            DisconnectReason::PolicyViolation { .. } => Some(CloseCode::POLICY_VIOLATION),
            DisconnectReason::LocalClose(code) => Some(*code),
            DisconnectReason::TakenOver => Some(CloseCode::GOING_AWAY),
            _ => None,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            DisconnectReason::HandshakeTimeout => f.write_str("handshake timeout"),
            DisconnectReason::ConnectTimeout => f.write_str("connect timeout"),
            DisconnectReason::ConnectFailed(kind) => write!(f, "connect failed: {kind}"),
            DisconnectReason::Resolve { detail, .. } => write!(f, "cannot resolve {detail}"),
            DisconnectReason::PeerClosed { code, reason } if reason.is_empty() => {
                write!(f, "peer closed with {code}")
            }
            DisconnectReason::PeerClosed { code, reason } => {
                write!(f, "peer closed with {code}: {reason}")
            }
            DisconnectReason::PeerEof => f.write_str("peer closed the stream"),
            DisconnectReason::Io(kind) => write!(f, "i/o error: {kind}"),
            DisconnectReason::ProtocolError { code, detail } => {
                write!(f, "protocol error ({detail}), sent {code}")
            }
            DisconnectReason::PolicyViolation { detail } => {
                write!(
                    f,
                    "policy violation ({detail}), sent {}",
                    CloseCode::POLICY_VIOLATION
                )
            }
            DisconnectReason::WriteStalled => f.write_str("peer stopped reading (write stalled)"),
            DisconnectReason::LocalClose(code) => write!(f, "closed locally with {code}"),
            DisconnectReason::TakenOver => f.write_str("the session resumed on a newer connection"),
            DisconnectReason::SessionExpired => {
                f.write_str("the detached session expired unresumed")
            }
            DisconnectReason::Tls { failure, detail } => write!(f, "TLS: {failure} ({detail})"),
        }
    }
}

/// A configuration value out of range; the message says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid tether config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::DisconnectReason;

    #[test]
    fn a_reason_stays_four_words() {
        // Events carry it by value; a variant with more than one String
        // would grow every event.
        assert!(std::mem::size_of::<DisconnectReason>() <= 32);
    }
}
