//! Session ids for a server: unpredictable (the id is the only credential a
//! resume presents), drawn from the operating system's randomness a batch
//! at a time, never 0, never sequential. 64 random bits: two sessions of
//! one process share an id with a chance of about n²/2⁶⁵ for n sessions
//! (below 10⁻⁹ for a hundred thousand).
//!
//! It never blocks for long (one `getrandom` call per batch) and never
//! panics: if the OS cannot give randomness, ids come from the reactor's
//! own generator (logged once).

use log::warn;

use crate::rng::Rng;

/// Ids drawn per call to the OS.
const BATCH: usize = 32;

/// Where a reactor's session ids come from (see the module docs).
#[derive(Debug)]
pub(crate) struct SessionIds {
    batch: [u64; BATCH],
    /// Ids of `batch` already given out.
    used: usize,
    fallback: Rng,
    warned: bool,
}

impl SessionIds {
    pub(crate) fn new(seed: u64) -> SessionIds {
        SessionIds {
            batch: [0; BATCH],
            used: BATCH,
            fallback: Rng::new(seed),
            warned: false,
        }
    }

    /// A fresh session id.
    pub(crate) fn next(&mut self) -> u64 {
        loop {
            let id = self.draw();
            if id != 0 {
                return id;
            }
        }
    }

    fn draw(&mut self) -> u64 {
        if self.used == BATCH {
            let mut bytes = [0u8; BATCH * 8];
            match getrandom::fill(&mut bytes) {
                Ok(()) => {
                    for (slot, chunk) in self.batch.iter_mut().zip(bytes.chunks_exact(8)) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(chunk);
                        *slot = u64::from_ne_bytes(b);
                    }
                }
                Err(e) => {
                    if !self.warned {
                        warn!("no randomness from the OS ({e}): session ids from the reactor's generator");
                        self.warned = true;
                    }
                    for slot in &mut self.batch {
                        *slot = self.fallback.next_u64();
                    }
                }
            }
            self.used = 0;
        }
        let id = self.batch[self.used];
        self.used += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_never_zero_never_repeated_and_not_sequential() {
        let mut ids = SessionIds::new(1);
        let drawn: Vec<u64> = (0..1000).map(|_| ids.next()).collect();
        let distinct: HashSet<u64> = drawn.iter().copied().collect();
        assert_eq!(distinct.len(), drawn.len());
        assert!(!distinct.contains(&0));
        let steps_of_one = drawn
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert_eq!(steps_of_one, 0);
        // Two reactors draw different ids.
        let mut other = SessionIds::new(1);
        assert_ne!(other.next(), drawn[0]);
    }
}
