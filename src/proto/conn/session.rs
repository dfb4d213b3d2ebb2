//! Session resume's bookkeeping: the numbering of DATA in both directions,
//! the receipt count told to the peer, the replay log of what the peer has
//! not acknowledged, and the checks an ACK or a resume handshake must pass.
//!
//! A session spans every socket of a link. Plain counting: it never
//! touches the output queue or the clock (the connection does), and it
//! refuses, rather than believes, a count the contract forbids.

use super::replay_log::ReplayLog;

/// What a resuming side keeps across sockets (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Session {
    /// DATA frames we numbered in this session (sent, or queued while the
    /// link is down).
    pub(super) sent: u64,
    /// The peer's receipt count as last reported: our frames up to it are
    /// freed from the log.
    pub(super) acked: u64,
    /// Our receipt count before the current socket: frames received on it
    /// are counted by the connection (see `Connection::receipts`).
    pub(super) received_before: u64,
    /// The receipt count last told to the peer (ACK or handshake).
    pub(super) told: u64,
    /// Bytes received (all of them, from the connection's counter) when
    /// the count was last told: an ACK also goes out after a quarter of
    /// the unacknowledged bound's worth of bytes.
    pub(super) told_at_bytes: u64,
    /// Our frames numbered above `acked`, for sending again.
    pub(super) log: ReplayLog,
    /// Messages sent again after resume handshakes.
    pub(super) resent: u64,
    /// Connections that resumed the session.
    pub(super) resumes: u32,
}

impl Session {
    /// The peer says it has received `count` of our frames (an ACK): frees
    /// them. A count below an earlier one or above what we sent breaks the
    /// contract.
    pub(super) fn on_ack(&mut self, count: u64) -> Result<(), &'static str> {
        if count < self.acked {
            return Err("ACK went backwards");
        }
        if count > self.sent {
            return Err("ACK above the DATA sent");
        }
        self.log.free(count - self.acked);
        self.acked = count;
        Ok(())
    }

    /// The peer resumes this session having received `count` of our
    /// frames (its handshake's `recv_seq`): frees them; the rest is to be
    /// sent again. A count below what it acknowledged or above what we
    /// sent breaks the contract.
    pub(super) fn on_resume(&mut self, count: u64) -> Result<(), &'static str> {
        if count < self.acked {
            return Err("recv_seq below the count already acknowledged");
        }
        if count > self.sent {
            return Err("recv_seq above the DATA sent");
        }
        self.on_ack(count)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn with_sent(n: u64) -> Session {
        let mut s = Session::default();
        for i in 0..n {
            s.log.push(&Bytes::from(vec![i as u8; 3]));
        }
        s.sent = n;
        s
    }

    #[test]
    fn an_ack_frees_what_it_counts_and_never_goes_backwards_or_past_what_was_sent() {
        let mut s = with_sent(5);
        assert_eq!(s.on_ack(2), Ok(()));
        assert_eq!((s.acked, s.log.frames()), (2, 3));
        assert_eq!(s.on_ack(2), Ok(()), "the same count again is fine");
        assert_eq!(s.on_ack(1), Err("ACK went backwards"));
        assert_eq!(s.on_ack(6), Err("ACK above the DATA sent"));
        assert_eq!((s.acked, s.log.frames()), (2, 3), "nothing changed");
        assert_eq!(s.on_ack(5), Ok(()));
        assert_eq!(s.log.frames(), 0);
    }

    #[test]
    fn a_resume_count_must_lie_between_the_acknowledged_and_the_sent() {
        let mut s = with_sent(4);
        s.on_ack(1).unwrap();
        assert!(s.on_resume(0).is_err());
        assert!(s.on_resume(5).is_err());
        assert_eq!(s.on_resume(3), Ok(()));
        assert_eq!(s.log.frames(), 1, "frame 4 is sent again");
    }
}

#[cfg(test)]
mod size {
    /// An idle session (nothing unacknowledged: its log's buffers given
    /// back) costs its box, a pointer in the connection and one more
    /// deadline in its timer table: at most ~100 bytes over a connection
    /// without one.
    #[test]
    fn an_idle_session_costs_about_a_hundred_bytes() {
        let boxed = std::mem::size_of::<super::Session>();
        let inline = std::mem::size_of::<usize>() + 8;
        assert!(boxed + inline <= 96, "{boxed} + {inline} bytes");
    }
}
