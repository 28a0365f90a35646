//! Prints a large synthetic (valid) manifest, for benchmarks and load tests:
//! `cargo run --release --example gen_manifest -- 100000 > big.yaml`

#[path = "support/synthetic.rs"]
mod synthetic;

use std::io::Write;

fn main() {
    let count = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 1000,
        Some(Ok(count)) => count,
        Some(Err(_)) => {
            eprintln!("usage: gen_manifest [ENTRIES]   (default 1000)");
            std::process::exit(2);
        }
    };
    let text = synthetic::manifest(count);
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        std::process::exit(1);
    }
}
