//! Micro benchmarks of the frame codec ([`tether::proto::codec`]): encoding into a
//! reused buffer and incremental decoding of an encoded stream.
//!
//! Run with `cargo bench --bench codec` (one case:
//! `cargo bench --bench codec -- decode/mixed_1000`). The defaults are
//! shortened to 1 s of warm-up and 3 s of measurement per case;
//! `--warm-up-time` and `--measurement-time` override them.
//! `cargo test --benches` runs every case once as a smoke test.
//!
//! # Cases
//!
//! | case          | frames | wire bytes                                   |
//! |---------------|--------|----------------------------------------------|
//! | `ping_13B`    | 1      | 13                                           |
//! | `data_64B`    | 1      | 69 (5-byte header + 64)                      |
//! | `data_16KiB`  | 1      | 16 389                                       |
//! | `mixed_1000`  | 1 000  | 287 832: PING, PONG, 64 B DATA and 1 KiB DATA drawn uniformly (fixed seed) |
//!
//! Criterion reports one throughput unit per benchmark, so every case is
//! measured twice: `…/frames` reports frames/s (`Throughput::Elements`),
//! `…/bytes` reports wire bytes/s (`Throughput::Bytes`, header included).
//! The two runs time the same code.
//!
//! # How
//!
//! - `encode`: `clear()` a `BytesMut` whose capacity already fits the case,
//!   then append the frame(s) with the `encode_*` functions (the mixed case
//!   with `Frame::encode`, which dispatches to them). No allocation happens
//!   in the timed loop; DATA payloads are copied into the buffer, which is
//!   what `encode_data` does.
//! - `decode`: the real incremental path. Setup (not timed) clones the
//!   encoded stream into a fresh buffer and splits it off as the reactor
//!   does with each socket read (`rbuf.split_to(n)`), so the chunk is a
//!   shared `BytesMut`, as in production. The timed routine calls
//!   `Decoder::decode` until it returns `None` and drops each frame (a DATA
//!   payload is split off without copying, so dropping it is a reference
//!   count decrement). Single frames are prepared 256 at a time (the
//!   routine reads only each chunk's handle and first cache line); the
//!   288 KB mixed buffer is copied right before each timed decode, so it is
//!   in cache as a just-read buffer would be.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tether::proto::codec::{encode_data, encode_ping, Decoder, Frame};

/// The decoder's DATA limit: the default `Config::max_frame` (1 MiB).
const MAX_FRAME: usize = 1 << 20;

/// Frames in the mixed buffer.
const MIXED_FRAMES: usize = 1_000;

/// Decode inputs prepared per timed batch for the single-frame cases:
/// enough to amortise reading the clock, few enough to stay in cache (the
/// routine touches only a chunk's handle and first cache line).
const BATCH: u64 = 256;

/// Inputs larger than this are decoded one per timed batch, right after
/// their copy is made, so they are in cache as a just-read buffer is.
const LARGE_INPUT: usize = 64 * 1024;

/// SplitMix64, to draw the mixed buffer's kinds reproducibly.
#[path = "common/splitmix.rs"]
mod splitmix;
use splitmix::SplitMix64;

/// How a case writes its frames.
enum Encode {
    Ping(u64),
    Data(Bytes),
    Frames(Vec<Frame>),
}

struct Case {
    name: &'static str,
    encode: Encode,
    /// The frames the encoded stream decodes to, in order.
    frames: Vec<Frame>,
    /// The encoded stream.
    wire: BytesMut,
}

impl Case {
    fn new(name: &'static str, encode: Encode) -> Case {
        let frames = match &encode {
            Encode::Ping(nonce) => vec![Frame::Ping(*nonce)],
            Encode::Data(payload) => vec![Frame::Data(payload.clone())],
            Encode::Frames(frames) => frames.clone(),
        };
        let mut case = Case {
            name,
            encode,
            frames,
            wire: BytesMut::new(),
        };
        let mut wire = BytesMut::new();
        case.encode_into(&mut wire);
        case.wire = wire;
        case.check();
        case
    }

    /// The timed encode: appends this case's frames to `dst`.
    #[inline]
    fn encode_into(&self, dst: &mut BytesMut) {
        match &self.encode {
            Encode::Ping(nonce) => encode_ping(black_box(*nonce), dst),
            Encode::Data(payload) => encode_data(black_box(payload), dst),
            Encode::Frames(frames) => {
                for frame in black_box(frames) {
                    frame.encode(dst);
                }
            }
        }
    }

    /// Not timed: the encoding is what `Frame::encode` gives and decodes
    /// back to the frames, with nothing left over.
    fn check(&self) {
        let mut expected = BytesMut::new();
        for frame in &self.frames {
            frame.encode(&mut expected);
        }
        assert_eq!(self.wire, expected, "{}: encoding differs", self.name);
        let mut chunk = self.chunk();
        let decoder = Decoder::new(MAX_FRAME);
        for frame in &self.frames {
            let got = decoder.decode(&mut chunk).expect("valid stream");
            assert_eq!(got.as_ref(), Some(frame), "{}: decoding differs", self.name);
        }
        assert!(chunk.is_empty(), "{}: bytes left over", self.name);
    }

    /// A fresh copy of the encoded stream, shaped like one socket read in
    /// the reactor: a `BytesMut` split off a larger read buffer.
    fn chunk(&self) -> BytesMut {
        let mut rbuf = self.wire.clone();
        let len = rbuf.len();
        rbuf.split_to(len)
    }

    fn wire_len(&self) -> usize {
        self.wire.len()
    }
}

fn cases() -> Vec<Case> {
    let payload = |len: usize| Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
    let data_64 = payload(64);
    let data_1k = payload(1024);
    let mut rng = SplitMix64(0xC0DEC);
    let mixed = (0..MIXED_FRAMES)
        .map(|_| {
            let r = rng.next_u64();
            match r % 4 {
                0 => Frame::Ping(r),
                1 => Frame::Pong(r),
                2 => Frame::Data(data_64.clone()),
                _ => Frame::Data(data_1k.clone()),
            }
        })
        .collect();
    vec![
        Case::new("ping_13B", Encode::Ping(0x0102_0304_0506_0708)),
        Case::new("data_64B", Encode::Data(data_64.clone())),
        Case::new("data_16KiB", Encode::Data(payload(16 * 1024))),
        Case::new("mixed_1000", Encode::Frames(mixed)),
    ]
}

/// The two throughput units every case is reported in.
fn units(case: &Case) -> [(&'static str, Throughput); 2] {
    [
        ("frames", Throughput::Elements(case.frames.len() as u64)),
        ("bytes", Throughput::Bytes(case.wire_len() as u64)),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for case in cases() {
        for (unit, throughput) in units(&case) {
            group.throughput(throughput);
            let mut buf = BytesMut::with_capacity(case.wire_len());
            group.bench_function(BenchmarkId::new(case.name, unit), |b| {
                b.iter(|| {
                    buf.clear();
                    case.encode_into(&mut buf);
                    black_box(&buf);
                });
            });
            // Empty when a filter skipped this case.
            if !buf.is_empty() {
                assert_eq!(buf, case.wire, "{}: encoding changed", case.name);
            }
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let decoder = Decoder::new(MAX_FRAME);
    let mut group = c.benchmark_group("decode");
    for case in cases() {
        let batch = if case.wire_len() > LARGE_INPUT {
            BatchSize::PerIteration
        } else {
            BatchSize::NumIterations(BATCH)
        };
        let expected = case.frames.len();
        for (unit, throughput) in units(&case) {
            group.throughput(throughput);
            group.bench_function(BenchmarkId::new(case.name, unit), |b| {
                b.iter_batched(
                    || case.chunk(),
                    |mut chunk| {
                        let mut n = 0;
                        while let Some(frame) = decoder.decode(&mut chunk).expect("valid stream") {
                            black_box(frame);
                            n += 1;
                        }
                        debug_assert_eq!(n, expected);
                        // Returned so the empty chunk is dropped untimed.
                        chunk
                    },
                    batch,
                );
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = encode, decode
}
criterion_main!(benches);
