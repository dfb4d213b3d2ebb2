//! The conductor: starts each server and the load generator as child
//! processes of this same binary, pinned to different cores when
//! `taskset` exists, runs every workload against every server in
//! alternating order, and hands the results to [`crate::report`]. With
//! the `tls` feature the `tls` family pits tether's TLS server against
//! the tokio-rustls baseline (see [`tls_round`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::report::{self, Machine, Run};
use crate::{wire, Args};

mod tls;

pub const IMPLS: [&str; 3] = ["tether", "tokio", "mio"];

/// The busy-poll family's servers: tether without and with spin budgets of
/// 10, 50 and 200 µs, and both baselines, all up at once.
pub const SPIN_IMPLS: [&str; 6] = [
    "tether",
    "tether-spin10",
    "tether-spin50",
    "tether-spin200",
    "tokio",
    "mio",
];

/// The busy-poll family's workload.
pub const BUSY_POLL_KEY: &str = "latency 1x1x64B busy-poll";

/// What a full or quick run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub mode: &'static str,
    pub rounds: usize,
    pub warmup_ms: u64,
    pub duration_ms: u64,
    /// Connection counts of the 64 B echo sweep (window 16).
    pub sweep: Vec<usize>,
    pub window: u32,
    pub bulk_conns: usize,
    pub bulk_window: u32,
    pub bulk_size: usize,
    pub idle_conns: usize,
    pub idle_ms: u64,
    pub redial_clients: usize,
    pub redial_downtime_ms: u64,
    /// The scale run: connections and duration (tether only, once).
    pub scale_conns: usize,
    pub scale_ms: u64,
    pub families: Vec<String>,
    /// Run only the interleaved workloads (`--interleaved-only`).
    pub interleaved_only: bool,
    /// The `tls` family's handshake storm: connections, each closed at
    /// its WELCOME.
    pub tls_storm_conns: usize,
    /// The `tls` family's idle run: connections and duration.
    pub tls_idle_conns: usize,
    pub tls_idle_ms: u64,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            mode: "full",
            rounds: 3,
            warmup_ms: 1000,
            duration_ms: 4000,
            sweep: vec![1, 10, 100, 1000, 10_000],
            window: 16,
            bulk_conns: 10,
            bulk_window: 8,
            bulk_size: 16 * 1024,
            idle_conns: 10_000,
            idle_ms: 20_000,
            redial_clients: 5000,
            redial_downtime_ms: 2000,
            scale_conns: SCALE_CONNS,
            scale_ms: 60_000,
            families: families_all(),
            interleaved_only: false,
            tls_storm_conns: 2000,
            tls_idle_conns: 2000,
            tls_idle_ms: 10_000,
        }
    }

    fn quick() -> Plan {
        Plan {
            mode: "quick",
            rounds: 1,
            warmup_ms: 300,
            duration_ms: 1000,
            sweep: vec![1, 100],
            idle_conns: 2000,
            idle_ms: 5000,
            redial_clients: 1000,
            redial_downtime_ms: 1000,
            scale_conns: 3000,
            scale_ms: 5000,
            tls_storm_conns: 500,
            tls_idle_conns: 500,
            tls_idle_ms: 3000,
            ..Plan::full()
        }
    }

    fn wants(&self, family: &str) -> bool {
        // Only latency and echo have interleaved runs.
        let runs =
            !self.interleaved_only || matches!(family, "latency" | "echo" | "resume" | "busypoll");
        runs && self.families.iter().any(|f| f == family)
    }
}

/// Every family; `tls` only in a bench built with the `tls` feature.
fn families_all() -> Vec<String> {
    let mut all = [
        "latency", "echo", "resume", "busypoll", "bulk", "idle", "redial", "scale",
    ]
    .map(String::from)
    .to_vec();
    if cfg!(feature = "tls") {
        all.push("tls".to_owned());
    }
    all
}

/// A child process of this binary, its stdout read line by line.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    name: String,
}

impl Proc {
    fn spawn(name: &str, args: &[String], cpu: Option<usize>) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Proc {
            stdin: child.stdin.take(),
            child,
            lines,
            name: name.to_owned(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line starting with `prefix`, within `timeout`.
    fn line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) => eprintln!("[{}] {line}", self.name),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: no {prefix} within {timeout:?}", self.name))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string());
                    return Err(format!(
                        "{}: exited before {prefix} ({status:?})",
                        self.name
                    ));
                }
            }
        }
    }

    fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether children can be pinned: `taskset` works and there are two
/// CPUs. Then servers go to CPU 1 and the generator to CPU 0.
fn pinning() -> Option<(usize, usize)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let works = |cpu: &str| {
        Command::new("taskset")
            .args(["-c", cpu, "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    (cpus >= 2 && works("0") && works("1")).then_some((1, 0))
}

fn parse_result(line: &str) -> BTreeMap<String, f64> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

struct Ctx {
    pin: Option<(usize, usize)>,
    /// The TLS family's certificate files (when it runs).
    tls: Option<crate::tls::Files>,
}

/// Whether a server implementation speaks TLS.
fn is_tls(imp: &str) -> bool {
    imp.ends_with("-tls")
}

impl Ctx {
    /// The TLS files, for a TLS server or a generator of TLS connections.
    fn tls_files(&self, imp: &str) -> Result<Option<&crate::tls::Files>, String> {
        if !is_tls(imp) {
            return Ok(None);
        }
        self.tls
            .as_ref()
            .map(Some)
            .ok_or_else(|| format!("{imp}: no TLS certificates made for this run"))
    }

    fn server(&self, imp: &str, listen: &str, hb_ms: u64) -> Result<(Proc, u16), String> {
        let mut args = [
            "--role",
            "server",
            "--impl",
            imp,
            "--listen",
            listen,
            "--interval-ms",
            &hb_ms.to_string(),
            "--timeout-ms",
            &hb_ms.to_string(),
        ]
        .map(String::from)
        .to_vec();
        if let Some(files) = self.tls_files(imp)? {
            args.extend(files.server_args());
        }
        let mut server = Proc::spawn(&format!("{imp} server"), &args, self.pin.map(|p| p.0))?;
        let line = server.line("PORT ", Duration::from_secs(20))?;
        let port = line[5..]
            .trim()
            .parse()
            .map_err(|_| format!("bad port line {line:?}"))?;
        Ok((server, port))
    }

    /// One run of the mio load generator against a fresh server.
    fn generator(
        &self,
        imp: &str,
        extra: &[String],
        budget: Duration,
    ) -> Result<BTreeMap<String, f64>, String> {
        let (server, port) = self.server(imp, "127.0.0.1:0", 1000)?;
        let mut args = vec![
            "--role".to_owned(),
            "client".to_owned(),
            "--connect".to_owned(),
            format!("127.0.0.1:{port}"),
            "--server-pid".to_owned(),
            server.pid().to_string(),
        ];
        if let Some(files) = self.tls_files(imp)? {
            args.extend(files.client_args());
        }
        args.extend_from_slice(extra);
        let mut client = Proc::spawn("load generator", &args, self.pin.map(|p| p.1))?;
        let line = client.line("RESULT", budget + Duration::from_secs(120))?;
        drop(client);
        drop(server);
        Ok(parse_result(&line))
    }

    /// One run of the generator against a fresh server of each of `imps`
    /// at once, interleaved (see `client::run_interleaved`): the results
    /// in the order of `imps`.
    fn interleaved(
        &self,
        imps: &[&str],
        extra: &[String],
        budget: Duration,
    ) -> Result<Vec<BTreeMap<String, f64>>, String> {
        let mut servers = Vec::new();
        let mut addrs = Vec::new();
        for imp in imps {
            let (server, port) = self.server(imp, "127.0.0.1:0", 1000)?;
            addrs.push(format!("127.0.0.1:{port}"));
            servers.push(server);
        }
        let pids: Vec<String> = servers.iter().map(|s| s.pid().to_string()).collect();
        let mut args = vec![
            "--role".to_owned(),
            "client".to_owned(),
            "--connect".to_owned(),
            addrs.join(","),
            "--server-pid".to_owned(),
            pids.join(","),
        ];
        // One generator speaks TLS to all targets or to none.
        if imps.iter().any(|imp| is_tls(imp)) {
            if !imps.iter().all(|imp| is_tls(imp)) {
                return Err(format!(
                    "interleaved run of TLS and plain servers: {imps:?}"
                ));
            }
            if let Some(files) = self.tls_files(imps[0])? {
                args.extend(files.client_args());
            }
        }
        args.extend_from_slice(extra);
        let mut client = Proc::spawn("load generator", &args, self.pin.map(|p| p.1))?;
        let mut results = Vec::new();
        for k in 0..imps.len() {
            let line = client.line("RESULT", budget + Duration::from_secs(120))?;
            let values = parse_result(&line);
            if values.get("target") != Some(&(k as f64)) {
                return Err(format!("interleaved run: result {k} out of order: {line}"));
            }
            results.push(values);
        }
        drop(client);
        drop(servers);
        Ok(results)
    }
}

/// An echo workload, interleaved: every server driven in turn in blocks
/// of [`INTERLEAVE_BLOCK_MS`], `duration_ms` each in all.
fn interleaved_args(plan: &Plan, conns: usize, window: u32, size: usize) -> Vec<String> {
    let mut args = echo_args(plan, conns, window, size);
    args[1] = "interleaved".to_owned();
    args.push("--block-ms".to_owned());
    args.push(INTERLEAVE_BLOCK_MS.to_string());
    args
}

/// Block length of the interleaved runs: long enough that each block is
/// ~1 500 round trips (latency) or ~200 000 messages (echo) of one
/// server in its steady state, short enough that the machine does not
/// drift within a cycle of three.
const INTERLEAVE_BLOCK_MS: u64 = 100;

/// The workloads also run interleaved (see [`Ctx::interleaved`]): the
/// latency workload, and the echo workloads of the echo target and of
/// 1 000 connections.
fn interleaved_jobs(plan: &Plan) -> Vec<Job> {
    let budget = Duration::from_millis(plan.warmup_ms + plan.duration_ms * IMPLS.len() as u64);
    let mut jobs = Vec::new();
    if plan.wants("latency") {
        jobs.push(Job {
            key: format!("latency 1x1x64B {}", report::INTERLEAVED),
            family: "latency",
            args: interleaved_args(plan, 1, 1, 64),
            budget,
        });
    }
    // The echo target and, where the generator's descriptors allow three
    // servers' worth (20 000 per process), the 1 000-connection point.
    for conns in [ECHO_TARGET_CONNS, 1000] {
        if plan.wants("echo") && plan.sweep.contains(&conns) {
            jobs.push(Job {
                key: format!("echo {conns}x{}x64B {}", plan.window, report::INTERLEAVED),
                family: "echo",
                args: interleaved_args(plan, conns, plan.window, 64),
                budget,
            });
        }
    }
    jobs
}

/// The resume pair's workload.
pub const RESUME_KEY: &str = "echo 100x16x64B resume";

/// The connection count of the echo target (100 × 16 × 64 B).
const ECHO_TARGET_CONNS: usize = 100;

fn echo_args(plan: &Plan, conns: usize, window: u32, size: usize) -> Vec<String> {
    [
        "--mode".to_owned(),
        "echo".to_owned(),
        "--conns".to_owned(),
        conns.to_string(),
        "--window".to_owned(),
        window.to_string(),
        "--size".to_owned(),
        size.to_string(),
        "--warmup-ms".to_owned(),
        plan.warmup_ms.to_string(),
        "--duration-ms".to_owned(),
        plan.duration_ms.to_string(),
    ]
    .to_vec()
}

/// One workload against one server: its name and parameters, and how to
/// run it.
struct Job {
    key: String,
    family: &'static str,
    args: Vec<String>,
    budget: Duration,
}

fn jobs(plan: &Plan) -> Vec<Job> {
    let mut jobs = Vec::new();
    let echo_budget = Duration::from_millis(plan.warmup_ms + plan.duration_ms);
    if plan.wants("latency") {
        jobs.push(Job {
            key: "latency 1x1x64B".into(),
            family: "latency",
            args: echo_args(plan, 1, 1, 64),
            budget: echo_budget,
        });
    }
    if plan.wants("echo") {
        for &conns in &plan.sweep {
            jobs.push(Job {
                key: format!("echo {conns}x{}x64B", plan.window),
                family: "echo",
                args: echo_args(plan, conns, plan.window, 64),
                budget: echo_budget,
            });
        }
    }
    if plan.wants("bulk") {
        jobs.push(Job {
            key: format!(
                "bulk {}x{}x{}KiB",
                plan.bulk_conns,
                plan.bulk_window,
                plan.bulk_size / 1024
            ),
            family: "bulk",
            args: echo_args(plan, plan.bulk_conns, plan.bulk_window, plan.bulk_size),
            budget: echo_budget,
        });
    }
    if plan.wants("idle") {
        let args = [
            "--mode".to_owned(),
            "idle".to_owned(),
            "--conns".to_owned(),
            plan.idle_conns.to_string(),
            "--duration-ms".to_owned(),
            plan.idle_ms.to_string(),
            "--ping-ms".to_owned(),
            "1000".to_owned(),
        ]
        .to_vec();
        jobs.push(Job {
            key: format!("idle {}", plan.idle_conns),
            family: "idle",
            args,
            budget: Duration::from_millis(plan.idle_ms),
        });
    }
    jobs
}

/// The full (or quick) benchmark, under `cargo bench`.
pub fn bench(args: &Args) -> Result<(), String> {
    let quick = args.has("--quick")
        || std::env::var("TETHER_BENCH").is_ok_and(|v| v.eq_ignore_ascii_case("quick"));
    let mut plan = if quick && !args.has("--full") {
        Plan::quick()
    } else {
        Plan::full()
    };
    plan.rounds = args.get("rounds", plan.rounds)?.max(1);
    plan.duration_ms = args.get("duration-ms", plan.duration_ms)?;
    plan.idle_ms = args.get("idle-ms", plan.idle_ms)?;
    plan.idle_conns = args.get("idle-conns", plan.idle_conns)?;
    plan.redial_clients = args.get("redial-clients", plan.redial_clients)?;
    plan.scale_conns = args.get("scale-conns", plan.scale_conns)?;
    plan.scale_ms = args.get("scale-ms", plan.scale_ms)?;
    if let Some(sweep) = args.value("sweep") {
        plan.sweep = sweep
            .split(',')
            .map(|n| n.trim().parse().map_err(|e| format!("--sweep {n}: {e}")))
            .collect::<Result<_, _>>()?;
    }
    plan.tls_storm_conns = args.get("tls-storm-conns", plan.tls_storm_conns)?;
    plan.tls_idle_conns = args.get("tls-idle-conns", plan.tls_idle_conns)?;
    plan.tls_idle_ms = args.get("tls-idle-ms", plan.tls_idle_ms)?;
    if let Some(only) = args.value("only") {
        plan.families = only.split(',').map(|s| s.trim().to_owned()).collect();
    }
    plan.interleaved_only = args.has("--interleaved-only");
    wire::self_check()?;

    let ctx = Ctx {
        pin: pinning(),
        tls: if plan.wants("tls") {
            let mut files = crate::tls::make_files()?;
            files.client_kx = args.value("tls-kx").map(String::from);
            Some(files)
        } else {
            None
        },
    };
    let machine = Machine::probe(ctx.pin.is_some());
    eprintln!(
        "tether load bench, {} mode: {} rounds; servers {}; writing to {}",
        plan.mode,
        plan.rounds,
        match ctx.pin {
            Some((s, c)) => format!("on CPU {s}, generator on CPU {c} (taskset)"),
            None => "not pinned (no taskset or fewer than 2 CPUs)".to_owned(),
        },
        report::out_dir().display()
    );
    let started = Instant::now();
    let jobs = if plan.interleaved_only {
        Vec::new()
    } else {
        jobs(&plan)
    };
    let interleaved = interleaved_jobs(&plan);
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..plan.rounds {
        for job in &jobs {
            for k in 0..IMPLS.len() {
                let imp = IMPLS[(k + round) % IMPLS.len()];
                let t = Instant::now();
                let result = ctx.generator(imp, &job.args, job.budget);
                match &result {
                    Ok(v) => eprintln!(
                        "[{:>5.0}s] round {} {:<22} {:<6} {}",
                        started.elapsed().as_secs_f64(),
                        round + 1,
                        job.key,
                        imp,
                        report::brief(job.family, v)
                    ),
                    Err(e) => eprintln!("round {} {} {imp}: FAILED: {e}", round + 1, job.key),
                }
                runs.push(Run {
                    key: job.key.clone(),
                    family: job.family,
                    imp: imp.to_owned(),
                    round,
                    values: result.unwrap_or_default(),
                    secs: t.elapsed().as_secs_f64(),
                });
            }
        }
        // The same workloads with all three servers up at once and
        // measured in alternating 100 ms blocks: the machine's drift
        // between runs falls on all three alike.
        for job in &interleaved {
            let order: Vec<&str> = (0..IMPLS.len())
                .map(|k| IMPLS[(k + round) % IMPLS.len()])
                .collect();
            let run = (job.key.as_str(), job.family, round);
            interleaved_round(&ctx, &order, &job.args, job.budget, run, started, &mut runs);
        }
        // Session resume on against off: the same tether server built both
        // ways, interleaved, the generator asking for resume and
        // acknowledging as tether's client does.
        if plan.wants("resume") {
            let mut args = interleaved_args(&plan, ECHO_TARGET_CONNS, plan.window, 64);
            args.push("--resume".to_owned());
            args.push("1".to_owned());
            let pair = if round % 2 == 0 {
                ["tether", "tether-noresume"]
            } else {
                ["tether-noresume", "tether"]
            };
            let budget = Duration::from_millis(plan.warmup_ms + plan.duration_ms * 2);
            let run = (RESUME_KEY, "resume", round);
            interleaved_round(&ctx, &pair, &args, budget, run, started, &mut runs);
        }
        // A lone round trip against tether busy polling: every server up,
        // measured in alternating blocks, the order rotating by round.
        if plan.wants("busypoll") {
            let args = interleaved_args(&plan, 1, 1, 64);
            let order: Vec<&str> = (0..SPIN_IMPLS.len())
                .map(|k| SPIN_IMPLS[(k + round) % SPIN_IMPLS.len()])
                .collect();
            let budget =
                Duration::from_millis(plan.warmup_ms + plan.duration_ms * SPIN_IMPLS.len() as u64);
            let run = (BUSY_POLL_KEY, "busypoll", round);
            interleaved_round(&ctx, &order, &args, budget, run, started, &mut runs);
        }
        if plan.wants("tls") {
            tls::round(&ctx, &plan, round, started, &mut runs);
        }
        if plan.wants("redial") {
            for jitter in [0.2, 0.0] {
                let key = format!("redial {} jitter {jitter}", plan.redial_clients);
                let t = Instant::now();
                let result = redial(&ctx, &plan, jitter);
                match &result {
                    Ok(v) => eprintln!(
                        "[{:>5.0}s] round {} {:<22} tether {}",
                        started.elapsed().as_secs_f64(),
                        round + 1,
                        key,
                        report::brief("redial", v)
                    ),
                    Err(e) => eprintln!("round {} {key}: FAILED: {e}", round + 1),
                }
                runs.push(Run {
                    key,
                    family: "redial",
                    imp: "tether".to_owned(),
                    round,
                    values: result.unwrap_or_default(),
                    secs: t.elapsed().as_secs_f64(),
                });
            }
        }
    }
    if plan.wants("scale") {
        let key = format!("scale {}", plan.scale_conns);
        let t = Instant::now();
        let result = ctx.generator("tether", &scale_args(&plan), scale_budget(&plan));
        match &result {
            Ok(v) => eprintln!(
                "[{:>5.0}s] {:<30} tether {}",
                started.elapsed().as_secs_f64(),
                key,
                report::brief("scale", v)
            ),
            Err(e) => eprintln!("{key}: FAILED: {e}"),
        }
        runs.push(Run {
            key,
            family: "scale",
            imp: "tether".to_owned(),
            round: 0,
            values: result.unwrap_or_default(),
            secs: t.elapsed().as_secs_f64(),
        });
    }
    let elapsed = started.elapsed();
    let summary = report::write_all(&plan, &machine, &runs, elapsed)
        .map_err(|e| format!("writing the report: {e}"))?;
    println!("{summary}");
    Ok(())
}

/// Prints one run's progress line and keeps it.
fn record(
    runs: &mut Vec<Run>,
    started: Instant,
    (key, family, imp, round): (&str, &'static str, &str, usize),
    result: Result<BTreeMap<String, f64>, String>,
    secs: f64,
) {
    match &result {
        Ok(v) => eprintln!(
            "[{:>5.0}s] round {} {:<28} {:<10} {}",
            started.elapsed().as_secs_f64(),
            round + 1,
            key,
            imp,
            report::brief(family, v)
        ),
        Err(e) => eprintln!("round {} {key} {imp}: FAILED: {e}", round + 1),
    }
    runs.push(Run {
        key: key.to_owned(),
        family,
        imp: imp.to_owned(),
        round,
        values: result.unwrap_or_default(),
        secs,
    });
}

/// One interleaved run of the servers in `order` (see
/// [`Ctx::interleaved`]): each one's result, or the failure, recorded
/// under the run's key and family.
fn interleaved_round(
    ctx: &Ctx,
    order: &[&str],
    args: &[String],
    budget: Duration,
    (key, family, round): (&str, &'static str, usize),
    started: Instant,
    runs: &mut Vec<Run>,
) {
    let t = Instant::now();
    let results = ctx.interleaved(order, args, budget);
    let secs = t.elapsed().as_secs_f64();
    match results {
        Ok(results) => {
            for (imp, values) in order.iter().zip(results) {
                record(runs, started, (key, family, imp, round), Ok(values), secs);
            }
        }
        Err(e) => {
            for imp in order {
                record(
                    runs,
                    started,
                    (key, family, imp, round),
                    Err(e.clone()),
                    secs,
                );
            }
        }
    }
}

/// The generator's arguments of an idle run: `conns` connections, each
/// PINGed once a second, for `ms`.
fn idle_args(conns: usize, ms: u64, ping_ms: u64) -> Vec<String> {
    [
        "--mode",
        "idle",
        "--conns",
        &conns.to_string(),
        "--duration-ms",
        &ms.to_string(),
        "--ping-ms",
        &ping_ms.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// Connections of the full scale run: as many as the open-file limit
/// (20 000 per process here) allows with room for the process's own
/// descriptors (the listener, epoll, stdio, the generator's /proc reads).
const SCALE_CONNS: usize = 19_000;

/// The scale run: `scale_conns` connections held for `scale_ms` with
/// heartbeats on both ways — the generator PINGs each every 2 s, so the
/// server's own 1 s heartbeat also fires on every connection and the
/// generator answers its PINGs. Nothing may be declared dead.
fn scale_args(plan: &Plan) -> Vec<String> {
    [
        "--mode".to_owned(),
        "idle".to_owned(),
        "--conns".to_owned(),
        plan.scale_conns.to_string(),
        "--duration-ms".to_owned(),
        plan.scale_ms.to_string(),
        "--ping-ms".to_owned(),
        "2000".to_owned(),
    ]
    .to_vec()
}

fn scale_budget(plan: &Plan) -> Duration {
    Duration::from_millis(plan.scale_ms)
}

/// The reconnect storm: kill the server under `clients` tether links,
/// restart it on the same port after a pause, time the recovery.
fn redial(ctx: &Ctx, plan: &Plan, jitter: f64) -> Result<BTreeMap<String, f64>, String> {
    let (mut server, port) = ctx.server("tether", "127.0.0.1:0", 10_000)?;
    let args = [
        "--role".to_owned(),
        "redial".to_owned(),
        "--connect".to_owned(),
        format!("127.0.0.1:{port}"),
        "--clients".to_owned(),
        plan.redial_clients.to_string(),
        "--jitter".to_owned(),
        jitter.to_string(),
    ];
    let mut clients = Proc::spawn("redial clients", &args, ctx.pin.map(|p| p.1))?;
    clients.line("READY", Duration::from_secs(120))?;
    server.kill();
    drop(server);
    std::thread::sleep(Duration::from_millis(plan.redial_downtime_ms));
    let (_server, _) = ctx.server("tether", &format!("127.0.0.1:{port}"), 10_000)?;
    clients.send_line("RESTARTED")?;
    let line = clients.line("RESULT", Duration::from_secs(150))?;
    Ok(parse_result(&line))
}

/// Under `cargo test`: each server starts and echoes a few messages, and
/// answers a few PINGs; a few seconds in all.
pub fn smoke() -> Result<(), String> {
    wire::self_check()?;
    let ctx = Ctx {
        pin: None,
        tls: None,
    };
    let started = Instant::now();
    for imp in IMPLS {
        let echo = [
            "--mode",
            "echo",
            "--conns",
            "2",
            "--window",
            "2",
            "--warmup-ms",
            "0",
            "--duration-ms",
            "200",
        ]
        .map(String::from);
        let v = ctx.generator(imp, &echo, Duration::from_secs(5))?;
        let (msgs, errors) = (v.get("msgs"), v.get("errors"));
        if !msgs.is_some_and(|&m| m > 0.0) || errors != Some(&0.0) {
            return Err(format!("{imp}: echo smoke run failed: {v:?}"));
        }
        let idle = [
            "--mode",
            "idle",
            "--conns",
            "3",
            "--ping-ms",
            "150",
            "--duration-ms",
            "400",
        ]
        .map(String::from);
        let v = ctx.generator(imp, &idle, Duration::from_secs(5))?;
        if !v.get("pongs").is_some_and(|&p| p > 0.0) || v.get("errors") != Some(&0.0) {
            return Err(format!("{imp}: heartbeat smoke run failed: {v:?}"));
        }
    }
    // The interleaved latency run: all three at once, in short blocks.
    let interleaved = [
        "--mode",
        "interleaved",
        "--size",
        "64",
        "--warmup-ms",
        "50",
        "--duration-ms",
        "150",
        "--block-ms",
        "20",
    ]
    .map(String::from);
    let results = ctx.interleaved(&IMPLS, &interleaved, Duration::from_secs(5))?;
    for (imp, v) in IMPLS.iter().zip(&results) {
        let (samples, errors) = (v.get("samples"), v.get("errors"));
        if !samples.is_some_and(|&m| m > 0.0) || errors != Some(&0.0) {
            return Err(format!(
                "{imp}: interleaved latency smoke run failed: {v:?}"
            ));
        }
    }
    if cfg!(feature = "tls") {
        tls::smoke()?;
    }
    println!(
        "load bench smoke test: tether, tokio and mio servers echo, answer PINGs and run interleaved{} ({:.1} s; \
         `cargo bench --bench load` runs the benchmark)",
        if cfg!(feature = "tls") {
            "; so do tether's TLS server and tokio-rustls, and take a handshake storm"
        } else {
            ""
        },
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
