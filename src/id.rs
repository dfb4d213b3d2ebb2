//! Identifiers the application holds: connections and listeners.
//!
//! An id names a slab slot plus a generation drawn from one 64-bit counter
//! per reactor, so an id kept after its connection ended can never reach
//! the connection that reuses the slot: the counter would have to pass
//! 2^64, which it does not (a million connections a second take 584 000
//! years).

use std::fmt;

/// Names one connection for its whole life — for a dialed link, across
/// every redial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: Generation,
}

impl ConnId {
    /// The id as one number (for logs and maps): a number no other
    /// connection or listener of the same reactor ever has, since each
    /// takes the next value of one counter.
    pub fn as_u64(self) -> u64 {
        self.generation.get()
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index, self.generation.get())
    }
}

/// Names one listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId {
    pub(crate) index: u32,
    pub(crate) generation: Generation,
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener#{}.{}", self.index, self.generation.get())
    }
}

/// A 64-bit generation kept as two 32-bit halves, high first (so the
/// derived order is the number's): an id stays 4-byte aligned, 12 bytes
/// instead of 16, and so does every timer-wheel entry that names one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Generation {
    hi: u32,
    lo: u32,
}

impl Generation {
    pub(crate) fn new(n: u64) -> Generation {
        Generation {
            hi: (n >> 32) as u32,
            lo: n as u32,
        }
    }

    pub(crate) fn get(self) -> u64 {
        (u64::from(self.hi) << 32) | u64::from(self.lo)
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_twelve_bytes_and_its_number_is_its_generation() {
        assert_eq!(std::mem::size_of::<ConnId>(), 12);
        assert_eq!(std::mem::align_of::<ConnId>(), 4);
        let id = ConnId {
            index: 7,
            generation: Generation::new((5 << 32) | 9),
        };
        assert_eq!(id.as_u64(), (5 << 32) | 9);
        assert_eq!(id.to_string(), format!("conn#7.{}", (5u64 << 32) | 9));
        assert_eq!(
            format!("{id:?}"),
            format!("ConnId {{ index: 7, generation: {} }}", (5u64 << 32) | 9)
        );
        // Ordered as the numbers are.
        assert!(Generation::new(1 << 32) > Generation::new(u64::from(u32::MAX)));
    }
}
