//! Known bugs, so a run can look past them.

use std::sync::OnceLock;

/// Known bugs, one bit each: a check of a tolerated bug is skipped, so the
/// fuzzer can look past it (see `TETHER_FUZZ_TOLERATE` in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// A redialling client's HELLO carries the previous session's id.
    HelloSessionId,
    /// The write-stall timer outlives its socket.
    StaleWriteStall,
    /// PONGs queue up without bound when the peer does not read.
    PongBacklog,
    /// A small message queued after a PONG joins the packed run already on
    /// the wire and goes out before the PONG.
    PackedRunOrder,
    /// `Config::validate` accepts durations that overflow `Instant`
    /// arithmetic; tolerating it means not generating such configurations.
    ConfigOverflow,
}

impl Bug {
    /// Every known bug.
    pub const ALL: [Bug; 5] = [
        Bug::HelloSessionId,
        Bug::StaleWriteStall,
        Bug::PongBacklog,
        Bug::PackedRunOrder,
        Bug::ConfigOverflow,
    ];

    /// The name `TETHER_FUZZ_TOLERATE` uses.
    pub fn name(self) -> &'static str {
        match self {
            Bug::HelloSessionId => "hello-session-id",
            Bug::StaleWriteStall => "stale-write-stall",
            Bug::PongBacklog => "pong-backlog",
            Bug::PackedRunOrder => "packed-run-order",
            Bug::ConfigOverflow => "config-overflow",
        }
    }
}

/// The set of known bugs a run looks past.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tolerate(u32);

impl Tolerate {
    /// Every check on.
    pub const NONE: Tolerate = Tolerate(0);

    /// Every known bug tolerated.
    pub fn known() -> Tolerate {
        Bug::ALL.iter().fold(Tolerate::NONE, |t, &b| t.with(b))
    }

    /// This set plus `bug`.
    pub fn with(self, bug: Bug) -> Tolerate {
        Tolerate(self.0 | 1 << bug as u32)
    }

    /// Whether `bug` is tolerated.
    pub fn has(self, bug: Bug) -> bool {
        self.0 & 1 << bug as u32 != 0
    }

    /// From a comma-separated list of [`Bug::name`]s, or `known` for all.
    pub fn parse(list: &str) -> Tolerate {
        list.split(',')
            .map(str::trim)
            .fold(Tolerate::NONE, |t, name| match name {
                "known" | "all" => Tolerate::known(),
                _ => Bug::ALL
                    .iter()
                    .find(|b| b.name() == name)
                    .map_or(t, |&b| t.with(b)),
            })
    }

    /// `TETHER_FUZZ_TOLERATE`, read once; nothing tolerated if unset.
    pub fn from_env() -> Tolerate {
        static ONCE: OnceLock<Tolerate> = OnceLock::new();
        *ONCE.get_or_init(|| {
            std::env::var("TETHER_FUZZ_TOLERATE").map_or(Tolerate::NONE, |v| Tolerate::parse(&v))
        })
    }
}
