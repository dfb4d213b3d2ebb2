//! Writes the seed inputs to `corpus/<target>/seed-<name>` and the bugs'
//! minimized inputs to `regressions/<name>`: `cargo run --example
//! write_seeds` in `fuzz/`.

use std::fs;
use std::path::Path;

use tether_fuzz::seeds;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in [
        ("decode", seeds::decode()),
        ("conn", seeds::conn()),
        ("resume", seeds::resume()),
    ] {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    fs::create_dir_all(&dir)?;
    for (_, name, bytes) in seeds::regressions() {
        fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
