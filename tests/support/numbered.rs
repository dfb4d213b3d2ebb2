//! Numbered messages for the exactly-once tests. Message `n`'s size (1 B
//! to 64 KiB) and bytes are a pure function of `n`: its first bytes are
//! `n` (little-endian, as many as it has, so even a 1-byte message names
//! `n`'s low byte) and the rest one fill byte drawn from `n`. A receiver
//! that expects `n` next checks the size and every byte that `n` implies;
//! what it received is kept as runs of consecutive numbers, so "every
//! number exactly once, in order" is exactly one run from 0 to the count
//! sent.

use bytes::Bytes;

/// The largest message.
pub const MAX_SIZE: usize = 64 * 1024;

/// SplitMix64's output function: `n` scrambled.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Message `n`'s size: a quarter of them 1–8 B, most 9–300 B, about one
/// in 70 from 1 KiB to 64 KiB (the bytes around the 1 KiB copy boundary
/// among them), one in 1 024 exactly 64 KiB. About 320 B on average.
pub fn size(n: u64) -> usize {
    let h = mix(n);
    let r = (h >> 16) as usize;
    match h % 1024 {
        0 => MAX_SIZE,
        1..=6 => 1023 + r % 3,
        7..=14 => {
            // Log-uniform over 1 KiB..64 KiB: an octave, then a point in it.
            let octave = 1usize << (10 + r % 6);
            octave + (r >> 8) % octave
        }
        15..=255 => 1 + r % 8,
        _ => 9 + r % 292,
    }
}

/// The byte that fills message `n` after its number.
fn fill(n: u64) -> u8 {
    (mix(n) >> 56) as u8
}

/// Message `n`.
pub fn message(n: u64) -> Bytes {
    let len = size(n);
    let mut m = vec![fill(n); len];
    let head = len.min(8);
    m[..head].copy_from_slice(&n.to_le_bytes()[..head]);
    Bytes::from(m)
}

/// Whether `m` is message `n`, byte for byte.
pub fn is(n: u64, m: &[u8]) -> bool {
    let head = m.len().min(8);
    m.len() == size(n)
        && m[..head] == n.to_le_bytes()[..head]
        && m[head..].iter().all(|&b| b == fill(n))
}

/// The number a message of 8 bytes or more says it is.
fn says(m: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(m.get(..8)?.try_into().ok()?))
}

/// Runs kept at most (a stream that needs more is broken anyway).
const MAX_RUNS: usize = 10_000;

/// What one end received of the other's numbered stream.
#[derive(Debug, Default)]
pub struct Received {
    /// Runs `[start, end)` of consecutive numbers, in the order they
    /// arrived (the last one still growing).
    pub runs: Vec<(u64, u64)>,
    /// Messages that are no number's message: the number expected then,
    /// and the length that arrived.
    pub bad: Vec<(u64, usize)>,
    /// Messages and bytes received.
    pub messages: u64,
    pub bytes: u64,
}

impl Received {
    /// The number expected next.
    pub fn expected(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.1)
    }

    /// Takes the next message of the stream.
    pub fn receive(&mut self, m: &[u8]) {
        self.messages += 1;
        self.bytes += m.len() as u64;
        let want = self.expected();
        let n = if is(want, m) {
            want
        } else {
            match says(m).filter(|&n| is(n, m)) {
                Some(n) => n,
                None => {
                    if self.bad.len() < 64 {
                        self.bad.push((want, m.len()));
                    }
                    return;
                }
            }
        };
        if let Some(run) = self.runs.last_mut().filter(|run| run.1 == n) {
            run.1 += 1;
        } else if self.runs.len() < MAX_RUNS {
            self.runs.push((n, n + 1));
        }
    }

    /// Whether it received `0..total`, each number once, in order, and
    /// nothing else.
    pub fn exactly(&self, total: u64) -> bool {
        self.bad.is_empty()
            && if total == 0 {
                self.runs.is_empty()
            } else {
                self.runs == [(0, total)]
            }
    }

    /// A short account of what is wrong (for a failing assertion).
    pub fn diagnose(&self, total: u64) -> String {
        format!(
            "expected one run 0..{total}; got {} runs {:?}{}, {} damaged {:?}",
            self.runs.len(),
            &self.runs[..self.runs.len().min(8)],
            if self.runs.len() > 8 { " …" } else { "" },
            self.bad.len(),
            &self.bad[..self.bad.len().min(8)]
        )
    }
}
