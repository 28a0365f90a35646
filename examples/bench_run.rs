//! Benchmark of the run engine: 10,000 images registered through the real HTTP client against
//! the in-process simulator over loopback.
//!
//! (a) unlimited rates, concurrency 64: images/s, engine CPU per image, peak RSS;
//! (b) `submit_rate` 200/s, 2 s jobs, `max_active_jobs` and the simulator's task limit 1,000:
//!     wall time against the floor N / min(R, A/D) + D.
//!
//! The engine and the simulator run on separate tokio runtimes (two worker threads each, on
//! the same machine). "Engine CPU" is the CPU time (getrusage RUSAGE_THREAD) of the engine
//! runtime's threads and of the thread that drives it: the client's signing, HTTP and JSON
//! work included, the simulator's excluded. Peak RSS (RUSAGE_SELF ru_maxrss) is the whole
//! process's, simulator included, so it is an upper bound for the engine. The allocator is
//! the binary's: jemalloc with the same options.
//!
//! `cargo run --release --example bench_run [-- IMAGES [a|client]]`
//!
//! The engine runtime is multi-threaded with two workers, as the `imsreg run` binary's is on
//! this 2-core machine; `BENCH_ENGINE_THREADS=N` sets the workers, and `0` runs the engine on
//! a current-thread runtime instead (for comparison: no wakeups across worker threads).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use imsreg::ims::auth::{Credentials, Secret};
use imsreg::ims::client::{Client, ClientConfig};
use imsreg::ims::{
    ImageInfo, ImageStatusPage, ImsApi, ImsError, Job, ListImagesQuery, ListImagesResponse,
};
use imsreg::manifest::{ImageEntry, ImageFormat, ImageUrl};
use imsreg::report::ImageOutcome;
use imsreg::run::{NoEvents, PlannedImage, RunConfig, execute};
use imsreg::sim::{DurationDist, SimConfig, SimHandle, SimStats, Simulator};
use tikv_jemallocator::Jemalloc;
use tokio_util::sync::CancellationToken;

/// Heap bytes held by allocations made on engine threads (net of frees there), and the peak.
static ENGINE_HEAP: AtomicI64 = AtomicI64::new(0);
static ENGINE_HEAP_PEAK: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// Set on the engine runtime's threads and on the thread driving it.
    static ON_ENGINE: Cell<bool> = const { Cell::new(false) };
}

fn on_engine() -> bool {
    ON_ENGINE.try_with(Cell::get).unwrap_or(false)
}

fn count(delta: i64) {
    let now = ENGINE_HEAP.fetch_add(delta, Ordering::Relaxed) + delta;
    ENGINE_HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
}

/// The binary's allocator (jemalloc, with its options below), counting the engine's share of
/// the heap (the simulator runs in the same process, so the process RSS alone would not tell
/// them apart).
struct CountingAllocator;

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { Jemalloc.alloc(layout) };
        if !ptr.is_null() && on_engine() {
            count(layout.size() as i64);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { Jemalloc.dealloc(ptr, layout) };
        if on_engine() {
            count(-(layout.size() as i64));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        if !new.is_null() && on_engine() {
            count(new_size as i64 - layout.size() as i64);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// CPU time of the engine runtime's threads, added as each thread stops (nanoseconds).
static ENGINE_CPU_NS: AtomicU64 = AtomicU64::new(0);

fn thread_cpu_ns() -> u64 {
    rusage_ns(libc::RUSAGE_THREAD).0
}

/// (user + system CPU in ns, ru_maxrss in KiB) of `who`.
fn rusage_ns(who: libc::c_int) -> (u64, i64) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    (ns(usage.ru_utime) + ns(usage.ru_stime), usage.ru_maxrss)
}

/// The real client, timing each register call as it leaves the engine (to check the rate at
/// send time, apart from the simulator's own scheduling delays).
struct Timed {
    client: Client,
    started: Instant,
    register_ms: std::sync::Mutex<Vec<f64>>,
}

impl ImsApi for Timed {
    async fn register_image(&self, image_id: &str, image_url: &str) -> Result<String, ImsError> {
        let at = self.started.elapsed().as_secs_f64() * 1000.0;
        if let Ok(mut times) = self.register_ms.lock() {
            times.push(at);
        }
        self.client.register_image(image_id, image_url).await
    }

    async fn show_job(&self, job_id: &str) -> Result<Job, ImsError> {
        self.client.show_job(job_id).await
    }

    async fn show_job_progress(&self, job_id: &str) -> Result<Job, ImsError> {
        self.client.show_job_progress(job_id).await
    }

    async fn list_images(&self, query: &ListImagesQuery) -> Result<ListImagesResponse, ImsError> {
        self.client.list_images(query).await
    }

    async fn list_image_statuses(
        &self,
        query: &ListImagesQuery,
    ) -> Result<ImageStatusPage, ImsError> {
        self.client.list_image_statuses(query).await
    }

    async fn get_image(&self, image_id: &str) -> Result<Option<ImageInfo>, ImsError> {
        self.client.get_image(image_id).await
    }
}

/// A field of /proc/self/status in KiB (VmRSS: now, VmHWM: peak since the last reset).
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` value 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Figures {
    /// Peak heap held by the engine's threads (bytes), images and client included.
    engine_heap_peak: u64,
    /// RSS once the simulator holds its images, before the engine starts (KiB).
    rss_before_kib: u64,
    /// Peak RSS during the run (KiB), simulator included.
    rss_peak_kib: u64,
    /// Register calls as they left the engine, in ms from the start.
    sent_ms: Vec<f64>,
    wall: Duration,
    engine_cpu: Duration,
    outcomes: Vec<ImageOutcome>,
    stats: SimStats,
}

fn image_ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:08x}-0000-4000-8000-{:012x}", 0xbe0c_0000u32, i))
        .collect()
}

fn planned(ids: &[String]) -> Vec<PlannedImage> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| PlannedImage {
            entry: ImageEntry {
                image_id: id.clone(),
                image_url: ImageUrl {
                    bucket: "bench-bucket".into(),
                    object: format!("images/disk-{i}.qcow2"),
                },
                name: None,
                format: ImageFormat::Qcow2,
                line: i + 1,
            },
            known_job_id: None,
            size_bytes: None,
        })
        .collect()
}

fn client_for(sim: &SimHandle) -> Client {
    let credentials = &sim.config().credentials;
    let endpoint = sim.url().parse().expect("simulator URL");
    let mut config = ClientConfig::new(
        endpoint,
        Credentials::AkSk {
            ak: credentials.ak.clone(),
            sk: Secret::new(credentials.sk.clone()),
            security_token: None,
        },
    );
    config.project_id = Some(credentials.project_id.clone());
    Client::new(config).expect("client")
}

fn scenario(n: usize, sim_config: SimConfig, run_config: RunConfig) -> Figures {
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sim")
        .enable_all()
        .build()
        .expect("simulator runtime");
    let ids = image_ids(n);
    let sim = sim_runtime
        .block_on(async { Simulator::start(sim_config, "127.0.0.1:0".parse().unwrap()) })
        .expect("simulator");
    sim.add_images(ids.clone());
    let images = planned(&ids);
    drop(ids);
    reset_peak_rss();
    let rss_before_kib = proc_status_kib("VmRSS");

    ENGINE_CPU_NS.store(0, Ordering::SeqCst);
    let engine_runtime = engine_runtime();
    let client = Arc::new(Timed {
        client: client_for(&sim),
        started: Instant::now(),
        register_ms: std::sync::Mutex::new(Vec::with_capacity(n)),
    });

    ENGINE_HEAP.store(0, Ordering::SeqCst);
    ENGINE_HEAP_PEAK.store(0, Ordering::SeqCst);
    ON_ENGINE.with(|e| e.set(true));
    let main_cpu_before = thread_cpu_ns();
    let started = Instant::now();
    let result = engine_runtime.block_on(execute(
        client.clone(),
        images,
        &run_config,
        Arc::new(NoEvents),
        CancellationToken::new(),
    ));
    let wall = started.elapsed();
    ON_ENGINE.with(|e| e.set(false));
    let rss_peak_kib = proc_status_kib("VmHWM");
    let engine_heap_peak = ENGINE_HEAP_PEAK.load(Ordering::SeqCst).max(0) as u64;
    let main_cpu = thread_cpu_ns() - main_cpu_before;
    drop(engine_runtime);
    let engine_cpu = Duration::from_nanos(ENGINE_CPU_NS.load(Ordering::SeqCst) + main_cpu);

    let stats = sim.stats();
    sim_runtime.block_on(sim.shutdown());
    let mut sent_ms = client
        .register_ms
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default();
    sent_ms.sort_by(f64::total_cmp);
    Figures {
        engine_heap_peak,
        rss_before_kib,
        rss_peak_kib,
        sent_ms,
        wall,
        engine_cpu,
        outcomes: result.records.iter().map(|r| r.status).collect(),
        stats,
    }
}

fn print_common(n: usize, figures: &Figures) {
    let registered = figures
        .outcomes
        .iter()
        .filter(|s| **s == ImageOutcome::Registered)
        .count();
    println!("  registered           {registered} / {n}");
    println!(
        "  resubmitted images   {} (must be 0)",
        figures.stats.resubmitted().len()
    );
    println!(
        "  engine CPU           {:.0} us/image ({:.2} s total)",
        figures.engine_cpu.as_secs_f64() * 1e6 / n as f64,
        figures.engine_cpu.as_secs_f64()
    );
    let requests: Vec<String> = figures
        .stats
        .requests
        .iter()
        .map(|(api, count)| format!("{api}={count}"))
        .collect();
    println!("  requests             {}", requests.join(" "));
    println!(
        "  memory               engine heap peak {:.1} MiB; process RSS {:.1} MiB before the run (simulator with its images), peak {:.1} MiB",
        figures.engine_heap_peak as f64 / (1024.0 * 1024.0),
        figures.rss_before_kib as f64 / 1024.0,
        figures.rss_peak_kib as f64 / 1024.0,
    );
    println!(
        "  429s {}, task-limit answers {}, max running jobs {}",
        figures.stats.throttled,
        figures.stats.task_limit_rejections,
        figures.stats.max_running_jobs
    );
}

/// The HTTP client alone: `n` register calls, 64 at a time, on the same kind of runtime: the
/// floor under the engine's CPU per image.
fn client_floor(n: usize) -> Duration {
    use futures::StreamExt;
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("simulator runtime");
    let sim_config = SimConfig {
        job_duration: DurationDist::Fixed(Duration::from_millis(100)),
        task_limit: n,
        ..SimConfig::default()
    };
    let sim = sim_runtime
        .block_on(async { Simulator::start(sim_config, "127.0.0.1:0".parse().unwrap()) })
        .expect("simulator");
    let ids = image_ids(n);
    sim.add_images(ids.clone());
    ENGINE_CPU_NS.store(0, Ordering::SeqCst);
    let runtime = engine_runtime();
    let client = client_for(&sim);
    let main_before = thread_cpu_ns();
    // On a runtime task, as the engine's calls are (not on the thread that drives it).
    runtime.block_on(async move {
        let calls = tokio::spawn(async move {
            let client = &client;
            let mut calls = futures::stream::iter(ids.into_iter().map(|id| async move {
                let _ = client
                    .register_image(&id, "bench-bucket:images/disk.qcow2")
                    .await;
            }))
            .buffer_unordered(64);
            while calls.next().await.is_some() {}
        });
        let _ = calls.await;
    });
    let main_cpu = thread_cpu_ns() - main_before;
    drop(runtime);
    sim_runtime.block_on(sim.shutdown());
    Duration::from_nanos(ENGINE_CPU_NS.load(Ordering::SeqCst) + main_cpu)
}

fn engine_runtime() -> tokio::runtime::Runtime {
    let engine_threads = std::env::var("BENCH_ENGINE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut builder = match engine_threads {
        0 => tokio::runtime::Builder::new_current_thread(),
        workers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    builder
        .thread_name("engine")
        .enable_all()
        .on_thread_start(|| ON_ENGINE.with(|e| e.set(true)))
        .on_thread_stop(|| {
            ENGINE_CPU_NS.fetch_add(thread_cpu_ns(), Ordering::SeqCst);
        })
        .build()
        .expect("engine runtime")
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let only = std::env::args().nth(2).unwrap_or_default();

    // (a) unlimited rate, concurrency 64.
    let sim_config = SimConfig {
        job_duration: DurationDist::Fixed(Duration::from_millis(500)),
        task_limit: 1000,
        ..SimConfig::default()
    };
    let run_config = RunConfig {
        concurrency: 64,
        max_active_jobs: 1000,
        submit_rate: f64::INFINITY,
        query_rate: f64::INFINITY,
        poll_interval: Duration::from_millis(
            std::env::var("BENCH_A_POLL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(250),
        ),
        job_timeout: Duration::from_secs(600),
    };
    if only.is_empty() || only == "a" {
        let a = scenario(n, sim_config, run_config);
        println!("(a) {n} images, unlimited rate, concurrency 64, 0.5 s jobs");
        println!(
            "  wall                 {:.2} s = {:.0} images/s",
            a.wall.as_secs_f64(),
            n as f64 / a.wall.as_secs_f64()
        );
        print_common(n, &a);
    }
    if only != "a" && only != "client" {
        // (b) 200 registrations/s, 2 s jobs, 1,000 active jobs.
        let (rate, active, duration) = (200.0, 1000.0, 2.0);
        let sim_config = SimConfig {
            job_duration: DurationDist::Fixed(Duration::from_secs_f64(duration)),
            task_limit: active as usize,
            ..SimConfig::default()
        };
        let run_config = RunConfig {
            concurrency: 64,
            max_active_jobs: active as u32,
            submit_rate: rate,
            query_rate: 50.0,
            poll_interval: Duration::from_millis(500),
            job_timeout: Duration::from_secs(600),
        };
        let b = scenario(n, sim_config, run_config);
        let floor = n as f64 / f64::min(rate, active / duration) + duration;
        println!("(b) {n} images, submit_rate {rate}/s, {duration} s jobs, {active} active jobs");
        println!(
            "  wall                 {:.2} s, floor {floor:.2} s: {:+.2} % over",
            b.wall.as_secs_f64(),
            (b.wall.as_secs_f64() / floor - 1.0) * 100.0
        );
        println!(
            "  max register calls in any 1 s window: {} as sent, {} as received by the simulator (rate {rate})",
            SimStats::max_in_window(&b.sent_ms, 1000.0),
            SimStats::max_in_window(&b.stats.register_requests_ms, 1000.0)
        );
        let calls = &b.stats.register_requests_ms;
        if let Some(path) = std::env::var_os("BENCH_DUMP_REGISTER_MS") {
            let text: Vec<String> = calls.iter().map(|t| format!("{t:.3}")).collect();
            let _ = std::fs::write(path, text.join("\n"));
        }
        if let (Some(first), Some(last)) = (calls.first(), calls.last()) {
            println!(
                "  register calls from {:.2} s to {:.2} s (simulator clock): {:.1} calls/s",
                first / 1000.0,
                last / 1000.0,
                (calls.len() - 1) as f64 * 1000.0 / (last - first)
            );
        }
        print_common(n, &b);
    }

    if only.is_empty() || only == "client" {
        let floor_cpu = client_floor(n);
        println!(
            "(c) the HTTP client alone, {n} register calls 64 at a time: {:.0} us/call",
            floor_cpu.as_secs_f64() * 1e6 / n as f64
        );
    }
    let (_, max_rss_kib) = rusage_ns(libc::RUSAGE_SELF);
    println!(
        "peak RSS (whole process, simulator included): {:.1} MiB",
        max_rss_kib as f64 / 1024.0
    );
}

/// The binary's jemalloc options (see `src/bin/imsreg/main.rs`).
#[unsafe(export_name = "_rjem_malloc_conf")]
static ALLOCATOR_OPTIONS: AllocatorOptions =
    AllocatorOptions(c"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0".as_ptr());

#[repr(transparent)]
struct AllocatorOptions(*const std::ffi::c_char);

// SAFETY: the pointer targets an immutable 'static C string literal.
unsafe impl Sync for AllocatorOptions {}
