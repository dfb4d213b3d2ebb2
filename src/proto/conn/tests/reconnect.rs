//! Redials on the backoff schedule, and when the attempt counter resets.

use std::io;

use super::{config, kinds, ms, Listener, Pair};
use crate::config::BackoffConfig;
use crate::error::{CloseCode, DisconnectReason};
use crate::proto::conn::{Event, State};

fn reconnect_delays(events: &[(std::time::Duration, Event)]) -> Vec<(u32, std::time::Duration)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Reconnecting { attempt, delay, .. } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect()
}

#[test]
fn refused_dials_follow_the_backoff_schedule() {
    let mut pair = Pair::new(config(), config());
    pair.listener = Listener::Refusing;
    pair.run_for(ms(8000));
    // Delays 100, 200, 400, 800, 1600 (cap), 1600, ...
    assert_eq!(
        pair.dials[..7],
        [
            ms(0),
            ms(100),
            ms(300),
            ms(700),
            ms(1500),
            ms(3100),
            ms(4700)
        ]
    );
    let delays = reconnect_delays(&pair.client_events);
    assert_eq!(
        delays[..6],
        [
            (1, ms(100)),
            (2, ms(200)),
            (3, ms(400)),
            (4, ms(800)),
            (5, ms(1600)),
            (6, ms(1600))
        ]
    );
    assert!(pair.client_events.iter().all(|(_, e)| matches!(
        e,
        Event::Reconnecting {
            reason: DisconnectReason::ConnectFailed(io::ErrorKind::ConnectionRefused),
            ..
        }
    )));
    // Never a Disconnected: nothing was ever connected.
}

#[test]
fn a_connect_that_hangs_times_out_and_backs_off() {
    let mut pair = Pair::new(config(), config());
    pair.listener = Listener::Blackhole;
    pair.run_for(ms(2000));
    // 300 ms connect timeout, then 100, 200, 400 ms of backoff.
    assert_eq!(pair.dials, vec![ms(0), ms(400), ms(900), ms(1600)]);
    assert!(matches!(
        pair.client_events[0].1,
        Event::Reconnecting {
            attempt: 1,
            reason: DisconnectReason::ConnectTimeout,
            ..
        }
    ));
    // The attempt at 1600 timed out at 1900; the next is due at 2700.
    assert_eq!(pair.client.state(), State::Backoff);
    assert_eq!(
        pair.client.timer(crate::proto::conn::Timer::Reconnect),
        Some(pair.t0 + ms(2700))
    );
}

/// Breaks an established pair in one of several ways.
fn break_link(pair: &mut Pair, how: usize) -> DisconnectReason {
    let now = pair.now;
    let mut scratch = Vec::new();
    match how {
        0 => {
            pair.server_frozen = true;
            pair.run_until(ms(5000), |p| p.client.state() != State::Established);
            DisconnectReason::HeartbeatTimeout
        }
        1 => {
            pair.server_mut()
                .close(now, CloseCode::GOING_AWAY, "restart", &mut scratch);
            pair.settle();
            DisconnectReason::PeerClosed {
                code: CloseCode::GOING_AWAY,
                reason: "restart".into(),
            }
        }
        2 => {
            pair.client.handle_eof(now, &mut scratch);
            pair.client_events
                .extend(scratch.drain(..).map(|e| (pair.now - pair.t0, e)));
            pair.settle();
            DisconnectReason::PeerEof
        }
        3 => {
            pair.client
                .handle_io_error(now, io::ErrorKind::ConnectionReset, &mut scratch);
            pair.client_events
                .extend(scratch.drain(..).map(|e| (pair.now - pair.t0, e)));
            pair.settle();
            DisconnectReason::Io(io::ErrorKind::ConnectionReset)
        }
        _ => {
            pair.inject_to_client(&[0, 0, 0, 0]);
            DisconnectReason::ProtocolError {
                code: CloseCode::PROTOCOL_ERROR,
                detail: crate::proto::codec::DecodeError::ZeroLength.detail(),
            }
        }
    }
}

#[test]
fn the_client_comes_back_after_every_kind_of_loss() {
    for how in 0..5 {
        let mut pair = Pair::connected(config());
        pair.run_for(ms(1500)); // healthy: heartbeats exchanged
        assert_eq!(pair.client.reconnect_attempt(), 0);
        let expected = break_link(&mut pair, how);
        let lost_at = pair.elapsed();
        assert_eq!(pair.client.close_reason(), Some(&expected), "loss {how}");
        let tail: Vec<&Event> = kinds(&pair.client_events)
            .into_iter()
            .rev()
            .take(2)
            .collect();
        assert_eq!(
            tail,
            vec![
                &Event::Reconnecting {
                    attempt: 1,
                    delay: ms(100),
                    reason: expected.clone()
                },
                &Event::Disconnected { reason: expected },
            ],
            "loss {how}"
        );
        pair.server_frozen = false;
        pair.run_until_established();
        assert_eq!(pair.elapsed() - lost_at, ms(100), "loss {how}");
        assert_eq!(pair.client.session_id(), 2, "loss {how}: a new session");
        assert_eq!(pair.dials.len(), 2);
    }
}

#[test]
fn a_server_that_accepts_then_rejects_does_not_reset_the_backoff() {
    let mut pair = Pair::new(config(), config());
    let mut delays = Vec::new();
    for _ in 0..5 {
        pair.run_until_established();
        let now = pair.now;
        let mut scratch = Vec::new();
        pair.server_mut()
            .close(now, CloseCode::POLICY_VIOLATION, "go away", &mut scratch);
        pair.settle();
        delays.push(pair.client.reconnect_attempt());
    }
    // Connect and handshake succeeded every time, yet the attempts grow.
    assert_eq!(delays, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        reconnect_delays(&pair.client_events),
        vec![
            (1, ms(100)),
            (2, ms(200)),
            (3, ms(400)),
            (4, ms(800)),
            (5, ms(1600))
        ]
    );
}

#[test]
fn the_counter_resets_only_after_a_healthy_period_with_frames() {
    let mut pair = Pair::new(config(), config());
    pair.listener = Listener::Refusing;
    pair.run_for(ms(250)); // refused at 0 and 100
    assert_eq!(pair.client.reconnect_attempt(), 2);
    pair.listener = Listener::Accepting;
    pair.run_until_established();
    let up = pair.elapsed();
    // The server welcomes us and then goes silent: the healthy period
    // passes without a frame, so nothing resets...
    pair.server_frozen = true;
    pair.run_for(ms(1001));
    assert_eq!(pair.client.reconnect_attempt(), 2);
    pair.run_until(ms(5000), |p| p.client.state() != State::Established);
    assert_eq!(pair.client.reconnect_attempt(), 3, "silence is no health");

    // ...but a connection that exchanges frames for the healthy period does.
    pair.server_frozen = false;
    pair.run_until_established();
    let up2 = pair.elapsed();
    assert!(up2 > up);
    pair.run_for(ms(999));
    assert_eq!(
        pair.client.reconnect_attempt(),
        3,
        "reset before the healthy period"
    );
    pair.run_for(ms(1500));
    assert_eq!(pair.client.reconnect_attempt(), 0);
    let how = break_link(&mut pair, 2);
    assert_eq!(how, DisconnectReason::PeerEof);
    assert_eq!(
        reconnect_delays(&pair.client_events).last(),
        Some(&(1, ms(100)))
    );
}

#[test]
fn max_attempts_gives_up_for_good() {
    let cfg = crate::Config {
        backoff: BackoffConfig {
            max_attempts: Some(3),
            ..config().backoff
        },
        ..config()
    };
    let mut pair = Pair::new(cfg.clone(), cfg);
    pair.listener = Listener::Refusing;
    pair.run_for(ms(10_000));
    assert_eq!(pair.dials, vec![ms(0), ms(100), ms(300), ms(700)]);
    assert!(pair.client.is_closed());
    assert_eq!(
        kinds(&pair.client_events).last(),
        Some(&&Event::GaveUp {
            attempts: 3,
            reason: DisconnectReason::ConnectFailed(io::ErrorKind::ConnectionRefused)
        })
    );
    assert_eq!(pair.client.poll_timeout(), None);
}

#[test]
fn jittered_redials_of_many_clients_are_spread() {
    let mut first = Vec::new();
    for seed in 0..50 {
        let cfg = crate::Config {
            backoff: BackoffConfig::default(),
            seed,
            ..config()
        };
        let mut pair = Pair::new(cfg.clone(), cfg);
        pair.listener = Listener::Refusing;
        pair.run_for(ms(150));
        first.push(pair.dials[1]);
    }
    first.sort();
    first.dedup();
    assert!(first.len() > 30, "redial times collapsed: {first:?}");
    assert!(first.iter().all(|d| *d >= ms(80) && *d <= ms(120)));
}

#[test]
fn closing_during_backoff_stops_redialling() {
    let mut pair = Pair::new(config(), config());
    pair.listener = Listener::Refusing;
    pair.run_for(ms(50));
    assert_eq!(pair.client.state(), State::Backoff);
    let now = pair.now;
    let mut scratch = Vec::new();
    pair.client.close(now, CloseCode::NORMAL, "", &mut scratch);
    assert!(scratch.is_empty());
    pair.run_for(ms(10_000));
    assert_eq!(pair.dials, vec![ms(0)]);
    assert!(pair.client.is_closed());
}
