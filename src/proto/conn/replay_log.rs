//! The DATA frames of a session that the peer has not acknowledged yet,
//! in the order they were numbered: what a resumed connection sends again.
//!
//! Small frames are copied into one buffer back to back, as they go on the
//! wire (a stretch of them is one entry); a large payload is kept as the
//! application's `Bytes`, uncopied. Freeing acknowledged frames advances
//! the buffer, whose space is reused once it empties: a steady stream
//! allocates nothing per message. It never decides what is acknowledged
//! (the session does) and never holds more than the session lets in.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::codec::{self, HEADER_LEN};

/// One stretch of logged frames.
#[derive(Debug)]
enum Entry {
    /// `frames` small frames, `bytes` long in all, next in `packed`.
    Packed { frames: u32, bytes: u32 },
    /// One frame whose payload is kept as it was sent.
    Large(Bytes),
}

/// The unacknowledged DATA frames of a session (see the module docs).
#[derive(Debug, Default)]
pub(super) struct ReplayLog {
    /// The buffers, allocated by the first frame logged and given up by
    /// [`release_idle_memory`](Self::release_idle_memory) once empty: an
    /// idle session holds none.
    bufs: Option<Box<Bufs>>,
    /// Frames held.
    frames: u64,
    /// Wire bytes held (headers included).
    bytes: usize,
}

#[derive(Debug, Default)]
struct Bufs {
    /// The small frames of every `Packed` entry, in order.
    packed: BytesMut,
    entries: VecDeque<Entry>,
}

/// A stretch of the log, as [`ReplayLog::replay`] hands it over.
pub(super) enum Logged<'a> {
    /// Whole small frames, as on the wire.
    Packed(&'a [u8]),
    /// The payload of one large frame.
    Large(&'a Bytes),
}

/// The packed buffer's smallest allocation.
const LOG_CHUNK: usize = 16 * 1024;

/// Payloads at most this long are copied into the log (as the outbox
/// copies them); longer ones are kept as `Bytes`.
const COPY_MAX: usize = super::COPY_MAX;

impl ReplayLog {
    /// Frames held.
    pub(super) fn frames(&self) -> u64 {
        self.frames
    }

    /// Wire bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Logs a frame carrying `payload` (shared, not copied, when large).
    pub(super) fn push(&mut self, payload: &Bytes) {
        if payload.len() > COPY_MAX {
            self.bytes += HEADER_LEN + payload.len();
            self.frames += 1;
            self.bufs().entries.push_back(Entry::Large(payload.clone()));
        } else {
            self.push_slice(payload);
        }
    }

    /// Logs a copy of a frame carrying `payload`.
    pub(super) fn push_slice(&mut self, payload: &[u8]) {
        if payload.len() > COPY_MAX {
            self.push(&Bytes::copy_from_slice(payload));
            return;
        }
        let packed = self.reserve(HEADER_LEN + payload.len());
        packed.extend_from_slice(&codec::data_header(payload.len()));
        packed.extend_from_slice(payload);
        self.note_packed(1, HEADER_LEN + payload.len());
    }

    /// Logs whole DATA frames, as on the wire (`frames` of them).
    pub(super) fn push_framed(&mut self, wire: &[u8], frames: u32) {
        if frames == 0 {
            return;
        }
        self.reserve(wire.len()).extend_from_slice(wire);
        self.note_packed(frames, wire.len());
    }

    fn bufs(&mut self) -> &mut Bufs {
        self.bufs.get_or_insert_with(Box::default)
    }

    /// The packed buffer with room for `n` more bytes (reused from the
    /// front once acknowledgements emptied it).
    fn reserve(&mut self, n: usize) -> &mut BytesMut {
        let packed = &mut self.bufs().packed;
        // `LOG_CHUNK` at first; then only the room asked for: once the
        // end is reached, what is held moves to the front if it takes no
        // more than the space freed before it, so a log that holds under
        // half the buffer never grows it.
        let want = if packed.capacity() == 0 {
            n.max(LOG_CHUNK)
        } else {
            n
        };
        packed.reserve(want);
        packed
    }

    /// Whether no buffer is allocated.
    #[cfg(test)]
    pub(super) fn is_unallocated(&self) -> bool {
        self.bufs.is_none()
    }

    /// Gives the buffers back when nothing is held (the connection's trim
    /// timer: a session that went quiet); true if it did.
    pub(super) fn release_idle_memory(&mut self) -> bool {
        self.frames == 0 && self.bufs.take().is_some()
    }

    fn note_packed(&mut self, frames: u32, bytes: usize) {
        self.frames += u64::from(frames);
        self.bytes += bytes;
        let entries = &mut self.bufs().entries;
        // A stretch's byte count fits u32: it is cut at 1 GiB.
        if let Some(Entry::Packed {
            frames: f,
            bytes: b,
        }) = entries.back_mut()
        {
            if let Some(total) = (*b as usize).checked_add(bytes).filter(|&t| t < 1 << 30) {
                *f += frames;
                *b = total as u32;
                return;
            }
        }
        entries.push_back(Entry::Packed {
            frames,
            bytes: bytes as u32,
        });
    }

    /// Frees the first `n` frames (acknowledged); all of them if fewer
    /// are held.
    pub(super) fn free(&mut self, mut n: u64) {
        let Some(bufs) = self.bufs.as_deref_mut() else {
            return;
        };
        while n > 0 {
            let Some(entry) = bufs.entries.front_mut() else {
                break;
            };
            match entry {
                Entry::Large(payload) => {
                    self.bytes -= HEADER_LEN + payload.len();
                    self.frames -= 1;
                    n -= 1;
                    bufs.entries.pop_front();
                }
                Entry::Packed { frames, bytes } if u64::from(*frames) <= n => {
                    let (f, b) = (*frames, *bytes as usize);
                    bufs.packed.advance(b);
                    self.bytes -= b;
                    self.frames -= u64::from(f);
                    n -= u64::from(f);
                    bufs.entries.pop_front();
                }
                Entry::Packed { frames, bytes } => {
                    // Part of the stretch: walk its headers.
                    let mut cut = 0;
                    for _ in 0..n {
                        cut += frame_len(&bufs.packed[cut..]);
                    }
                    bufs.packed.advance(cut);
                    *frames -= n as u32;
                    *bytes -= cut as u32;
                    self.bytes -= cut;
                    self.frames -= n;
                    n = 0;
                }
            }
        }
    }

    /// Calls `replay` for every stretch held, in order.
    pub(super) fn replay(&self, mut replay: impl FnMut(Logged<'_>)) {
        let Some(bufs) = self.bufs.as_deref() else {
            return;
        };
        let mut at = 0;
        for entry in &bufs.entries {
            match entry {
                Entry::Packed { bytes, .. } => {
                    let end = at + *bytes as usize;
                    replay(Logged::Packed(&bufs.packed[at..end]));
                    at = end;
                }
                Entry::Large(payload) => replay(Logged::Large(payload)),
            }
        }
    }

    /// Takes out the `k` frames that follow the first `skip` (frames
    /// never sent, withdrawn under a queue lifetime) and returns their
    /// payloads, in order; the others stay, in order. Rebuilds the log:
    /// for the rare look that hands messages back, not for the message
    /// path.
    pub(super) fn withdraw(&mut self, skip: u64, k: u64) -> Vec<Bytes> {
        let all = self.take_payloads();
        let mut out = Vec::with_capacity(k.min(all.len() as u64) as usize);
        for (i, payload) in (0u64..).zip(all) {
            if i >= skip && i - skip < k {
                out.push(payload);
            } else {
                self.push(&payload);
            }
        }
        out
    }

    /// Takes every payload held, in order, leaving the log empty.
    pub(super) fn take_payloads(&mut self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.frames as usize);
        let Some(bufs) = self.bufs.take() else {
            return out;
        };
        let Bufs {
            mut packed,
            entries,
        } = *bufs;
        for entry in entries {
            match entry {
                Entry::Packed { frames, .. } => {
                    for _ in 0..frames {
                        let len = frame_len(&packed);
                        let mut frame = packed.split_to(len);
                        frame.advance(HEADER_LEN);
                        out.push(frame.freeze());
                    }
                }
                Entry::Large(payload) => out.push(payload),
            }
        }
        self.frames = 0;
        self.bytes = 0;
        out
    }
}

/// The wire length of the DATA frame at the front of `buf` (logged frames
/// are whole and well formed: the log wrote or checked each header).
fn frame_len(buf: &[u8]) -> usize {
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    4 + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(log: &mut ReplayLog) -> Vec<Vec<u8>> {
        log.take_payloads().iter().map(|b| b.to_vec()).collect()
    }

    fn wire(payloads: &[&[u8]]) -> Vec<u8> {
        let mut w = BytesMut::new();
        for p in payloads {
            codec::encode_data(p, &mut w);
        }
        w.to_vec()
    }

    #[test]
    fn frees_by_count_across_stretches_and_large_payloads_keeping_order() {
        let big = Bytes::from(vec![7u8; 5000]);
        for n in 0..=8 {
            let mut log = ReplayLog::default();
            log.push_slice(b"a");
            log.push(&Bytes::from_static(b"bb"));
            log.push(&big);
            log.push_framed(&wire(&[b"ccc", b"", b"dddd"]), 3);
            log.push_slice(b"e");
            assert_eq!(log.frames(), 7);
            let all_bytes = log.bytes();
            log.free(n);
            let want: Vec<Vec<u8>> = [&b"a"[..], b"bb", &big[..], b"ccc", b"", b"dddd", b"e"]
                .iter()
                .skip(n as usize)
                .map(|p| p.to_vec())
                .collect();
            let want_bytes: usize = want.iter().map(|p| HEADER_LEN + p.len()).sum();
            assert_eq!(log.frames(), want.len() as u64, "freed {n}");
            assert_eq!(log.bytes(), want_bytes, "freed {n}");
            assert!(log.bytes() <= all_bytes);
            // What a resume sends again is exactly the frames held.
            let mut again = BytesMut::new();
            log.replay(|logged| match logged {
                Logged::Packed(w) => again.extend_from_slice(w),
                Logged::Large(p) => codec::encode_data(p, &mut again),
            });
            let refs: Vec<&[u8]> = want.iter().map(|p| &p[..]).collect();
            assert_eq!(&again[..], &wire(&refs)[..], "freed {n}");
            assert_eq!(payloads(&mut log), want, "freed {n}");
            assert_eq!((log.frames(), log.bytes()), (0, 0));
        }
    }

    #[test]
    fn withdrawing_takes_out_exactly_the_frames_asked_for_and_keeps_the_rest_in_order() {
        let big = Bytes::from(vec![9; COPY_MAX + 1]);
        let mut log = ReplayLog::default();
        log.push_slice(b"a");
        log.push(&big);
        log.push_framed(&wire(&[b"ccc", b"", b"dddd"]), 3);
        log.push_slice(b"e");
        let (frames, bytes) = (log.frames(), log.bytes());
        let out = log.withdraw(1, 3);
        let out: Vec<Vec<u8>> = out.iter().map(|p| p.to_vec()).collect();
        assert_eq!(out, vec![big.to_vec(), b"ccc".to_vec(), Vec::new()]);
        assert_eq!(log.frames(), frames - 3);
        assert_eq!(
            log.bytes(),
            bytes - (3 * HEADER_LEN + big.len() + 3),
            "the bytes held follow"
        );
        assert_eq!(
            payloads(&mut log),
            vec![b"a".to_vec(), b"dddd".to_vec(), b"e".to_vec()]
        );
        let mut log = ReplayLog::default();
        log.push_slice(b"x");
        assert_eq!(log.withdraw(1, 5).len(), 0, "nothing past the end");
        assert_eq!(log.withdraw(0, 5).len(), 1, "fewer than asked");
        assert_eq!(log.frames(), 0);
    }

    #[test]
    fn a_steady_stream_reuses_the_buffer_it_frees() {
        let mut log = ReplayLog::default();
        let packed = |log: &ReplayLog| {
            let bufs = log.bufs.as_deref().expect("allocated");
            (bufs.packed.as_ptr() as usize, bufs.packed.capacity())
        };
        for _ in 0..64 {
            log.push_slice(&[1; 64]);
        }
        let (start, cap) = packed(&log);
        log.free(64);
        for round in 0..100 {
            for _ in 0..64 {
                log.push_slice(&[2; 64]);
            }
            // The same allocation: it ends where it did.
            let (at, room) = packed(&log);
            assert!(
                at >= start && at + room == start + cap,
                "round {round}: a new allocation"
            );
            log.free(64);
            assert_eq!(log.frames(), 0, "round {round}");
        }
        log.push_slice(&[3; 64]);
        assert!(!log.release_idle_memory(), "one frame held");
        log.free(1);
        assert!(log.release_idle_memory());
        assert!(log.bufs.is_none());
    }

    /// A busy session's log (16 frames of 64 B sent at a time, the peer
    /// acknowledging every 64: at most 80 frames, 5.4 KB, held) stays in
    /// its first 16 KiB allocation.
    #[test]
    fn a_window_acknowledged_every_64_frames_stays_in_one_16_kib_buffer() {
        let mut log = ReplayLog::default();
        log.push_slice(&[0; 64]);
        let start = log.bufs.as_deref().expect("allocated").packed.as_ptr() as usize;
        log.free(1);
        let mut held_max = 0;
        for round in 1..=1000 {
            for _ in 0..16 {
                log.push_slice(&[1; 64]);
                let packed = &log.bufs.as_deref().expect("allocated").packed;
                let end = packed.as_ptr() as usize + packed.capacity();
                assert!(
                    packed.as_ptr() as usize >= start && end <= start + LOG_CHUNK,
                    "round {round}: a new allocation"
                );
            }
            held_max = held_max.max(log.bytes());
            if log.frames() >= 80 {
                // The ACK of the first 64 comes one window later.
                log.free(64);
            }
        }
        assert_eq!(held_max, 80 * (HEADER_LEN + 64));
    }
}
