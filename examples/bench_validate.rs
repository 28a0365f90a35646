//! Benchmark: validates a generated 100,000-entry manifest (or the file given) and prints wall
//! time and peak RSS (VmHWM). Targets: under 0.5 s and 64 MiB on 2 cores, release build.
//!
//! `cargo run --release --example bench_validate [-- ENTRIES | -- FILE]`

#[path = "support/synthetic.rs"]
mod synthetic;

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time this thread has run (ns), which unlike wall time is not inflated by other load.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// CPU time of the whole process, all threads (utime + stime, in clock ticks of 10 ms).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 of the full line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so generating the input is not counted.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() {
    let arg = std::env::args().nth(1);
    let (path, _dir) = match arg.as_deref().map(|a| (a, a.parse::<usize>())) {
        Some((file, Err(_))) => (PathBuf::from(file), None),
        other => {
            let count = match other {
                Some((_, Ok(n))) => n,
                _ => 100_000,
            };
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join(format!("synthetic-{count}.yaml"));
            std::fs::write(&path, synthetic::manifest(count)).expect("write manifest");
            (path, Some(dir))
        }
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let reset = reset_hwm();
    let before = vm_hwm_kib().unwrap_or(0);

    let start = Instant::now();
    let cpu_start = thread_cpu();
    let process_start = process_cpu();
    let manifest = imsreg::manifest::load(&path).expect("readable manifest");
    let first = start.elapsed();
    let cpu = thread_cpu()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start));
    let process = process_cpu()
        .zip(process_start)
        .map(|(end, start)| end.saturating_sub(start));
    let peak = vm_hwm_kib().unwrap_or(0);

    let images = manifest.images.len();
    let errors = manifest.error_count();
    drop(manifest);
    let mut times = vec![first];
    for _ in 0..4 {
        let start = Instant::now();
        let manifest = imsreg::manifest::load(&path).expect("readable manifest");
        times.push(start.elapsed());
        drop(manifest);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "manifest:      {} ({:.1} MiB)",
        path.display(),
        size as f64 / 1048576.0
    );
    println!("valid images:  {images}, errors: {errors}");
    println!(
        "wall time:     first {:.0} ms, best {:.0} ms, median {:.0} ms (5 runs; target < 500 ms)",
        ms(first),
        ms(times[0]),
        ms(times[2])
    );
    if let (Some(cpu), Some(process)) = (cpu, process) {
        println!(
            "CPU time:      {:.0} ms on the main thread, {:.0} ms in all threads (first run)",
            ms(cpu),
            ms(process)
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let one_minute = load.split_whitespace().next().unwrap_or("?");
        println!("load average:  {one_minute} (other work on the machine inflates wall time)");
    }
    println!(
        "peak RSS:      {:.1} MiB during the first run (VmHWM; {:.1} MiB before it{}; target < 64 MiB)",
        peak as f64 / 1024.0,
        before as f64 / 1024.0,
        if reset {
            ", HWM reset after generating"
        } else {
            ", HWM not resettable"
        }
    );
}
