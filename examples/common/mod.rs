//! Command-line parsing shared by `echo_server` and `echo_client`.
//!
//! Not part of tether: just enough to read `--name value` (or
//! `--name=value`) flags, and the few switches that take no value
//! ([`SWITCHES`], e.g. `--no-resume`), without pulling in an
//! argument-parsing crate.
//! Every mistake ends the process with the usage text on stderr and exit
//! code 2; `--help` prints the usage on stdout and exits 0.

use std::fmt::Display;
use std::process;
use std::str::FromStr;
use std::time::Duration;

/// Flags that take no value (`--no-resume`, not `--no-resume yes`); an
/// example accepts one only if its list of known names has it too.
const SWITCHES: &[&str] = &["no-resume"];

/// The flags given on the command line, checked against a list of known
/// names.
pub(crate) struct Flags {
    usage: &'static str,
    values: Vec<(&'static str, String)>,
}

impl Flags {
    /// Reads the process arguments. `known` lists the accepted flag names
    /// without their leading `--`.
    pub(crate) fn parse(usage: &'static str, known: &[&'static str]) -> Flags {
        let mut flags = Flags {
            usage,
            values: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                println!("{usage}");
                process::exit(0);
            }
            let Some(body) = arg.strip_prefix("--") else {
                flags.fail(format_args!("unexpected argument '{arg}'"));
            };
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (body, None),
            };
            let Some(&name) = known.iter().find(|&&k| k == name) else {
                flags.fail(format_args!("unknown flag '--{name}'"));
            };
            if flags.raw(name).is_some() {
                flags.fail(format_args!("--{name} given twice"));
            }
            if SWITCHES.contains(&name) {
                if inline.is_some() {
                    flags.fail(format_args!("--{name} takes no value"));
                }
                flags.values.push((name, String::new()));
                continue;
            }
            let Some(value) = inline.or_else(|| args.next()) else {
                flags.fail(format_args!("--{name} needs a value"));
            };
            flags.values.push((name, value));
        }
        flags
    }

    /// The value of `--name`, which must be given.
    pub(crate) fn required<T: FromStr>(&self, name: &str) -> T {
        match self.optional(name) {
            Some(value) => value,
            None => self.fail(format_args!("--{name} is required")),
        }
    }

    /// The value of `--name`, if given.
    pub(crate) fn optional<T: FromStr>(&self, name: &str) -> Option<T> {
        let raw = self.raw(name)?;
        match raw.parse() {
            Ok(value) => Some(value),
            Err(_) => self.fail(format_args!("invalid value '{raw}' for --{name}")),
        }
    }

    /// Whether the switch `--name` (one of [`SWITCHES`]) was given.
    #[allow(dead_code)] // feed_relay has no switch
    pub(crate) fn switch(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// A duration given in milliseconds by `--name`, or `default`.
    pub(crate) fn millis(&self, name: &str, default: Option<u64>) -> Duration {
        let ms = match default {
            Some(default) => self.optional(name).unwrap_or(default),
            None => self.required(name),
        };
        Duration::from_millis(ms)
    }

    /// Prints `message` and the usage text on stderr and exits with code 2.
    pub(crate) fn fail(&self, message: impl Display) -> ! {
        eprintln!("error: {message}\n\n{}", self.usage);
        process::exit(2);
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}
