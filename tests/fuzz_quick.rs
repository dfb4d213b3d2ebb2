//! The fuzz targets of `fuzz/`, run quickly and deterministically on stable
//! Rust: the same harness (`fuzz/src`, included by path) fed seeded
//! random inputs, the seed corpus, and the minimized inputs of the bugs
//! fuzzing found. Alone in its own test binary, since its tracking
//! allocator is process-wide.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::fs;
use std::path::Path;

use harness::conn::{self, flags, Bug, Op, PeerFrame, Tolerate, CONFIG_LEN};
use harness::input::SplitMix;
use harness::resume::{self, Op as R};
use harness::{decode, seeds, track};

#[global_allocator]
static ALLOC: track::Tracking = track::Tracking;

/// Random inputs per target: about a second in all, in a debug build.
const DECODE_CASES: u64 = 10_000;
const CONN_CASES: u64 = 5_000;
const RESUME_CASES: u64 = 2_000;

fn byte(rng: &mut SplitMix) -> u8 {
    rng.next_u64() as u8
}

/// A stream of mostly valid frames, then damaged: a flipped byte, a cut,
/// or garbage in between.
fn random_stream(rng: &mut SplitMix) -> Vec<u8> {
    let frames = seeds::decode();
    let mut out = vec![byte(rng) % 10, [0, 1, 2, 7, 64][rng.below(5)]];
    for _ in 0..1 + rng.below(6) {
        let (_, seed) = &frames[rng.below(frames.len())];
        out.extend_from_slice(&seed[2..]);
    }
    match rng.below(4) {
        0 => {}
        1 => {
            let i = 2 + rng.below(out.len() - 2);
            out[i] ^= 1 << rng.below(8);
        }
        2 => out.truncate(2 + rng.below(out.len() - 1)),
        _ => {
            let i = 2 + rng.below(out.len() - 1);
            let garbage: Vec<u8> = (0..rng.below(9)).map(|_| byte(rng)).collect();
            out.splice(i..i, garbage);
        }
    }
    out
}

fn random_op(rng: &mut SplitMix) -> Op {
    let b = byte(rng);
    match rng.below(100) {
        0..=9 => Op::Advance(b),
        10..=24 => Op::FireDue(if rng.below(4) == 0 { 128 | b } else { 0 }),
        25..=26 => Op::Timeout,
        27..=41 => {
            let (a, c) = (byte(rng), byte(rng));
            Op::Peer(match rng.below(10) {
                0 => PeerFrame::Hello(a, c),
                1 => PeerFrame::Welcome(a, c),
                2 | 3 => PeerFrame::Data(a, c % 2),
                4 | 5 => PeerFrame::Ping(a, c),
                6 => PeerFrame::Pong(a, c),
                7 => PeerFrame::Close(a, c),
                8 => PeerFrame::Ack(a, c),
                _ => PeerFrame::Handshake(a, c),
            })
        }
        42..=44 => Op::Raw((0..rng.below(12)).map(|_| byte(rng)).collect()),
        45..=57 => Op::Deliver(if rng.below(2) == 0 { 0 } else { b }),
        58..=65 => Op::Send(u16::from(b) * [1, 1, 4, 64][rng.below(4)] as u16),
        66..=67 => Op::Close(b, byte(rng)),
        68..=70 => Op::Connected,
        71 => Op::ConnectFailed(b),
        72 => Op::Eof,
        73 => Op::IoError(b),
        74..=77 => Op::WriteBlocked,
        78..=89 => Op::Transmit(if rng.below(2) == 0 { 0 } else { b }),
        90..=91 => Op::Start,
        _ => Op::Handshake,
    }
}

/// A random configuration near the seeds' one, and a script that usually
/// gets the connection established first.
fn random_script(rng: &mut SplitMix) -> Vec<u8> {
    let mut config = seeds::conn_config(byte(rng));
    for _ in 0..rng.below(4) {
        let i = 1 + rng.below(CONFIG_LEN - 1);
        config[i] = byte(rng);
    }
    if rng.below(3) == 0 {
        // Short heartbeats, so timers matter within a short script.
        config[1] = byte(rng) % 16;
        config[2] = byte(rng) % 16;
    }
    let mut ops = Vec::new();
    if rng.below(4) != 0 {
        ops.extend([Op::Start, Op::Handshake]);
    }
    ops.extend((0..10 + rng.below(120)).map(|_| random_op(rng)));
    conn::script(config, &ops)
}

fn random_resume_op(rng: &mut SplitMix) -> R {
    let b = byte(rng);
    let len = rng.below(2000) as u16;
    let cut = |rng: &mut SplitMix| {
        if rng.below(3) == 0 {
            0
        } else {
            rng.below(3000) as u16
        }
    };
    match rng.below(100) {
        0..=17 => R::SendClient(b, len),
        18..=31 => R::SendServer(b, len),
        32..=41 => R::ToServer(b, cut(rng), cut(rng)),
        42..=51 => R::ToClient(b, cut(rng), cut(rng)),
        52..=63 => R::Exchange,
        64..=66 => R::Reset,
        67..=69 => R::HalfDead,
        70..=72 => R::NoticeClient,
        73..=75 => R::NoticeServer,
        76..=80 => R::Advance(b % 64),
        81..=85 => R::FireNext,
        86..=92 => R::Dial,
        93 => R::DialFail,
        94..=96 => R::Takeover,
        97..=98 => R::Restart,
        _ => R::CloseClient,
    }
}

/// A random resume script: a configuration, then a dial and ops.
fn random_resume_script(rng: &mut SplitMix) -> Vec<u8> {
    let mut config = [byte(rng), byte(rng), byte(rng), byte(rng)];
    if rng.below(2) == 0 {
        // Resume on at the server, mostly.
        config[3] &= !resume::flags::NO_RESUME_B;
    }
    let mut ops = vec![R::Dial, R::Exchange];
    ops.extend((0..5 + rng.below(60)).map(|_| random_resume_op(rng)));
    resume::script(config, &ops)
}

/// `TETHER_FUZZ_CASES=N` runs N resume scripts as well.
#[test]
fn resume_random_scripts() {
    let cases = std::env::var("TETHER_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(RESUME_CASES);
    let mut total = resume::Summary::default();
    for seed in 0..cases {
        let input = random_resume_script(&mut SplitMix(seed ^ 0x5E55));
        match std::panic::catch_unwind(|| resume::run_summary(&input)) {
            Ok(summary) => total += summary,
            Err(_) => panic!("resume script from seed {seed}: {input:?}"),
        }
    }
    eprintln!("{total:?}");
    // The random scripts reach what they are for.
    if cases >= RESUME_CASES {
        let t = total;
        assert!(t.resumed > 100 && t.resent > 20 && t.lost > 20, "{t:?}");
        assert!(
            t.takeovers > 20 && t.expired > 20 && t.large > 1000,
            "{t:?}"
        );
        assert!(t.handed_back > 100, "{t:?}");
    }
}

#[test]
fn decoder_random_streams_in_random_splits() {
    let mut rng = SplitMix(0xDEC0DE);
    for _ in 0..DECODE_CASES {
        decode::run(&random_stream(&mut rng));
    }
}

/// `TETHER_FUZZ_CASES=N` runs N scripts instead (a scale run on stable,
/// reproducible by seed: script `i` is built from seed `i`).
#[test]
fn connection_random_scripts() {
    let cases = std::env::var("TETHER_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CONN_CASES);
    for seed in 0..cases {
        let input = random_script(&mut SplitMix(seed));
        conn::run_with(&input, Tolerate::NONE);
    }
}

/// The seeds, with the known bugs tolerated (the redial seed shows the
/// HELLO session-id bug).
#[test]
fn seed_inputs_pass() {
    for (_, input) in seeds::decode() {
        decode::run(&input);
    }
    for (name, input) in seeds::conn() {
        let result = std::panic::catch_unwind(|| conn::run_with(&input, Tolerate::NONE));
        assert!(result.is_ok(), "conn seed {name}");
    }
}

/// Every file kept in `fuzz/corpus/<target>/` (the seeds and what the
/// fuzzer found worth keeping), with every check on.
#[test]
fn the_kept_corpus_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut runs = 0;
    for (target, run) in [
        ("decode", decode::run as fn(&[u8])),
        // Strictly, every check on. (One kept input, a driver that never
        // writes while every heartbeat deadline is handled late, used to
        // pile up a stall-forgiveness PING per T past the output bound; a
        // probe now reuses our PING while it is still queued.)
        ("conn", |d: &[u8]| conn::run_with(d, Tolerate::NONE)),
        ("resume", resume::run),
    ] {
        for entry in fs::read_dir(root.join(target)).expect("the corpus is kept") {
            let path = entry.expect("readable corpus").path();
            let input = fs::read(&path).expect("readable corpus file");
            let result = std::panic::catch_unwind(|| run(&input));
            assert!(result.is_ok(), "{}", path.display());
            runs += 1;
        }
    }
    assert!(runs > 20, "only {runs} corpus files");
}

/// The seed files are what `fuzz/examples/write_seeds.rs` writes now.
#[test]
fn seed_files_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, seeds) in [
        ("decode", seeds::decode()),
        ("conn", seeds::conn()),
        ("resume", seeds::resume()),
    ] {
        for (name, bytes) in seeds {
            let path = root.join(target).join(format!("seed-{name}"));
            let kept = fs::read(&path).unwrap_or_default();
            assert!(
                kept == bytes,
                "{} is stale: run `cargo run --example write_seeds` in fuzz/",
                path.display()
            );
        }
    }
    for (_, name, bytes) in seeds::regressions() {
        let path = root.join("../regressions").join(name);
        let kept = fs::read(&path).unwrap_or_default();
        assert!(kept == bytes, "{} is stale", path.display());
    }
}

#[test]
fn tolerate_parses_the_environment_syntax() {
    assert_eq!(conn::Tolerate::parse("known"), Tolerate::known());
    let one = Tolerate::parse("stale-write-stall, nonsense");
    assert!(one.has(Bug::StaleWriteStall) && !one.has(Bug::PongBacklog));
    assert_eq!(conn::Tolerate::parse(""), Tolerate::NONE);
    assert_eq!(
        Tolerate::from_env(),
        Tolerate::parse(&std::env::var("TETHER_FUZZ_TOLERATE").unwrap_or_default())
    );
    // A configuration alone: a fresh server, checked once, under whatever
    // the environment tolerates.
    conn::run(&seeds::conn_config(flags::SERVER));
}

/// Each resume seed passes and shows the case it is named for.
#[test]
fn resume_seeds_show_their_cases() {
    for (name, input) in seeds::resume() {
        let s = match std::panic::catch_unwind(|| resume::run_summary(&input)) {
            Ok(summary) => summary,
            Err(_) => panic!("resume seed {name}"),
        };
        let shows = match name {
            "normal-resume" | "half-dead-resume" => s.resumed >= 1 && s.resent >= 1 && s.lost == 0,
            "takeover" | "takeover-quiet" => s.takeovers == 1 && s.resumed >= 1,
            "lost-session" => s.lost == 1 && s.handed_back > 0,
            "expiry" => s.expired >= 1 && s.lost == 1,
            "client-close" => s.resumed == 0 && s.delivered > 0,
            "no-resume-server" => s.resumed == 0 && s.lost == 0,
            _ => panic!("a resume seed without a check: {name}"),
        };
        assert!(shows, "resume seed {name} does not show its case: {s:?}");
        assert!(
            s.large > 0,
            "resume seed {name} sends no large message: {s:?}"
        );
    }
}

/// A driver that lets the close a takeover asked for (the old socket's)
/// reach the resumed socket breaks the session, and the harness says so
/// (the reactor drains those actions: `tests/resume.rs`,
/// `a_takeover_keeps_the_resumed_socket_open`).
#[test]
#[should_panic]
fn a_close_that_reaches_the_resumed_socket_is_caught() {
    let (_, input) = seeds::resume()
        .into_iter()
        .find(|(name, _)| *name == "takeover-quiet")
        .expect("the seed");
    resume::run_with(&input, resume::ActionOrder::CloseLate);
}

/// Runs the regression input `name` with every check on.
fn regression(name: &str) {
    let (_, _, input) = seeds::regressions()
        .into_iter()
        .find(|(_, n, _)| *n == name)
        .expect("a known regression");
    conn::run_with(&input, Tolerate::NONE);
}

#[test]
fn regression_hello_session_id() {
    regression("hello-session-id");
}

#[test]
fn regression_stale_write_stall() {
    regression("stale-write-stall");
}

#[test]
fn regression_pong_backlog_in_one_read() {
    regression("pong-backlog-one-read");
}

#[test]
fn regression_pong_backlog_with_spaced_pings() {
    regression("pong-backlog-spaced-pings");
}

#[test]
fn regression_packed_run_order() {
    regression("packed-run-order");
}

#[test]
fn regression_config_overflow_panics() {
    regression("config-overflow-panic");
}

#[test]
fn regression_config_overflow_late_timers() {
    regression("config-overflow-late-timers");
}

/// Each regression input shows its bug, and only that one: tolerating it
/// makes the input pass.
#[test]
fn regressions_pass_with_their_bug_tolerated() {
    for (bug, name, input) in seeds::regressions() {
        let result = std::panic::catch_unwind(|| conn::run_with(&input, Tolerate::NONE.with(bug)));
        assert!(
            result.is_ok(),
            "{name} fails for another reason than {bug:?}"
        );
    }
}
