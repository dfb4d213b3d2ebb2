//! The `tls` family's part of the report: tether's TLS server against the
//! tokio-rustls baseline, one table and the targets of issue #18 (each
//! ≥ 1.0 × tokio-rustls in work per server CPU-second; idle CPU reported
//! against tokio-rustls, as there is no raw mio + rustls loop).

use std::fmt::Write as _;

use super::{fmt_metric, fmt_ratio, Summary};

/// Rows of the TLS table: (workload family, metric, label).
const TABLE: &[(&str, &str, &str)] = &[
    ("tls-echo", "msgs_per_cpu_s", "messages per server CPU-s"),
    ("tls-echo", "srv_us_per_msg", "server CPU per message (µs)"),
    ("tls-echo", "msgs_s", "messages/s"),
    ("tls-echo", "srv_cpu_pct", "server CPU"),
    ("tls-bulk", "mb_per_cpu_s", "MB per server CPU-s"),
    ("tls-bulk", "mb_s", "MB/s"),
    ("tls-bulk", "srv_cpu_pct", "server CPU"),
    (
        "tls-storm",
        "accepts_per_cpu_s",
        "handshakes per server CPU-s",
    ),
    (
        "tls-storm",
        "accept_us_per_conn",
        "server CPU µs per handshake",
    ),
    (
        "tls-storm",
        "connect_cli_us_per_conn",
        "generator CPU µs per handshake",
    ),
    ("tls-storm", "connects_s", "handshakes/s"),
    (
        "tls-idle",
        "srv_cpu_pct",
        "server CPU, idle with 1 s heartbeats",
    ),
    (
        "tls-idle",
        "rss_per_conn_b",
        "server RSS per connection (bytes)",
    ),
    ("tls-idle", "pongs_s", "PONGs/s received by the generator"),
    ("tls-idle", "other_cpu_pct", "other processes' CPU (noise)"),
];

/// The TLS table (nothing if the family did not run).
pub(super) fn table(md: &mut String, s: &Summary<'_>, keys: &[(&'static str, String)]) {
    let tls: Vec<&(&'static str, String)> =
        keys.iter().filter(|(f, _)| f.starts_with("tls-")).collect();
    if tls.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nTLS (tether's TLS server against tokio-rustls, the same rustls configuration: \
         TLS 1.3, `ring`, ECDSA P-256; echo and bulk interleaved, storm and idle separate runs; \
         the storm's handshakes are full ones):\n\n\
         | workload | metric | tether-tls | tokio-rustls | tether/tokio |\n|---|---|--:|--:|--:|"
    );
    for (family, key) in tls {
        for &(f, metric, label) in TABLE {
            if f != *family {
                continue;
            }
            let m = |imp| fmt_metric(metric, s.median(key, imp, metric));
            let _ = writeln!(
                md,
                "| {key} | {label} | {} | {} | {} |",
                m("tether-tls"),
                m("tokio-tls"),
                fmt_ratio(s.ratio(key, metric, "tether-tls", "tokio-tls")),
            );
        }
    }
}

/// The report's target line writer: `target(what, measured, limit, unit)`.
type TargetLine<'a> = dyn FnMut(&str, Option<f64>, f64, &str) + 'a;

/// The TLS targets, through the report's target line writer.
pub(super) fn targets(
    target: &mut TargetLine<'_>,
    s: &Summary<'_>,
    keys: &[(&'static str, String)],
) {
    let ratio = |family: &str, metric: &str| {
        keys.iter()
            .find(|(f, _)| *f == family)
            .and_then(|(_, k)| s.ratio(k, metric, "tether-tls", "tokio-tls"))
    };
    if !keys.iter().any(|(f, _)| f.starts_with("tls-")) {
        return;
    }
    target(
        "TLS echo 100×16×64 B (interleaved): messages per server CPU-s, tether/tokio-rustls ≥ 1.0",
        ratio("tls-echo", "msgs_per_cpu_s"),
        1.0,
        "",
    );
    target(
        "TLS bulk 10×8×16 KiB (interleaved): MB per server CPU-s, tether/tokio-rustls ≥ 1.0",
        ratio("tls-bulk", "mb_per_cpu_s"),
        1.0,
        "",
    );
    target(
        "TLS handshake storm: handshakes per server CPU-s, tether/tokio-rustls ≥ 1.0",
        ratio("tls-storm", "accepts_per_cpu_s"),
        1.0,
        "",
    );
    // No raw mio + rustls loop to hold it to 1.2 ×: reported against
    // tokio-rustls, as the issue allows; the line is checked against 1.2
    // all the same.
    target(
        "TLS idle, 1 s heartbeats: server CPU, tether/tokio-rustls (reported; ≤ 1.2)",
        ratio("tls-idle", "srv_cpu_pct"),
        1.2,
        "",
    );
}
