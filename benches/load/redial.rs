//! The reconnect workload (tether only): `clients` tether client links in
//! one process (`Reactor::dial_with`, reconnect backoff 100 ms × 2 up to
//! 30 s, jitter as given) against a tether echo server in another process.
//!
//! The bench kills the server once every link is up (it prints `READY`),
//! restarts it on the same port after a pause, and writes `RESTARTED` to
//! this process's stdin as soon as the new server listens. Measured from
//! that instant: when 50 %, 90 %, 99 % and all links are back, and how
//! many connects the links made meanwhile. One line, `RESULT ...`.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tether::BackoffConfig;
use tether::{Config, ConnId, Context, DisconnectReason, Handler, PeerInfo, Reactor};

/// How long any phase may take at most.
const PHASE_DEADLINE: Duration = Duration::from_secs(90);
/// A cap on loop turns per phase, on top of its deadline.
const MAX_TURNS: u64 = 50_000_000;

pub struct Opts {
    pub addr: SocketAddr,
    pub clients: usize,
    pub jitter: f64,
}

#[derive(Default)]
struct Count {
    up: usize,
    downs: u64,
    reconnecting: u64,
    /// Instants at which links came up (after the restart mark).
    ups: Vec<Instant>,
    first_down: Option<Instant>,
}

impl Handler for Count {
    fn on_connected(&mut self, cx: &mut Context<'_>, _: ConnId, _: &PeerInfo) {
        self.up += 1;
        self.ups.push(cx.now());
    }
    fn on_disconnected(&mut self, cx: &mut Context<'_>, _: ConnId, _: &DisconnectReason) {
        self.up -= 1;
        self.downs += 1;
        self.first_down.get_or_insert(cx.now());
    }
    fn on_reconnecting(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        _: u32,
        _: Duration,
        _: &DisconnectReason,
    ) {
        self.reconnecting += 1;
    }
}

pub fn run(opts: Opts) -> io::Result<()> {
    let backoff = BackoffConfig {
        initial: Duration::from_millis(100),
        multiplier: 2.0,
        max: Duration::from_secs(30),
        jitter: opts.jitter,
        max_attempts: None,
    };
    let config = Config::builder()
        .backoff(backoff)
        .build()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut reactor = Reactor::with_config(config.clone())?;
    for _ in 0..opts.clients {
        reactor
            .dial_with(opts.addr, config.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    let mut count = Count::default();

    // The bench's word that the server is back, read on a helper thread.
    let (tx, restarted) = mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "RESTARTED" => {
                    let _ = tx.send(Instant::now());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });

    let wait = |reactor: &mut Reactor,
                count: &mut Count,
                what: &str,
                done: &mut dyn FnMut(&Count) -> bool|
     -> io::Result<()> {
        let deadline = Instant::now() + PHASE_DEADLINE;
        for _ in 0..MAX_TURNS {
            if done(count) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            reactor.poll_once(count, Some(Duration::from_millis(5)))?;
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: {} of {} links up", count.up, opts.clients),
        ))
    };

    wait(&mut reactor, &mut count, "initial connect", &mut |c| {
        c.up == opts.clients
    })?;
    let connects_before = reactor.stats().connects;
    println!("READY");
    io::stdout().flush()?;

    // The server is killed: every link goes down.
    wait(&mut reactor, &mut count, "outage", &mut |c| c.up == 0)?;
    let down_at = count.first_down.unwrap_or_else(Instant::now);
    count.ups.clear();
    // Back up, counted from the restart.
    let mut restart: Option<Instant> = None;
    wait(&mut reactor, &mut count, "recovery", &mut |c| {
        if restart.is_none() {
            restart = restarted.try_recv().ok();
        }
        restart.is_some() && c.up == opts.clients
    })?;
    let restart = restart.unwrap_or(down_at);
    let stats = reactor.stats();

    let mut ups: Vec<f64> = count
        .ups
        .iter()
        .map(|t| t.saturating_duration_since(restart).as_secs_f64())
        .collect();
    ups.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((ups.len() as f64 * q).ceil() as usize).clamp(1, ups.len()) - 1;
        ups[i]
    };
    // The busiest 100 ms of the recovery: the accept wave the server saw.
    let mut peak = 0;
    let mut lo = 0;
    for hi in 0..ups.len() {
        while ups[hi] - ups[lo] > 0.1 {
            lo += 1;
        }
        peak = peak.max(hi - lo + 1);
    }
    println!(
        "RESULT clients={} jitter={} peak_per_100ms={peak} all_back_secs={:.4} p50_back_secs={:.4} p90_back_secs={:.4} \
         p99_back_secs={:.4} outage_secs={:.4} connects={} reconnecting={} downs={}",
        opts.clients,
        opts.jitter,
        at(1.0),
        at(0.5),
        at(0.9),
        at(0.99),
        restart.saturating_duration_since(down_at).as_secs_f64(),
        stats.connects - connects_before,
        count.reconnecting,
        count.downs,
    );
    io::stdout().flush()?;
    Ok(())
}
