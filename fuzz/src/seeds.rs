//! The seed inputs of both targets, built from their layouts so they stay
//! meaningful when a layout changes. `examples/write_seeds.rs` writes them
//! to `corpus/<target>/seed-<name>`; `tests/fuzz_quick.rs` runs them.

use bytes::{Bytes, BytesMut};
use tether::proto::codec::{Frame, Handshake};
use tether::CloseCode;

use super::conn::{flags, script, Bug, Op, PeerFrame, CONFIG_LEN};

/// Decoder seeds: `[max_frame selector, split mode, wire bytes...]`.
pub fn decode() -> Vec<(&'static str, Vec<u8>)> {
    let hs = Handshake {
        flags: 0,
        interval_ms: 10_000,
        timeout_ms: 10_000,
        session_id: 0,
        recv_seq: 0,
    };
    let close = Frame::Close {
        code: CloseCode::NORMAL,
        reason: Bytes::from_static("bye é".as_bytes()),
    };
    let frames = [
        ("hello", Frame::Hello(hs)),
        (
            "welcome",
            Frame::Welcome(Handshake {
                session_id: 42,
                flags: 0x80,
                ..hs
            }),
        ),
        ("data", Frame::Data(Bytes::from_static(b"hello"))),
        ("data-empty", Frame::Data(Bytes::new())),
        ("ping", Frame::Ping(0x0102_0304_0506_0708)),
        ("pong", Frame::Pong(7)),
        ("close", close.clone()),
        ("ack", Frame::Ack(3)),
    ];
    // max_frame selector 7 is the default 1 MiB; split 0 is one piece.
    let mut seeds: Vec<(&str, Vec<u8>)> = frames
        .iter()
        .map(|(name, frame)| (*name, wire(7, 0, std::slice::from_ref(frame))))
        .collect();
    let stream: Vec<Frame> = frames.iter().map(|(_, f)| f.clone()).collect();
    seeds.push(("stream-chunks", wire(7, 9, &stream)));
    seeds.push(("stream-bytewise", wire(7, 1, &stream)));
    // Malformed input, one of each row of PROTOCOL.md's table.
    let mut bad = |name, selector, bytes: &[u8]| {
        let mut v = vec![selector, 0];
        v.extend_from_slice(bytes);
        seeds.push((name, v));
    };
    bad("zero-length", 7, &[0, 0, 0, 0, 3]);
    bad("unknown-kind", 7, &[0, 0, 0, 1, 0x08]);
    bad("ping-short", 7, &[0, 0, 0, 5, 0x04, 0, 0, 0, 0]);
    bad("close-long", 7, &[0, 0, 0, 127, 0x06]);
    bad("data-too-large", 2, &[0, 0, 0, 10, 0x03, 1, 2]);
    bad("bad-magic", 7, &[0, 0, 0, 31, 0x01, b'T', b'T', b'X']);
    bad(
        "bad-version",
        7,
        &[0, 0, 0, 31, 0x02, b'T', b'T', b'H', b'R', 2],
    );
    bad(
        "close-not-utf8",
        7,
        &[0, 0, 0, 5, 0x06, 0x03, 0xE8, 0xC3, 0x28],
    );
    seeds
}

fn wire(selector: u8, split: u8, frames: &[Frame]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for frame in frames {
        frame.encode(&mut buf);
    }
    let mut v = vec![selector, split];
    v.extend_from_slice(&buf);
    v
}

/// A middle-of-the-road configuration (see `conn::config`): I ≈ T ≈ 1 s,
/// max_frame 1000, max_outbound 10 000, 1 ping strike, stall tolerance
/// 250 ms, linger 200 ms, handshake 500 ms, connect 300 ms, write stall
/// ~1 s, backoff from 100 ms.
pub fn conn_config(flag_bits: u8) -> [u8; CONFIG_LEN] {
    [
        flag_bits,
        124,
        124,
        5 | 5 << 3 | 1 << 6,
        5 | 4 << 4,
        49,
        29,
        49,
        10,
        1,
    ]
}

/// Connection seeds: a configuration and a script.
pub fn conn() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    let client = conn_config(0);
    let server = conn_config(flags::SERVER);
    vec![
        (
            "client-session",
            script(
                client,
                &[
                    Start,
                    Handshake,
                    Send(5),
                    Transmit(0),
                    Peer(PeerFrame::Data(3, 0)),
                    Peer(PeerFrame::Ping(1, 2)),
                    Deliver(7),
                    Deliver(0),
                    Transmit(0),
                    FireDue(0),
                    Transmit(0),
                    Peer(PeerFrame::Pong(0, 0)),
                    Deliver(0),
                    Close(0, 10),
                    Transmit(0),
                ],
            ),
        ),
        (
            "server-session",
            script(
                server,
                &[
                    Handshake,
                    Transmit(0),
                    Send(300),
                    Send(20),
                    Peer(PeerFrame::Data(200, 1)),
                    Deliver(100),
                    Transmit(9),
                    Peer(PeerFrame::Ping(0, 9)),
                    Deliver(0),
                    Transmit(0),
                    Peer(PeerFrame::Close(0, 20)),
                    Deliver(0),
                ],
            ),
        ),
        (
            "client-dead-peer-redials",
            script(
                client,
                &[
                    Start,
                    Handshake,
                    Transmit(0),
                    FireDue(0),
                    Transmit(0),
                    FireDue(0),
                    Transmit(0),
                    FireDue(0),
                    FireDue(0),
                    Connected,
                    Transmit(0),
                    Peer(PeerFrame::Handshake(9, 100)),
                    Deliver(0),
                ],
            ),
        ),
        (
            "server-stall-forgiven",
            script(
                server,
                &[
                    Handshake,
                    Transmit(0),
                    FireDue(0),
                    FireDue(200),
                    Transmit(0),
                    FireDue(0),
                    Transmit(0),
                ],
            ),
        ),
        (
            // The socket takes nothing while PINGs fall due (the peer
            // trickles ACKs) and while death deadlines are handled late:
            // the one queued PING is reused, then written and answered.
            "server-unsent-ping-reused",
            script(
                server,
                &[Handshake, Transmit(0)]
                    .into_iter()
                    .chain((0..4).flat_map(|_| {
                        [
                            FireDue(0),
                            FireDue(0),
                            FireDue(0),
                            Peer(PeerFrame::Ack(0, 1)),
                            Deliver(0),
                        ]
                    }))
                    .chain([FireDue(0), FireDue(0), FireDue(0)])
                    .chain((0..4).flat_map(|_| [Advance(170), Timeout]))
                    .chain([
                        Transmit(0),
                        Peer(PeerFrame::Pong(0, 0)),
                        Deliver(0),
                        FireDue(0),
                        FireDue(0),
                        FireDue(0),
                        FireDue(0),
                        Transmit(0),
                    ])
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "server-ping-flood",
            script(
                server,
                &[
                    Handshake,
                    Peer(PeerFrame::Ping(0, 1)),
                    Peer(PeerFrame::Ping(0, 2)),
                    Peer(PeerFrame::Ping(0, 3)),
                    Peer(PeerFrame::Ping(0, 4)),
                    Deliver(0),
                    Transmit(0),
                ],
            ),
        ),
        (
            "server-garbage",
            script(
                server,
                &[
                    Raw(vec![0, 0, 0, 31, 1, b'T', b'T', b'H']),
                    Deliver(6),
                    Deliver(0),
                    Raw(vec![0xFF; 8]),
                    Deliver(0),
                    Transmit(0),
                ],
            ),
        ),
        (
            "server-write-stall",
            script(
                server,
                &[
                    Handshake,
                    Send(900),
                    Send(900),
                    Transmit(40),
                    WriteBlocked,
                    FireDue(0),
                    Transmit(1),
                    FireDue(0),
                    FireDue(0),
                ],
            ),
        ),
        (
            "client-connect-failures",
            script(
                client,
                &[
                    Start,
                    ConnectFailed(0),
                    FireDue(0),
                    FireDue(0),
                    FireDue(0),
                    Connected,
                    Eof,
                    FireDue(0),
                    IoError(1),
                    FireDue(0),
                    Handshake,
                    Advance(150),
                    Close(1, 200),
                ],
            ),
        ),
    ]
}

/// Minimized inputs of the bugs fuzzing found, each with the bug it shows.
/// `tests/fuzz_quick.rs` runs them strictly (ignored until fixed);
/// `examples/write_seeds.rs` writes them to `regressions/<name>`.
pub fn regressions() -> Vec<(Bug, &'static str, Vec<u8>)> {
    use Op::*;
    let client = conn_config(0);
    // A handshake timeout (2 s) longer than the write-stall timeout (~1 s).
    let mut slow_handshake = client;
    slow_handshake[5] = 200;
    // No ping-flood protection, max_outbound 0.
    let mut no_flood = conn_config(flags::SERVER | flags::NO_PING_FLOOD);
    no_flood[3] = 5;
    // The default-like ping-flood policy (1 strike), max_outbound 0.
    let mut flood_policy = conn_config(flags::SERVER);
    flood_policy[3] = 5 | 1 << 6;
    let huge = |flag_bits: u8, which: u8| {
        let mut c = conn_config(flag_bits | flags::HUGE_DURATION);
        c[9] = which;
        c
    };
    // PINGs 100 ms apart (span(104)): never too soon for the policy.
    let spaced_pings: Vec<Op> = (0..20u8)
        .flat_map(|i| [Advance(104), Peer(PeerFrame::Ping(0, i)), Deliver(0)])
        .collect();
    vec![
        (
            Bug::HelloSessionId,
            "hello-session-id",
            script(
                client,
                &[Start, Handshake, Eof, FireDue(0), Connected, Transmit(0)],
            ),
        ),
        (
            Bug::StaleWriteStall,
            "stale-write-stall",
            script(
                slow_handshake,
                &[
                    Start,
                    Handshake,
                    Raw(vec![0, 0, 0, 0]),
                    Deliver(0),
                    WriteBlocked,
                    FireDue(0),
                    Connected,
                    FireDue(0),
                ],
            ),
        ),
        (
            Bug::PongBacklog,
            "pong-backlog-one-read",
            script(
                no_flood,
                &[Handshake]
                    .into_iter()
                    .chain((0..20).map(|i| Peer(PeerFrame::Ping(0, i))))
                    .chain([Deliver(0)])
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            Bug::PongBacklog,
            "pong-backlog-spaced-pings",
            script(
                flood_policy,
                &[Handshake]
                    .into_iter()
                    .chain(spaced_pings)
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            Bug::PackedRunOrder,
            "packed-run-order",
            // A small message partly written, a PING, another small message.
            script(
                conn_config(flags::SERVER),
                &[
                    Handshake,
                    Transmit(0),
                    Send(392),
                    Transmit(150),
                    Peer(PeerFrame::Ping(0, 1)),
                    Deliver(0),
                    Send(900),
                    Transmit(0),
                ],
            ),
        ),
        (
            Bug::ConfigOverflow,
            "config-overflow-panic",
            // handshake_timeout = Duration::MAX on a server.
            script(huge(flags::SERVER, 8), &[Handshake]),
        ),
        (
            Bug::ConfigOverflow,
            "config-overflow-late-timers",
            // connect_timeout = u64::MAX / 4 s: the first deadline ever set.
            script(huge(0, 1), &[Start, Handshake]),
        ),
    ]
}

/// Session resume seeds (see `resume`): each shows one case, and
/// `tests/fuzz_quick.rs` checks that it does. Configuration: heartbeat
/// I = 60 ms, T = 70 ms (or none), the unacknowledged bound of a 4 KiB
/// message, session expiry 150 ms, backoff from 10 ms.
pub fn resume() -> Vec<(&'static str, Vec<u8>)> {
    use super::resume::{script, Op::*};
    let config = [1 | 1 << 5, 1, 0, 0];
    let quiet = [0, 2, 0, 0];
    let no_resume = [1 | 1 << 5, 0, 0, 3];
    let up = [Dial, Exchange];
    let traffic = [
        SendClient(3, 100),
        SendServer(3, 1500),
        ToServer(0, 0, 30),
        ToClient(0, 2000, 0),
    ];
    let redial = [FireNext, Dial, Exchange, Exchange];
    let with = |parts: &[&[super::resume::Op]]| parts.concat();
    vec![
        (
            "normal-resume",
            script(
                config,
                &with(&[&up, &traffic, &[Reset], &redial, &traffic, &[Exchange]]),
            ),
        ),
        (
            "half-dead-resume",
            script(
                quiet,
                &with(&[
                    &up,
                    &traffic,
                    &[HalfDead, SendClient(1, 1999), NoticeClient],
                    &redial,
                    &[NoticeServer, Exchange],
                ]),
            ),
        ),
        (
            "takeover",
            script(
                config,
                &with(&[&up, &traffic, &[Takeover, Exchange], &traffic]),
            ),
        ),
        (
            "takeover-quiet",
            script(
                quiet,
                &with(&[&up, &traffic, &[Takeover, Exchange], &traffic, &[Exchange]]),
            ),
        ),
        (
            "lost-session",
            script(
                config,
                &with(&[&up, &traffic, &[Restart], &redial, &traffic]),
            ),
        ),
        (
            "expiry",
            script(
                quiet,
                &with(&[
                    &up,
                    &traffic,
                    &[HalfDead, NoticeServer, Advance(40), SendClient(0, 10)],
                    &[NoticeClient],
                    &redial,
                ]),
            ),
        ),
        (
            "client-close",
            script(
                config,
                &with(&[&up, &traffic, &[CloseClient, Exchange, FireNext]]),
            ),
        ),
        (
            "no-resume-server",
            script(
                no_resume,
                &with(&[&up, &traffic, &[Reset], &redial, &traffic]),
            ),
        ),
    ]
}
