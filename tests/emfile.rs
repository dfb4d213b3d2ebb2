//! Running out of file descriptors while connections wait to be accepted:
//! the reactor logs it, pauses accepting, and does not spin. Alone in its
//! own test binary (its own process), since it uses up every descriptor.

mod support;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use tether::proto::codec::Frame;

/// This process's CPU time (user + system), from /proc (through a file
/// opened beforehand, as no descriptor is left to open it later).
fn cpu_time(proc_stat: &mut File) -> Duration {
    proc_stat.seek(SeekFrom::Start(0)).expect("seek");
    let mut stat = String::new();
    proc_stat
        .read_to_string(&mut stat)
        .expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second here).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

#[test]
fn emfile_on_accept_pauses_instead_of_spinning() {
    init_logs();
    let server = echo_server(config(1000, 1000), None);
    let addr = server.addr.expect("bound");
    let mut proc_stat = File::open("/proc/self/stat").expect("/proc/self/stat");

    // Use up every descriptor but one, then connect with that one: the
    // connection completes in the kernel's backlog, and the reactor's
    // accept fails with EMFILE.
    let mut hog = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        hog.push(f);
        if hog.len() > 100_000 {
            panic!("no file limit: cannot test EMFILE");
        }
    }
    hog.pop();
    let client = TcpStream::connect(addr).expect("connect with the last descriptor");

    let cpu_before = cpu_time(&mut proc_stat);
    let wall = Instant::now();
    thread::sleep(ms(1500));
    let cpu = cpu_time(&mut proc_stat) - cpu_before;
    let elapsed = wall.elapsed();
    // A spinning accept loop would burn a whole core (~1.5 s); pausing
    // 100 ms between attempts costs next to nothing.
    assert!(
        cpu < ms(300),
        "the reactor used {cpu:?} of CPU in {elapsed:?} while accept failed"
    );

    // Descriptors come back: the waiting connection is accepted and served.
    drop(hog);
    let mut peer = RawPeer::from_stream(client);
    peer.hello(0, 0);
    assert!(matches!(peer.next_frame(ms(3000)), Some(Frame::Welcome(_))));
    let reactor = server.stop();
    assert!(reactor.stats().accept_errors >= 5, "{:?}", reactor.stats());
}
