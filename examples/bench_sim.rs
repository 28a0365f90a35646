//! Benchmark of the simulator alone: how many signed requests per second it serves over
//! loopback, so later benchmarks know it is not their bottleneck.
//!
//! Starts the simulator in-process with many queued images, then drives it with concurrent
//! clients for a few seconds per phase: signed `GET /v2/cloudimages?id=...` (the status
//! check), signed `GET /v1/{project}/jobs/{id}` (the poll), and signed `PUT .../upload`
//! (registrations, each image once). The clients share the machine with the server, so the
//! figures are a lower bound of what the server alone could do.
//!
//! `cargo run --release --example bench_sim [-- SECONDS_PER_PHASE CONCURRENCY]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use imsreg::ims::signer::{self, SigningInput};
use imsreg::sim::{DurationDist, SimConfig, SimHandle, Simulator};

struct Target {
    http: reqwest::Client,
    base: String,
    host: String,
    ak: String,
    sk: String,
    project_id: String,
}

impl Target {
    /// One signed call; the body of a 2xx answer, `None` otherwise.
    async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: String,
    ) -> Option<axum::body::Bytes> {
        let mut headers = vec![
            (
                "Content-Type".to_string(),
                "application/json;charset=UTF-8".to_string(),
            ),
            ("X-Project-Id".to_string(), self.project_id.clone()),
        ];
        signer::prepare_headers(&mut headers, &self.host, chrono::Utc::now());
        let signature = signer::sign(
            &SigningInput {
                method,
                path,
                query,
                headers: &headers,
                body: body.as_bytes(),
            },
            self.sk.as_bytes(),
            None,
        );
        headers.push((
            "Authorization".to_string(),
            signature.authorization(&self.ak),
        ));
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url = format!("{url}?{}", signer::canonical_query(query));
        }
        let method = method.parse().ok()?;
        let mut request = self.http.request(method, url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.bytes().await.ok()
    }
}

#[derive(Clone, Copy)]
enum Phase {
    ListById,
    ShowJob,
    Register,
}

async fn run_phase(
    target: Arc<Target>,
    phase: Phase,
    ids: Arc<Vec<String>>,
    jobs: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    seconds: f64,
    concurrency: usize,
) -> (u64, u64, f64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (target, ids, jobs, next) = (target.clone(), ids.clone(), jobs.clone(), next.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let success = match phase {
                    Phase::ListById => {
                        let query = vec![
                            ("__imagetype".to_string(), "private".to_string()),
                            ("id".to_string(), ids[n % ids.len()].clone()),
                        ];
                        target
                            .call("GET", "/v2/cloudimages", &query, String::new())
                            .await
                    }
                    Phase::ShowJob => {
                        let path =
                            format!("/v1/{}/jobs/{}", target.project_id, jobs[n % jobs.len()]);
                        target.call("GET", &path, &[], String::new()).await
                    }
                    Phase::Register => {
                        let Some(id) = ids.get(n) else { break };
                        let path = format!("/v1/cloudimages/{id}/upload");
                        let body = r#"{"image_url":"bench-bucket:images/disk.qcow2"}"#.to_string();
                        target.call("PUT", &path, &[], body).await
                    }
                };
                if success.is_some() { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

fn report(name: &str, (ok, failed, secs): (u64, u64, f64)) {
    println!(
        "{name:<40} {:>9.0} requests/s  ({ok} ok, {failed} failed, {secs:.1} s)",
        ok as f64 / secs
    );
}

/// Registers a few images so the show-job phase has real jobs to poll.
async fn seed_jobs(sim: &SimHandle, target: &Target) -> Vec<String> {
    let ids: Vec<String> = (0..100).map(|i| format!("job-seed-{i:03}")).collect();
    sim.add_images(ids.clone());
    let mut jobs = Vec::new();
    for id in &ids {
        let path = format!("/v1/cloudimages/{id}/upload");
        let body = r#"{"image_url":"bench-bucket:seed.vhd"}"#.to_string();
        if let Some(answer) = target.call("PUT", &path, &[], body).await
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&answer)
            && let Some(job) = value["job_id"].as_str()
        {
            jobs.push(job.to_string());
        }
    }
    jobs
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let image_count = 100_000;

    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let ids: Vec<String> = (0..image_count)
            .map(|i| {
                uuid::Uuid::from_u128(0x1000_0000_0000_4000_8000_0000_0000_0000 + i as u128)
                    .to_string()
            })
            .collect();
        let config = SimConfig {
            job_duration: DurationDist::Fixed(Duration::from_millis(200)),
            task_limit: usize::MAX,
            images: ids.clone(),
            ..SimConfig::default()
        };
        let sim = Simulator::start(config, "127.0.0.1:0".parse().expect("address")).expect("start");
        let credentials = sim.config().credentials.clone();
        let target = Arc::new(Target {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(concurrency)
                .build()
                .expect("http client"),
            base: sim.url(),
            host: sim.addr().to_string(),
            ak: credentials.ak.clone(),
            sk: credentials.sk.clone(),
            project_id: credentials.project_id.clone(),
        });
        let jobs = Arc::new(seed_jobs(&sim, &target).await);
        let ids = Arc::new(ids);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        println!(
            "simulator benchmark: {image_count} images, {concurrency} concurrent clients, \
             {seconds} s per phase, {cores} cores shared by clients and server"
        );
        for (name, phase) in [
            ("signed GET /v2/cloudimages?id=…", Phase::ListById),
            ("signed GET /v1/{project}/jobs/{job}", Phase::ShowJob),
            ("signed PUT …/upload (register)", Phase::Register),
        ] {
            let next = Arc::new(AtomicUsize::new(0));
            let result = run_phase(
                target.clone(),
                phase,
                ids.clone(),
                jobs.clone(),
                next,
                seconds,
                concurrency,
            )
            .await;
            report(name, result);
        }
        let stats = sim.stats();
        println!(
            "accepted registrations: {}, resubmitted images: {}, peak running jobs: {}",
            stats.accepted_registers(),
            stats.resubmitted().len(),
            stats.max_running_jobs
        );
        sim.shutdown().await;
    });
}
