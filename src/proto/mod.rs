//! The sans-IO pieces under the reactor, for tests, fuzzing and
//! benchmarks: **outside semver**. They change whenever the reactor needs
//! them to; an application uses the types at the crate root.
//!
//! None of them owns a socket or reads a clock: the caller passes `now`
//! and inputs and collects bytes, deadlines and events.
//!
//! - [`codec`]: the byte-exact frame encoder and incremental decoder of
//!   the wire protocol.
//! - [`wheel`]: the hierarchical timer wheel that schedules every deadline
//!   of a reactor.
//! - [`conn`]: the connection state machine: handshake, heartbeats,
//!   dead-peer detection, close and reconnect.

pub mod codec;
pub mod conn;
pub mod wheel;
