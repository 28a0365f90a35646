"""imsreg's metrics file read by the official Prometheus Python client's text parser.

Two runs of examples/demo.yaml, each with --metrics-file and a JSON report:
  1. `imsreg run --simulate` (every image registers): the file parses, its counts equal the
     report's, and the last success is the report's end;
  2. against `imsreg simulate` with server errors, 429s and failing jobs: the counts still equal
     the report's, and retries and 429s are non-zero; no last success (not all registered).

The parser (prometheus_client.parser.text_string_to_metric_families) is the one Prometheus's
Python ecosystem trusts for the text format 0.0.4; node_exporter's textfile collector reads the
same format. Usage: metrics_check.py path/to/imsreg
"""

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

STATUSES = [
    "registered",
    "already_registered",
    "failed",
    "invalid",
    "pending",
    "cancelled",
    "unreachable",
    "preflight_failed",
]

FAULTS = """\
seed: 11
job_duration: {min: 200ms, max: 600ms}
failure_fraction: 0.25
faults:
  error_500: 0.05
rate_limits:
  register: {rate: 3, burst: 1, retry_after: 1}
"""

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}")


def parse(path):
    """The file's families by name and its samples by (name, labels)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    check("# EOF" not in text, "Prometheus text 0.0.4, not OpenMetrics")
    families = {}
    samples = {}
    for family in text_string_to_metric_families(text):
        check(family.name not in families, f"{family.name} appears once")
        families[family.name] = family
        for sample in family.samples:
            check(sample.timestamp is None, f"{sample.name}: no timestamp (textfile collector)")
            key = (sample.name, tuple(sorted(sample.labels.items())))
            check(key not in samples, f"{key} appears once")
            samples[key] = sample.value
    return families, samples


def unix(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def compare(label, prom, report_path, expect_faults):
    families, samples = parse(prom)
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    summary, images = report["summary"], report["images"]
    region = report["settings"]["region"] or ""

    def value(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        check(key in samples, f"{label}: {name}{labels} exported")
        return samples.get(key, math.nan)

    def total(name):
        return sum(v for (n, _), v in samples.items() if n == name)

    types = {
        "imsreg_images": "gauge",
        # The parser names a counter's family without `_total`.
        "imsreg_registrations_submitted": "counter",
        "imsreg_retries": "counter",
        "imsreg_throttled": "counter",
        "imsreg_jobs_in_flight": "gauge",
        "imsreg_job_duration_seconds": "histogram",
        "imsreg_registered_bytes": "counter",
        "imsreg_run_start_timestamp_seconds": "gauge",
        "imsreg_last_progress_timestamp_seconds": "gauge",
        "imsreg_build_info": "gauge",
    }
    for name, kind in types.items():
        check(name in families, f"{label}: family {name}")
        if name in families:
            check(families[name].type == kind, f"{label}: {name} is a {kind}")

    for status in STATUSES:
        check(
            value("imsreg_images", status=status, region=region) == summary[status],
            f"{label}: imsreg_images{{status={status}}} equals the report's {summary[status]}",
        )
    check(value("imsreg_images", status="in_progress", region=region) == 0,
          f"{label}: nothing in progress at the end")
    check(total("imsreg_images") == summary["total"], f"{label}: images add up to the total")

    submitted = sum(1 for r in images if r["attempts"] > 0 and r["job_id"] is not None)
    check(value("imsreg_registrations_submitted_total") == submitted,
          f"{label}: submissions equal the report's accepted registrations ({submitted})")

    durations = [r["duration_s"] for r in images if r["duration_s"] is not None]
    check(value("imsreg_job_duration_seconds_count") == len(durations),
          f"{label}: one job duration per image with one ({len(durations)})")
    check(abs(value("imsreg_job_duration_seconds_sum") - sum(durations)) < 1e-6,
          f"{label}: job durations add up to the report's")
    check(value("imsreg_job_duration_seconds_bucket", le="+Inf") == len(durations),
          f"{label}: the +Inf bucket holds every duration")
    check(value("imsreg_job_duration_seconds_bucket", le="43200") == len(durations),
          f"{label}: the 12 h bucket holds every duration")

    registered_bytes = sum(r["size_bytes"] or 0 for r in images if r["status"] == "registered")
    check(registered_bytes > 0, f"{label}: the preflight knew sizes")
    check(value("imsreg_registered_bytes_total") == registered_bytes,
          f"{label}: bytes registered equal the report's ({registered_bytes})")

    check(value("imsreg_jobs_in_flight") == 0, f"{label}: no job in flight at the end")
    check(abs(value("imsreg_run_start_timestamp_seconds") - unix(report["started_at"])) < 1e-3,
          f"{label}: the run's start is the report's")
    check(value("imsreg_last_progress_timestamp_seconds")
          >= value("imsreg_run_start_timestamp_seconds"), f"{label}: progress after the start")
    check(value("imsreg_build_info", version=report["imsreg_version"]) == 1,
          f"{label}: build info names the version")

    manifest = os.path.basename(report["manifest"])
    successes = {dict(l)["manifest"]: v for (n, l), v in samples.items()
                 if n == "imsreg_last_success_timestamp_seconds"}
    if summary["registered"] + summary["already_registered"] == summary["total"]:
        check(manifest in successes and abs(successes[manifest] - unix(report["finished_at"])) < 1e-3,
              f"{label}: the last success is the report's end")
    else:
        check(manifest not in successes, f"{label}: no last success for a failed run")

    retries, throttled = total("imsreg_retries_total"), total("imsreg_throttled_total")
    for (name, labels), _ in samples.items():
        if name in ("imsreg_retries_total", "imsreg_throttled_total"):
            check(len(labels) == 1 and labels[0][0] == "api", f"{label}: {name} by api only")
    if expect_faults:
        check(retries > 0, f"{label}: retries counted ({retries})")
        check(throttled > 0, f"{label}: 429s counted ({throttled})")
        check(value("imsreg_throttled_total", api="register") > 0,
              f"{label}: register calls throttled")
    leftovers = [n for n in os.listdir(os.path.dirname(prom)) if n != os.path.basename(prom)]
    check(not leftovers, f"{label}: no temporary file left beside the metrics file: {leftovers}")
    print(f"{label}: {summary} retries={retries:g} throttled={throttled:g}")


def run(binary, args, env=None):
    done = subprocess.run([binary, "run", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode not in (0, 1):
        print(done.stderr)
    return done.returncode


def main():
    binary = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as work:
        # 1. The demo under --simulate: everything registers.
        os.mkdir(os.path.join(work, "a"))
        prom, report = os.path.join(work, "a", "imsreg.prom"), os.path.join(work, "a.json")
        code = run(binary, ["examples/demo.yaml", "--simulate", "--no-progress",
                            "--metrics-file", prom, "--report", report])
        check(code == 0, f"simulated demo exits 0, got {code}")
        compare("simulate", prom, report, expect_faults=False)

        # 2. The demo against a simulator that errs, throttles and fails some jobs.
        config = os.path.join(work, "faults.yaml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(FAULTS)
        sim = subprocess.Popen(
            [binary, "simulate", "--images", "examples/demo.yaml", "--config", config],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            first = sim.stdout.readline().strip()
            if not first.startswith("listening on "):
                raise AssertionError(f"unexpected first line from imsreg simulate: {first!r}")
            url = first.removeprefix("listening on ")
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": work,
                "HUAWEICLOUD_SDK_AK": "IMSREGSIMULATORAK00",
                "HUAWEICLOUD_SDK_SK": "imsreg-simulator-secret-key",
                "HUAWEICLOUD_SDK_PROJECT_ID": "0123456789abcdef0123456789abcdef",
            }
            os.mkdir(os.path.join(work, "b"))
            prom, report = os.path.join(work, "b", "imsreg.prom"), os.path.join(work, "b.json")
            code = run(binary, ["examples/demo.yaml", "--endpoint", url, "--obs-endpoint", url,
                                "--no-state", "--no-progress", "--poll-interval", "200ms",
                                "--metrics-file", prom, "--report", report], env=env)
            check(code == 1, f"the faulty run exits 1 (some failed), got {code}")
            compare("faults", prom, report, expect_faults=True)
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(timeout=30)

    print(f"metrics check: {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
