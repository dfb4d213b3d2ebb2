//! The connection state machine under a fake clock (see
//! `tether_fuzz::conn`). `TETHER_FUZZ_TOLERATE=known` looks past the known
//! bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{conn, track};

#[global_allocator]
static ALLOC: track::Tracking = track::Tracking;

fuzz_target!(|data: &[u8]| conn::run(data));
