//! What a transport layer below the frame codec (TLS) tells the
//! connection: bytes that arrived but carry no frame bytes yet, and a
//! failure of that layer.
//!
//! It decides nothing beyond what the plain socket events decide.

use std::time::Instant;

use super::{Connection, Event, State};
use crate::error::DisconnectReason;

impl Connection {
    /// Bytes arrived on the socket that the transport below the codec
    /// consumed itself (TLS records that yield no plaintext yet): proof of
    /// life, as every byte received is, though not tether input (they are
    /// not counted in `bytes_received`).
    pub fn note_transport_input(&mut self, now: Instant) {
        if matches!(self.state, State::Handshaking | State::Established) {
            self.note_life(now);
        }
    }

    /// The transport below the codec wrote bytes of ours to the socket
    /// (TLS records of output the connection handed over earlier): the
    /// peer is reading, which is progress for the write-stall timer
    /// whether or not the connection's own queue moved.
    pub fn note_transport_output(&mut self) {
        // Progress is a change of `bytes_sent` since the mark (see
        // `on_write_stall_timer`): move the mark off it.
        self.stall_mark = (self.stats.bytes_sent as u32).wrapping_sub(1);
    }

    /// The transport below the codec failed for `reason` (a TLS handshake
    /// refused, a record that does not decrypt): the socket is closed at
    /// once and a client redials with backoff, as for any failed attempt.
    /// No CLOSE is sent: the transport can no longer carry one.
    pub fn handle_transport_failure(
        &mut self,
        now: Instant,
        reason: DisconnectReason,
        events: &mut Vec<Event>,
    ) {
        match self.state {
            State::Connecting | State::Handshaking | State::Established => {
                self.lose(now, reason, events)
            }
            State::Closing => self.close_socket(events),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::BytesMut;

    use crate::config::Config;
    use crate::error::{DisconnectReason, TlsFailure};
    use crate::proto::codec::{self, Handshake};
    use crate::proto::conn::{Action, Connection, State, Timer};

    fn established(now: Instant) -> Connection {
        let config = Config::builder()
            .heartbeat(Duration::from_secs(1), Duration::from_secs(1))
            .build()
            .expect("config");
        let mut conn = Connection::server(Arc::new(config), now, 1, 1);
        let mut hello = BytesMut::new();
        codec::encode_hello(&Handshake::default(), &mut hello);
        conn.handle_input(now, &mut hello, &mut Vec::new());
        assert_eq!(conn.state(), State::Established);
        conn
    }

    #[test]
    fn transport_bytes_without_plaintext_are_proof_of_life() {
        let t0 = Instant::now();
        let mut conn = established(t0);
        let received = conn.stats().bytes_received;
        let ping = conn.timer(Timer::Ping).expect("ping armed");
        let later = t0 + Duration::from_millis(700);
        conn.note_transport_input(later);
        let moved = conn.timer(Timer::Ping).expect("ping armed");
        assert!(
            moved >= ping + Duration::from_millis(700),
            "{ping:?} {moved:?}"
        );
        assert_eq!(conn.last_recv(), Some(later));
        assert_eq!(conn.stats().bytes_received, received, "not tether input");
    }

    #[test]
    fn transport_output_is_progress_for_the_write_stall_timer() {
        let t0 = Instant::now();
        let config = Config::builder()
            .heartbeat(Duration::from_secs(60), Duration::from_secs(60))
            .write_stall_timeout(Some(Duration::from_secs(1)))
            .build()
            .expect("config");
        let mut conn = Connection::server(Arc::new(config), t0, 1, 1);
        let mut hello = BytesMut::new();
        codec::encode_hello(&Handshake::default(), &mut hello);
        let mut events = Vec::new();
        conn.handle_input(t0, &mut hello, &mut events);
        conn.send_slice(&[7; 100]).expect("queued");
        // The socket is full: the stall timer is armed.
        conn.handle_write_blocked(t0);
        // Only the transport moves (rustls writes earlier records).
        conn.note_transport_output();
        let t1 = t0 + Duration::from_millis(1100);
        conn.handle_timeout(t1, &mut events);
        assert_eq!(conn.state(), State::Established, "progress, not a stall");
        // A window with no progress at all is a stall.
        let t2 = t1 + Duration::from_millis(1100);
        conn.handle_timeout(t2, &mut events);
        assert_eq!(conn.close_reason(), Some(&DisconnectReason::WriteStalled));
    }

    #[test]
    fn a_transport_failure_closes_the_socket_with_its_reason() {
        let t0 = Instant::now();
        let mut conn = established(t0);
        let mut events = Vec::new();
        let reason = DisconnectReason::Tls {
            failure: TlsFailure::Other,
            detail: "bad record".into(),
        };
        conn.handle_transport_failure(t0, reason.clone(), &mut events);
        assert_eq!(conn.poll_action(), Some(Action::CloseSocket));
        assert_eq!(conn.close_reason(), Some(&reason));
        assert_eq!(conn.state(), State::Closed);
    }
}
