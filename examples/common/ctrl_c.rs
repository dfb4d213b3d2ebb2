//! Ctrl-C as a flag, for an example that wants to stop cleanly (close its
//! link, print a summary) instead of dying on SIGINT.
//!
//! The standard library has no signal API, and the examples take no
//! dependency for one: on Unix a C `signal` handler sets a static flag that
//! the program's loop checks between short polls (a signal also cuts the
//! reactor's wait short: `poll_once` returns on `EINTR`). Elsewhere Ctrl-C
//! keeps its default effect and the flag is never set.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C (SIGINT) was pressed since [`install`].
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Catches SIGINT from now on: it sets the flag [`interrupted`] reads.
#[cfg(unix)]
pub(crate) fn install() {
    const SIGINT: i32 = 2;
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    }
    extern "C" fn on_sigint(_: i32) {
        // Async-signal-safe: one atomic store, nothing else.
        INTERRUPTED.store(true, Ordering::Relaxed);
    }
    // SAFETY: `signal` is the C library's, declared with its ABI (the
    // handler and the returned previous handler are pointer-sized), and
    // SIGINT is a valid signal number on every Unix. The handler only
    // stores to an atomic, which is async-signal-safe, and it is a plain
    // function that lives for the whole program.
    unsafe {
        signal(SIGINT, on_sigint);
    }
}

/// No signal handling here: Ctrl-C ends the process as usual.
#[cfg(not(unix))]
pub(crate) fn install() {}
