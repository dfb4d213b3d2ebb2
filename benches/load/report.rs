//! Turns the runs into medians, ratios and the target checks, and writes
//! `results.md`, `runs.csv` and `chart.svg` to `target/tether-bench/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::conductor::{Plan, IMPLS};
use crate::procfs;

mod tls;

/// One workload run against one server.
#[derive(Clone, Debug)]
pub struct Run {
    pub key: String,
    pub family: &'static str,
    pub imp: String,
    pub round: usize,
    /// The generator's `RESULT` fields; empty if the run failed.
    pub values: BTreeMap<String, f64>,
    pub secs: f64,
}

/// What the report says about the machine and the code.
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub mem_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    pub date: String,
    pub pinned: bool,
    pub loadavg: String,
}

impl Machine {
    pub fn probe(pinned: bool) -> Machine {
        let run = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        // The commit, and which tracked files differ from it (other than
        // Cargo.toml/Cargo.lock); `TETHER_BENCH_COMMIT` overrides it all
        // for a tree exported without its git history.
        let commit = std::env::var("TETHER_BENCH_COMMIT").unwrap_or_else(|_| {
            let mut commit = run("git", &["rev-parse", "--short", "HEAD"]);
            let dirty: Vec<String> = run("git", &["status", "--porcelain", "--untracked-files=no"])
                .lines()
                .filter_map(|l| l.trim_start().split_once(' '))
                .map(|(_, path)| path.trim())
                .filter(|f| !f.starts_with("Cargo."))
                .map(str::to_owned)
                .collect();
            if commit.is_empty() {
                commit = "unknown commit".to_owned();
            } else if !dirty.is_empty() {
                commit.push_str(&format!(" + uncommitted changes to {}", dirty.join(", ")));
            }
            commit
        });
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Machine {
            cpu: procfs::cpu_model(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_gib: procfs::mem_total_gib(),
            kernel: read("/proc/sys/kernel/osrelease"),
            rustc: run("rustc", &["--version"]),
            commit,
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            pinned,
            loadavg: read("/proc/loadavg"),
        }
    }
}

/// Where the results go: `target/tether-bench/` (or under
/// `CARGO_TARGET_DIR`).
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        // The workspace's target directory, one up from this crate.
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("tether-bench")
}

/// The metrics derived from a run's raw fields.
pub fn derive(family: &str, v: &BTreeMap<String, f64>) -> BTreeMap<&'static str, f64> {
    // The TLS family's workloads are measured as their plain namesakes.
    let family = family.strip_prefix("tls-").unwrap_or(family);
    let mut d = BTreeMap::new();
    let get = |k: &str| v.get(k).copied();
    let mut put = |k: &'static str, x: Option<f64>| {
        if let Some(x) = x.filter(|x| x.is_finite()) {
            d.insert(k, x);
        }
    };
    match family {
        "latency" | "echo" | "bulk" | "resume" | "busypoll" => {
            let (secs, msgs, bytes) = (get("secs"), get("msgs"), get("bytes"));
            let (srv, cli) = (get("srv_cpu"), get("cli_cpu"));
            put("msgs_s", msgs.zip(secs).map(|(m, s)| m / s));
            put("mb_s", bytes.zip(secs).map(|(b, s)| b / s / 1e6));
            put("srv_cpu_pct", srv.zip(secs).map(|(c, s)| 100.0 * c / s));
            put("cli_cpu_pct", cli.zip(secs).map(|(c, s)| 100.0 * c / s));
            put(
                "other_cpu_pct",
                get("other_cpu").zip(secs).map(|(c, s)| 100.0 * c / s),
            );
            put(
                "msgs_per_cpu_s",
                msgs.zip(srv).filter(|(_, c)| *c > 0.0).map(|(m, c)| m / c),
            );
            put(
                "mb_per_cpu_s",
                bytes
                    .zip(srv)
                    .filter(|(_, c)| *c > 0.0)
                    .map(|(b, c)| b / 1e6 / c),
            );
            put(
                "srv_us_per_msg",
                srv.zip(msgs)
                    .filter(|(_, m)| *m > 0.0)
                    .map(|(c, m)| c * 1e6 / m),
            );
            put("p50_us", get("p50_us"));
            put("p99_us", get("p99_us"));
            put("p999_us", get("p999_us"));
            put("errors", get("errors"));
            // The server's ACK frames (13 B) against the DATA frames it
            // received (payload + 5 B header; as many as it echoed).
            let data_bytes = bytes.zip(msgs).map(|(b, m)| b + 5.0 * m);
            put(
                "ack_share_pct",
                get("acks")
                    .zip(data_bytes)
                    .filter(|(_, d)| *d > 0.0)
                    .map(|(a, d)| 100.0 * 13.0 * a / d),
            );
        }
        "idle" | "scale" | "storm" => {
            let (secs, conns) = (get("secs"), get("conns"));
            put("secs_measured", secs);
            put(
                "srv_cpu_pct",
                get("srv_cpu").zip(secs).map(|(c, s)| 100.0 * c / s),
            );
            put(
                "cli_cpu_pct",
                get("cli_cpu").zip(secs).map(|(c, s)| 100.0 * c / s),
            );
            put(
                "other_cpu_pct",
                get("other_cpu").zip(secs).map(|(c, s)| 100.0 * c / s),
            );
            let per_conn = |k: &str| {
                get(k)
                    .zip(get("rss_base_kib"))
                    .zip(conns)
                    .map(|((x, base), n)| (x - base) * 1024.0 / n)
            };
            put("rss_per_conn_b", per_conn("rss_end_kib"));
            put("rss_connected_per_conn_b", per_conn("rss_connected_kib"));
            put("pongs_s", get("pongs").zip(secs).map(|(p, s)| p / s));
            put(
                "server_pings_s",
                get("server_pings").zip(secs).map(|(p, s)| p / s),
            );
            put("unanswered", get("unanswered"));
            put("server_pings", get("server_pings"));
            put("accept_cpu_s", get("connect_srv_cpu"));
            put("accept_secs", get("connect_secs"));
            put(
                "accept_us_per_conn",
                get("connect_srv_cpu").zip(conns).map(|(c, n)| c * 1e6 / n),
            );
            put(
                "accepts_per_cpu_s",
                conns
                    .zip(get("connect_srv_cpu"))
                    .filter(|(_, c)| *c > 0.0)
                    .map(|(n, c)| n / c),
            );
            put(
                "connect_cli_us_per_conn",
                get("connect_cli_cpu").zip(conns).map(|(c, n)| c * 1e6 / n),
            );
            put(
                "connects_s",
                conns.zip(get("connect_secs")).map(|(n, s)| n / s),
            );
            put("errors", get("errors"));
            put("closed", get("closed"));
        }
        "redial" => {
            for k in [
                "all_back_secs",
                "p50_back_secs",
                "p90_back_secs",
                "p99_back_secs",
                "outage_secs",
                "connects",
                "peak_per_100ms",
            ] {
                if let Some(x) = get(k) {
                    d.insert(k, x);
                }
            }
        }
        _ => {}
    }
    d
}

/// One progress line's worth of a run.
pub fn brief(family: &str, v: &BTreeMap<String, f64>) -> String {
    let family = family.strip_prefix("tls-").unwrap_or(family);
    let d = derive(family, v);
    let g = |k: &str| d.get(k).copied().unwrap_or(f64::NAN);
    match family {
        "latency" | "busypoll" => format!(
            "p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  srv {:.0}% ({:.2} us/rt)  other {:.0}%",
            g("p50_us"),
            g("p99_us"),
            g("p999_us"),
            g("srv_cpu_pct"),
            g("srv_us_per_msg"),
            g("other_cpu_pct")
        ),
        "echo" => format!(
            "{} msg/s  srv {:.0}%  cli {:.0}%  other {:.0}%  {} msg/srv-CPU-s",
            si(g("msgs_s")),
            g("srv_cpu_pct"),
            g("cli_cpu_pct"),
            g("other_cpu_pct"),
            si(g("msgs_per_cpu_s"))
        ),
        "resume" => format!(
            "{}  ACKs {:.2}% of the DATA bytes",
            brief("echo", v),
            g("ack_share_pct")
        ),
        "bulk" => format!(
            "{:.0} MB/s  srv {:.0}%  cli {:.0}%  other {:.0}%  {:.0} MB/srv-CPU-s",
            g("mb_s"),
            g("srv_cpu_pct"),
            g("cli_cpu_pct"),
            g("other_cpu_pct"),
            g("mb_per_cpu_s")
        ),
        "idle" => format!(
            "srv {:.2}%  other {:.0}%  {:.0} B/conn  accept {:.3} CPU-s in {:.2} s  pongs {}/s  closed {}",
            g("srv_cpu_pct"),
            g("other_cpu_pct"),
            g("rss_per_conn_b"),
            g("accept_cpu_s"),
            g("accept_secs"),
            si(g("pongs_s")),
            g("closed")
        ),
        "storm" => format!(
            "{} handshakes/srv-CPU-s  srv {:.1} us/conn  cli {:.1} us/conn  {}/s  errors {}",
            si(g("accepts_per_cpu_s")),
            g("accept_us_per_conn"),
            g("connect_cli_us_per_conn"),
            si(g("connects_s")),
            g("errors")
        ),
        "scale" => format!(
            "srv {:.1}%  {:.0} B/conn  server PINGs {}/s  our PINGs answered {}/s  unanswered {}  closed {}  errors {}",
            g("srv_cpu_pct"),
            g("rss_per_conn_b"),
            si(g("server_pings_s")),
            si(g("pongs_s")),
            g("unanswered"),
            g("closed"),
            g("errors")
        ),
        "redial" => format!(
            "all back {:.2} s after restart (p50 {:.2}, p90 {:.2}, p99 {:.2})  peak {}/100 ms  {} connects",
            g("all_back_secs"),
            g("p50_back_secs"),
            g("p90_back_secs"),
            g("p99_back_secs"),
            g("peak_per_100ms"),
            g("connects")
        ),
        _ => String::new(),
    }
}

/// A number with k/M suffix and 3 significant digits.
fn si(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let (v, unit) = if x.abs() >= 1e6 {
        (x / 1e6, "M")
    } else if x.abs() >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit}")
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// Medians and per-round ratios of every metric of every workload.
struct Summary<'a> {
    runs: &'a [Run],
}

impl Summary<'_> {
    fn values(&self, key: &str, imp: &str, metric: &str) -> BTreeMap<usize, f64> {
        self.runs
            .iter()
            .filter(|r| r.key == key && r.imp == imp)
            .filter_map(|r| {
                derive(r.family, &r.values)
                    .get(metric)
                    .map(|&x| (r.round, x))
            })
            .collect()
    }

    fn median(&self, key: &str, imp: &str, metric: &str) -> Option<f64> {
        median(self.values(key, imp, metric).into_values().collect())
    }

    /// The median over rounds of `a / b`, each ratio taken within a round.
    fn ratio(&self, key: &str, metric: &str, a: &str, b: &str) -> Option<f64> {
        let va = self.values(key, a, metric);
        let vb = self.values(key, b, metric);
        median(
            va.iter()
                .filter_map(|(round, x)| vb.get(round).map(|y| x / y))
                .collect(),
        )
    }
}

fn fmt_metric(metric: &str, x: Option<f64>) -> String {
    let Some(x) = x else {
        return "–".into();
    };
    match metric {
        "msgs_s" | "msgs_per_cpu_s" | "pongs_s" | "server_pings_s" => si(x),
        "srv_cpu_pct" | "cli_cpu_pct" | "other_cpu_pct" => format!("{x:.1} %"),
        "mb_s" | "mb_per_cpu_s" => format!("{x:.0}"),
        "p50_us" | "p99_us" | "p999_us" => format!("{x:.1}"),
        "srv_us_per_msg" => format!("{x:.2}"),
        "ack_share_pct" => format!("{x:.2} %"),
        "rss_per_conn_b" | "rss_connected_per_conn_b" => format!("{x:.0}"),
        "accept_cpu_s" => format!("{x:.3}"),
        "accept_secs" | "all_back_secs" | "p50_back_secs" | "p90_back_secs" | "p99_back_secs"
        | "outage_secs" => format!("{x:.2}"),
        "accept_us_per_conn" => format!("{x:.1}"),
        _ => format!("{x:.0}"),
    }
}

fn fmt_ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{x:.2}"))
}

/// Rows of the main table: (workload family, metric, label).
const TABLE: &[(&str, &str, &str)] = &[
    ("latency", "p50_us", "round trip p50 (µs)"),
    ("latency", "p99_us", "round trip p99 (µs)"),
    ("latency", "p999_us", "round trip p99.9 (µs)"),
    ("latency", "srv_cpu_pct", "server CPU"),
    (
        "latency",
        "srv_us_per_msg",
        "server CPU per round trip (µs)",
    ),
    ("latency", "other_cpu_pct", "other processes' CPU (noise)"),
    ("echo", "msgs_s", "messages/s"),
    ("echo", "msgs_per_cpu_s", "messages per server CPU-s"),
    ("echo", "srv_cpu_pct", "server CPU"),
    ("echo", "cli_cpu_pct", "generator CPU"),
    ("echo", "other_cpu_pct", "other processes' CPU (noise)"),
    ("bulk", "mb_s", "MB/s"),
    ("bulk", "mb_per_cpu_s", "MB per server CPU-s"),
    ("bulk", "srv_cpu_pct", "server CPU"),
    ("bulk", "cli_cpu_pct", "generator CPU"),
    ("bulk", "other_cpu_pct", "other processes' CPU (noise)"),
    (
        "idle",
        "srv_cpu_pct",
        "server CPU, idle with 1 s heartbeats",
    ),
    ("idle", "other_cpu_pct", "other processes' CPU (noise)"),
    (
        "idle",
        "rss_per_conn_b",
        "server RSS per connection (bytes)",
    ),
    ("idle", "pongs_s", "PONGs/s received by the generator"),
    ("idle", "accept_cpu_s", "accept storm: server CPU-s"),
    (
        "idle",
        "accept_us_per_conn",
        "accept storm: server CPU µs per connection",
    ),
    ("idle", "accept_secs", "accept storm: wall time (s)"),
];

/// Writes every file; returns the markdown summary.
pub fn write_all(
    plan: &Plan,
    machine: &Machine,
    runs: &[Run],
    elapsed: Duration,
) -> std::io::Result<String> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let s = Summary { runs };
    let mut keys: Vec<(&'static str, String)> = Vec::new();
    for r in runs {
        if !keys.iter().any(|(_, k)| *k == r.key) {
            keys.push((r.family, r.key.clone()));
        }
    }

    let mut md = String::new();
    let _ = writeln!(md, "## Results ({} mode)\n", plan.mode);
    let _ = writeln!(
        md,
        "- date: {}; commit: {}; {}\n- machine: {} × {}, {:.0} GiB RAM, Linux {}\n- servers {}\n\
         - {} rounds, servers in alternating order; {} ms warm-up + {} ms measured per echo run; \
         load average at start: {}\n- wall time of the whole run: {:.0} s\n",
        machine.date,
        machine.commit,
        machine.rustc,
        machine.cpus,
        machine.cpu,
        machine.mem_gib,
        machine.kernel,
        if machine.pinned {
            "pinned to CPU 1 and the load generator to CPU 0 (taskset)"
        } else {
            "and generator NOT pinned (no taskset or a single CPU)"
        },
        plan.rounds,
        plan.warmup_ms,
        plan.duration_ms,
        machine.loadavg,
        elapsed.as_secs_f64(),
    );
    let _ = writeln!(
        md,
        "Medians over rounds; ratios are medians of the per-round ratios."
    );
    // The main table, if a family of it ran.
    if keys
        .iter()
        .any(|(f, _)| TABLE.iter().any(|(t, _, _)| t == f))
    {
        let _ = writeln!(
            md,
            "\n| workload | metric | tether | tokio | raw mio | tether/mio | tokio/mio | tether/tokio |\n\
             |---|---|--:|--:|--:|--:|--:|--:|"
        );
    }
    for (family, key) in &keys {
        if matches!(*family, "redial" | "resume" | "busypoll") || family.starts_with("tls-") {
            continue;
        }
        for &(f, metric, label) in TABLE {
            if f != *family {
                continue;
            }
            let m = |imp| fmt_metric(metric, s.median(key, imp, metric));
            let r = |a, b| fmt_ratio(s.ratio(key, metric, a, b));
            let _ = writeln!(
                md,
                "| {key} | {label} | {} | {} | {} | {} | {} | {} |",
                m("tether"),
                m("tokio"),
                m("mio"),
                r("tether", "mio"),
                r("tokio", "mio"),
                r("tether", "tokio"),
            );
        }
    }

    // Session resume on against off.
    for (_, key) in keys.iter().filter(|(f, _)| *f == "resume") {
        let m = |imp, metric| fmt_metric(metric, s.median(key, imp, metric));
        let _ = writeln!(
            md,
            "\nSession resume (tether's echo server with resume on and off, interleaved; the \
             generator asks for resume and ACKs every 64 messages, as tether's client does):\n\n\
             | run | messages per server CPU-s, resume on | resume off | on/off | server's ACK bytes / DATA bytes, resume on |\n\
             |---|--:|--:|--:|--:|\n\
             | {key} | {} | {} | {} | {} |",
            m("tether", "msgs_per_cpu_s"),
            m("tether-noresume", "msgs_per_cpu_s"),
            fmt_ratio(s.ratio(key, "msgs_per_cpu_s", "tether", "tether-noresume")),
            m("tether", "ack_share_pct"),
        );
    }

    // A lone round trip against busy polling.
    for (_, key) in keys.iter().filter(|(f, _)| *f == "busypoll") {
        let _ = writeln!(
            md,
            "\nBusy polling (a lone 64 B round trip; every server up at once and measured \
             in alternating blocks; tether-spinN busy polls for up to N µs before it sleeps; \
             ratios to tokio are medians of per-round ratios):\n\n\
             | server | p50 (µs) | p99 (µs) | server CPU per round trip (µs) | server CPU | p50 / tokio |\n\
             |---|--:|--:|--:|--:|--:|"
        );
        for imp in crate::conductor::SPIN_IMPLS {
            let m = |metric| fmt_metric(metric, s.median(key, imp, metric));
            let _ = writeln!(
                md,
                "| {imp} | {} | {} | {} | {} | {} |",
                m("p50_us"),
                m("p99_us"),
                m("srv_us_per_msg"),
                m("srv_cpu_pct"),
                fmt_ratio(s.ratio(key, "p50_us", imp, "tokio")),
            );
        }
    }

    tls::table(&mut md, &s, &keys);

    // Reconnect storm.
    let redial_keys: Vec<&String> = keys
        .iter()
        .filter(|(f, _)| *f == "redial")
        .map(|(_, k)| k)
        .collect();
    if !redial_keys.is_empty() {
        let _ = writeln!(
            md,
            "\nReconnect storm (tether only; seconds after the restarted server listens; \
             connects = connect attempts by all links from the kill to full recovery):\n\n\
             | run | 50 % back | 90 % back | 99 % back | all back | most links back in one 100 ms | connects |\n|---|--:|--:|--:|--:|--:|--:|"
        );
        for key in redial_keys {
            let m = |metric| fmt_metric(metric, s.median(key, "tether", metric));
            let _ = writeln!(
                md,
                "| {key} | {} | {} | {} | {} | {} | {} |",
                m("p50_back_secs"),
                m("p90_back_secs"),
                m("p99_back_secs"),
                m("all_back_secs"),
                m("peak_per_100ms"),
                m("connects"),
            );
        }
    }

    // Scale run.
    for (_, key) in keys.iter().filter(|(f, _)| *f == "scale") {
        let m = |metric| fmt_metric(metric, s.median(key, "tether", metric));
        let secs = s.median(key, "tether", "secs_measured");
        let _ = writeln!(
            md,
            "\nScale run (tether only; the generator PINGs every connection every 2 s, the \
             server's own 1 s / 1 s heartbeat PINGs them in between; {}):\n\n\
             | run | server CPU | RSS per connection | server PINGs/s answered | generator PINGs/s answered | unanswered | closed (declared dead) | errors |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|\n\
             | {key} | {} | {} | {} | {} | {} | {} | {} |",
            secs.map_or_else(|| "–".to_owned(), |x| format!("{x:.0} s measured")),
            m("srv_cpu_pct"),
            m("rss_per_conn_b"),
            m("server_pings_s"),
            m("pongs_s"),
            m("unanswered"),
            m("closed"),
            m("errors"),
        );
    }

    // Targets.
    let _ = writeln!(
        md,
        "\nTargets (ratios: median of per-round ratios):\n\n| target | measured | met |\n|---|--:|:-:|"
    );
    let mut target = |what: &str, measured: Option<f64>, limit: f64, unit: &str| {
        let met = match measured {
            Some(x) if what.contains('≥') => {
                if x >= limit {
                    "yes"
                } else {
                    "**no**"
                }
            }
            Some(x) => {
                if x <= limit {
                    "yes"
                } else {
                    "**no**"
                }
            }
            None => "not run",
        };
        let shown = measured.map_or_else(|| "–".to_owned(), |x| format!("{x:.2}{unit}"));
        let _ = writeln!(md, "| {what} | {shown} | {met} |");
    };
    let find = |family: &str, contains: &str| {
        keys.iter()
            .find(|(f, k)| *f == family && k.contains(contains))
            .map(|(_, k)| k.clone())
    };
    // Separate runs, then the interleaved run.
    for conns in [100, 1000, 10_000] {
        let prefix = format!("echo {conns}x");
        for k in keys
            .iter()
            .filter(|(f, k)| *f == "echo" && k.starts_with(&prefix))
            .map(|(_, k)| k)
        {
            let how = how_measured(k);
            target(
                &format!("echo {conns}×16×64 B{how}: messages per server CPU-s, tether/mio ≥ 0.95"),
                s.ratio(k, "msgs_per_cpu_s", "tether", "mio"),
                0.95,
                "",
            );
        }
    }
    if let Some(k) = find("resume", "") {
        target(
            "echo 100×16×64 B with session resume: messages per server CPU-s, on/off ≥ 0.9",
            s.ratio(&k, "msgs_per_cpu_s", "tether", "tether-noresume"),
            0.9,
            "",
        );
        target(
            "echo 100×16×64 B with session resume: the server's ACK bytes ≤ 2 % of the DATA bytes",
            s.median(&k, "tether", "ack_share_pct"),
            2.0,
            " %",
        );
    }
    if let Some(k) = find("bulk", "") {
        target(
            "bulk 10×16 KiB: MB per server CPU-s, tether/mio ≥ 0.9",
            s.ratio(&k, "mb_per_cpu_s", "tether", "mio"),
            0.9,
            "",
        );
    }
    // Separate runs, then the interleaved run (all three servers up,
    // measured in alternating blocks).
    for k in keys.iter().filter(|(f, _)| *f == "latency").map(|(_, k)| k) {
        let how = how_measured(k);
        target(
            &format!("1×1×64 B round trip p50{how}, tether/mio ≤ 1.05"),
            s.ratio(k, "p50_us", "tether", "mio"),
            1.05,
            "",
        );
        target(
            &format!("1×1×64 B round trip p50{how}, tether/tokio ≤ 1.00"),
            s.ratio(k, "p50_us", "tether", "tokio"),
            1.0,
            "",
        );
    }
    if let Some(k) = find("busypoll", "") {
        for imp in crate::conductor::SPIN_IMPLS
            .iter()
            .filter(|i| i.starts_with("tether-spin"))
        {
            target(
                &format!("1×1×64 B round trip p50, {imp}/tokio ≤ 0.8"),
                s.ratio(&k, "p50_us", imp, "tokio"),
                0.8,
                "",
            );
        }
        target(
            "1×1×64 B round trip p50 (busy-poll run), tether/tokio ≤ 0.97",
            s.ratio(&k, "p50_us", "tether", "tokio"),
            0.97,
            "",
        );
        target(
            "1×1×64 B round trip p50 (busy-poll run), tether/mio ≤ 1.02",
            s.ratio(&k, "p50_us", "tether", "mio"),
            1.02,
            "",
        );
    }
    if let Some(k) = find("idle", "") {
        target(
            "idle, 1 s heartbeats: server CPU, tether/mio ≤ 1.2",
            s.ratio(&k, "srv_cpu_pct", "tether", "mio"),
            1.2,
            "",
        );
        target(
            "idle: tether server memory per connection ≤ 512 B",
            s.median(&k, "tether", "rss_per_conn_b"),
            512.0,
            " B",
        );
        target(
            "accept storm: server CPU, tether/mio ≤ 1.2",
            s.ratio(&k, "accept_cpu_s", "tether", "mio"),
            1.2,
            "",
        );
    }
    tls::targets(&mut target, &s, &keys);
    if let Some(k) = find("scale", "") {
        let dead = s.median(&k, "tether", "closed");
        let errors = s.median(&k, "tether", "errors");
        target(
            &format!("{k}: connections falsely declared dead (closed or errors) = 0"),
            dead.zip(errors).map(|(d, e)| d + e),
            0.0,
            "",
        );
    }
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.values.is_empty())
        .map(|r| format!("{} {} (round {})", r.key, r.imp, r.round + 1))
        .collect();
    let errors: f64 = runs.iter().filter_map(|r| r.values.get("errors")).sum();
    let _ = writeln!(
        md,
        "\nFailed runs: {}. Errors seen by the generator (bad echoes, closes): {errors:.0}.",
        if failed.is_empty() {
            "none".to_owned()
        } else {
            failed.join(", ")
        }
    );

    std::fs::write(dir.join("results.md"), &md)?;
    std::fs::write(dir.join("runs.csv"), csv(runs))?;
    std::fs::write(dir.join("chart.svg"), chart(&s, &keys, machine))?;
    Ok(md)
}

/// Whether a workload's key names an interleaved run (see the
/// conductor's `interleaved_jobs`, which ends such keys with
/// [`INTERLEAVED`]).
pub fn is_interleaved(key: &str) -> bool {
    key.ends_with(INTERLEAVED)
}

/// The last word of an interleaved run's key.
pub const INTERLEAVED: &str = "interleaved";

/// " (interleaved)" for an interleaved run's key, "" otherwise: how a
/// target line says which measurement it checks.
fn how_measured(key: &str) -> &'static str {
    if is_interleaved(key) {
        " (interleaved)"
    } else {
        ""
    }
}

fn csv(runs: &[Run]) -> String {
    let columns: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.values.keys().map(String::as_str))
        .collect();
    let mut out = String::from("workload,impl,round,run_secs");
    for c in &columns {
        let _ = write!(out, ",{c}");
    }
    out.push('\n');
    for r in runs {
        let _ = write!(out, "{},{},{},{:.2}", r.key, r.imp, r.round + 1, r.secs);
        for c in &columns {
            match r.values.get(*c) {
                Some(v) => {
                    let _ = write!(out, ",{v}");
                }
                None => out.push(','),
            }
        }
        out.push('\n');
    }
    out
}

const COLORS: [(&str, &str); 3] = [
    ("tether", "#d62728"),
    ("tokio", "#1f77b4"),
    ("mio", "#2ca02c"),
];

fn color(imp: &str) -> &'static str {
    COLORS
        .iter()
        .find(|(i, _)| *i == imp)
        .map_or("#000", |(_, c)| c)
}

/// A round axis maximum at or above `x`: 1, 2, 2.5 or 5 × 10^k.
fn nice_max(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= x {
            return m * p;
        }
    }
    10.0 * p
}

/// The sweep chart: throughput, server CPU and messages per server
/// CPU-second against the connection count, plus the idle panel.
fn chart(s: &Summary<'_>, keys: &[(&'static str, String)], machine: &Machine) -> String {
    let sweep: Vec<(f64, &String)> = keys
        .iter()
        // The sweep of separate runs (the interleaved run is in the table).
        .filter(|(f, k)| *f == "echo" && !is_interleaved(k))
        .filter_map(|(_, k)| {
            let conns = k.split_whitespace().nth(1)?.split('x').next()?;
            Some((conns.parse::<f64>().ok()?, k))
        })
        .collect();
    let (w, h) = (1300.0, 415.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let _ = writeln!(
        svg,
        r#"<text x="20" y="24" font-size="15" font-weight="bold">tether vs tokio vs raw mio — loopback echo, 64 B messages, window 16 per connection (medians)</text>"#
    );
    let _ = writeln!(
        svg,
        r##"<text x="20" y="42" fill="#555">{} · {} CPUs · commit {} · {} · server and generator in separate processes{}</text>"##,
        xml(&machine.cpu),
        machine.cpus,
        xml(&machine.commit),
        xml(&machine.date),
        if machine.pinned {
            ", pinned to separate cores"
        } else {
            ""
        }
    );
    // Legend.
    for (i, (imp, c)) in COLORS.iter().enumerate() {
        let x = 900.0 + i as f64 * 120.0;
        let name = if *imp == "mio" { "raw mio" } else { imp };
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="20" x2="{}" y2="20" stroke="{c}" stroke-width="3"/><text x="{}" y="24">{name}</text>"#,
            x + 24.0,
            x + 30.0
        );
    }
    let panels: [(&str, &str); 3] = [
        ("msgs_s", "messages / s"),
        ("srv_cpu_pct", "server CPU (% of one core)"),
        ("msgs_per_cpu_s", "messages per server CPU-second"),
    ];
    for (p, (metric, title)) in panels.iter().enumerate() {
        let x0 = 20.0 + p as f64 * 320.0;
        line_panel(&mut svg, s, &sweep, metric, title, x0);
    }
    idle_panel(&mut svg, s, keys, 20.0 + 3.0 * 320.0);
    svg.push_str("</svg>\n");
    svg
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Plot area of a panel whose left edge is at `x0`.
const PLOT_TOP: f64 = 105.0;
const PLOT_BOTTOM: f64 = 355.0;
const PLOT_LEFT: f64 = 60.0;
const PLOT_WIDTH: f64 = 230.0;

fn y_axis(svg: &mut String, x0: f64, ymax: f64, metric: &str) {
    let left = x0 + PLOT_LEFT;
    for i in 0..=5 {
        let v = ymax * f64::from(i) / 5.0;
        let y = PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * f64::from(i) / 5.0;
        let label = if metric == "srv_cpu_pct" {
            format!("{v:.0}%")
        } else if v == 0.0 {
            "0".to_owned()
        } else {
            si(v)
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end" fill="#444">{label}</text>"##,
            left + PLOT_WIDTH,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" y1="{PLOT_TOP}" x2="{left}" y2="{PLOT_BOTTOM}" stroke="#444"/><line x1="{left}" y1="{PLOT_BOTTOM}" x2="{}" y2="{PLOT_BOTTOM}" stroke="#444"/>"##,
        left + PLOT_WIDTH
    );
}

fn line_panel(
    svg: &mut String,
    s: &Summary<'_>,
    sweep: &[(f64, &String)],
    metric: &str,
    title: &str,
    x0: f64,
) {
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-weight="bold">{title}</text>"#,
        x0 + PLOT_LEFT,
        PLOT_TOP - 30.0
    );
    let mut ymax: f64 = 0.0;
    let mut series = Vec::new();
    for imp in IMPLS {
        let pts: Vec<(f64, f64)> = sweep
            .iter()
            .filter_map(|(c, k)| s.median(k, imp, metric).map(|v| (*c, v)))
            .collect();
        for &(_, v) in &pts {
            ymax = ymax.max(v);
        }
        series.push((imp, pts));
    }
    let ymax = nice_max(ymax * 1.05);
    y_axis(svg, x0, ymax, metric);
    let (lo, hi) = sweep.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (c, _)| {
        (lo.min(c.log10()), hi.max(c.log10()))
    });
    let left = x0 + PLOT_LEFT;
    let xpos = |c: f64| {
        if hi > lo {
            left + 15.0 + (PLOT_WIDTH - 30.0) * (c.log10() - lo) / (hi - lo)
        } else {
            left + PLOT_WIDTH / 2.0
        }
    };
    let ypos = |v: f64| PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * v / ymax;
    for (c, _) in sweep {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{c}</text>"##,
            xpos(*c),
            PLOT_BOTTOM + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">connections (log scale)</text>"##,
        left + PLOT_WIDTH / 2.0,
        PLOT_BOTTOM + 34.0
    );
    for (imp, pts) in series {
        let c = color(imp);
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", xpos(x), ypos(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in &pts {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#,
                xpos(x),
                ypos(y)
            );
        }
    }
}

/// Bars: server CPU with every connection heartbeating once a second.
fn idle_panel(svg: &mut String, s: &Summary<'_>, keys: &[(&'static str, String)], x0: f64) {
    let Some((_, key)) = keys.iter().find(|(f, _)| *f == "idle") else {
        return;
    };
    let conns = key.split_whitespace().nth(1).unwrap_or("?");
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-weight="bold">idle: server CPU</text><text x="{}" y="{}" fill="#555">{conns} connections, PING every 1 s each</text>"##,
        x0 + PLOT_LEFT,
        PLOT_TOP - 30.0,
        x0 + PLOT_LEFT,
        PLOT_TOP - 14.0
    );
    let vals: Vec<(&str, Option<f64>)> = IMPLS
        .iter()
        .map(|imp| (*imp, s.median(key, imp, "srv_cpu_pct")))
        .collect();
    let ymax = nice_max(vals.iter().filter_map(|(_, v)| *v).fold(0.0, f64::max) * 1.1);
    y_axis(svg, x0, ymax, "srv_cpu_pct");
    let left = x0 + PLOT_LEFT;
    let bw = PLOT_WIDTH / 5.0;
    for (i, (imp, v)) in vals.iter().enumerate() {
        let x = left + bw * (0.5 + 1.5 * i as f64);
        let name = if *imp == "mio" { "raw mio" } else { imp };
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{name}</text>"##,
            x + bw / 2.0,
            PLOT_BOTTOM + 16.0
        );
        if let Some(v) = v {
            let top = PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * v / ymax;
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{top:.1}" width="{bw:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{v:.1}%</text>"#,
                PLOT_BOTTOM - top,
                color(imp),
                x + bw / 2.0,
                top - 4.0
            );
        }
    }
}
