//! The `tls` family: tether's TLS server (`--impl tether-tls`) against
//! the tokio-rustls baseline (`--impl tokio-tls`), both with the same
//! rustls configuration and certificates made for the run (`tls.rs`);
//! the generator speaks TLS to both. Its rounds and its smoke test.

use std::time::{Duration, Instant};

use super::{idle_args, interleaved_args, interleaved_round, record, Ctx, Plan, ECHO_TARGET_CONNS};
use crate::report::{self, Run};

/// The TLS pair: tether's TLS server and the tokio-rustls baseline, with
/// the same rustls configuration (`tls.rs`).
const TLS_IMPLS: [&str; 2] = ["tether-tls", "tokio-tls"];

/// The generator's arguments of a handshake storm of `conns`.
fn storm_args(conns: usize) -> Vec<String> {
    ["--mode", "storm", "--conns", &conns.to_string()]
        .map(String::from)
        .to_vec()
}

/// One round of the `tls` family, the two TLS servers in an order that
/// alternates with the round. Echo 100×16×64 B and bulk run interleaved
/// (both servers up, driven in alternating 100 ms blocks, as the plain
/// family's interleaved runs); the handshake storm (every connection
/// closed at its WELCOME) and the idle run (1 s heartbeats) are separate
/// runs against a fresh server each.
pub(super) fn round(ctx: &Ctx, plan: &Plan, round: usize, started: Instant, runs: &mut Vec<Run>) {
    let mut pair = TLS_IMPLS;
    if round % 2 == 1 {
        pair.reverse();
    }
    let budget = Duration::from_millis(plan.warmup_ms + plan.duration_ms * pair.len() as u64);
    let interleaved = [
        (
            format!(
                "tls echo {ECHO_TARGET_CONNS}x{}x64B {}",
                plan.window,
                report::INTERLEAVED
            ),
            "tls-echo",
            interleaved_args(plan, ECHO_TARGET_CONNS, plan.window, 64),
        ),
        (
            format!(
                "tls bulk {}x{}x{}KiB {}",
                plan.bulk_conns,
                plan.bulk_window,
                plan.bulk_size / 1024,
                report::INTERLEAVED
            ),
            "tls-bulk",
            interleaved_args(plan, plan.bulk_conns, plan.bulk_window, plan.bulk_size),
        ),
    ];
    for (key, family, args) in &interleaved {
        let run = (key.as_str(), *family, round);
        interleaved_round(ctx, &pair, args, budget, run, started, runs);
    }
    let separate = [
        (
            format!("tls storm {}", plan.tls_storm_conns),
            "tls-storm",
            storm_args(plan.tls_storm_conns),
            Duration::from_secs(30),
        ),
        (
            format!("tls idle {}", plan.tls_idle_conns),
            "tls-idle",
            idle_args(plan.tls_idle_conns, plan.tls_idle_ms, 1000),
            Duration::from_millis(plan.tls_idle_ms) + Duration::from_secs(30),
        ),
    ];
    for (key, family, args, budget) in &separate {
        for imp in pair {
            let t = Instant::now();
            let result = ctx.generator(imp, args, *budget);
            let secs = t.elapsed().as_secs_f64();
            record(runs, started, (key, family, imp, round), result, secs);
        }
    }
}

/// The TLS pair's smoke test: 64 B and 16 KiB echoes (a message spans
/// records), heartbeats, a small handshake storm (also with X25519 alone
/// offered), and an interleaved run.
pub(super) fn smoke() -> Result<(), String> {
    let ctx = Ctx {
        pin: None,
        tls: Some(crate::tls::make_files()?),
    };
    let echo = |size: usize| {
        [
            "--mode",
            "echo",
            "--conns",
            "2",
            "--window",
            "2",
            "--size",
            &size.to_string(),
            "--warmup-ms",
            "0",
            "--duration-ms",
            "200",
        ]
        .map(String::from)
    };
    for imp in TLS_IMPLS {
        for size in [64, 16 * 1024] {
            let v = ctx.generator(imp, &echo(size), Duration::from_secs(5))?;
            let (msgs, errors) = (v.get("msgs"), v.get("errors"));
            if !msgs.is_some_and(|&m| m > 0.0) || errors != Some(&0.0) {
                return Err(format!("{imp}: echo of {size} B smoke run failed: {v:?}"));
            }
        }
        let v = ctx.generator(imp, &idle_args(3, 400, 150), Duration::from_secs(5))?;
        if !v.get("pongs").is_some_and(|&p| p > 0.0) || v.get("errors") != Some(&0.0) {
            return Err(format!("{imp}: heartbeat smoke run failed: {v:?}"));
        }
        let v = ctx.generator(imp, &storm_args(50), Duration::from_secs(10))?;
        let clean = ["connect_errors", "errors", "closed"]
            .iter()
            .all(|k| v.get(*k) == Some(&0.0));
        if v.get("conns") != Some(&50.0) || !clean {
            return Err(format!("{imp}: handshake storm smoke run failed: {v:?}"));
        }
    }
    // The storm with X25519 alone offered (`--tls-kx`).
    let mut ctx = ctx;
    if let Some(files) = ctx.tls.as_mut() {
        files.client_kx = Some("x25519".to_owned());
    }
    let v = ctx.generator("tether-tls", &storm_args(20), Duration::from_secs(10))?;
    if v.get("conns") != Some(&20.0) || v.get("errors") != Some(&0.0) {
        return Err(format!(
            "handshake storm with X25519 smoke run failed: {v:?}"
        ));
    }
    let mut interleaved = echo(64).to_vec();
    interleaved[1] = "interleaved".to_owned();
    interleaved.extend(["--block-ms".to_owned(), "20".to_owned()]);
    let results = ctx.interleaved(&TLS_IMPLS, &interleaved, Duration::from_secs(5))?;
    for (imp, v) in TLS_IMPLS.iter().zip(&results) {
        if !v.get("msgs").is_some_and(|&m| m > 0.0) || v.get("errors") != Some(&0.0) {
            return Err(format!("{imp}: interleaved TLS smoke run failed: {v:?}"));
        }
    }
    Ok(())
}
