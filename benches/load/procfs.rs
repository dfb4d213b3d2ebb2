//! What the benchmark reads about a process from `/proc`: CPU time and
//! resident memory (`VmRSS` of `/proc/<pid>/status`).
//!
//! CPU time is read two ways. `utime + stime` of `/proc/<pid>/stat` (all
//! threads) comes in clock ticks of 10 ms, too coarse for the short
//! phases (an accept storm takes a few tenths of a second); the kernel
//! derives it from each thread's `se.sum_exec_runtime`, which
//! `/proc/<pid>/task/<tid>/sched` shows with nanosecond precision. The
//! bench uses the precise sum when the kernel offers it (and records both).

use std::sync::OnceLock;

/// Clock ticks per second of the `stat` times (`getconf CLK_TCK`, nearly
/// always 100).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system, every thread) used so far by `pid`
/// (`None`: this process).
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields are
    // counted after its closing parenthesis. After it come field 3
    // (state) onwards; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// CPU seconds used so far by `pid` (`None`: this process), summed over
/// its threads' `se.sum_exec_runtime`; `utime + stime` if unavailable.
pub fn cpu_secs_precise(pid: Option<u32>) -> Option<f64> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let sum_exec = || -> Option<f64> {
        let mut total_ms = 0.0;
        for task in std::fs::read_dir(&dir).ok()? {
            let sched = std::fs::read_to_string(task.ok()?.path().join("sched")).ok()?;
            let ms: f64 = sched
                .lines()
                .find_map(|l| l.strip_prefix("se.sum_exec_runtime"))?
                .trim_start_matches([' ', '\t', ':'])
                .trim()
                .parse()
                .ok()?;
            total_ms += ms;
        }
        Some(total_ms / 1000.0)
    };
    sum_exec().or_else(|| cpu_secs(pid))
}

/// CPU seconds the whole machine has been busy (every CPU, every
/// process, interrupts and steal included: the first line of
/// `/proc/stat`). Minus the server's and the generator's own CPU time it
/// tells how much else ran during a measurement.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already part of user).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(busy as f64 / clk_tck())
}

/// Resident memory of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The CPU model line of `/proc/cpuinfo`, for the report.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Total memory in GiB (`MemTotal` of `/proc/meminfo`).
pub fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0))
}
