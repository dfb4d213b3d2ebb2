//! Session resume end to end: a client and a tether-like server holding
//! sessions, over links that break (see `tether_fuzz::resume`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{resume, track};

#[global_allocator]
static ALLOC: track::Tracking = track::Tracking;

fuzz_target!(|data: &[u8]| resume::run(data));
