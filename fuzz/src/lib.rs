//! The harness behind tether's fuzz targets: each target is one function
//! that takes arbitrary bytes, drives the code under test with them and
//! panics (with the invariant that broke) on anything wrong.
//!
//! - [`decode::run`]: the frame decoder, fed a byte stream in arbitrary
//!   splits, checked call by call against a model written from the wire
//!   contract.
//! - [`conn::run`]: the connection state machine, driven by a script of
//!   peer bytes, timer expiries, clock jumps, socket results and
//!   application calls under a fake clock, checked after every step.
//! - [`resume::run`]: session resume end to end — a client and a
//!   tether-like server holding sessions (the reactor's resume moves
//!   played by hand) over links that reset, go half-dead, get taken over
//!   and lose their server — checked for exactly-once delivery in order.
//!
//! This file is compiled twice: as the library of the `tether-fuzz` package
//! (for the cargo-fuzz binaries) and, through `#[path]`, as a module of the
//! stable integration test `tests/fuzz_quick.rs`. So it uses no `crate::`
//! paths, and needs nothing beyond `tether` and `bytes`.

pub mod conn;
pub mod decode;
pub mod input;
pub mod resume;
pub mod seeds;
pub mod track;
