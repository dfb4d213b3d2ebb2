//! The yes/no facts a connection keeps about its socket, packed into one
//! byte.
//!
//! Plain bit arithmetic; nothing here decides anything. One byte instead of
//! eight keeps the per-connection budget (see `a_connection_fits_its_memory_budget`).

/// One fact about a connection's current socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Flag {
    /// The peer ended its stream (EOF) while replies were still queued:
    /// the socket stays open only to write them; nothing more is read.
    ReadClosed = 1 << 0,
    /// `Connected` was reported for the current socket.
    Connected = 1 << 1,
    /// A frame arrived since the handshake on the current socket.
    FrameSinceHandshake = 1 << 2,
    /// The healthy period passed but no frame had arrived yet.
    HealthyPending = 1 << 3,
    /// The socket refused output (its send buffer was full) and has not
    /// taken any since.
    SocketFull = 1 << 4,
    /// A send was refused with backpressure and no `Event::Drained` has
    /// followed yet.
    Refused = 1 << 5,
    /// The socket carries a resumed session's DATA: every DATA frame sent
    /// on it is numbered and logged, every one received counted.
    Resumable = 1 << 6,
}

/// A set of [`Flag`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(u8);

impl Flags {
    #[inline]
    pub(crate) fn get(self, flag: Flag) -> bool {
        self.0 & flag as u8 != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, flag: Flag, on: bool) {
        if on {
            self.0 |= flag as u8;
        } else {
            self.0 &= !(flag as u8);
        }
    }

    /// Clears `flag` and returns whether it was set.
    #[inline]
    pub(crate) fn take(&mut self, flag: Flag) -> bool {
        let was = self.get(flag);
        self.set(flag, false);
        was
    }
}

#[cfg(test)]
mod tests {
    use super::{Flag, Flags};

    #[test]
    fn each_flag_is_its_own_bit() {
        let all = [
            Flag::ReadClosed,
            Flag::Connected,
            Flag::FrameSinceHandshake,
            Flag::HealthyPending,
            Flag::SocketFull,
            Flag::Refused,
            Flag::Resumable,
        ];
        for (i, &a) in all.iter().enumerate() {
            let mut f = Flags::default();
            f.set(a, true);
            for (j, &b) in all.iter().enumerate() {
                assert_eq!(f.get(b), i == j, "{a:?} vs {b:?}");
            }
            assert!(f.take(a));
            assert!(!f.take(a));
            assert_eq!(f, Flags::default());
        }
    }
}
