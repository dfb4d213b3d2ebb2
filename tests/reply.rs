//! Answers to the connection being read (the reactor's reply run): a
//! handler that mixes every way of sending while it answers one read's
//! messages gets exactly the stream, the counts and the errors it would
//! get sending each one through the connection's queue.

mod support;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use support::*;
use tether::proto::codec::Frame;
use tether::proto::conn::SendError;
use tether::{CloseCode, Config, ConnId, Context, Handler, Message, PeerInfo, Reactor};

/// What the scripted server did with one message: its command byte and
/// the result of the send it made.
type Outcome = (u8, Result<(), SendError>);

/// Acts on each message by its first byte (see the test).
struct Script {
    first: Option<ConnId>,
    second: Option<ConnId>,
    outcomes: mpsc::Sender<Outcome>,
}

impl Handler for Script {
    fn on_connected(&mut self, _: &mut Context<'_>, id: ConnId, _: &PeerInfo) {
        if self.first.is_none() {
            self.first = Some(id);
        } else {
            self.second = Some(id);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, id: ConnId, message: Message<'_>) {
        let command = message.first().copied().unwrap_or(0);
        let result = match command {
            b'F' | b'L' => cx.forward(id, message),
            b'S' => {
                let mut answer = b"s".to_vec();
                answer.extend_from_slice(&message[1..]);
                cx.send_slice(id, &answer)
            }
            b'B' => cx.send(id, Bytes::from(format!("b{}", message.len()))),
            b'O' => match self.second {
                Some(other) => cx.forward(other, message),
                None => Err(SendError::NotConnected),
            },
            b'T' => {
                let stats = cx.conn_stats(id).expect("the connection being read");
                let answer = format!("t{} {}", stats.messages_sent, stats.pending_output);
                cx.send_slice(id, answer.as_bytes())
            }
            b'W' => cx.send_slice(id, &[b'w'; 150]),
            b'C' => {
                cx.close(id, CloseCode::NORMAL, "bye");
                Ok(())
            }
            _ => Ok(()),
        };
        self.outcomes.send((command, result)).expect("test waiting");
    }
}

/// A scripted server on its own thread: its address, the outcomes channel
/// and the handle to stop it.
fn script_server(config: Config) -> (SocketAddr, mpsc::Receiver<Outcome>, tether::Handle) {
    let (tx, outcomes) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reactor = Reactor::with_config(config).expect("reactor");
        let listener = reactor
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        let addr = reactor.local_addr(listener).expect("bound");
        ready_tx
            .send((addr, reactor.handle()))
            .expect("test waiting");
        let mut script = Script {
            first: None,
            second: None,
            outcomes: tx,
        };
        reactor.run(&mut script).expect("run");
    });
    let (addr, handle) = ready.recv().expect("server started");
    (addr, outcomes, handle)
}

/// A raw client past the handshake.
fn joined(addr: SocketAddr) -> RawPeer {
    let mut peer = RawPeer::connect(addr);
    peer.hello(10_000, 20_000);
    match peer.next_frame(ms(3000)) {
        Some(Frame::Welcome(_)) => peer,
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

fn data(payload: &[u8]) -> Vec<u8> {
    frame_bytes(&Frame::Data(Bytes::copy_from_slice(payload)))
}

/// The DATA payloads `peer` receives until `n` have come (other frames
/// are kept as they are, so a CLOSE shows where it falls).
fn receive(peer: &mut RawPeer, n: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    while frames
        .iter()
        .filter(|f| matches!(f, Frame::Data(_)))
        .count()
        < n
    {
        match peer.next_frame(ms(3000)) {
            Some(Frame::Ping(nonce)) => peer.send_frame(&Frame::Pong(nonce)),
            Some(frame) => frames.push(frame),
            None => panic!("stream ended after {frames:?}"),
        }
    }
    frames
}

fn config() -> Config {
    Config::builder()
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .expect("valid config")
}

#[test]
fn every_way_of_answering_keeps_the_order_the_counts_and_the_close() {
    init_logs();
    let (addr, outcomes, handle) = script_server(config());
    let mut first = joined(addr);
    let mut second = joined(addr);
    // One write, so that one read delivers the whole script while the
    // first connection's run is lent.
    let large = [b'L'; 2000];
    let script: Vec<&[u8]> = vec![
        b"F1", b"S2", b"F3", b"B4", b"F5", b"Oa", b"F6", b"T7", &large, b"F8", b"S9", b"Ob",
        b"F10", b"T11", b"C", b"F12",
    ];
    let batch: Vec<u8> = script.iter().flat_map(|m| data(m)).collect();
    assert!(batch.len() < 4096, "one read takes the whole batch");
    first.send_raw(&batch).expect("write");

    // What queuing each answer through the connection would have given.
    let mut want: Vec<Vec<u8>> = Vec::new();
    let mut pending = 0;
    for m in &script {
        let answer = match m[0] {
            b'F' | b'L' => m.to_vec(),
            b'S' => [&b"s"[..], &m[1..]].concat(),
            b'B' => format!("b{}", m.len()).into_bytes(),
            b'T' => format!("t{} {}", want.len(), pending).into_bytes(),
            b'C' => break,
            _ => continue,
        };
        pending += 5 + answer.len();
        want.push(answer);
    }
    let frames = receive(&mut first, want.len());
    let got: Vec<Vec<u8>> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data(payload) => Some(payload.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(
        got.iter()
            .map(|p| String::from_utf8_lossy(&p[..p.len().min(12)]))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|p| String::from_utf8_lossy(&p[..p.len().min(12)]))
            .collect::<Vec<_>>(),
    );
    assert_eq!(got, want);
    // The close queued after the answers before it, and nothing after it.
    match first.next_frame(ms(3000)) {
        Some(Frame::Close { code, .. }) => assert_eq!(code, CloseCode::NORMAL),
        other => panic!("expected CLOSE after the answers, got {other:?}"),
    }
    // The other connection got its two, in order.
    let forwarded = receive(&mut second, 2);
    assert_eq!(
        forwarded,
        vec![
            Frame::Data(Bytes::from_static(b"Oa")),
            Frame::Data(Bytes::from_static(b"Ob"))
        ]
    );

    // Every send succeeded; the message after the close was not delivered
    // (a closing connection reads no more). The channel ends with the
    // server's thread.
    handle.shutdown().expect("server alive");
    let results: Vec<Outcome> = outcomes.iter().collect();
    let closed_at = script.iter().position(|m| m[0] == b'C').expect("a close");
    let commands: Vec<u8> = results.iter().map(|(c, _)| *c).collect();
    let want_commands: Vec<u8> = script[..=closed_at].iter().map(|m| m[0]).collect();
    assert_eq!(commands, want_commands);
    for (command, result) in &results {
        assert_eq!(result, &Ok(()), "{}", *command as char);
    }
}

#[test]
fn limits_refuse_exactly_the_answers_the_queue_would_refuse() {
    init_logs();
    // Room for five 35-byte frames of output, payloads up to 100 bytes.
    let limited = Config::builder()
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .max_outbound(200)
        .max_frame(100)
        .build()
        .expect("valid config");
    let (addr, outcomes, handle) = script_server(limited);
    let mut peer = joined(addr);
    let mut batch = BytesMut::new();
    for i in 0..8u8 {
        let mut m = vec![b'F'; 30];
        m[1] = b'0' + i;
        batch.extend_from_slice(&data(&m));
        if i == 0 {
            // An answer over `max_frame`, while the run is lent.
            batch.extend_from_slice(&data(b"W"));
        }
    }
    // A 21-byte answer still fits after five 35-byte ones (196 of 200
    // bytes); a second one does not.
    batch.extend_from_slice(&data(&[b'S', b'x'].repeat(8)[..16]));
    batch.extend_from_slice(&data(&[b'S', b'y'].repeat(8)[..16]));
    peer.send_raw(&batch).expect("write");

    let frames = receive(&mut peer, 6);
    handle.shutdown().expect("server alive");
    // The channel ends with the server's thread.
    let results: Vec<Result<(), SendError>> = outcomes.iter().map(|(_, r)| r).collect();
    let too_large = Err(SendError::TooLarge { len: 150, max: 100 });
    let full = |queued| Err(SendError::Backpressure { queued, limit: 200 });
    assert_eq!(
        results,
        [
            Ok(()),
            too_large,
            Ok(()),
            Ok(()),
            Ok(()),
            Ok(()),
            full(175),
            full(175),
            full(175),
            Ok(()),
            full(196),
        ]
    );
    let payloads: Vec<u8> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data(p) => Some(p[1]),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, b"01234x");
}
