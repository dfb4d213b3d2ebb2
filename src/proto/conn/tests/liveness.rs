//! Heartbeats and dead-peer detection, to the millisecond.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{config, ms, Pair};
use crate::config::Config;
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::codec::{self, Frame};
use crate::proto::conn::{Event, State, Timer};

#[test]
fn a_silent_peer_is_pinged_after_i_and_declared_dead_t_later() {
    let mut pair = Pair::connected(config());
    let last_frame = pair.elapsed(); // WELCOME, at 0 with no latency
    let jitter = pair.client.ping_jitter();
    assert!(jitter <= ms(100), "jitter {jitter:?} above 10 % of I");
    pair.server_frozen = true; // power loss: no FIN, nothing at all

    let ping_at = last_frame + ms(1000) + jitter;
    pair.run_for(ping_at - pair.elapsed() - ms(1));
    assert!(
        pair.client_pings().is_empty(),
        "pinged before I of silence: {:?}, expected {ping_at:?}",
        pair.client_sent
    );
    pair.run_for(ms(1));
    assert_eq!(pair.client_pings(), vec![ping_at]);

    pair.run_for(ms(999));
    assert_eq!(
        pair.client.state(),
        State::Established,
        "declared dead before T"
    );
    pair.run_for(ms(1));
    assert_eq!(pair.elapsed(), ping_at + ms(1000));
    assert_eq!(
        pair.client.close_reason(),
        Some(&DisconnectReason::HeartbeatTimeout)
    );
    // CLOSE 1001 went out, best effort, then the socket was closed.
    let (at, close) = pair.client_sent.last().unwrap();
    assert_eq!(*at, ping_at + ms(1000));
    assert!(matches!(close, Frame::Close { code, .. } if *code == CloseCode::GOING_AWAY));
    let events: Vec<&Event> = pair.client_events.iter().map(|(_, e)| e).collect();
    assert_eq!(
        events[1..],
        [
            &Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout
            },
            &Event::Reconnecting {
                attempt: 1,
                delay: ms(100),
                reason: DisconnectReason::HeartbeatTimeout
            }
        ]
    );
}

#[test]
fn detection_stays_within_i_plus_t_plus_jitter_for_many_seeds() {
    for seed in 0..50 {
        let cfg = crate::Config { seed, ..config() };
        let mut pair = Pair::connected(cfg);
        // Some traffic first, so the last frame is not at t0.
        pair.run_for(ms(2500 + seed * 7));
        pair.server_frozen = true;
        let last = pair.client.last_recv().unwrap() - pair.t0;
        let dead = pair.run_until(ms(5000), |p| p.client.state() != State::Established);
        assert!(dead, "seed {seed}: never declared dead");
        let took = pair.elapsed() - last;
        assert!(
            took >= ms(2000) && took <= ms(2100),
            "seed {seed}: declared dead {took:?} after the last frame"
        );
    }
}

/// The jitter leaves room for one step of the reactor's timer grid: a PING
/// handled on the grid still leaves within `I/10` of `I` (rule 2), and the
/// verdict within `I + T + I/10 + one grid step` (rule 4).
#[test]
fn jitter_plus_one_grid_step_stays_within_a_tenth_of_the_interval() {
    for (interval, timeout) in [(1000, 1000), (10_000, 10_000), (100, 100), (300, 50)] {
        let cfg = crate::Config {
            heartbeat: Some(crate::config::Heartbeat {
                interval: ms(interval),
                timeout: ms(timeout),
            }),
            ..config()
        };
        let grain = cfg.timer_grain();
        let mut most = Duration::ZERO;
        for seed in 0..300 {
            let pair = Pair::connected(crate::Config {
                seed,
                ..cfg.clone()
            });
            let jitter = pair.client.ping_jitter();
            assert!(
                jitter + grain <= ms(interval / 10),
                "I = {interval} ms: jitter {jitter:?} + grid {grain:?}"
            );
            most = most.max(jitter);
        }
        // Still a spread, not a constant.
        assert!(most > Duration::ZERO, "I = {interval} ms: no jitter at all");
    }
}

/// Pings both sides sent in 100 s of idleness with one-way `latency`.
fn idle_pings(latency: u64) -> usize {
    let mut pair = Pair::connected(config());
    pair.latency = ms(latency);
    pair.run_for(ms(100_000));
    assert_eq!(pair.client.state(), State::Established);
    assert_eq!(pair.server().state(), State::Established);
    // Every PING was answered: pongs received equal pings sent.
    let c = pair.client.stats();
    let s = pair.server().stats();
    assert_eq!(c.pongs_received, u64::from(c.pings_sent));
    assert_eq!(s.pongs_received, u64::from(s.pings_sent));
    pair.client_pings().len() + pair.server_pings().len()
}

#[test]
fn two_idle_peers_settle_into_one_exchange_per_interval() {
    // One exchange per interval of 1 s plus up to 10 % jitter: 90–100 in
    // 100 s; two independent exchanges would be ~180. With no latency a
    // PING resets the other side's clock the instant it is sent, so both
    // fire together only when their deadlines fall on the same instant.
    let pings = idle_pings(0);
    assert!(
        (88..=102).contains(&pings),
        "{pings} pings in 100 intervals"
    );
    // With latency L both sides ping when their deadlines fall within L of
    // each other — about 2L / (I/10) = 10 % of intervals for L = 5 ms.
    let pings = idle_pings(5);
    assert!(
        (88..=118).contains(&pings),
        "{pings} pings in 100 intervals"
    );
}

#[test]
fn both_sides_of_an_idle_link_take_turns_pinging() {
    // Which side pings next is decided by the two jitters; each side draws
    // its own afresh whenever a PING passes (sent or received), so every
    // exchange is a fresh draw and both sides sample the round trip. (A
    // side that only drew after its own PINGs kept its first draw as long
    // as the peer pinged first, and with a high first draw it never pinged
    // again: an idle client that never learns its RTT.)
    for seed in 0..24u64 {
        let mut pair = Pair::connected(crate::Config { seed, ..config() });
        pair.run_for(ms(60_000));
        let (c, s) = (pair.client_pings().len(), pair.server_pings().len());
        assert!(
            c >= 15 && s >= 15,
            "seed {seed}: client {c} and server {s} pings in 60 intervals"
        );
        assert!(pair.client.rtt().srtt().is_some(), "seed {seed}");
    }
}

#[test]
fn on_an_idle_link_only_the_side_that_pings_wakes_up() {
    // A received frame pushes the PING deadline out, and the PONG that
    // answers a PING stops the write-idle clock the PING started, so the
    // only deadline that ever comes due is the pinging side's PING timer
    // (and the client's one-off healthy timer): one wake-up per interval
    // for the whole link, not one per timer per side.
    for latency in [0, 5] {
        let mut pair = Pair::connected(config());
        pair.latency = ms(latency);
        let before = pair.wakeups;
        pair.run_for(ms(100_000));
        let pings = pair.client_pings().len() + pair.server_pings().len();
        let woke = (pair.wakeups[0] - before[0]) + (pair.wakeups[1] - before[1]);
        assert!(pings >= 88, "latency {latency} ms: only {pings} pings");
        assert!(
            woke as usize <= pings + 2,
            "latency {latency} ms: {woke} wake-ups for {pings} pings ({:?})",
            pair.wakeups
        );
        assert_eq!(
            pair.client.stats().acks_sent + pair.server().stats().acks_sent,
            0
        );
    }
}

#[test]
fn a_busy_exchange_wakes_each_side_at_most_once_per_interval() {
    // Messages both ways every 200 ms: no PING, no ACK and no dead-peer
    // deadline is ever due; what is left is the trim timer's look at the
    // output buffers, about once per interval (it counts from the last
    // receipt, up to one message period before the send that arms it), and
    // the client's one-off healthy timer.
    let mut pair = Pair::connected(config());
    let before = pair.wakeups;
    for _ in 0..100 {
        pair.client.send(Bytes::from_static(b"up")).unwrap();
        pair.server_mut().send(Bytes::from_static(b"down")).unwrap();
        pair.run_for(ms(200));
    }
    for (side, (after, before)) in pair.wakeups.iter().zip(before).enumerate() {
        let woke = after - before;
        assert!(woke <= 26, "side {side}: {woke} wake-ups in 20 s");
    }
    assert!(pair.client_pings().is_empty() && pair.server_pings().is_empty());
    assert_eq!(
        pair.client.stats().acks_sent + pair.server().stats().acks_sent,
        0
    );
}

#[test]
fn talk_left_unanswered_gets_one_ack_a_write_idle_period_later() {
    // W = half the shorter interval = 500 ms. The client speaks once, at
    // an instant off any grid of W since the handshake; the silent server
    // ACKs exactly W after the message arrived, once.
    let mut pair = Pair::connected(config());
    pair.latency = ms(3);
    pair.run_for(ms(170));
    let sent = pair.elapsed();
    pair.client.send(Bytes::from_static(b"hello?")).unwrap();
    pair.run_for(ms(900));
    let after: Vec<_> = pair
        .server_sent
        .iter()
        .filter(|(at, _)| *at > sent)
        .collect();
    assert_eq!(
        after.len(),
        1,
        "the server sent {after:?} after the message at {sent:?}"
    );
    let (at, frame) = after[0];
    assert!(matches!(frame, Frame::Ack(1)), "{frame:?}");
    assert_eq!(*at, sent + ms(3) + ms(500));
}

#[test]
fn a_connection_that_keeps_receiving_data_never_pings() {
    let mut pair = Pair::connected(config());
    for _ in 0..100 {
        pair.client.send(Bytes::from_static(b"tick")).unwrap();
        pair.run_for(ms(500));
    }
    assert_eq!(pair.server().stats().messages_received, 100);
    assert!(
        pair.server_pings().is_empty(),
        "server pinged a chatty client"
    );
    // The server, receiving but with nothing to say, ACKs once per
    // write-idle period (I/2), and those ACKs are all the client needs to
    // know it is alive: the client never pings either.
    let acks = pair.server().stats().acks_sent;
    assert!((90..=101).contains(&acks), "{acks} ACKs in 50 s");
    assert!(pair.client_pings().is_empty());
    assert_eq!(pair.client.stats().acks_sent, 0, "ACKs are not answered");
}

#[test]
fn a_slow_large_frame_is_not_mistaken_for_silence() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    let mut frame = bytes::BytesMut::new();
    codec::encode_data(&[7u8; 400], &mut frame);
    // 405 bytes, 9 bytes every 900 ms: ~40 s, far longer than I + T, and
    // never a gap of I.
    for chunk in frame.chunks(9) {
        pair.inject_to_server(chunk);
        pair.run_for(ms(900));
        assert_eq!(
            pair.server().state(),
            State::Established,
            "{:?}",
            pair.server().close_reason()
        );
    }
    assert!(pair.server_pings().is_empty());
    let got: Vec<&Event> = pair
        .server_events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::Message(_)))
        .collect();
    assert_eq!(got, vec![&Event::Message(Bytes::from(vec![7u8; 400]))]);
}

#[test]
fn mid_frame_bytes_after_a_ping_prove_life() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    let mut frame = bytes::BytesMut::new();
    codec::encode_data(&[1u8; 50], &mut frame);
    // Gaps of 1.5 s: longer than I (a PING goes out) but shorter than I + T.
    for chunk in frame.chunks(10) {
        pair.inject_to_server(chunk);
        pair.run_for(ms(1500));
        assert_eq!(pair.server().state(), State::Established);
    }
    assert!(pair.server_pings().len() >= 4, "{:?}", pair.server_pings());
    assert_eq!(pair.server().stats().messages_received, 1);
}

#[test]
fn at_most_one_ping_is_outstanding() {
    let mut pair = Pair::connected(config());
    pair.server_frozen = true;
    pair.run_for(ms(5000));
    assert_eq!(pair.client_pings().len(), 1);
}

#[test]
fn a_ping_is_answered_ahead_of_queued_data() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    // The server has queued data that has not started onto the wire.
    let server = pair.server_mut();
    for _ in 0..3 {
        server.send(Bytes::from(vec![0u8; 1000])).unwrap();
    }
    let mut ping = bytes::BytesMut::new();
    codec::encode_ping(0xABCD, &mut ping);
    let mut events = Vec::new();
    let now = pair.now;
    let server = pair.server_mut();
    server.handle_input(now, &mut ping, &mut events);
    let mut out = bytes::BytesMut::new();
    server.transmit_into(&mut out, &mut Vec::new());
    let decoder = codec::Decoder::new(1 << 20);
    assert_eq!(decoder.decode(&mut out).unwrap(), Some(Frame::Pong(0xABCD)));
    assert!(matches!(
        decoder.decode(&mut out).unwrap(),
        Some(Frame::Data(_))
    ));
}

#[test]
fn a_matching_pong_gives_an_rtt_sample() {
    let mut pair = Pair::connected(config());
    pair.latency = ms(7);
    pair.run_for(ms(10_000));
    let rtt = pair.client.rtt();
    assert!(rtt.samples() > 0);
    assert_eq!(rtt.latest(), Some(ms(14)));
    assert_eq!(rtt.srtt(), Some(ms(14)));
    assert_eq!(rtt.rttvar().map(|v| v < ms(7)), Some(true));
}

#[test]
fn a_pong_with_a_wrong_nonce_is_no_sample_but_still_life() {
    let mut pair = Pair::connected(config());
    pair.server_frozen = true;
    pair.run_until(ms(2000), |p| !p.client_pings().is_empty());
    let ping_at = pair.elapsed();
    let Some((_, Frame::Ping(nonce))) = pair.client_sent.last().cloned() else {
        panic!("no ping");
    };
    pair.run_for(ms(900));
    let mut pong = bytes::BytesMut::new();
    codec::encode_pong(nonce.wrapping_add(1), &mut pong);
    pair.inject_to_client(&pong);
    assert_eq!(pair.client.rtt().samples(), 0);
    assert_eq!(pair.client.stats().pongs_received, 1);
    // Alive past ping + T: the stray PONG counted as life.
    pair.run_for(ms(200));
    assert_eq!(pair.client.state(), State::Established);
    assert!(pair.elapsed() > ping_at + ms(1000));
    // ...and the next silence is detected from that PONG on.
    let dead = pair.run_until(ms(3000), |p| p.client.state() != State::Established);
    assert!(dead);
    let since_pong = pair.elapsed() - (ping_at + ms(900));
    assert!(
        since_pong >= ms(2000) && since_pong <= ms(2100),
        "{since_pong:?}"
    );
}

#[test]
fn heartbeats_off_means_no_pings_and_no_timeouts() {
    let cfg = crate::Config {
        heartbeat: None,
        ..config()
    };
    let mut pair = Pair::connected(cfg);
    pair.server_frozen = true;
    pair.run_for(ms(60_000));
    assert!(pair.client_pings().is_empty());
    assert_eq!(pair.client.state(), State::Established);
    assert_eq!(pair.client.timer(Timer::Ping), None);
    // The handshake announced no heartbeat.
    assert!(matches!(pair.client_sent[0].1, Frame::Hello(h) if h.interval_ms == 0));
}

#[test]
fn a_deadline_handled_late_after_a_local_stall_gets_a_fresh_ping_and_t() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    // The server pings the (muted) client at I + j and would convict it at
    // I + j + T, but the server's own process stalls for 3 s before then.
    let jitter = pair.server().ping_jitter();
    let ping_at = ms(1000) + jitter;
    pair.run_for(ping_at + ms(500));
    assert_eq!(pair.server_pings(), vec![ping_at]);
    let dead_at = pair.server().timer(Timer::Dead).unwrap();
    assert_eq!(dead_at - pair.t0, ping_at + ms(1000));

    let mut events = Vec::new();
    let woke = dead_at + ms(2000); // 2 s late: a stall, not the peer's fault
    pair.server_mut().handle_timeout(woke, &mut events);
    assert!(events.is_empty(), "convicted for our own stall: {events:?}");
    assert_eq!(pair.server().state(), State::Established);
    assert_eq!(pair.server().stats().stalls_forgiven, 1);
    assert_eq!(pair.server().timer(Timer::Dead), Some(woke + ms(1000)));
    let mut out = bytes::BytesMut::new();
    pair.server_mut().transmit_into(&mut out, &mut Vec::new());
    assert!(matches!(
        codec::Decoder::new(64).decode(&mut out),
        Ok(Some(Frame::Ping(_)))
    ));

    // Still nothing from the peer: convicted one fresh T later, on time.
    pair.server_mut()
        .handle_timeout(woke + ms(1000), &mut events);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
}

#[test]
fn a_deadline_handled_within_the_tolerance_convicts() {
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    pair.run_for(ms(1500));
    let dead_at = pair.server().timer(Timer::Dead).unwrap();
    let mut events = Vec::new();
    pair.server_mut()
        .handle_timeout(dead_at + ms(250), &mut events);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
}

/// A server connection with two 100 KB messages queued, the first partly
/// written and its socket full; returns the instant its PING was queued
/// (behind the first message, which it cannot interrupt).
fn sender_behind_a_thin_link(pair: &mut Pair) -> std::time::Duration {
    pair.client_mute = true;
    let t0 = pair.now;
    let server = pair.server_mut();
    server.send(Bytes::from(vec![1u8; 100_000])).unwrap();
    server.send(Bytes::from(vec![2u8; 100_000])).unwrap();
    server.advance_transmit(t0, 20_000, &mut Vec::new());
    server.handle_write_blocked(t0);
    let ping_at = server.timer(Timer::Ping).unwrap();
    let mut events = Vec::new();
    server.handle_timeout(ping_at, &mut events);
    assert!(events.is_empty());
    assert_eq!(server.stats().pings_sent, 1);
    ping_at - pair.t0
}

#[test]
fn a_peer_taking_our_output_after_our_ping_went_out_keeps_the_link_until_t_after() {
    let mut pair = Pair::connected(config());
    let ping_at = pair.t0 + sender_behind_a_thin_link(&mut pair);
    let server = pair.server_mut();
    let mut events = Vec::new();
    // The rest of the first message and our PING go out (the PING only
    // now: what drained before it proves nothing yet).
    server.advance_transmit(ping_at + ms(300), 80_005 + 13, &mut Vec::new());
    server.handle_write_blocked(ping_at + ms(300));
    // Then the kernel takes more: the peer's TCP acknowledged.
    server.advance_transmit(ping_at + ms(500), 20_000, &mut Vec::new());
    server.handle_write_blocked(ping_at + ms(500));
    server.handle_timeout(ping_at + ms(1000), &mut events);
    assert!(
        events.is_empty(),
        "a reading peer was convicted: {events:?}"
    );
    assert_eq!(server.stats().drain_extensions, 1);
    // T after that progress, not after the deadline.
    assert_eq!(server.timer(Timer::Dead), Some(ping_at + ms(1500)));
    // Then the drain stops: nothing acked, nothing received for a whole T.
    server.handle_timeout(ping_at + ms(1500), &mut events);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
}

#[test]
fn output_drained_while_our_ping_still_waited_extends_nothing() {
    let mut pair = Pair::connected(config());
    let ping_at = pair.t0 + sender_behind_a_thin_link(&mut pair);
    let server = pair.server_mut();
    let mut events = Vec::new();
    // The kernel takes more of the first message; our PING is still
    // queued behind it, so the contract does not count this.
    server.advance_transmit(ping_at + ms(500), 20_000, &mut Vec::new());
    server.handle_write_blocked(ping_at + ms(500));
    server.handle_timeout(ping_at + ms(1000), &mut events);
    assert_eq!(server.stats().drain_extensions, 0);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
}

#[test]
fn a_sender_whose_output_does_not_drain_still_convicts_on_time() {
    let mut pair = Pair::connected(config());
    let ping_at = pair.t0 + sender_behind_a_thin_link(&mut pair);
    let server = pair.server_mut();
    let mut events = Vec::new();
    // Writes that went into a socket that was never full prove nothing.
    server.handle_timeout(ping_at + ms(1000), &mut events);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
}

/// A server whose driver writes nothing (its socket takes nothing) from
/// the moment its PING is queued, and handles each of `rounds` death
/// deadlines 2 s late. Returns the instant the last (forgiven) deadline
/// was handled.
fn late_deadlines_without_writes(pair: &mut Pair, rounds: u32) -> Instant {
    pair.client_mute = true;
    let server = pair.server_mut();
    let ping_at = server.timer(Timer::Ping).unwrap();
    let mut events = Vec::new();
    server.handle_timeout(ping_at, &mut events);
    assert_eq!(server.pending_output(), codec::HEARTBEAT_FRAME_LEN);
    let mut woke = ping_at;
    for round in 1..=rounds {
        let dead_at = server.timer(Timer::Dead).unwrap();
        assert_eq!(dead_at, woke + ms(1000), "round {round}: a fresh T");
        woke = dead_at + ms(2000);
        server.handle_timeout(woke, &mut events);
        assert!(events.is_empty(), "round {round}: convicted: {events:?}");
        assert_eq!(server.stats().stalls_forgiven, round);
        // The PING that is still queued is the probe: no second one.
        assert_eq!(
            server.pending_output(),
            codec::HEARTBEAT_FRAME_LEN,
            "round {round}: PINGs pile up in the output"
        );
    }
    assert_eq!(server.stats().pings_sent, 1);
    assert_eq!(server.timer(Timer::Dead), Some(woke + ms(1000)));
    woke
}

/// Writes all of `conn`'s output and decodes it.
fn written(conn: &mut crate::proto::conn::Connection) -> Vec<Frame> {
    let mut out = bytes::BytesMut::new();
    conn.transmit_into(&mut out, &mut Vec::new());
    let decoder = codec::Decoder::new(1 << 20);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut out).unwrap() {
        frames.push(frame);
    }
    assert!(out.is_empty());
    frames
}

#[test]
fn late_deadlines_while_the_socket_takes_nothing_keep_one_ping_queued() {
    let mut pair = Pair::connected(config());
    let woke = late_deadlines_without_writes(&mut pair, 20);
    let server = pair.server_mut();
    // Writes resume: the one PING goes out, and nothing else.
    let frames = written(server);
    assert!(matches!(frames[..], [Frame::Ping(_)]), "wrote {frames:?}");
    // The peer stays silent: convicted one T after the last forgiveness.
    let mut events = Vec::new();
    server.handle_timeout(woke + ms(999), &mut events);
    assert!(events.is_empty(), "convicted before T: {events:?}");
    server.handle_timeout(woke + ms(1000), &mut events);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
}

#[test]
fn a_ping_reused_after_late_deadlines_is_answered_and_timed_from_the_last_probe() {
    let mut pair = Pair::connected(config());
    let woke = late_deadlines_without_writes(&mut pair, 5);
    let server = pair.server_mut();
    let [Frame::Ping(nonce)] = written(server)[..] else {
        panic!("not one PING");
    };
    let mut pong = bytes::BytesMut::new();
    codec::encode_pong(nonce, &mut pong);
    let mut events = Vec::new();
    server.handle_input(woke + ms(30), &mut pong, &mut events);
    assert!(events.is_empty());
    assert_eq!(server.state(), State::Established);
    assert_eq!(server.timer(Timer::Dead), None, "the PONG stood death down");
    // The sample runs from the last probe, not from before our stalls.
    assert_eq!(server.rtt().latest(), Some(ms(30)));
}

#[test]
fn a_ping_still_queued_when_the_next_falls_due_is_reused() {
    // The peer keeps sending a frame now and then (so a new PING falls due
    // each time after I of silence) but our socket takes nothing.
    let mut pair = Pair::connected(config());
    pair.client_mute = true;
    let server = pair.server_mut();
    let mut events = Vec::new();
    for round in 1..=10 {
        let ping_at = server.timer(Timer::Ping).unwrap();
        server.handle_timeout(ping_at, &mut events);
        assert_eq!(server.timer(Timer::Dead), Some(ping_at + ms(1000)));
        assert_eq!(
            server.pending_output(),
            codec::HEARTBEAT_FRAME_LEN,
            "round {round}: PINGs pile up in the output"
        );
        let mut ack = bytes::BytesMut::new();
        codec::encode_ack(0, &mut ack);
        server.handle_input(ping_at + ms(500), &mut ack, &mut events);
        assert_eq!(server.timer(Timer::Dead), None);
    }
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(server.stats().pings_sent, 1);
    assert!(matches!(written(server)[..], [Frame::Ping(_)]));
}

/// A pair on I = T = 10 s (a 16 ms timer grain) whose server tolerates
/// stalls of `tolerance`, and a muted client: returns it with the server's
/// death deadline armed (its PING sent).
fn grid_pair(tolerance: Duration) -> (Pair, Instant) {
    let config = Config {
        heartbeat: Some(crate::config::Heartbeat {
            interval: ms(10_000),
            timeout: ms(10_000),
        }),
        stall_tolerance: tolerance,
        ..config()
    };
    assert_eq!(config.timer_grain(), ms(16));
    let mut pair = Pair::connected(config);
    pair.client_mute = true;
    let ping_at = ms(10_000) + pair.server().ping_jitter();
    pair.run_for(ping_at + ms(500));
    assert_eq!(pair.server_pings(), vec![ping_at]);
    let dead_at = pair.server().timer(Timer::Dead).unwrap();
    (pair, dead_at)
}

#[test]
fn a_death_deadline_handled_on_the_timer_grid_convicts() {
    // The reactor files the deadline rounded up to its 16 ms grid: handled
    // there, plus a wake-up delay within the tolerance, it is on time, not
    // a local stall (or a silent peer would be re-probed forever).
    let tolerance = crate::config::MIN_STALL_TOLERANCE;
    let (mut pair, dead_at) = grid_pair(tolerance);
    let mut events = Vec::new();
    let woke = dead_at + ms(16) + tolerance - ms(1);
    pair.server_mut().handle_timeout(woke, &mut events);
    assert_eq!(pair.server().stats().stalls_forgiven, 0);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
}

#[test]
fn a_death_deadline_handled_past_the_grid_and_the_tolerance_is_forgiven() {
    let tolerance = crate::config::MIN_STALL_TOLERANCE;
    // Exactly one grain and the tolerance late: still on time.
    let (mut pair, dead_at) = grid_pair(tolerance);
    let mut events = Vec::new();
    pair.server_mut()
        .handle_timeout(dead_at + ms(16) + tolerance, &mut events);
    assert_eq!(
        events,
        vec![Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
    // A millisecond more: the local process stalled.
    let (mut pair, dead_at) = grid_pair(tolerance);
    let woke = dead_at + ms(16) + tolerance + ms(1);
    pair.server_mut().handle_timeout(woke, &mut events);
    assert_eq!(events.len(), 1, "convicted for our own stall: {events:?}");
    assert_eq!(pair.server().stats().stalls_forgiven, 1);
    assert_eq!(pair.server().timer(Timer::Dead), Some(woke + ms(10_000)));
}
