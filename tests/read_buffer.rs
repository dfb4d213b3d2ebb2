//! The reactor's shared read buffer: reads whose frames are handled in
//! place give its memory back (the next read lands in the same place), and
//! bytes a handler keeps are never overwritten by later reads.

mod support;

use std::thread;

use bytes::Bytes;
use support::*;
use tether::proto::codec::Frame;
use tether::{ConnId, Context, Handler, Message, Reactor};

/// 64 bytes that tell message `seq` apart from every other.
fn payload(seq: u64) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((0..56u64).map(|i| (seq.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8));
    p
}

/// Echoes every message; keeps every `keep_every`-th one (0: none) as
/// `Bytes` taken out of the read buffer, and echoes that.
struct Keeper {
    keep_every: u64,
    seen: u64,
    kept: Vec<(u64, Bytes)>,
}

impl Handler for Keeper {
    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let seq = self.seen;
        self.seen += 1;
        if self.keep_every > 0 && seq % self.keep_every == 0 {
            let bytes = message.into_bytes();
            self.kept.push((seq, bytes.clone()));
            let _ = cx.send(id, bytes);
        } else {
            let _ = cx.forward(id, message);
        }
    }
}

/// Sends `count` messages one at a time, checks every echo, and returns
/// the server's reactor and handler. Each write is one whole frame, or
/// with `split` the rest of one frame and the first 30 bytes of the next
/// (so every read on the server finishes a kept partial frame and ends in
/// a new one).
fn run(count: u64, keep_every: u64, split: bool) -> (Reactor, Keeper) {
    let (mut reactor, addr, handle) = listening(config(60_000, 60_000));
    let server = thread::spawn(move || {
        let mut h = Keeper {
            keep_every,
            seen: 0,
            kept: Vec::new(),
        };
        reactor.run(&mut h).expect("run");
        (reactor, h)
    });
    let mut raw = RawPeer::connect(addr);
    raw.hello(0, 0);
    assert!(matches!(raw.next_frame(ms(2000)), Some(Frame::Welcome(_))));
    let frame = |seq| frame_bytes(&Frame::Data(Bytes::from(payload(seq))));
    const HEAD: usize = 30;
    if split {
        raw.send_raw(&frame(0)[..HEAD]).expect("write");
    }
    for seq in 0..count {
        let p = payload(seq);
        if split {
            let mut bytes = frame(seq)[HEAD..].to_vec();
            bytes.extend_from_slice(&frame(seq + 1)[..HEAD]);
            raw.send_raw(&bytes).expect("write");
        } else {
            raw.send_raw(&frame(seq)).expect("write");
        }
        match raw.next_frame(ms(2000)) {
            Some(Frame::Data(echo)) => assert_eq!(&echo[..], &p[..], "echo of {seq}"),
            other => panic!("message {seq}: {other:?}"),
        }
    }
    handle.shutdown().expect("shutdown");
    server.join().expect("server")
}

#[test]
fn reads_handled_in_place_reuse_the_read_buffer() {
    // 6 000 reads of 69 bytes: 414 000 bytes, six buffers' worth if every
    // read moved on through it.
    let (reactor, _) = run(6_000, 0, false);
    assert_eq!(reactor.stats().read_buffer_fills, 1);
}

#[test]
fn kept_messages_are_never_overwritten_by_later_reads() {
    // Every 5th message kept: the reads after it must not land on it.
    let (reactor, h) = run(6_000, 5, false);
    assert_eq!(h.kept.len(), 1_200);
    for (seq, bytes) in &h.kept {
        assert_eq!(&bytes[..], &payload(*seq)[..], "kept message {seq}");
    }
    // The kept bytes (1 200 x 69) use up the buffer now and then; the
    // reads in between still reuse it.
    let fills = reactor.stats().read_buffer_fills;
    assert!((2..=4).contains(&fills), "{fills} fills");
}

#[test]
fn reads_ending_in_a_partial_frame_deliver_every_message_intact() {
    // Every read completes the partial frame the connection kept and
    // leaves a new one (the read buffer is not reused after such a read);
    // every 3rd message is kept.
    let (_, h) = run(3_000, 3, true);
    assert_eq!(h.seen, 3_000);
    for (seq, bytes) in &h.kept {
        assert_eq!(&bytes[..], &payload(*seq)[..], "kept message {seq}");
    }
}
