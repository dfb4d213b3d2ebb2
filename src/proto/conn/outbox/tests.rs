use std::io::IoSlice;

use bytes::{BufMut, Bytes};

use super::{spare_queue, Outbox};
use crate::proto::codec::{self, Decoder, Frame};
use crate::rng::Rng;

/// Writes everything, `step(i)` bytes at a time, and returns the stream.
fn drain(outbox: &mut Outbox, mut step: impl FnMut() -> usize) -> Vec<u8> {
    let mut wire = Vec::new();
    while !outbox.is_empty() {
        let mut iov = [IoSlice::new(&[]); 4];
        let n = outbox.chunks(&mut iov);
        assert!(n > 0, "non-empty outbox gave no chunks");
        let mut budget = step().max(1);
        let mut written = 0;
        for s in &iov[..n] {
            let take = budget.min(s.len());
            wire.extend_from_slice(&s[..take]);
            written += take;
            budget -= take;
            if budget == 0 {
                break;
            }
        }
        outbox.advance(written);
    }
    wire
}

fn decode_all(wire: &[u8]) -> Vec<Frame> {
    let decoder = Decoder::new(1 << 20);
    let mut buf = bytes::BytesMut::from(wire);
    let mut frames = Vec::new();
    while let Some(f) = decoder.decode(&mut buf).expect("well-formed stream") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "trailing bytes");
    frames
}

#[test]
fn control_goes_ahead_of_unstarted_data() {
    let mut o = Outbox::default();
    o.push_data(Bytes::from_static(b"first"));
    o.push_data(Bytes::from_static(b"second"));
    codec::encode_pong(7, o.ctrl());
    let frames = decode_all(&drain(&mut o, || usize::MAX));
    assert_eq!(
        frames,
        vec![
            Frame::Pong(7),
            Frame::Data(Bytes::from_static(b"first")),
            Frame::Data(Bytes::from_static(b"second")),
        ]
    );
}

#[test]
fn control_waits_for_a_partly_written_data_frame() {
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![1u8; 100]));
    o.push_data(Bytes::from(vec![2u8; 100]));
    o.advance(50); // half of the first frame is on the wire
    codec::encode_ping(9, o.ctrl());
    let mut wire = vec![0u8; 50];
    wire[..5].copy_from_slice(&codec::data_header(100));
    wire[5..].fill(1);
    wire.extend(drain(&mut o, || 7));
    assert_eq!(
        decode_all(&wire),
        vec![
            Frame::Data(Bytes::from(vec![1u8; 100])),
            Frame::Ping(9),
            Frame::Data(Bytes::from(vec![2u8; 100])),
        ]
    );
}

#[test]
fn tail_follows_all_data_and_len_counts_every_byte() {
    let mut o = Outbox::default();
    o.push_data(Bytes::from_static(b"a"));
    codec::encode_close(crate::CloseCode::NORMAL, "bye", o.tail());
    o.push_data(Bytes::from_static(b"b"));
    codec::encode_ping(1, o.ctrl());
    assert_eq!(o.len(), 6 + 6 + 5 + 2 + 3 + 13);
    let frames = decode_all(&drain(&mut o, || 3));
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0], Frame::Ping(1));
    assert_eq!(frames[3].close_reason(), Some("bye"));
    assert_eq!(o.len(), 0);
}

#[test]
fn discard_keeps_the_frame_on_the_wire_and_drops_the_rest() {
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![1u8; 20]));
    o.push_data(Bytes::from(vec![2u8; 20]));
    codec::encode_close(crate::CloseCode::NORMAL, "", o.tail());
    o.advance(3);
    o.discard_unstarted();
    assert_eq!(o.len(), 25 - 3);
    codec::encode_close(crate::CloseCode::GOING_AWAY, "", o.ctrl());
    let mut wire = codec::data_header(20)[..3].to_vec();
    wire.extend(drain(&mut o, || 4));
    let frames = decode_all(&wire);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0], Frame::Data(Bytes::from(vec![1u8; 20])));
    assert!(matches!(frames[1], Frame::Close { code, .. } if code == crate::CloseCode::GOING_AWAY));
    // The withheld one comes back when the output is dropped; the one
    // finished on the wire does not.
    assert!(!o.release_idle_memory(), "withheld messages keep the queue");
    let mut dropped = Vec::new();
    o.clear(&mut dropped);
    assert_eq!(dropped, [Bytes::from(vec![2u8; 20])], "the unstarted one");

    // Nothing started: everything goes.
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![1u8; 20]));
    o.push_slice(b"small");
    o.discard_unstarted();
    assert!(o.is_empty());
    let mut dropped = Vec::new();
    o.clear(&mut dropped);
    assert_eq!(
        dropped,
        [Bytes::from(vec![1u8; 20]), Bytes::from_static(b"small")]
    );
}

#[test]
fn clearing_hands_back_every_frame_not_written_whole_in_order() {
    let mut o = Outbox::default();
    o.push_slice(b"one");
    o.push_slice(b"two");
    o.push_data(Bytes::from(vec![3u8; 2000]));
    o.push_slice(b"four");
    // "one" written whole, "two" partly; a control frame waits.
    o.advance(codec::HEADER_LEN + 3 + 2);
    codec::encode_pong(9, o.ctrl());
    let mut dropped = Vec::new();
    o.clear(&mut dropped);
    assert!(o.is_empty());
    let want: Vec<Bytes> = vec![
        Bytes::from_static(b"two"),
        Bytes::from(vec![3u8; 2000]),
        Bytes::from_static(b"four"),
    ];
    assert_eq!(dropped, want);
    // A large frame partly written counts too; control frames never do.
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![5u8; 2000]));
    o.advance(100);
    codec::encode_pong(1, o.ctrl());
    let mut dropped = Vec::new();
    o.clear(&mut dropped);
    assert_eq!(dropped, [Bytes::from(vec![5u8; 2000])]);
}

#[test]
fn chunks_stop_at_a_full_array_and_stay_a_prefix() {
    let mut o = Outbox::default();
    for i in 0..10u8 {
        o.push_data(Bytes::from(vec![i; 2000]));
    }
    let mut iov = [IoSlice::new(&[]); 3];
    assert_eq!(o.chunks(&mut iov), 3);
    assert_eq!(&*iov[0], &codec::data_header(2000)[..]);
    assert_eq!(&*iov[1], &[0u8; 2000][..]);
    assert_eq!(&*iov[2], &codec::data_header(2000)[..]);
}

#[test]
fn small_messages_go_out_as_one_contiguous_run_large_ones_uncopied() {
    let mut o = Outbox::default();
    for i in 0..16u8 {
        o.push_data(Bytes::from(vec![i; 64]));
    }
    let big = Bytes::from(vec![9u8; 4096]);
    o.push_data(big.clone());
    o.push_data(Bytes::from_static(b"tail"));
    let mut iov = [IoSlice::new(&[]); 8];
    let n = o.chunks(&mut iov);
    // One run of 16 small frames, the big frame's header and payload
    // (its payload is the application's own memory), then a new run.
    assert_eq!(n, 4);
    assert_eq!(iov[0].len(), 16 * 69);
    assert_eq!(&*iov[1], &codec::data_header(4096)[..]);
    assert_eq!(iov[2].as_ptr(), big.as_ptr());
    assert_eq!(iov[3].len(), 9);
}

#[test]
fn runs_stop_growing_at_their_cap() {
    let mut o = Outbox::default();
    for _ in 0..1000 {
        o.push_data(Bytes::from(vec![0u8; 1000]));
    }
    let mut iov = [IoSlice::new(&[]); 128];
    let n = o.chunks(&mut iov);
    assert!(iov[..n].iter().all(|s| s.len() <= 16 * 1024));
    assert_eq!(iov[..n].iter().map(|s| s.len()).sum::<usize>(), 1000 * 1005);
}

#[test]
fn written_runs_are_recycled_so_a_steady_stream_allocates_nothing() {
    // The pool is the thread's: start from an empty one.
    while super::run_pool::kept() > 0 {
        drop(super::run_pool::take());
    }
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![1u8; 64]));
    drain(&mut o, || usize::MAX);
    // Kept on the thread for the next run.
    assert_eq!(super::run_pool::kept(), 1);
    let run = super::run_pool::take();
    assert!(
        run.capacity() >= 16 * 1024 && run.is_empty(),
        "{}",
        run.capacity()
    );
    super::run_pool::give(run);
    // The next message packs into it: nothing new is taken.
    o.push_data(Bytes::from(vec![2u8; 64]));
    assert_eq!(super::run_pool::kept(), 0);
    drain(&mut o, || usize::MAX);
    assert_eq!(super::run_pool::kept(), 1);
}

#[test]
fn a_sole_segment_finished_by_a_write_leaves_the_queue_clean() {
    // One run, written in two parts: the second write finishes it (the
    // common case's shortcut), with the run's start already on the wire.
    let mut o = Outbox::default();
    o.push_slice(b"abc");
    o.push_slice(b"de");
    let run = gathered(&o);
    assert_eq!(run.len(), 15);
    o.advance(4);
    assert_eq!((o.len(), o.contiguous()), (11, Some(&run[4..])));
    o.advance(11);
    assert_eq!((o.len(), o.contiguous()), (0, None));
    assert_eq!(o.chunks(&mut [IoSlice::new(&[]); 4]), 0);
    // What follows starts a fresh run, from its first byte.
    o.push_slice(b"fg");
    let mut want = codec::data_header(2).to_vec();
    want.extend_from_slice(b"fg");
    assert_eq!(o.contiguous(), Some(&want[..]));
    // A sole large frame written whole goes the same way; a control frame
    // queued behind it is still sent after it, whole.
    o.advance(want.len());
    o.push_data(Bytes::from(vec![7u8; 2000]));
    assert_eq!(o.len(), 2005);
    o.advance(2005);
    assert!(o.is_empty());
    codec::encode_ping(9, o.ctrl());
    let wire = drain(&mut o, || 3);
    assert!(matches!(decode_all(&wire)[..], [Frame::Ping(9)]));
}

#[test]
fn random_interleavings_keep_every_frame_whole_and_in_order() {
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut o = Outbox::default();
        let mut wire = Vec::new();
        let mut want_data = Vec::new();
        let mut want_ctrl = Vec::new();
        for round in 0..50u64 {
            match rng.below_inclusive(3) {
                0 | 1 => {
                    let len = rng.below_inclusive(40) as usize;
                    let mut p = bytes::BytesMut::with_capacity(len);
                    p.put_bytes(round as u8, len);
                    want_data.push(p.clone().freeze());
                    o.push_data(p.freeze());
                }
                2 => {
                    codec::encode_pong(round, o.ctrl());
                    want_ctrl.push(round);
                }
                _ => {
                    let mut iov = [IoSlice::new(&[]); 5];
                    let n = o.chunks(&mut iov);
                    let mut budget = rng.below_inclusive(60) as usize;
                    let mut written = 0;
                    for s in &iov[..n] {
                        let take = budget.min(s.len());
                        wire.extend_from_slice(&s[..take]);
                        written += take;
                        budget -= take;
                    }
                    o.advance(written);
                }
            }
        }
        wire.extend(drain(&mut o, || 11));
        let frames = decode_all(&wire);
        let data: Vec<Bytes> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Data(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        let pongs: Vec<u64> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Pong(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(data, want_data, "seed {seed}");
        assert_eq!(pongs, want_ctrl, "seed {seed}");
    }
}

#[test]
fn the_queue_goes_to_the_spare_once_all_is_written_and_not_before() {
    let mut o = Outbox::default();
    o.push_data(Bytes::from_static(b"x"));
    assert!(!o.release_idle_memory(), "something is queued");
    assert_eq!(o.len(), 6);
    // A partial write keeps it; the write that finishes it gives it up.
    let mut wrote = 0;
    drain(&mut o, || {
        wrote += 1;
        if wrote == 1 {
            4
        } else {
            100
        }
    });
    assert_eq!(wrote, 2);
    assert!(o.queue.is_none(), "given up with its last byte written");
    assert!(spare_queue::kept());
    assert!(!o.release_idle_memory(), "nothing left to free");
    // The next queue is the spare (no allocation).
    o.push_data(Bytes::from_static(b"y"));
    assert!(!spare_queue::kept());
}

#[test]
fn a_drained_control_buffer_holds_no_memory() {
    let mut o = Outbox::default();
    codec::encode_ping(1, o.ctrl());
    let ctrl_capacity = |o: &Outbox| o.queue.as_ref().map_or(0, |q| q.ctrl.capacity());
    assert!(ctrl_capacity(&o) > 0);
    drain(&mut o, || 5);
    assert_eq!(ctrl_capacity(&o), 0);
}

#[test]
fn a_large_control_buffer_drained_while_messages_stay_queued_is_freed() {
    // The queue is kept (it carries a message), its control buffer only
    // while small (see the next test).
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![7u8; 2000]));
    o.ctrl().reserve(spare_queue::CTRL_KEEP + 1);
    codec::encode_pong(1, o.ctrl());
    // Only the PONG's 13 bytes go out: the large frame stays queued.
    let mut iov = [IoSlice::new(&[]); 4];
    assert!(o.chunks(&mut iov) >= 2);
    assert_eq!(iov[0].len(), 13);
    o.advance(13);
    let queue = o.queue.as_ref().expect("messages queued");
    assert_eq!(queue.ctrl.capacity(), 0);
    assert_eq!(o.len(), 2005);
}

#[test]
fn a_small_control_buffer_stays_with_a_queue_that_carries_messages() {
    // A resumed session ACKs every 64 messages: its control buffer is
    // reused, not allocated per ACK.
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![7u8; 2000]));
    codec::encode_ack(1, o.ctrl());
    let at = o.queue.as_ref().expect("queued").ctrl.as_ptr() as usize;
    o.advance(13);
    codec::encode_ack(2, o.ctrl());
    let queue = o.queue.as_ref().expect("messages queued");
    assert_eq!(queue.ctrl.as_ptr() as usize, at, "the same buffer");
    assert_eq!(o.len(), 2005 + 13);
}

/// The address the next PONG's bytes are written from, for an outbox
/// that queues only that PONG and drains it.
fn pong_address(nonce: u64) -> usize {
    let mut o = Outbox::default();
    codec::encode_pong(nonce, o.ctrl());
    let mut iov = [IoSlice::new(&[]); 4];
    assert_eq!(o.chunks(&mut iov), 1);
    let at = iov[0].as_ptr() as usize;
    assert_eq!(decode_all(&drain(&mut o, || 4)), vec![Frame::Pong(nonce)]);
    assert!(o.is_unallocated(), "a heartbeat-only queue is given up");
    at
}

#[test]
fn heartbeat_answers_reuse_the_threads_spare_queue() {
    // Connections answering PINGs one after the other (as a reactor does)
    // all write from the same control buffer: no allocation per answer,
    // and none of them keeps a queue.
    let first = pong_address(1);
    assert!(spare_queue::kept());
    for nonce in 2..10 {
        assert_eq!(pong_address(nonce), first, "PONG {nonce} allocated anew");
    }
    // Taken while in use, back afterwards.
    let mut o = Outbox::default();
    codec::encode_ping(3, o.ctrl());
    assert!(!spare_queue::kept());
    drain(&mut o, || usize::MAX);
    assert!(spare_queue::kept());
}

#[test]
fn the_spare_queue_keeps_no_data_and_only_small_buffers() {
    // A queue that carried messages and a CLOSE, given up once all is out.
    let mut o = Outbox::default();
    o.push_slice(&[1u8; 500]);
    o.push_data(Bytes::from(vec![2u8; 5000]));
    codec::encode_close(crate::error::CloseCode::NORMAL, "bye", o.tail());
    drain(&mut o, || 700);
    assert!(o.is_unallocated(), "given up as soon as all is out");
    let q = spare_queue::take();
    assert_eq!(
        (q.tail.capacity(), q.len()),
        (0, 0),
        "the spare holds no tail and nothing queued"
    );
    assert!(q.data.is_empty() && q.data.capacity() <= spare_queue::DATA_KEEP);
    // A backlog of large messages: its large ring is not kept.
    let mut o = Outbox::default();
    for i in 0..40u8 {
        o.push_data(Bytes::from(vec![i; 2000]));
    }
    drain(&mut o, || usize::MAX);
    assert_eq!(spare_queue::take().data.capacity(), 0);
    // A burst of control frames: its large buffer is not kept.
    let mut o = Outbox::default();
    for nonce in 0..100 {
        codec::encode_pong(nonce, o.ctrl());
    }
    drain(&mut o, || usize::MAX);
    assert!(spare_queue::take().ctrl.capacity() <= 256);
    // A queue with bytes still in it is never kept.
    let mut q = spare_queue::take();
    codec::encode_pong(1, &mut q.ctrl);
    spare_queue::give(q);
    assert!(!spare_queue::kept());
}

#[test]
fn control_goes_between_packed_frames_even_at_an_exact_boundary() {
    let mut o = Outbox::default();
    for i in 0..4u8 {
        o.push_data(Bytes::from(vec![i; 10]));
    }
    o.advance(15); // exactly the first frame
    codec::encode_pong(3, o.ctrl());
    let mut wire = codec::data_header(10).to_vec();
    wire.extend([0u8; 10]);
    wire.extend(drain(&mut o, || 4));
    let frames = decode_all(&wire);
    assert_eq!(frames[1], Frame::Pong(3));
    assert_eq!(frames.len(), 5);
}

#[test]
fn a_queued_ping_is_known_until_its_last_byte_is_written() {
    let mut o = Outbox::default();
    assert!(!o.ping_queued());
    o.push_data(Bytes::from(vec![1u8; 100]));
    o.advance(50); // the PING waits for the rest of this frame
    o.push_ping(5);
    codec::encode_pong(6, o.ctrl()); // a PONG queued after it
    assert!(o.ping_queued());
    o.advance(55); // the rest of the DATA frame
    assert!(o.ping_queued());
    o.advance(12); // all but the PING's last byte
    assert!(o.ping_queued());
    o.advance(1);
    assert!(!o.ping_queued(), "the PING is on the wire");
    assert_eq!(o.len(), 13, "the PONG is still queued");
    let frames = decode_all(&drain(&mut o, || usize::MAX));
    assert_eq!(frames, vec![Frame::Pong(6)]);
    // Cleared with the queue (the socket went away).
    o.push_ping(7);
    o.clear(&mut Vec::new());
    assert!(!o.ping_queued());
}

#[test]
fn a_framed_push_puts_the_same_bytes_on_the_wire_as_a_payload_push() {
    let (mut by_payload, mut by_frame) = (Outbox::default(), Outbox::default());
    let mut rng = Rng::new(7);
    for i in 0..500u32 {
        let len = rng.below_inclusive(super::COPY_MAX as u64) as usize;
        let payload = vec![i as u8; len];
        by_payload.push_slice(&payload);
        let mut frame = codec::data_header(len).to_vec();
        frame.extend_from_slice(&payload);
        by_frame.push_framed(&frame);
        if i % 97 == 0 {
            // Control frames cut in alike.
            codec::encode_pong(u64::from(i), by_payload.ctrl());
            codec::encode_pong(u64::from(i), by_frame.ctrl());
        }
    }
    assert_eq!(by_payload.len(), by_frame.len());
    let wire = drain(&mut by_frame, || 333);
    assert_eq!(wire, drain(&mut by_payload, || 333));
    assert_eq!(decode_all(&wire).len(), 500 + 6);
}

/// Everything `chunks` gives, concatenated (the array is large enough for
/// every queue these tests build).
fn gathered(o: &Outbox) -> Vec<u8> {
    let mut iov = [IoSlice::new(&[]); 64];
    let n = o.chunks(&mut iov);
    assert!(n < iov.len(), "array too small for the test");
    iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
}

#[test]
fn contiguous_output_is_all_of_it_in_one_slice() {
    let mut o = Outbox::default();
    assert_eq!(o.contiguous(), None, "nothing queued");
    // Small messages: one packed run.
    o.push_slice(b"abc");
    o.push_slice(b"de");
    assert_eq!(o.contiguous(), Some(&gathered(&o)[..]));
    // Partly written: the rest of the run.
    o.advance(3);
    assert_eq!(o.contiguous(), Some(&gathered(&o)[..]));
    drain(&mut o, || usize::MAX);
    // Control frames alone.
    codec::encode_pong(7, o.ctrl());
    assert_eq!(o.contiguous(), Some(&gathered(&o)[..]));
    // Control frames and data: two places, so not contiguous.
    o.push_slice(b"x");
    assert_eq!(o.contiguous(), None);
    drain(&mut o, || usize::MAX);
    // A large message: header and payload are two slices.
    o.push_data(Bytes::from(vec![1u8; 2000]));
    assert_eq!(o.contiguous(), None);
}

#[test]
fn contiguous_output_agrees_with_chunks_in_random_interleavings() {
    let mut some = 0;
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let mut o = Outbox::default();
        let mut wire = Vec::new();
        let mut closed = false;
        for round in 0..40u64 {
            match rng.below_inclusive(6) {
                // A tail frame (a CLOSE) ends what may be queued.
                _ if closed => {}
                0..=2 => {
                    let len = rng.below_inclusive(30) as usize;
                    o.push_slice(&vec![round as u8; len]);
                }
                3 => o.push_data(Bytes::from(vec![round as u8; 1100])),
                4 => codec::encode_pong(round, o.ctrl()),
                5 if round % 7 == 0 => {
                    codec::encode_pong(round, o.tail());
                    closed = true;
                }
                _ => {
                    let pending = gathered(&o);
                    let take = (rng.below_inclusive(50) as usize).min(pending.len());
                    wire.extend_from_slice(&pending[..take]);
                    o.advance(take);
                }
            }
            if closed {
                let pending = gathered(&o);
                let take = (rng.below_inclusive(50) as usize).min(pending.len());
                wire.extend_from_slice(&pending[..take]);
                o.advance(take);
            }
            if let Some(all) = o.contiguous() {
                some += 1;
                assert_eq!(all, &gathered(&o)[..], "seed {seed} round {round}");
                assert_eq!(all.len(), o.len(), "seed {seed} round {round}");
            }
        }
        wire.extend(drain(&mut o, || 9));
        decode_all(&wire);
    }
    assert!(some > 300, "contiguous output seen only {some} times");
}

#[test]
fn a_lent_run_comes_back_in_place_and_only_an_open_one_is_lent() {
    let mut o = Outbox::default();
    assert!(o.take_open_run().is_none(), "nothing queued");
    o.push_slice(b"one");
    let (mut run, room) = o.take_open_run().expect("the run at the back");
    assert_eq!(room, super::PACK_MAX - run.len());
    assert_eq!(o.len(), 0, "lent bytes are not counted");
    run.extend_from_slice(&codec::data_header(3));
    run.extend_from_slice(b"two");
    o.put_back_run(run);
    o.push_slice(b"three");
    let frames = decode_all(&drain(&mut o, || 4));
    let want: Vec<Frame> = [&b"one"[..], b"two", b"three"]
        .iter()
        .map(|p| Frame::Data(Bytes::copy_from_slice(p)))
        .collect();
    assert_eq!(frames, want);

    // A large message at the back: no run to lend.
    o.push_data(Bytes::from(vec![7u8; 2000]));
    assert!(o.take_open_run().is_none());
    drain(&mut o, || usize::MAX);
    // A run partly written with a control frame waiting: not extendable.
    o.push_slice(b"abc");
    o.advance(2);
    codec::encode_pong(1, o.ctrl());
    assert!(o.take_open_run().is_none(), "the run on the wire stays");
    let mut wire = b"\0\0".to_vec(); // the two bytes written above
    wire.extend(drain(&mut o, || 3));
    wire[..2].copy_from_slice(&codec::data_header(3)[..2]);
    assert_eq!(
        decode_all(&wire),
        [Frame::Data(Bytes::from_static(b"abc")), Frame::Pong(1)]
    );
}

#[test]
fn a_run_partly_on_the_wire_is_not_lent_and_keeps_its_count() {
    let mut o = Outbox::default();
    o.push_slice(b"abc");
    o.advance(2);
    let queued = o.len();
    assert!(o.take_open_run().is_none(), "the head run is on the wire");
    assert_eq!(o.len(), queued, "nothing taken out of the count");
    // Frames queued meanwhile still follow it, in order.
    o.push_slice(b"de");
    let mut wire = b"\0\0".to_vec();
    wire.extend(drain(&mut o, || 3));
    wire[..2].copy_from_slice(&codec::data_header(3)[..2]);
    assert_eq!(
        decode_all(&wire),
        [
            Frame::Data(Bytes::from_static(b"abc")),
            Frame::Data(Bytes::from_static(b"de"))
        ]
    );
    // Once the head is written, the run at the back is lent again.
    o.push_slice(b"f");
    assert!(o.take_open_run().is_some());
}

#[test]
fn a_discard_hands_back_in_send_order_with_the_unfinished_frame_first() {
    let mut o = Outbox::default();
    o.push_data(Bytes::from(vec![1u8; 2000]));
    o.push_slice(b"two");
    o.push_slice(b"three");
    o.advance(100);
    o.discard_unstarted();
    // The socket goes before the first frame is finished.
    let mut dropped = Vec::new();
    o.clear(&mut dropped);
    assert_eq!(
        dropped,
        [
            Bytes::from(vec![1u8; 2000]),
            Bytes::from_static(b"two"),
            Bytes::from_static(b"three")
        ]
    );
}

#[test]
fn withdrawing_takes_the_oldest_unstarted_frames_and_leaves_a_started_one() {
    let mut o = Outbox::default();
    let big = Bytes::from(vec![5u8; super::COPY_MAX + 1]);
    o.push_data(Bytes::from_static(b"a"));
    o.push_data(Bytes::from_static(b"bb"));
    o.push_data(big.clone());
    o.push_data(Bytes::from_static(b"ccc"));
    o.push_data(Bytes::from_static(b"dddd"));
    assert_eq!(o.unstarted_frames(), 5);
    // Frame "a" whole and two bytes of "bb" go onto the wire.
    let a_len = codec::HEADER_LEN + 1;
    let mut iov = [IoSlice::new(&[]); 4];
    o.chunks(&mut iov);
    o.advance(a_len + 2);
    assert_eq!(o.unstarted_frames(), 3, "\"bb\" has started");
    codec::encode_pong(9, o.ctrl());
    let mut out = Vec::new();
    o.withdraw_unstarted(2, &mut out);
    assert_eq!(out, vec![big, Bytes::from_static(b"ccc")]);
    assert_eq!(o.unstarted_frames(), 1);
    // The rest of "bb", the PONG at its boundary, then "dddd".
    let wire = drain(&mut o, || usize::MAX);
    let bb_rest = codec::HEADER_LEN + 2 - 2;
    assert_eq!(
        decode_all(&wire[bb_rest..]),
        vec![Frame::Pong(9), Frame::Data(Bytes::from_static(b"dddd"))]
    );
    o.withdraw_unstarted(3, &mut out);
    assert_eq!(out.len(), 2, "nothing more to take");
}
