//! Loopback load benchmarks: tether's echo server side by side with a
//! tokio baseline and a raw mio loop, all speaking the same wire contract.
//!
//! ```text
//! cargo bench -p tether-bench --bench load                     # full run (about 10 minutes)
//! TETHER_BENCH=quick cargo bench -p tether-bench --bench load  # quick run (about 1 minute)
//! cargo bench -p tether-bench --bench load -- --quick --only echo,latency
//! cargo bench -p tether-bench --bench load -- --only echo --sweep 1000,10000
//! ```
//!
//! The bench binary plays every part: run by `cargo bench` (which passes
//! `--bench`) it is the conductor, and it starts itself again as each
//! server (`--role server --impl tether|tokio|mio --listen 127.0.0.1:0`,
//! which prints `PORT <n>` once it listens) and as the load generator
//! (`--role client ...`, or `--role redial ...` for the reconnect test),
//! each in its own process, pinned to its own core with `taskset` when
//! there is one. Under `cargo test` (no `--bench`) it only runs a smoke
//! test: each server starts and echoes a few messages.
//!
//! Results go to `target/tether-bench/` (`results.md`, `runs.csv`,
//! `chart.svg`); see `docs/BENCHMARKS.md`.

mod client;
mod conductor;
mod procfs;
mod redial;
mod report;
mod server_mio;
mod server_tether;
mod server_tokio;
mod wire;

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

/// No server or generator process lives longer than this, whatever
/// happens to the conductor.
const MAX_CHILD_LIFETIME: Duration = Duration::from_secs(600);

/// `--name value` pairs from the command line (flags without a value,
/// such as `--bench` and `--quick`, are kept as names).
pub struct Args {
    list: Vec<String>,
}

impl Args {
    fn from_env() -> Args {
        Args {
            list: std::env::args().skip(1).collect(),
        }
    }

    pub fn has(&self, flag: &str) -> bool {
        self.list.iter().any(|a| a == flag)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        let at = self.list.iter().position(|a| *a == flag)?;
        self.list.get(at + 1).map(String::as_str)
    }

    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid value '{v}' for --{name}")),
        }
    }

    pub fn required<T: FromStr>(&self, name: &str) -> Result<T, String> {
        let v = self.value(name).ok_or(format!("--{name} is required"))?;
        v.parse()
            .map_err(|_| format!("invalid value '{v}' for --{name}"))
    }
}

fn main() -> ExitCode {
    let args = Args::from_env();
    let result = match args.value("role") {
        Some("server") => serve(&args),
        Some("client") => generate(&args),
        Some("redial") => redial_clients(&args),
        Some(other) => Err(format!("unknown role '{other}'")),
        None if args.has("--bench") => conductor::bench(&args),
        None => conductor::smoke(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ends this process when the conductor goes away (stdin closes) or after
/// [`MAX_CHILD_LIFETIME`]: a child can never outlive its run for long.
fn guard_child(watch_stdin: bool) {
    if watch_stdin {
        std::thread::spawn(|| {
            let mut sink = String::new();
            let mut stdin = io::stdin().lock();
            while matches!(stdin.read_line(&mut sink), Ok(n) if n > 0) {
                sink.clear();
            }
            std::process::exit(0);
        });
    }
    std::thread::spawn(|| {
        std::thread::sleep(MAX_CHILD_LIFETIME);
        eprintln!("load bench child: lifetime exceeded, exiting");
        std::process::exit(3);
    });
}

fn print_port(addr: SocketAddr) {
    println!("PORT {}", addr.port());
    let _ = io::stdout().flush();
}

/// A listening socket as the baselines use it: `SO_REUSEADDR`, backlog
/// 4096 (what tether's listener uses), non-blocking.
fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn serve(args: &Args) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::init();
    }
    guard_child(true);
    let addr: SocketAddr = args.required("listen")?;
    let interval = Duration::from_millis(args.get("interval-ms", 1000)?);
    let timeout = Duration::from_millis(args.get("timeout-ms", 1000)?);
    let result = match args.value("impl") {
        Some("tether") => {
            server_tether::run(addr, interval, timeout, true, Duration::ZERO, print_port)
        }
        // The same with session resume off (for the resume on/off pair).
        Some("tether-noresume") => {
            server_tether::run(addr, interval, timeout, false, Duration::ZERO, print_port)
        }
        // The same busy polling for N µs (`tether-spinN`, the busy-poll family).
        Some(imp) if imp.starts_with("tether-spin") => {
            let us: u64 = imp["tether-spin".len()..]
                .parse()
                .map_err(|_| format!("--impl {imp}: tether-spin takes microseconds"))?;
            let spin = Duration::from_micros(us);
            server_tether::run(addr, interval, timeout, true, spin, print_port)
        }
        Some("tokio") => bind_listener(addr).and_then(|l| {
            print_port(l.local_addr()?);
            server_tokio::run(l, server_tokio::Heartbeat { interval, timeout })
        }),
        Some("mio") => bind_listener(addr).and_then(|l| {
            print_port(l.local_addr()?);
            server_mio::run(l)
        }),
        other => {
            return Err(format!(
                "--impl must be tether, tether-noresume, tether-spinN, tokio or mio, not {other:?}"
            ))
        }
    };
    result.map_err(|e| format!("server: {e}"))
}

fn generate(args: &Args) -> Result<(), String> {
    guard_child(false);
    let mode = match args.value("mode") {
        Some("echo") | None => client::Mode::Echo,
        Some("idle") => client::Mode::Idle,
        // Several servers, window 1, interleaved: `--connect` and
        // `--server-pid` take comma-separated lists.
        Some("interleaved") => return generate_interleaved(args),
        Some(other) => return Err(format!("unknown --mode {other}")),
    };
    let opts = client_opts(args, mode, args.required("connect")?)?;
    if opts.size < 8 && opts.mode == client::Mode::Echo {
        return Err("--size must be at least 8 (the sequence number)".into());
    }
    client::run(opts).map_err(|e| format!("load generator: {e}"))
}

fn generate_interleaved(args: &Args) -> Result<(), String> {
    let list = |name: &str| -> Vec<String> {
        args.value(name)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let addrs = list("connect");
    let pids = list("server-pid");
    let mut targets = Vec::new();
    for (k, addr) in addrs.iter().enumerate() {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("invalid address '{addr}' in --connect"))?;
        targets.push((addr, pids.get(k).and_then(|p| p.parse().ok())));
    }
    let first = targets.first().ok_or("--connect needs an address")?.0;
    let opts = client_opts(args, client::Mode::Echo, first)?;
    if opts.size < 8 {
        return Err("--size must be at least 8 (the sequence number)".into());
    }
    let block = Duration::from_millis(args.get("block-ms", 100)?.max(1));
    client::run_interleaved(opts, &targets, block).map_err(|e| format!("load generator: {e}"))
}

fn client_opts(args: &Args, mode: client::Mode, addr: SocketAddr) -> Result<client::Opts, String> {
    Ok(client::Opts {
        addr,
        server_pid: args.value("server-pid").and_then(|p| p.parse().ok()),
        mode,
        conns: args.get("conns", 1)?,
        window: args.get("window", 1)?,
        size: args.get("size", 64)?,
        warmup: Duration::from_millis(args.get("warmup-ms", 500)?),
        duration: Duration::from_millis(args.get("duration-ms", 2000)?),
        inflight: args.get("inflight", 500)?,
        ping_period: Duration::from_millis(args.get("ping-ms", 1000)?),
        resume: args.get("resume", 0u8)? != 0,
    })
}

fn redial_clients(args: &Args) -> Result<(), String> {
    guard_child(false);
    let opts = redial::Opts {
        addr: args.required("connect")?,
        clients: args.get("clients", 100)?,
        jitter: args.get("jitter", 0.2)?,
    };
    redial::run(opts).map_err(|e| format!("redial clients: {e}"))
}
