#!/usr/bin/env python3
"""imsreg's performance suite: imsreg against the official Python SDK, and imsreg's scaling.

One command (from the repository root):

    python3 bench/run.py            # full: scenarios a, b, d (3 rounds each), c and e; ~30 min
    python3 bench/run.py --quick    # smoke test: 200 images, one round, c at 100 and 1,000
    python3 bench/run.py --scenarios bd --tools imsreg   # imsreg alone, the quota scenarios
    python3 bench/run.py --scenarios e --out bench/results/sizes   # scenario e only; ~7 min

It builds imsreg in release mode, creates a throw-away virtualenv (bench/.venv) with the pinned
official SDK, then for every run starts a fresh `imsreg simulate` on 127.0.0.1 (configs
bench/sim-*.yaml) knowing the manifest's images, runs one tool against it, and measures:
wall time, CPU (user+sys) and peak RSS of the tool's own process (via GNU time, else
os.wait4 on the child; the simulator is not counted), requests per image and 429 answers (from the simulator's
GET /_sim/stats). Scenarios:

  a  unlimited rate, 0.5 s jobs, 2,000 images; imsreg vs bench/peer_sdk.py, rounds alternating
  b  the simulator enforces 50 registers/s, both tools set to 50/s, 2 s jobs, 2,000 images
  c  imsreg alone at 100, 1,000, 10,000 and 100,000 images, 2 s jobs (the scaling curve)
  d  the simulator enforces 40 registers/s, 20 % below the 50/s both tools are set to, 2 s
     jobs, 2,000 images: the client must find the server's real rate

  e  size-aware scheduling: 1,000 images of 2-100 GiB (log-uniform, seeded), job time
     0.2 s per GiB, 40 active jobs (IMS's task limit): imsreg (preflight, largest first) against
     the lower bound max(sum of job times / 40, longest job), the same run in manifest order
     (--no-preflight), and the peer (40 workers, re-sending IMG.0060 after 0.5 s)

For b and d the table also shows the floor (images / the server's rate + one job), the worst
round's wall time against it, and the pace of the submission phase alone (registrations the
simulator accepted per second, first to last).

Results: a table on stdout, and in the output folder (bench/results, or bench/results/quick
with --quick): results.json (every run, with the simulator's per-API counts and the load
average), table.md, scaling.csv and scaling.svg.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BINARY = ROOT / "target" / "release" / "imsreg"
VENV = BENCH / ".venv"
SDK_VERSION = "3.1.219"

# The simulator's credentials (bench/sim-*.yaml); both tools read them from the environment.
CREDENTIALS = {
    "HUAWEICLOUD_SDK_AK": "IMSREGSIMULATORAK00",
    "HUAWEICLOUD_SDK_SK": "imsreg-simulator-secret-key",
    "HUAWEICLOUD_SDK_PROJECT_ID": "0123456789abcdef0123456789abcdef",
}

# Scenario settings. The peer's only knobs are its 16 threads, 2 s polls and --rate.
SCENARIOS = {
    "a": {
        "title": "(a) unlimited rate, 0.5 s jobs",
        "sim": "sim-unlimited.yaml",
        # a-d measure the IMS side, as the peer has no preflight; e measures it with one.
        "imsreg": ["--concurrency", "16", "--submit-rate", "1000000", "--query-rate", "1000000",
                   "--max-active-jobs", "100000", "--poll-interval", "2s", "--no-preflight"],
        # imsreg's bulk status sweeps cost about one list request per interval whatever the
        # number of jobs, so polling faster is cheap for it (not for the peer's ShowJob loop).
        # The state journal fsyncs every accepted job ID and every outcome; the no-state
        # variant shows what that durability costs.
        "variants": {"imsreg-poll-500ms": ["--poll-interval", "500ms"],
                     "imsreg-no-state": ["--no-state"]},
        "peer": [],
    },
    "b": {
        "title": "(b) quota-bound: 50 registers/s enforced, 2 s jobs",
        "sim": "sim-quota.yaml",
        "imsreg": ["--concurrency", "16", "--submit-rate", "50", "--max-active-jobs", "200",
                   "--poll-interval", "2s", "--no-preflight"],
        "peer": ["--rate", "50"],
        "server_rate": 50, "job_s": 2,
    },
    "d": {
        "title": "(d) server limit 20 % below the set rate: 40 registers/s enforced, tools at 50/s, 2 s jobs",
        "sim": "sim-quota-low.yaml",
        "imsreg": ["--concurrency", "16", "--submit-rate", "50", "--max-active-jobs", "200",
                   "--poll-interval", "2s", "--no-preflight"],
        "peer": ["--rate", "50"],
        "server_rate": 40, "job_s": 2,
    },
    "e": {
        "title": "(e) size-aware scheduling: 2-100 GiB images, 0.2 s per GiB, 40 active jobs",
        "sim": "sim-sizes.yaml",
        "sized": True,
        "imsreg": ["--region", "ap-southeast-1", "--concurrency", "32", "--submit-rate", "1000",
                   "--query-rate", "200", "--max-active-jobs", "40", "--poll-interval", "100ms",
                   "--obs-rate", "2000"],
        "variants": {"imsreg-manifest-order": ["--no-preflight"]},
        "peer": ["--workers", "40", "--poll-interval", "0.5", "--retry-busy", "0.5"],
    },
    "c": {
        "title": "(c) imsreg scaling, 2 s jobs",
        "sim": "sim-scaling.yaml",
        "imsreg": ["--concurrency", "16", "--submit-rate", "1000000", "--query-rate", "100",
                   "--max-active-jobs", "4000", "--poll-interval", "2s", "--no-preflight"],
    },
}

KINDS = [("web", "qcow2"), ("db", "vhd"), ("app", "vmdk"), ("win", "vhdx"), ("batch", "zvhd2"),
         ("ledger", "raw")]


def log(message):
    print(message, file=sys.stderr, flush=True)


def write_manifest(path, count, tag):
    """A valid manifest of `count` images; `tag` (0-65535) makes the IDs of one image set."""
    lines = ["# Generated by bench/run.py", "version: 1", "images:"]
    for i in range(count):
        kind, ext = KINDS[i % len(KINDS)]
        lines.append(f"  - image_id: b3c4e5f6-{tag:04x}-4a2b-9c3d-{i:012x}")
        lines.append(f"    image_url: bench-images-{i % 7:02d}:exports/{kind}/{kind}-{i:06d}.{ext}")
        if i % 3 == 0:
            lines.append(f"    name: {kind}-{i:06d}")
    Path(path).write_text("\n".join(lines) + "\n")


# Scenario e: sizes (GiB) drawn log-uniform from MIN_GIB to MAX_GIB, job time SECONDS_PER_GIB
# per GiB (bench/sim-sizes.yaml's job_duration_per_gib), at most SLOTS jobs at once.
MIN_GIB, MAX_GIB, SECONDS_PER_GIB, SLOTS = 2, 100, 0.2, 40


def sized_manifest(path, count, tag):
    """A manifest whose object keys carry their size (`-037gib`), which `imsreg simulate
    --images` turns into objects of that size; answers the sizes in manifest order."""
    import math
    import random
    rng = random.Random(1000 + tag)
    sizes = [max(MIN_GIB, min(MAX_GIB, round(math.exp(rng.uniform(math.log(MIN_GIB),
                                                                       math.log(MAX_GIB))))))
             for _ in range(count)]
    lines = ["# Generated by bench/run.py (scenario e)", "version: 1", "images:"]
    for i, gib in enumerate(sizes):
        kind, ext = KINDS[i % len(KINDS)]
        lines.append(f"  - image_id: d3c4e5f6-{tag:04x}-4a2b-9c3d-{i:012x}")
        lines.append(f"    image_url: bench-sized:exports/{kind}/{kind}-{i:06d}-{gib:03d}gib.{ext}")
    Path(path).write_text("\n".join(lines) + "\n")
    return sizes


def list_schedule(jobs, slots):
    """How long `jobs` (seconds, in start order) take on `slots` slots, each job starting as
    soon as a slot is free (what the engine does under max_active_jobs)."""
    import heapq
    free = [0.0] * slots
    for job in jobs:
        heapq.heapreplace(free, free[0] + job)
    return max(free)


def schedule_figures(sizes):
    jobs = [gib * SECONDS_PER_GIB for gib in sizes]
    return {
        "total_gib": sum(sizes),
        "lower_bound_s": max(sum(jobs) / SLOTS, max(jobs)),
        "replay_largest_first_s": list_schedule(sorted(jobs, reverse=True), SLOTS),
        "replay_manifest_order_s": list_schedule(jobs, SLOTS),
    }


def build():
    log("building imsreg (release)...")
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "imsreg"], cwd=ROOT,
                   check=True)


def venv_python():
    """bench/.venv with the pinned SDK (created on first use, reused afterwards)."""
    python = VENV / "bin" / "python"
    probe = "import huaweicloudsdkcore, huaweicloudsdkims, yaml"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        pip = subprocess.run([python, "-m", "pip", "show", "huaweicloudsdkims"], capture_output=True,
                             text=True).stdout
        if f"Version: {SDK_VERSION}" in pip:
            return python
    log(f"creating {VENV} with huaweicloudsdkcore/huaweicloudsdkims {SDK_VERSION}...")
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"huaweicloudsdkcore=={SDK_VERSION}", f"huaweicloudsdkims=={SDK_VERSION}"],
                   check=True)
    return python


class Simulator:
    """A fresh `imsreg simulate` on a free loopback port, knowing the manifest's images."""

    def __init__(self, config, manifest, workdir):
        env = dict(os.environ, **CREDENTIALS)
        self.stderr = open(Path(workdir) / "sim.stderr", "w")
        self.proc = subprocess.Popen(
            [BINARY, "simulate", "--listen", "127.0.0.1:0", "--config", BENCH / config,
             "--images", manifest],
            stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True)
        first = self.proc.stdout.readline().strip()
        if not first.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"imsreg simulate said {first!r}; see {self.stderr.name}")
        self.url = first[len("listening on "):]
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stats(self):
        with urllib.request.urlopen(self.url + "/_sim/stats", timeout=60) as answer:
            return json.load(answer)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


def run_child(cmd, env, workdir):
    """Runs one tool and measures its own process: wall, CPU (user+sys), peak RSS.

    ru_maxrss of a child forked by this (large) Python process would start at this process's
    peak RSS (Linux carries the pre-exec high-water mark over exec), so when GNU time is
    installed the tool is started by it (a process of ~2 MiB) and its figures are taken;
    otherwise os.wait4 on the child (CPU is right; RSS is at least this runner's).
    """
    load_before = os.getloadavg()[0]
    measured = workdir / "rusage"
    if GNU_TIME:
        cmd = [GNU_TIME, "-o", str(measured), "-f", "%U %S %M", *cmd]
    with open(workdir / "stdout", "w") as out, open(workdir / "stderr", "w") as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=workdir)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    user, system, max_rss_kib = usage.ru_utime, usage.ru_stime, usage.ru_maxrss
    if GNU_TIME:
        try:
            last = measured.read_text().strip().splitlines()[-1].split()
            user, system, max_rss_kib = float(last[0]), float(last[1]), int(last[2])
        except (OSError, IndexError, ValueError):
            log(f"  WARNING: no figures from GNU time in {measured}")
    return {
        "exit_code": proc.returncode,
        "wall_s": wall,
        "user_s": user,
        "sys_s": system,
        "cpu_s": user + system,
        "max_rss_mib": max_rss_kib / 1024.0,  # KiB on Linux
        "rss_source": "GNU time" if GNU_TIME else "wait4 (includes the runner's peak)",
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def max_in_window(times_ms, window_ms=1000.0):
    times, most, first = sorted(times_ms), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window_ms:
            first += 1
        most = max(most, last - first + 1)
    return most


def run_once(tool, scenario, count, tag, python, keep):
    """One tool, one fresh simulator, one image set; returns the measured row."""
    spec = SCENARIOS[scenario]
    workdir = Path(tempfile.mkdtemp(prefix=f"imsreg-bench-{scenario}-{tool}-"))
    manifest = workdir / "manifest.yaml"
    figures = {}
    if spec.get("sized"):
        figures = schedule_figures(sized_manifest(manifest, count, tag))
    else:
        write_manifest(manifest, count, tag)
    sim = Simulator(spec["sim"], manifest, workdir)
    try:
        env = dict(os.environ, **CREDENTIALS)
        env.pop("OS_AUTH_TOKEN", None)
        if tool.startswith("imsreg"):
            env.setdefault("RUST_LOG", "info")
            flags = merge_flags(spec["imsreg"], spec.get("variants", {}).get(tool, []))
            state = [] if "--no-state" in flags else ["--state", workdir / "state.jsonl"]
            cmd = [BINARY, "run", manifest, "--endpoint", sim.url, "--no-progress",
                   "--report", workdir / "report.json", *state, *flags]
        else:
            cmd = [python, BENCH / "peer_sdk.py", manifest, "--endpoint", sim.url,
                   "--results", workdir / "results.json", *spec["peer"]]
        row = run_child([str(c) for c in cmd], env, workdir)
        stats = sim.stats()
        if keep:
            (workdir / "sim-stats.json").write_text(json.dumps(stats) + "\n")
    finally:
        sim.stop()
    row.update(tool=tool, scenario=scenario, images=count, **figures)
    if figures:
        row["over_bound_pct"] = 100.0 * (row["wall_s"] / figures["lower_bound_s"] - 1.0)
        row["obs_requests"] = sum(stats.get("obs", {}).get("requests", {}).values())
    row["succeeded"] = succeeded(tool, workdir)
    requests = stats["requests"]
    row["requests"] = requests
    row["requests_total"] = sum(requests.values())
    row["requests_per_image"] = row["requests_total"] / count
    row["throttled"] = stats["throttled"]
    row["accepted_registers"] = sum(stats["submissions"].values())
    row["resubmitted"] = sum(1 for n in stats["submissions"].values() if n > 1)
    row["max_registers_in_1s"] = max_in_window(stats["register_requests_ms"])
    accepted = sorted(stats.get("accepted_registers_ms", []))
    # The pace of the submission phase alone, without the status check before it and the
    # wait for the last jobs after it.
    row["accepted_per_s"] = ((len(accepted) - 1) / ((accepted[-1] - accepted[0]) / 1000.0)
                             if len(accepted) > 1 and accepted[-1] > accepted[0] else 0.0)
    row["max_running_jobs"] = stats["max_running_jobs"]
    row["images_per_s"] = count / row["wall_s"]
    row["cpu_ms_per_image"] = 1000.0 * row["cpu_s"] / count
    if row["succeeded"] != count or row["exit_code"] != 0:
        log(f"  WARNING: {tool} registered {row['succeeded']}/{count} images, exit "
            f"{row['exit_code']}; output kept in {workdir}")
    elif not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"  {scenario} {tool:17} {count:>6} images: {row['wall_s']:7.2f} s wall, "
        f"{row['cpu_s']:7.2f} s CPU, {row['max_rss_mib']:6.1f} MiB, "
        f"{row['requests_per_image']:.2f} req/image, {row['throttled']} x 429, "
        f"load {row['load_before']:.2f}")
    return row


def succeeded(tool, workdir):
    try:
        if tool.startswith("imsreg"):
            summary = json.loads((workdir / "report.json").read_text())["summary"]
            return summary["registered"] + summary["already_registered"]
        results = json.loads((workdir / "results.json").read_text())
        return sum(1 for r in results.values() if r["status"] == "SUCCESS")
    except (OSError, ValueError, KeyError):
        return 0


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def aggregate(rows, key):
    """Medians over the rounds, except 429s: the worst round (imsreg must show none)."""
    return max(r[key] for r in rows) if key == "throttled" else median(rows, key)


COLUMNS = [
    ("wall s", "wall_s", "{:.2f}"),
    ("images/s", "images_per_s", "{:.1f}"),
    ("CPU s", "cpu_s", "{:.2f}"),
    ("peak RSS MiB", "max_rss_mib", "{:.1f}"),
    ("requests/image", "requests_per_image", "{:.2f}"),
    ("429s (worst round)", "throttled", "{:.0f}"),
]


def floor_s(scenario, images):
    """The least wall time a quota allows: every image at the server's rate, then one job."""
    spec = SCENARIOS[scenario]
    return images / spec["server_rate"] + spec["job_s"] if "server_rate" in spec else None


def comparison_table(rows, scenario):
    """Markdown table: medians over the rounds per tool, then the peer/imsreg ratios; for a
    quota scenario also the worst round against the floor, and each round's wall and 429s."""
    tools = ["imsreg", *SCENARIOS[scenario].get("variants", {}), "peer"]
    groups = {t: [r for r in rows if r["scenario"] == scenario and r["tool"] == t] for t in tools}
    tools = [t for t in tools if groups[t]]
    if not tools:
        return ""
    floor = floor_s(scenario, groups[tools[0]][0]["images"])
    header = ["tool", "images", "rounds", "registered (worst round)"] + [c[0] for c in COLUMNS]
    if floor:
        header += ["worst wall s", "worst / floor", "accepted registers/s"]
    header.append("load avg")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for tool in tools:
        group = groups[tool]
        if not group:
            continue
        name = "official SDK (peer)" if tool == "peer" else tool
        cells = [name, str(group[0]["images"]), str(len(group)),
                 str(min(r["succeeded"] for r in group))]
        cells += [fmt.format(aggregate(group, key)) for _, key, fmt in COLUMNS]
        if floor:
            worst = max(r["wall_s"] for r in group)
            cells += [f"{worst:.2f}", f"{worst / floor:.3f}",
                      f"{median(group, 'accepted_per_s'):.1f}" if "accepted_per_s" in group[0] else ""]
        cells.append(f"{median(group, 'load_before'):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    for tool in tools:
        if tool == "peer" or "peer" not in groups or not groups["peer"]:
            continue
        ratios = [f"**peer / {tool}**", "", "", ""]
        for _, key, _ in COLUMNS:
            a, b = aggregate(groups["peer"], key), aggregate(groups[tool], key)
            ratios.append(f"**{a / b:.{1 if a >= b else 2}f}x**" if b else ("—" if not a else "∞"))
        ratios += [""] * (4 if floor else 1)
        lines.append("| " + " | ".join(ratios) + " |")
    if floor:
        lines.append(f"\nFloor: {floor:.1f} s. Each round (wall s / 429s / load avg):")
        for tool in tools:
            rounds = ", ".join(f"{r['wall_s']:.2f} / {r['throttled']} / {r['load_before']:.1f}"
                               for r in groups[tool])
            lines.append(f"- {tool}: {rounds}")
    return "\n".join(lines)


def sizes_table(rows):
    """Scenario e: each tool's wall against the lower bound and the ideal replays."""
    d = [r for r in rows if r["scenario"] == "e"]
    if not d:
        return ""
    first = d[0]
    lines = [
        f"{first['images']:,} images, {first['total_gib']:,} GiB; lower bound max(sum / {SLOTS}, "
        f"longest) = {first['lower_bound_s']:.1f} s; list-schedule replays: largest first "
        f"{first['replay_largest_first_s']:.1f} s, manifest order "
        f"{first['replay_manifest_order_s']:.1f} s",
        "",
        "| tool | rounds | registered (worst round) | wall s | over the bound | OBS requests | "
        "IMS requests/image | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tools = ["imsreg", *SCENARIOS["e"]["variants"], "peer"]
    for tool in tools:
        group = [r for r in d if r["tool"] == tool]
        if not group:
            continue
        name = {"imsreg": "imsreg (preflight, largest first)",
                "imsreg-manifest-order": "imsreg --no-preflight (manifest order)",
                "peer": "official SDK (peer, manifest order)"}.get(tool, tool)
        lines.append(
            f"| {name} | {len(group)} | {min(r['succeeded'] for r in group)} | "
            f"{median(group, 'wall_s'):.1f} | {median(group, 'over_bound_pct'):+.1f} % | "
            f"{median(group, 'obs_requests'):.0f} | {median(group, 'requests_per_image'):.2f} | "
            f"{median(group, 'load_before'):.1f} |")
    return "\n".join(lines)


def scaling_table(rows):
    scaling = [r for r in rows if r["scenario"] == "c"]
    header = ["images", "wall s", "images/s", "CPU s", "CPU ms/image", "peak RSS MiB",
              "requests/image", "429s", "load avg"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for r in scaling:
        lines.append(
            f"| {r['images']:,} | {r['wall_s']:.2f} | {r['images_per_s']:.0f} | {r['cpu_s']:.2f} | "
            f"{r['cpu_ms_per_image']:.3f} | {r['max_rss_mib']:.1f} | {r['requests_per_image']:.3f} | "
            f"{r['throttled']} | {r['load_before']:.1f} |")
    return "\n".join(lines)


def write_scaling_csv(rows, path):
    keys = ["images", "wall_s", "images_per_s", "cpu_s", "user_s", "sys_s", "cpu_ms_per_image",
            "max_rss_mib", "requests_per_image", "requests_total", "throttled", "load_before"]
    with open(path, "w") as f:
        f.write(",".join(keys) + "\n")
        for r in rows:
            if r["scenario"] == "c":
                f.write(",".join(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k])
                                 for k in keys) + "\n")


def write_scaling_svg(rows, path):
    """Four small log-x panels drawn by hand (no plotting library needed)."""
    import math

    data = [r for r in rows if r["scenario"] == "c"]
    if len(data) < 2:
        return
    panels = [("CPU per image (ms)", "cpu_ms_per_image"), ("peak RSS (MiB)", "max_rss_mib"),
              ("requests per image", "requests_per_image"), ("wall time (s)", "wall_s")]
    width, height, pw, ph, margin = 920, 300, 170, 190, 55
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">imsreg scaling '
           f'(simulator, 2 s jobs; x: images, log scale)</text>']
    xs = [r["images"] for r in data]
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    for n, (title, key) in enumerate(panels):
        left, top = margin + n * (pw + 55), 45
        ys = [r[key] for r in data]
        ymax = max(ys) * 1.15 or 1.0
        px = lambda x: left + (math.log10(x) - lo) / ((hi - lo) or 1) * pw  # noqa: E731
        py = lambda y: top + ph - y / ymax * ph  # noqa: E731
        out.append(f'<text x="{left + pw / 2}" y="{top - 10}" text-anchor="middle">{title}</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        for frac in (0.0, 0.5, 1.0):
            y = ymax * frac
            out.append(f'<text x="{left - 4}" y="{py(y) + 4}" text-anchor="end">{y:.3g}</text>')
        for x in xs:
            out.append(f'<text x="{px(x)}" y="{top + ph + 15}" text-anchor="middle">'
                       f'{x:,}</text>'.replace(",000</", "k</").replace(",000,000", "M"))
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
        for x, y in zip(xs, ys):
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="#1f77b4"/>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    version = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
        "python": platform.python_version(), "imsreg": version, "rustc": rustc,
        "sdk": f"huaweicloudsdkcore/huaweicloudsdkims {SDK_VERSION}",
    }


def merge_flags(base, extra):
    """`base` flags with those of `extra` replacing the same flag (`--flag value` or `--switch`)."""
    def pairs(flags):
        out, i = [], 0
        while i < len(flags):
            if i + 1 < len(flags) and not flags[i + 1].startswith("--"):
                out.append((flags[i], [flags[i + 1]]))
                i += 2
            else:
                out.append((flags[i], []))
                i += 1
        return out

    overridden = {name for name, _ in pairs(extra)}
    merged = [(n, v) for n, v in pairs(base) if n not in overridden] + pairs(extra)
    return [part for name, value in merged for part in [name, *value]]


def main():
    parser = argparse.ArgumentParser(description="imsreg vs the official SDK, and imsreg's scaling")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 200 images, one round, scaling at 100 and 1,000")
    parser.add_argument("--rounds", type=int, help="rounds of a, b and d (default 3; 1 with --quick)")
    parser.add_argument("--images", type=int, help="images in a, b and d (default 2,000; 200 with --quick)")
    parser.add_argument("--sizes", help="comma-separated sizes for c (default 100,1000,10000,100000)")
    parser.add_argument("--scenarios", default="abcde", help="which of a, b, c, d, e to run (default abcde)")
    parser.add_argument("--tools", default="",
                        help="comma-separated tools of a, b and d to run (imsreg, its variants, peer); "
                             "default all")
    parser.add_argument("--out", help="output folder (default bench/results, or bench/results/quick)")
    parser.add_argument("--from-results", metavar="JSON",
                        help="only print the tables (and rewrite CSV/SVG) from an earlier results.json")
    parser.add_argument("--keep", action="store_true",
                        help="keep every run's work folder (with the simulator's stats, sim-stats.json)")
    parser.add_argument("--no-build", action="store_true", help="use target/release/imsreg as it is")
    parser.add_argument("--imsreg-args", default="",
                        help="extra flags for every `imsreg run` (experiments), e.g. \"--no-state\"")
    args = parser.parse_args()

    for spec in SCENARIOS.values():
        spec["imsreg"] = merge_flags(spec["imsreg"], args.imsreg_args.split())
    rounds = args.rounds or (1 if args.quick else 3)
    images = args.images or (200 if args.quick else 2000)
    sizes = [int(s) for s in (args.sizes or ("100,1000" if args.quick else "100,1000,10000,100000")).split(",")]
    out = Path(args.out) if args.out else BENCH / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)

    if args.from_results:
        earlier = json.loads(Path(args.from_results).read_text())
        rows, info = earlier["runs"], earlier["machine"]
        rounds = max((len([r for r in rows if r["scenario"] == s and r["tool"] == "imsreg"])
                      for s in "abd"), default=1)
        images = next((r["images"] for r in rows if r["scenario"] in "abd"), images)
        args.scenarios = ""
        out = Path(args.from_results).parent
    else:
        if not args.no_build:
            build()
        wanted = {t for t in args.tools.split(",") if t}
        peer = set(args.scenarios) & set("abde") and (not wanted or "peer" in wanted)
        python = venv_python() if peer else None
        info = machine()
        log(f"machine: {info}")
        rows = []
    tag = 0
    for scenario in "abd":
        if scenario not in args.scenarios:
            continue
        log(SCENARIOS[scenario]["title"])
        for r in range(rounds):
            tag += 1  # a new image set each round; each run has a fresh simulator
            tools = ["imsreg", *SCENARIOS[scenario].get("variants", {}), "peer"]
            tools = [t for t in tools if not wanted or t in wanted]
            for tool in tools if r % 2 == 0 else reversed(tools):
                rows.append(run_once(tool, scenario, images, tag, python, args.keep))
    if "c" in args.scenarios:
        log(SCENARIOS["c"]["title"])
        for count in sizes:
            tag += 1
            rows.append(run_once("imsreg", "c", count, tag, python, args.keep))
    if "e" in args.scenarios:
        log(SCENARIOS["e"]["title"])
        count = 200 if args.quick else 1000
        tag += 1  # one image set (the same sizes) for every tool and round
        for r in range(1 if args.quick else args.rounds or 1):
            tools = ["imsreg", *SCENARIOS["e"]["variants"], "peer"]
            tools = [t for t in tools if not wanted or t in wanted]
            for tool in tools if r % 2 == 0 else reversed(tools):
                rows.append(run_once(tool, "e", count, tag, python, args.keep))

    sections = []
    for scenario in "abd":
        table = comparison_table(rows, scenario)
        if table:
            sections.append(f"{SCENARIOS[scenario]['title']}, {images:,} images "
                            f"(medians of {rounds} round(s)):\n\n{table}")
    if any(r["scenario"] == "c" for r in rows):
        sections.append(f"{SCENARIOS['c']['title']}:\n\n{scaling_table(rows)}")
        write_scaling_csv(rows, out / "scaling.csv")
        write_scaling_svg(rows, out / "scaling.svg")
    if any(r["scenario"] == "e" for r in rows):
        sections.append(f"{SCENARIOS['e']['title']}:\n\n{sizes_table(rows)}")
    text = "\n\n".join(sections)
    print(text)
    (out / "table.md").write_text(text + "\n")
    settings = {k: {"sim": v["sim"], "imsreg": v["imsreg"], "variants": v.get("variants"),
                    "peer": v.get("peer")}
                for k, v in SCENARIOS.items()}
    if args.from_results:
        return 0
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "settings": settings, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "runs": rows}, indent=1) + "\n")
    log(f"results in {out}")
    # The peer losing an image is a result; imsreg losing one is a failure of the run.
    failed = [r for r in rows if r["tool"] != "peer"
              and (r["succeeded"] != r["images"] or r["exit_code"] != 0)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
