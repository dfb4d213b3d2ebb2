//! The `echo_server` and `echo_client` examples, run as programs: the
//! client's `summary:` line after `--count` echoes, straight and through a
//! proxy that resets the connection mid-stream (resume: nothing lost or
//! repeated), with resume off on the server, and a bad flag; and the demo,
//! whose cut cable must lose and repeat nothing.
//!
//! The test builds the example programs itself (`cargo build --examples`
//! into its own target directory and profile, see [`example`]): `cargo
//! test --all-targets` builds examples only as test harnesses, and `cargo
//! test --test examples` not at all.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use proxy::{Dir, Mode, Proxy};
use support::ms;

/// The path of example `name`, built (once per test binary) with the
/// cargo that built this test, into the same target directory and profile:
/// `cargo test --all-targets` builds the examples only as test harnesses.
/// `None`, with a note, under a profile other than dev or release.
fn example(name: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // <target>/<profile>/deps/examples-<hash>
        let exe = std::env::current_exe().expect("path of the test binary");
        let profile_dir = exe.parent()?.parent()?;
        let profile = match profile_dir.file_name()?.to_str()? {
            "debug" => "dev",
            "release" => "release",
            other => {
                eprintln!("skipped: examples not built for profile {other}");
                return None;
            }
        };
        let out = Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--examples", "--profile", profile])
            .arg("--target-dir")
            .arg(profile_dir.parent()?)
            .output()
            .expect("run cargo build --examples");
        assert!(
            out.status.success(),
            "cargo build --examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(profile_dir.join("examples"))
    });
    let path = dir
        .as_ref()?
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} was not built", path.display());
    Some(path)
}

/// An `echo_server` process; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(exe: &PathBuf, extra: &[&str]) -> Server {
        let mut child = Command::new(exe)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--interval-ms",
                "200",
                "--timeout-ms",
                "400",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start echo_server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read echo_server's stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("echo_server said {line:?}"));
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `echo_client` against `addr` with heartbeats 200/400 ms and a
/// 20 ms first redial, plus `extra`.
fn client(exe: &PathBuf, addr: SocketAddr, extra: &[&str]) -> Child {
    client_to(exe, &addr.to_string(), extra)
}

/// [`client`] with `--connect connect` (a name, a list).
fn client_to(exe: &PathBuf, connect: &str, extra: &[&str]) -> Child {
    Command::new(exe)
        .args([
            "--connect",
            connect,
            "--interval-ms",
            "200",
            "--timeout-ms",
            "400",
        ])
        .args(["--backoff-initial-ms", "20", "--backoff-max-ms", "200"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echo_client")
}

/// Waits for `child` at most `limit` (then kills it and fails).
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    // Read the pipes meanwhile, so that a chatty child never blocks.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            panic!("still running after {limit:?}; its output:\n{out}");
        }
        thread::sleep(ms(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The client's `summary:` line (it must print exactly one, last).
fn summary(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("summary: "))
        .collect();
    assert_eq!(lines.len(), 1, "one summary line expected:\n{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some(lines[0]),
        "the summary comes last:\n{stdout}"
    );
    lines[0].to_owned()
}

fn perfect(n: u64) -> String {
    format!("summary: sent={n} echoed={n} duplicates=0 reordered=0 lost_session=0")
}

#[test]
fn echo_client_counts_every_echo_once_and_in_order() {
    let (Some(server_exe), Some(client_exe)) = (example("echo_server"), example("echo_client"))
    else {
        return;
    };
    let server = Server::start(&server_exe, &[]);
    // Paced, one message at a time: every echo is printed.
    let out = finish(
        client(
            &client_exe,
            server.addr,
            &["--send-every-ms", "5", "--count", "20", "--size", "100"],
        ),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(summary(&out), perfect(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("connected (new session 0x"), "{stdout}");
    assert_eq!(stdout.matches("] echo seq=").count(), 20, "{stdout}");

    // Streaming through a window of 32.
    let out = finish(
        client(
            &client_exe,
            server.addr,
            &["--window", "32", "--count", "5000"],
        ),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(summary(&out), perfect(5000));
}

#[test]
fn echo_client_loses_and_repeats_nothing_when_the_connection_is_reset_mid_stream() {
    let (Some(server_exe), Some(client_exe)) = (example("echo_server"), example("echo_client"))
    else {
        return;
    };
    let server = Server::start(&server_exe, &[]);
    let proxy = Proxy::start(server.addr);
    let control = proxy.handle();
    const COUNT: u64 = 40_000;
    let child = client(
        &client_exe,
        proxy.addr(),
        &["--window", "64", "--count", &COUNT.to_string()],
    );
    // Reset both sides each time another ~15 % of the echoes' bytes
    // (72 bytes a frame: a 4-byte length, the kind, 64 bytes, and some
    // ACKs) went down.
    let step = COUNT * 69 * 15 / 100;
    let director = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut resets = 0;
        for k in 1..=4 {
            while control.delivered(Dir::Down) < k * step {
                if Instant::now() > deadline {
                    return resets;
                }
                thread::sleep(ms(1));
            }
            control.set_mode(Mode::Reset);
            thread::sleep(ms(20));
            control.set_mode(Mode::PassThrough);
            resets += 1;
        }
        resets
    });
    let out = finish(child, Duration::from_secs(40));
    let resets = director.join().expect("director");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{stdout}");
    assert_eq!(resets, 4, "the stream ended before the resets:\n{stdout}");
    assert_eq!(summary(&out), perfect(COUNT), "{stdout}");
    assert!(
        stdout.matches("messages sent again").count() >= 2,
        "the client resumed:\n{stdout}"
    );
    assert!(proxy.handle().accepted() >= 3, "it reconnected");
}

#[test]
fn echo_client_runs_against_a_server_without_resume_and_refuses_bad_flags() {
    let (Some(server_exe), Some(client_exe)) = (example("echo_server"), example("echo_client"))
    else {
        return;
    };
    let server = Server::start(&server_exe, &["--no-resume"]);
    let out = finish(
        client(
            &client_exe,
            server.addr,
            &["--window", "8", "--count", "500"],
        ),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(summary(&out), perfect(500));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("the server does not resume sessions"),
        "{stdout}"
    );
    let out = finish(
        client(
            &client_exe,
            server.addr,
            &["--no-resume", "--window", "4", "--count", "50"],
        ),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(summary(&out), perfect(50));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resume off"));
    for bad in [
        &["--size", "15"][..],
        &["--window", "0"],
        &["--no-resume=yes"],
        &["--count", "5"],
        &["--size", "lots"],
    ] {
        let out = finish(
            client(&client_exe, server.addr, bad),
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("usage: echo_client"),
            "{bad:?}"
        );
    }
}

#[test]
fn echo_client_dials_a_host_name_and_a_failover_list_and_refuses_a_bad_one() {
    let (Some(server_exe), Some(client_exe)) = (example("echo_server"), example("echo_client"))
    else {
        return;
    };
    let server = Server::start(&server_exe, &[]);
    let port = server.addr.port();
    // By name, as people write it (the system's resolver: /etc/hosts).
    let out = finish(
        client_to(
            &client_exe,
            &format!("localhost:{port}"),
            &["--window", "8", "--count", "200"],
        ),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(summary(&out), perfect(200));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("dialing localhost:{port}")),
        "{stdout}"
    );

    // A failover list whose first server is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let out = finish(
        client_to(
            &client_exe,
            &format!("{down},localhost:{port}"),
            &["--window", "8", "--count", "200"],
        ),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(summary(&out), perfect(200));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("connect failed"), "{stdout}");

    for (bad, why) in [
        ("localhost", "without a port"),
        ("localhost:0", "port"),
        ("bad host:7000", "host"),
        ("[::1:7000", "host"),
    ] {
        let out = finish(client_to(&client_exe, bad, &[]), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--connect") && stderr.contains(why),
            "{bad:?}: {stderr}"
        );
    }
}

#[test]
fn the_demo_plays_every_act_and_its_cut_cable_loses_nothing() {
    let Some(demo) = example("demo") else {
        return;
    };
    let child = Command::new(demo)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let out = finish(child, Duration::from_secs(45));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{stdout}");
    for act in ["Act 1:", "Act 2:", "Act 3:", "Act 4:", "Summary"] {
        assert!(stdout.contains(act), "no {act}:\n{stdout}");
    }
    assert!(
        stdout.contains("relay: cable cut, 3 connections reset"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not one message lost or repeated"),
        "{stdout}"
    );
    assert!(
        stdout.matches("messages sent again").count() >= 3,
        "{stdout}"
    );
}
