//! The cable pulled while both ends stream. The client child (one link,
//! session resume on, as by default) and the server child send each other
//! numbered messages (1 B to 64 KiB, `support::numbered`), [`RATE`] a
//! second; the cable is pulled past `I + T` (both ends drop the link) and
//! put back, [`PULLS`] times; then both stop sending and the test waits
//! for the streams to drain. Each child checks every message against the
//! number it expects and reports what it received as runs of consecutive
//! numbers (`stream` lines); the test asserts one run from 0 to what the
//! other end sent, on both sides, that both ends resumed after every pull
//! (the server under one `ConnId`), and that nothing was handed back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tether::{
    Config, ConnId, Context, DisconnectReason, Handler, Message, PeerInfo, Reactor, ResumeStatus,
    SendError,
};

use super::support::numbered::{self, Received};
use super::{
    disconnected, firsts, ms, spawn_child, Cable, Ev, Lab, Mode, Side, Stamped, CHILD_LIFETIME,
    GRACE,
};

/// Set by the child's stdin thread on a line "stop": no more sends.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Pulls in the run.
const PULLS: usize = 2;
/// Messages each end sends a second (about 1.6 MB/s each way), all the
/// time: what the session does not take while the link is down (beyond
/// its bound) follows once it is back.
const RATE: u64 = 5_000;
/// A streaming child reports what it sent and received this often.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// The handler of a streaming child.
struct Streamer {
    start: Instant,
    /// The link (client) or the accepted connection (server) streamed on.
    peer: Option<ConnId>,
    sent: u64,
    rx: Received,
    bad_told: usize,
}

impl Streamer {
    fn say(&self, what: impl std::fmt::Display) {
        println!("EV {:.3} {what}", self.start.elapsed().as_secs_f64());
    }

    /// Sends the next numbers until `RATE` a second since the start went
    /// or the session pushes back.
    fn pump(&mut self, cx: &mut Context<'_>) {
        let Some(id) = self.peer else { return };
        let due = (self.start.elapsed().as_millis() as u64).saturating_mul(RATE) / 1000;
        while self.sent < due {
            match cx.send(id, numbered::message(self.sent)) {
                Ok(()) => self.sent += 1,
                Err(SendError::Backpressure { .. } | SendError::NotConnected) => return,
                Err(e) => {
                    self.say(format_args!("send-error {id} {e}"));
                    return;
                }
            }
        }
    }

    /// `stream <sent> <received> <bytes received> <damaged> <runs>`, the
    /// runs as `a-b` (first 16, comma-separated; `-` for none).
    fn report(&self) {
        let runs: Vec<String> = self
            .rx
            .runs
            .iter()
            .take(16)
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        let runs = if runs.is_empty() {
            "-".to_owned()
        } else {
            runs.join(",")
        };
        self.say(format_args!(
            "stream {} {} {} {} {runs}",
            self.sent,
            self.rx.messages,
            self.rx.bytes,
            self.rx.bad.len()
        ));
    }
}

impl Handler for Streamer {
    fn on_connected(&mut self, cx: &mut Context<'_>, id: ConnId, peer: &PeerInfo) {
        self.peer.get_or_insert(id);
        let addr = cx
            .conn_stats(id)
            .map_or_else(|| "?".to_string(), |s| s.peer_addr.to_string());
        self.say(format_args!("connected {id} {addr}"));
        let status = match peer.resume {
            ResumeStatus::New => "new".to_owned(),
            ResumeStatus::Resumed { resent } => format!("resumed:{resent}"),
            ResumeStatus::Lost => "lost".to_owned(),
            ResumeStatus::Refused => "refused".to_owned(),
            ResumeStatus::Off => "off".to_owned(),
            other => format!("{other:?}").replace(' ', ""),
        };
        self.say(format_args!("resume {id} {status}"));
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, message: Message<'_>) {
        self.rx.receive(&message);
        if self.rx.bad.len() > self.bad_told {
            self.bad_told = self.rx.bad.len();
            let (expected, len) = self.rx.bad[self.bad_told - 1];
            self.say(format_args!("damaged {expected} {len}"));
        }
    }

    fn on_disconnected(&mut self, _: &mut Context<'_>, id: ConnId, reason: &DisconnectReason) {
        self.say(format_args!("disconnected {id} {reason:?}"));
    }

    fn on_undelivered(
        &mut self,
        _: &mut Context<'_>,
        id: ConnId,
        messages: Vec<bytes::Bytes>,
        cause: tether::UndeliveredCause,
    ) {
        self.say(format_args!(
            "undelivered {id} {} {cause:?}",
            messages.len()
        ));
    }
}

/// The body of a streaming child: listens (server) or dials one link
/// (client), then streams until told to stop; never returns.
pub fn child(mut reactor: Reactor, server: bool, addr: SocketAddr, config: Config) -> ! {
    let mut node = Streamer {
        start: Instant::now(),
        peer: None,
        sent: 0,
        rx: Received::default(),
        bad_told: 0,
    };
    if server {
        let listener = reactor.listen(addr).expect("listen");
        let bound = reactor.local_addr(listener).expect("bound");
        node.say(format_args!("listening {bound}"));
    } else {
        node.peer = Some(reactor.dial_with(addr, config).expect("valid config"));
    }
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut next_report = Instant::now();
    while Instant::now() < deadline {
        reactor.poll_once(&mut node, Some(ms(20))).expect("poll");
        if !STOP.load(Ordering::SeqCst) {
            node.pump(&mut reactor.context());
        }
        if Instant::now() >= next_report {
            next_report = Instant::now() + REPORT_EVERY;
            node.report();
        }
    }
    node.say("lifetime-over");
    std::process::exit(3);
}

// ----- the test's side ------------------------------------------------------

/// A `stream` line of a child.
#[derive(Clone, Debug, Default, PartialEq)]
struct Report {
    sent: u64,
    received: u64,
    bytes: u64,
    damaged: u64,
    runs: Vec<(u64, u64)>,
}

/// The words of a child's line of `kind` (after its time and kind).
fn words<'a>(ev: &'a Ev, kind: &str) -> Option<Vec<&'a str>> {
    let Ev::Other(line) = ev else { return None };
    let mut w = line.split(' ').skip(1);
    (w.next() == Some(kind)).then(|| w.collect())
}

fn report_of(ev: &Ev) -> Option<Report> {
    let w = words(ev, "stream")?;
    let num = |i: usize| w.get(i).and_then(|v| v.parse().ok());
    let runs = match *w.get(4)? {
        "-" => Vec::new(),
        list => list
            .split(',')
            .map(|run| {
                let (a, b) = run.split_once('-')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?,
    };
    Some(Report {
        sent: num(0)?,
        received: num(1)?,
        bytes: num(2)?,
        damaged: num(3)?,
        runs,
    })
}

/// A side's latest report, and when it came.
fn latest(log: &[Stamped], side: Side) -> Option<(Instant, Report)> {
    log.iter().rev().find_map(|(at, s, ev)| {
        (*s == side)
            .then(|| report_of(ev))
            .flatten()
            .map(|r| (*at, r))
    })
}

/// A side's `resume` statuses since `since`, with their connection ids.
fn statuses(log: &[Stamped], side: Side, since: Option<Instant>) -> Vec<(String, String)> {
    log.iter()
        .filter(|(at, s, _)| *s == side && since.map_or(true, |t| *at >= t))
        .filter_map(|(_, _, ev)| {
            let w = words(ev, "resume")?;
            Some((w.first()?.to_string(), w.get(1)?.to_string()))
        })
        .collect()
}

/// A side's lines of `kind` (damaged, undelivered, send-error).
fn lines_of(log: &[Stamped], side: Side, kind: &str) -> Vec<String> {
    log.iter()
        .filter(|(_, s, ev)| *s == side && words(ev, kind).is_some())
        .map(|(_, _, ev)| format!("{ev:?}"))
        .collect()
}

#[test]
#[ignore = "needs root and ip netns; run by .ci/run"]
fn cable_pull_5_both_ends_streaming_get_every_message_exactly_once_across_pulls_past_i_plus_t() {
    super::support::init_logs();
    let cable = Cable::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut lab = Lab {
        rx,
        log: Vec::new(),
    };
    let mut server = spawn_child(&cable.ns_s, Side::Server, Mode::Stream, tx.clone());
    assert!(
        lab.wait_until(ms(10_000), |log| log
            .iter()
            .any(|(_, s, e)| *s == Side::Server && *e == Ev::Listening)),
        "the server never listened"
    );
    let mut client = spawn_child(&cable.ns_c, Side::Client, Mode::Stream, tx);
    let flowing = |log: &[Stamped], since: Option<Instant>| {
        [Side::Server, Side::Client].iter().all(|&side| {
            latest(log, side).is_some_and(|(at, r)| {
                since.map_or(true, |t| at >= t) && r.received > 0 && r.sent > 0
            })
        })
    };
    assert!(
        lab.wait_until(ms(10_000), |log| flowing(log, None)),
        "the streams never flowed across the veth: {:?}",
        lab.log
    );
    let (_, latest_by) = Mode::Stream.window().expect("heartbeats detect");
    let mut detections = Vec::new();
    let mut backs = Vec::new();
    for pull in 1..=PULLS {
        // Some traffic on the link first.
        lab.wait_until(ms(500), |_| false);
        let pulled = cable.pull();
        let both_dropped = lab.wait_until(latest_by + GRACE, |log| {
            [Side::Client, Side::Server]
                .iter()
                .all(|&side| !firsts(log, side, Some(pulled), disconnected).is_empty())
        });
        let dropped: Vec<_> = [Side::Client, Side::Server]
            .iter()
            .map(|&side| {
                firsts(&lab.log, side, Some(pulled), disconnected)
                    .into_values()
                    .map(|(at, why)| (at - pulled, why))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            both_dropped,
            "pull {pull}: not both ends dropped the link within {:?}: client {:?}, server {:?}",
            latest_by + GRACE,
            dropped[0],
            dropped[1]
        );
        detections.push(dropped);
        // Both ends dropped the link: nothing more arrives until it is back.
        let received = |log: &[Stamped], side| latest(log, side).map(|(_, r)| r.received);
        let before = (
            received(&lab.log, Side::Client),
            received(&lab.log, Side::Server),
        );
        let restored = cable.restore();
        // Back: both ends resumed, and each received more since.
        let back = lab.wait_until(ms(10_000), |log| {
            [Side::Client, Side::Server].iter().all(|&side| {
                statuses(log, side, Some(restored))
                    .iter()
                    .any(|(_, s)| s.starts_with("resumed"))
            }) && flowing(log, Some(restored))
                && received(log, Side::Client) > before.0
                && received(log, Side::Server) > before.1
        });
        assert!(
            back,
            "pull {pull}: the session did not resume and flow within 10 s of the link's return: \
             client {:?}, server {:?}",
            statuses(&lab.log, Side::Client, Some(restored)),
            statuses(&lab.log, Side::Server, Some(restored))
        );
        backs.push(lab.log.last().map(|(at, _, _)| *at - restored));
    }
    // Stop sending; once each side has reported after that, what it sent
    // is final, and the other side must receive all of it.
    client.tell("stop");
    server.tell("stop");
    let stopped = Instant::now() + REPORT_EVERY * 3;
    let drained = lab.wait_until(ms(15_000), |log| {
        let (Some((ct, c)), Some((st, s))) = (latest(log, Side::Client), latest(log, Side::Server))
        else {
            return false;
        };
        ct >= stopped && st >= stopped && c.received >= s.sent && s.received >= c.sent
    });
    let (_, c) = latest(&lab.log, Side::Client).expect("client reports");
    let (_, s) = latest(&lab.log, Side::Server).expect("server reports");
    eprintln!(
        "cable pulled {PULLS} times while streaming: client sent {} and received {} ({} B), \
         server sent {} and received {} ({} B); drops after the pull (client, server): {:?}; \
         back after the link's return: {:?}; statuses client {:?}, server {:?}",
        c.sent,
        c.received,
        c.bytes,
        s.sent,
        s.received,
        s.bytes,
        detections,
        backs,
        statuses(&lab.log, Side::Client, None),
        statuses(&lab.log, Side::Server, None)
    );
    assert!(
        drained,
        "the streams did not drain: client {c:?}, server {s:?}"
    );
    // Every number exactly once, in order, on both sides, nothing else.
    for (side, got, total) in [("client", &c, s.sent), ("server", &s, c.sent)] {
        assert_eq!(got.damaged, 0, "{side}: damaged messages");
        assert_eq!(
            got.runs,
            [(0, total)],
            "{side} received other than 0..{total}, once each, in order"
        );
        assert_eq!(got.received, total, "{side}: messages received");
    }
    for side in [Side::Client, Side::Server] {
        for kind in ["damaged", "undelivered", "send-error"] {
            let lines = lines_of(&lab.log, side, kind);
            assert!(lines.is_empty(), "{side:?}: {lines:?}");
        }
        let st = statuses(&lab.log, side, None);
        let resumed = st.iter().filter(|(_, s)| s.starts_with("resumed")).count();
        assert!(resumed >= PULLS, "{side:?} resumed {resumed} times: {st:?}");
        assert!(
            st.iter()
                .all(|(_, s)| s == "new" || s.starts_with("resumed")),
            "{side:?}: {st:?}"
        );
        let ids: std::collections::BTreeSet<&str> = st.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids.len(), 1, "{side:?}: one ConnId throughout: {st:?}");
    }
}
