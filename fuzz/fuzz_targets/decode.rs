//! The frame decoder: arbitrary bytes in arbitrary splits (see
//! `tether_fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{decode, track};

#[global_allocator]
static ALLOC: track::Tracking = track::Tracking;

fuzz_target!(|data: &[u8]| decode::run(data));
