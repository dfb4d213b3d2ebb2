//! Codec tests: golden bytes written by hand from the wire contract, round
//! trips, random split points, garbage, every malformed case, zero copy.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::rng::Rng;

const MAX: usize = 1 << 20;

fn dec() -> Decoder {
    Decoder::new(MAX)
}

fn encode(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    buf
}

/// Decodes frames until the decoder wants more bytes.
fn drain(d: &Decoder, buf: &mut BytesMut) -> Result<Vec<Frame>, DecodeError> {
    let mut out = Vec::new();
    while let Some(frame) = d.decode(buf)? {
        out.push(frame);
    }
    Ok(out)
}

/// Decodes `bytes` expecting an error; checks it leaves the buffer untouched.
fn decode_err(d: &Decoder, bytes: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    let err = d.decode(&mut buf).unwrap_err();
    assert_eq!(&buf[..], bytes, "an error must leave the buffer untouched");
    err
}

/// Like [`decode_err`] for a header error: `pending_frame_len` must not
/// vouch for a header that `decode` rejects.
fn header_err(d: &Decoder, bytes: &[u8]) -> DecodeError {
    assert_eq!(d.pending_frame_len(bytes), None);
    decode_err(d, bytes)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------------------
// 1. Golden vectors, written byte by byte from the wire contract.
// ---------------------------------------------------------------------------

const HELLO_HS: Handshake = Handshake {
    flags: 0,
    interval_ms: 0x0102_0304,
    timeout_ms: 0x0506_0708,
    session_id: 0x1112_1314_1516_1718,
    recv_seq: 0x2122_2324_2526_2728,
};

#[rustfmt::skip]
const HELLO_BYTES: [u8; 35] = [
    0, 0, 0, 31,                                      // length = 1 + 30
    0x01,                                             // HELLO
    b'T', b'T', b'H', b'R',                           // magic
    1,                                                // version
    0,                                                // flags
    0x01, 0x02, 0x03, 0x04,                           // interval_ms
    0x05, 0x06, 0x07, 0x08,                           // timeout_ms
    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,   // session_id
    0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,   // recv_seq
];

const WELCOME_HS: Handshake = Handshake {
    flags: 0x80, // an unknown bit: kept as received
    interval_ms: 15_000,
    timeout_ms: 10_000,
    session_id: 0xDEAD_BEEF_CAFE_F00D,
    recv_seq: 42,
};

#[rustfmt::skip]
const WELCOME_BYTES: [u8; 35] = [
    0, 0, 0, 31,
    0x02,                                             // WELCOME
    0x54, 0x54, 0x48, 0x52,                           // "TTHR"
    0x01,
    0x80,
    0x00, 0x00, 0x3A, 0x98,                           // 15 000
    0x00, 0x00, 0x27, 0x10,                           // 10 000
    0xDE, 0xAD, 0xBE, 0xEF, 0xCA, 0xFE, 0xF0, 0x0D,
    0, 0, 0, 0, 0, 0, 0, 42,
];

fn golden() -> Vec<(Frame, Vec<u8>)> {
    vec![
        (Frame::Hello(HELLO_HS), HELLO_BYTES.to_vec()),
        (Frame::Welcome(WELCOME_HS), WELCOME_BYTES.to_vec()),
        (Frame::Data(Bytes::new()), vec![0, 0, 0, 1, 0x03]),
        (
            Frame::Data(Bytes::from_static(b"hi")),
            vec![0, 0, 0, 3, 0x03, b'h', b'i'],
        ),
        (
            Frame::Ping(0x0102_0304_0506_0708),
            vec![0, 0, 0, 9, 0x04, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        (
            Frame::Pong(0xFEDC_BA98_7654_3210),
            vec![
                0, 0, 0, 9, 0x05, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
            ],
        ),
        (
            Frame::Close {
                code: CloseCode::NORMAL,
                reason: Bytes::new(),
            },
            vec![0, 0, 0, 3, 0x06, 0x03, 0xE8],
        ),
        (
            Frame::Close {
                code: CloseCode::GOING_AWAY,
                reason: Bytes::from_static(b"bye"),
            },
            vec![0, 0, 0, 6, 0x06, 0x03, 0xE9, b'b', b'y', b'e'],
        ),
        (
            // "é" is two bytes of UTF-8: C3 A9.
            Frame::Close {
                code: CloseCode::TOO_LARGE,
                reason: Bytes::from("é"),
            },
            vec![0, 0, 0, 5, 0x06, 0x03, 0xF1, 0xC3, 0xA9],
        ),
        (
            Frame::Ack(0x0102),
            vec![0, 0, 0, 9, 0x07, 0, 0, 0, 0, 0, 0, 1, 2],
        ),
    ]
}

#[test]
fn golden_frames_encode_to_and_decode_from_the_spec_bytes() {
    for (frame, bytes) in golden() {
        let encoded = encode(&frame);
        assert_eq!(&encoded[..], &bytes[..], "encode {frame:?}");
        assert_eq!(frame.encoded_len(), bytes.len(), "encoded_len {frame:?}");

        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(dec().decode(&mut buf), Ok(Some(frame.clone())));
        assert!(buf.is_empty(), "{frame:?} left bytes behind");
    }
}

#[test]
fn free_encoders_write_the_golden_bytes() {
    let mut buf = BytesMut::new();
    encode_hello(&HELLO_HS, &mut buf);
    encode_welcome(&WELCOME_HS, &mut buf);
    encode_data(b"", &mut buf);
    encode_data(b"hi", &mut buf);
    encode_ping(0x0102_0304_0506_0708, &mut buf);
    encode_pong(0xFEDC_BA98_7654_3210, &mut buf);
    encode_close(CloseCode::NORMAL, "", &mut buf);
    encode_close(CloseCode::GOING_AWAY, "bye", &mut buf);
    encode_close(CloseCode::TOO_LARGE, "é", &mut buf);
    encode_ack(0x0102, &mut buf);
    let want: Vec<u8> = golden().into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(&buf[..], &want[..]);
}

#[test]
fn wire_sizes_match_the_contract() {
    assert_eq!(HEARTBEAT_FRAME_LEN, 13);
    assert_eq!(encode(&Frame::Ping(0)).len(), 13);
    assert_eq!(encode(&Frame::Pong(u64::MAX)).len(), 13);
    assert_eq!(encode(&Frame::Hello(Handshake::default())).len(), 35);
    assert_eq!(encode(&Frame::Welcome(Handshake::default())).len(), 35);
    assert_eq!(HEADER_LEN + HANDSHAKE_LEN, 35);
}

#[test]
fn data_header_is_the_head_of_encode_data() {
    for len in [0usize, 1, 2, 255, 256, 65_536, MAX] {
        let payload = vec![0xAB; len];
        let mut buf = BytesMut::new();
        encode_data(&payload, &mut buf);
        assert_eq!(&buf[..HEADER_LEN], &data_header(len)[..]);
        assert_eq!(buf.len(), HEADER_LEN + len);
    }
    assert_eq!(data_header(0x0102_0304), [0x01, 0x02, 0x03, 0x05, 0x03]);
    assert_eq!(
        data_header(u32::MAX as usize - 1),
        [0xFF, 0xFF, 0xFF, 0xFF, 0x03]
    );
}

#[test]
#[should_panic(expected = "does not fit a u32 frame length")]
fn data_header_refuses_a_length_that_would_wrap() {
    let _ = data_header(u32::MAX as usize);
}

#[test]
fn kind_bytes_round_trip_and_nothing_else_is_a_kind() {
    for b in 0..=u8::MAX {
        match Kind::from_u8(b) {
            Some(kind) => {
                assert!((1..=7).contains(&b));
                assert_eq!(kind as u8, b);
            }
            None => assert!(b == 0 || b >= 8, "0x{b:02x} should be a kind"),
        }
    }
    for (frame, bytes) in golden() {
        assert_eq!(frame.kind() as u8, bytes[4]);
    }
}

// ---------------------------------------------------------------------------
// 2. Round trips of random frames.
// ---------------------------------------------------------------------------

/// A valid UTF-8 string of at most `max` bytes mixing 1- to 4-byte chars.
fn random_reason(rng: &mut Rng, max: usize) -> String {
    const CHARS: [char; 6] = ['a', 'Z', ' ', 'é', '€', '𝄞'];
    let target = rng.below_inclusive(max as u64) as usize;
    let mut s = String::new();
    loop {
        let c = CHARS[rng.below_inclusive(CHARS.len() as u64 - 1) as usize];
        if s.len() + c.len_utf8() > target {
            return s;
        }
        s.push(c);
    }
}

fn random_handshake(rng: &mut Rng) -> Handshake {
    Handshake {
        flags: rng.next_u64() as u8,
        interval_ms: rng.next_u64() as u32,
        timeout_ms: rng.next_u64() as u32,
        session_id: rng.next_u64(),
        recv_seq: rng.next_u64(),
    }
}

/// A random frame; DATA payloads are empty, exactly `max_frame`, or any
/// size in between, each a third of the time.
fn random_frame(rng: &mut Rng, max_frame: usize) -> Frame {
    match rng.below_inclusive(6) {
        0 => Frame::Hello(random_handshake(rng)),
        1 => Frame::Welcome(random_handshake(rng)),
        2 => {
            let len = match rng.below_inclusive(2) {
                0 => 0,
                1 => max_frame,
                _ => rng.below_inclusive(max_frame as u64) as usize,
            };
            let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            Frame::Data(payload.into())
        }
        3 => Frame::Ping(rng.next_u64()),
        4 => Frame::Pong(rng.next_u64()),
        5 => Frame::Close {
            code: CloseCode(rng.next_u64() as u16),
            reason: random_reason(rng, MAX_CLOSE_REASON).into(),
        },
        _ => Frame::Ack(rng.next_u64()),
    }
}

#[test]
fn random_frames_of_every_kind_round_trip() {
    let mut rng = Rng::new(1);
    let mut seen = [false; 8];
    for _ in 0..2_000 {
        let max_frame = rng.below_inclusive(300) as usize;
        let d = Decoder::new(max_frame);
        let frame = random_frame(&mut rng, max_frame);
        seen[frame.kind() as usize] = true;
        let mut buf = encode(&frame);
        assert_eq!(buf.len(), frame.encoded_len(), "{frame:?}");
        assert_eq!(d.pending_frame_len(&buf), Some(buf.len()));
        assert_eq!(d.decode(&mut buf), Ok(Some(frame.clone())));
        assert!(buf.is_empty());
        if let Some(reason) = frame.close_reason() {
            assert!(reason.len() <= MAX_CLOSE_REASON);
        }
    }
    assert_eq!(seen[1..], [true; 7], "every kind was generated");
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut buf = BytesMut::from(&b"xyz"[..]);
    Frame::Ping(5).encode(&mut buf);
    assert_eq!(&buf[..3], b"xyz");
    assert_eq!(&buf[3..], &[0, 0, 0, 9, 4, 0, 0, 0, 0, 0, 0, 0, 5]);
}

// ---------------------------------------------------------------------------
// 3. Random split points, 4. several frames in one buffer.
// ---------------------------------------------------------------------------

#[test]
fn any_split_of_a_stream_yields_the_same_frames() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let max_frame = rng.below_inclusive(200) as usize;
        let d = Decoder::new(max_frame);
        let frames: Vec<Frame> = (0..rng.below_inclusive(20))
            .map(|_| random_frame(&mut rng, max_frame))
            .collect();
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend_from_slice(&encode(f));
        }

        // How this seed cuts the stream: 1-byte dribbles, small chunks,
        // or chunks of any size.
        let mode = seed % 3;
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let left = (stream.len() - at) as u64;
            let chunk = match mode {
                0 => 1,
                1 => 1 + rng.below_inclusive(15.min(left - 1)),
                _ => 1 + rng.below_inclusive(left - 1),
            } as usize;
            buf.extend_from_slice(&stream[at..at + chunk]);
            at += chunk;
            got.extend(drain(&d, &mut buf).unwrap());
        }
        assert_eq!(got, frames, "seed {seed}, mode {mode}");
        assert!(buf.is_empty(), "seed {seed}: {} bytes left", buf.len());
    }
}

#[test]
fn several_frames_in_one_buffer_decode_in_one_go() {
    let frames: Vec<Frame> = golden().into_iter().map(|(f, _)| f).collect();
    let mut buf = BytesMut::new();
    for f in &frames {
        f.encode(&mut buf);
    }
    assert_eq!(drain(&dec(), &mut buf).unwrap(), frames);
    assert!(buf.is_empty());
}

// ---------------------------------------------------------------------------
// 5. Garbage never panics.
// ---------------------------------------------------------------------------

/// Random bytes; half the time shaped as a run of plausible headers (DATA
/// of sizes around `max_frame`, handshakes of the right size with the magic
/// and version mostly right, any kind with a small length) so that every
/// check past the first few bytes is reached too.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below_inclusive(300) as usize;
    let mut out: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    if rng.below_inclusive(1) == 0 {
        let mut at = 0;
        while at + HEADER_LEN <= out.len() {
            let (length, kind) = match rng.below_inclusive(2) {
                0 => (1 + rng.below_inclusive(80) as u32, Kind::Data as u8),
                1 => (1 + HANDSHAKE_LEN as u32, 1 + rng.below_inclusive(1) as u8),
                _ => (rng.below_inclusive(40) as u32, rng.below_inclusive(8) as u8),
            };
            out[at..at + 4].copy_from_slice(&length.to_be_bytes());
            out[at + 4] = kind;
            if kind <= 2 && rng.below_inclusive(3) != 0 && at + 10 <= out.len() {
                out[at + 5..at + 9].copy_from_slice(&MAGIC);
                out[at + 9] = rng.below_inclusive(2) as u8;
            }
            at += HEADER_LEN + length as usize;
        }
    }
    out
}

#[test]
fn garbage_never_panics_and_fails_only_with_1002_or_1009() {
    let mut frames = 0;
    let mut errors = [0usize; 2];
    let mut variants = HashSet::new();
    for seed in 0..3_000 {
        let mut rng = Rng::new(seed);
        let max_frame = rng.below_inclusive(64) as usize;
        let d = Decoder::new(max_frame);
        let mut bytes = Vec::new();
        // Half the seeds put the garbage behind valid frames.
        let valid: Vec<Frame> = if seed % 2 == 0 {
            (0..rng.below_inclusive(3))
                .map(|_| random_frame(&mut rng, max_frame))
                .collect()
        } else {
            Vec::new()
        };
        for f in &valid {
            bytes.extend_from_slice(&encode(f));
        }
        bytes.extend(garbage(&mut rng));

        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        let outcome = loop {
            let chunk = (1 + rng.below_inclusive(50) as usize).min(bytes.len() - at);
            buf.extend_from_slice(&bytes[at..at + chunk]);
            at += chunk;
            let error = loop {
                match d.decode(&mut buf) {
                    Ok(Some(f)) => got.push(f),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            if error.is_some() || at == bytes.len() {
                break error;
            }
        };
        assert!(got.len() >= valid.len(), "seed {seed}");
        assert_eq!(got[..valid.len()], valid[..], "seed {seed}");
        frames += got.len();
        if let Some(e) = outcome {
            match e.close_code() {
                CloseCode::PROTOCOL_ERROR => errors[0] += 1,
                CloseCode::TOO_LARGE => errors[1] += 1,
                other => panic!("seed {seed}: {e} has close code {other}"),
            }
            assert!(!e.detail().is_empty());
            variants.insert(std::mem::discriminant(&e));
        }
    }
    // The generator must actually reach every outcome.
    assert!(frames > 1_000, "{frames} frames");
    assert!(errors[0] > 100 && errors[1] > 100, "{errors:?}");
    assert_eq!(variants.len(), 7, "every DecodeError variant was reached");
}

// ---------------------------------------------------------------------------
// 6. Every malformed case of the contract.
// ---------------------------------------------------------------------------

#[test]
fn zero_length_is_refused_as_soon_as_the_length_is_in() {
    let e = header_err(&dec(), &[0, 0, 0, 0]);
    assert_eq!(e, DecodeError::ZeroLength);
    assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    assert_eq!(header_err(&dec(), &[0, 0, 0, 0, 3, 1, 2]), e);
}

#[test]
fn unknown_kinds_are_refused() {
    for k in [0x00, 0x08, 0xFF] {
        let e = header_err(&dec(), &[0, 0, 0, 1, k]);
        assert_eq!(e, DecodeError::UnknownKind(k));
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
        // The same, with a length no frame could have: the kind is checked
        // without waiting for any payload.
        assert_eq!(header_err(&dec(), &[0xFF, 0xFF, 0xFF, 0xFF, k]), e);
    }
}

#[test]
fn fixed_size_kinds_with_another_size_are_refused_from_the_header() {
    let cases = [
        (Kind::Ping, 7),
        (Kind::Ping, 9),
        (Kind::Pong, 0),
        (Kind::Pong, 7),
        (Kind::Ack, 9),
        (Kind::Hello, 29),
        (Kind::Hello, 31),
        (Kind::Welcome, 29),
        (Kind::Welcome, 31),
        (Kind::Ping, u32::MAX - 1),
    ];
    // max_frame limits DATA only: even with 0 the size error is BadLength.
    for d in [dec(), Decoder::new(0)] {
        for (kind, payload_len) in cases {
            let mut header = (payload_len + 1).to_be_bytes().to_vec();
            header.push(kind as u8);
            let e = header_err(&d, &header);
            assert_eq!(e, DecodeError::BadLength { kind, payload_len });
            assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }
}

#[test]
fn max_frame_does_not_apply_to_control_frames() {
    let d = Decoder::new(0);
    for (frame, bytes) in golden() {
        let mut buf = BytesMut::from(&bytes[..]);
        match frame {
            Frame::Data(ref p) if !p.is_empty() => {
                assert!(matches!(
                    d.decode(&mut buf),
                    Err(DecodeError::TooLarge { .. })
                ))
            }
            _ => assert_eq!(d.decode(&mut buf), Ok(Some(frame))),
        }
    }
}

#[test]
fn handshake_with_bad_magic_or_version_is_refused() {
    let mut bad_magic = WELCOME_BYTES;
    bad_magic[8] = b'X';
    let e = decode_err(&dec(), &bad_magic);
    assert_eq!(e, DecodeError::BadMagic);
    assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);

    let mut bad_version = HELLO_BYTES;
    bad_version[9] = 2;
    let e = decode_err(&dec(), &bad_version);
    assert_eq!(e, DecodeError::BadVersion(2));
    assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn handshake_with_bad_magic_or_version_is_refused_before_it_is_complete() {
    let mut bad_magic = HELLO_BYTES;
    bad_magic[5] = b'G';
    for len in HEADER_LEN..=bad_magic.len() {
        let want = if len == HEADER_LEN {
            None
        } else {
            Some(DecodeError::BadMagic)
        };
        assert_eq!(
            dec().decode(&mut BytesMut::from(&bad_magic[..len])).err(),
            want
        );
    }
    let mut bad_version = WELCOME_BYTES;
    bad_version[9] = 0;
    for len in HEADER_LEN..=bad_version.len() {
        let want = if len < 10 {
            None
        } else {
            Some(DecodeError::BadVersion(0))
        };
        let got = dec().decode(&mut BytesMut::from(&bad_version[..len]));
        assert_eq!(got.err(), want, "{len} bytes");
    }
}

#[test]
fn handshake_flags_are_kept_as_received() {
    let mut bytes = HELLO_BYTES;
    bytes[10] = 0xFF;
    let mut buf = BytesMut::from(&bytes[..]);
    let want = Handshake {
        flags: 0xFF,
        ..HELLO_HS
    };
    assert_eq!(dec().decode(&mut buf), Ok(Some(Frame::Hello(want))));
}

#[test]
fn close_payload_must_be_2_to_125_bytes() {
    for payload_len in [0u32, 1, 126, 127, 1000] {
        let mut header = (payload_len + 1).to_be_bytes().to_vec();
        header.push(0x06);
        let e = header_err(&dec(), &header);
        let want = DecodeError::BadLength {
            kind: Kind::Close,
            payload_len,
        };
        assert_eq!(e, want);
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }
    // 125 bytes: a 123-byte reason, the longest allowed.
    let reason = "r".repeat(MAX_CLOSE_REASON);
    let bytes = cat(&[&[0, 0, 0, 126, 0x06, 0x03, 0xE8], reason.as_bytes()]);
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = dec().decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.close_reason(), Some(reason.as_str()));
}

#[test]
fn close_reason_must_be_utf8() {
    let cases: [&[u8]; 4] = [
        &[0xFF],
        &[b'o', b'k', 0xFE],
        &[0xC3],             // a 2-byte char cut short
        &[0xED, 0xA0, 0x80], // an encoded surrogate
    ];
    for reason in cases {
        let len = 1 + 2 + reason.len() as u8;
        let bytes = cat(&[&[0, 0, 0, len, 0x06, 0x03, 0xE8], reason]);
        let e = decode_err(&dec(), &bytes);
        assert_eq!(e, DecodeError::BadUtf8);
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn oversized_data_is_refused_from_the_five_header_bytes_alone() {
    let d = Decoder::new(1000);
    // length - 1 = 1001 = max_frame + 1; no payload byte is present.
    let e = header_err(&d, &[0, 0, 0x03, 0xEA, 0x03]);
    assert_eq!(
        e,
        DecodeError::TooLarge {
            payload_len: 1001,
            max: 1000
        }
    );
    assert_eq!(e.close_code(), CloseCode::TOO_LARGE);

    let e = header_err(&d, &[0xFF, 0xFF, 0xFF, 0xFF, 0x03]);
    assert_eq!(
        e,
        DecodeError::TooLarge {
            payload_len: u32::MAX - 1,
            max: 1000
        }
    );
    assert_eq!(e.close_code(), CloseCode::TOO_LARGE);
    // 4 bytes of that header are not enough to judge yet (the kind decides).
    let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF][..]);
    assert_eq!(d.decode(&mut buf), Ok(None));
}

#[test]
fn data_of_exactly_max_frame_is_fine_and_never_reserved_for_early() {
    let d = Decoder::new(1000);
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(&data_header(1000));
    let capacity = buf.capacity();
    assert_eq!(d.pending_frame_len(&buf), Some(1005));
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert_eq!(buf.capacity(), capacity, "decode must not reserve");

    buf.extend_from_slice(&[7; 1000]);
    let frame = d.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame, Frame::Data(vec![7; 1000].into()));
    assert!(buf.is_empty());
}

#[test]
fn errors_have_a_detail_and_a_display() {
    let errors = [
        DecodeError::ZeroLength,
        DecodeError::UnknownKind(0x08),
        DecodeError::BadLength {
            kind: Kind::Ping,
            payload_len: 7,
        },
        DecodeError::TooLarge {
            payload_len: 2_000_000,
            max: MAX,
        },
        DecodeError::BadMagic,
        DecodeError::BadVersion(2),
        DecodeError::BadUtf8,
    ];
    for e in errors {
        let shown = e.to_string();
        assert!(shown.starts_with(e.detail()), "{shown:?}");
    }
    assert_eq!(errors[3].detail(), "frame too large");
    assert_eq!(errors[1].to_string(), "unknown frame kind 0x08");
    assert_eq!(
        errors[3].to_string(),
        "frame too large: 2000000 payload bytes, max 1048576"
    );
}

// ---------------------------------------------------------------------------
// 7. Partial frames.
// ---------------------------------------------------------------------------

#[test]
fn every_prefix_of_a_frame_waits_and_leaves_the_buffer_alone() {
    let mut big = BytesMut::new();
    encode_data(&[0x5A; 300], &mut big);
    let mut cases = golden();
    cases.push((Frame::Data(vec![0x5A; 300].into()), big.to_vec()));
    for (frame, bytes) in cases {
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            let mut buf = BytesMut::from(prefix);
            assert_eq!(dec().decode(&mut buf), Ok(None), "{frame:?}, {len} bytes");
            assert_eq!(&buf[..], prefix);
            let want = (len >= HEADER_LEN).then_some(bytes.len());
            assert_eq!(dec().pending_frame_len(prefix), want, "{frame:?}, {len}");
        }
        assert_eq!(dec().pending_frame_len(&bytes), Some(bytes.len()));
    }
}

// ---------------------------------------------------------------------------
// 8. Zero copy.
// ---------------------------------------------------------------------------

#[test]
fn payloads_are_split_off_the_read_buffer_without_copying() {
    let mut buf = BytesMut::with_capacity(4096);
    encode_ping(1, &mut buf);
    encode_data(b"first payload", &mut buf);
    encode_close(CloseCode::NORMAL, "done here", &mut buf);
    encode_data(&[9; 1000], &mut buf);
    let base = buf.as_ptr() as usize;
    let end = base + buf.len();
    let d = dec();
    let frames = drain(&d, &mut buf).unwrap();
    assert_eq!(frames.len(), 4);

    let mut offset = 0;
    for frame in &frames {
        let inner: Option<&Bytes> = match frame {
            Frame::Data(p) => Some(p),
            Frame::Close { reason, .. } => Some(reason),
            _ => None,
        };
        if let Some(b) = inner {
            let at = b.as_ptr() as usize;
            assert!(at >= base && at + b.len() <= end, "{frame:?} was copied");
            let skip = if frame.kind() == Kind::Close { 7 } else { 5 };
            assert_eq!(at, base + offset + skip, "{frame:?} points at its bytes");
        }
        offset += frame.encoded_len();
    }
}

// ---------------------------------------------------------------------------
// 9. CLOSE reasons are cut at a char boundary.
// ---------------------------------------------------------------------------

#[test]
fn encode_close_cuts_a_long_reason_at_a_char_boundary() {
    for (lead, c) in [(121, '€'), (122, '€'), (120, '𝄞'), (122, 'é'), (123, 'é')] {
        // `lead` ASCII bytes, then multi-byte chars straddling byte 123, up
        // to at least 200 bytes.
        let mut reason = "a".repeat(lead);
        while reason.len() < 200 {
            reason.push(c);
        }
        let mut buf = BytesMut::new();
        encode_close(CloseCode::GOING_AWAY, &reason, &mut buf);
        let frame = dec().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        let got = frame.close_reason().unwrap();
        assert!(got.len() <= MAX_CLOSE_REASON);
        assert!(reason.starts_with(got));
        assert!(got.len() + c.len_utf8() > MAX_CLOSE_REASON, "cut too short");
        assert_eq!(frame.encoded_len(), 7 + got.len());
    }
    // The exact cut for one case: '€' (3 bytes) covers bytes 121..124.
    let reason = format!("{}€€€", "a".repeat(121));
    let mut buf = BytesMut::new();
    encode_close(CloseCode::NORMAL, &reason, &mut buf);
    assert_eq!(buf.len(), 7 + 121);
    assert_eq!(&buf[..4], &[0, 0, 0, 124]);
}

#[test]
fn frame_encode_cuts_a_hand_built_close_reason_the_same_way() {
    // Too long, and invalid UTF-8 after the 5th byte.
    let long = Frame::Close {
        code: CloseCode::NORMAL,
        reason: "é".repeat(100).into(),
    };
    let invalid = Frame::Close {
        code: CloseCode::NORMAL,
        reason: Bytes::from_static(b"hello\xFFworld"),
    };
    // Invalid UTF-8 straddling byte 123 of an otherwise long reason.
    let mut straddle = "a".repeat(122).into_bytes();
    straddle.extend_from_slice(&[0xE2, 0x82]); // '€' missing its last byte
    straddle.extend_from_slice(&[b'z'; 50]);
    let straddle = Frame::Close {
        code: CloseCode::NORMAL,
        reason: straddle.into(),
    };
    assert_eq!(invalid.close_reason(), Some("hello"));
    let cases = [
        (long, "é".repeat(61)),
        (invalid, "hello".to_string()),
        (straddle, "a".repeat(122)),
    ];
    for (frame, want) in cases {
        let mut buf = encode(&frame);
        assert_eq!(buf.len(), frame.encoded_len());
        let back = dec().decode(&mut buf).unwrap().unwrap();
        assert_eq!(back.close_reason(), Some(want.as_str()));
    }
    assert_eq!(Frame::Ping(1).close_reason(), None);
}

// ---------------------------------------------------------------------------
// The in-place fast path for DATA.
// ---------------------------------------------------------------------------

#[test]
fn complete_data_takes_exactly_the_whole_valid_data_frames_decode_in_place_takes() {
    // Every prefix of garbage and of valid streams: `complete_data` says
    // `Some(len)` exactly when `decode_in_place` would return
    // `InPlace::Data(len)`, and it consumes nothing.
    let mut agreed = [0usize; 2];
    for seed in 0..3_000 {
        let mut rng = Rng::new(seed);
        let max_frame = rng.below_inclusive(64) as usize;
        let d = Decoder::new(max_frame);
        let mut bytes = Vec::new();
        if seed % 2 == 0 {
            bytes.extend_from_slice(&encode(&random_frame(&mut rng, max_frame)));
        }
        bytes.extend(garbage(&mut rng));
        for end in 0..=bytes.len() {
            let prefix = &bytes[..end];
            let fast = d.complete_data(prefix);
            let mut buf = BytesMut::from(prefix);
            let slow = match d.decode_in_place(&mut buf) {
                Ok(Some(InPlace::Data(len))) => Some(len),
                _ => None,
            };
            assert_eq!(fast, slow, "seed {seed}, prefix {prefix:?}");
            if let Some(len) = fast {
                assert_eq!(&prefix[..HEADER_LEN], &data_header(len)[..]);
            }
            agreed[usize::from(fast.is_some())] += 1;
        }
    }
    assert!(agreed[0] > 10_000 && agreed[1] > 1_000, "{agreed:?}");
}

#[test]
fn complete_data_refuses_what_is_not_a_whole_data_frame() {
    let d = Decoder::new(8);
    assert_eq!(d.complete_data(&[0, 0, 0, 3, 3, b'h', b'i']), Some(2));
    assert_eq!(
        d.complete_data(&[0, 0, 0, 1, 3, 9]),
        Some(0),
        "empty payload"
    );
    assert_eq!(d.complete_data(&[0, 0, 0, 3, 3, b'h']), None, "incomplete");
    assert_eq!(d.complete_data(&[0, 0, 0, 3]), None, "header incomplete");
    assert_eq!(d.complete_data(&[0, 0, 0, 0, 3]), None, "zero length");
    assert_eq!(
        d.complete_data(&[0, 0, 0, 10, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        None,
        "over max_frame"
    );
    assert_eq!(
        d.complete_data(&[0, 0, 0, 9, 4, 0, 0, 0, 0, 0, 0, 0, 1]),
        None,
        "a PING"
    );
}
