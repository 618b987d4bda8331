#!/usr/bin/env python3
"""Figures for the invoke service: the latency of warm and cold invocations through
`thaw serve-api`, the memory an idle instance holds, and a latency CDF per start kind (SVG).

Each corpus function (default py, perl and web) is created through the Lambda API with boto3,
its handler loading its runtime and then reading the event from standard input; the origin is a
directory store slowed by --origin-latency ms per request (default 20). Each invocation is a
boto3 `invoke`, timed by the client from request to the last byte of the answer, and its answer
is checked. The starts:

  warm        invocations --warm-gap s apart (default 0.2): the instance kept after the
              previous answer, its next handler already loaded and waiting (--warm-runs per
              function). Back to back (--warm-gap 0), the next handler is often still loading
              its runtime when the event comes, and that wait is part of the figure;
  cold        the service keeps nothing (keep-alive 0) and invocations come --cold-gap s
              apart: a new sandbox each time, on a worker whose agent has the image's chunks
              cached and its start recorded (--cold-runs per function);
  cold, empty worker  a fresh `thaw serve-api` per invocation with an empty L1 and dropped page
              caches (Thaw's own binary and libraries kept resident, as on a worker whose
              service runs): the image's recorded chunks are prefetched from the slow origin
              (--empty-runs per function).

The service lays each function's image out again after its first recorded cold start (its
default; `--no-relayout` turns it off), so the cold starts after that one serve the relaid
image, and the empty-worker starts prefetch its hot region.

Memory held per idle instance: a warm instance's processes (proportional set size) plus its
tmpfs, as `/metrics` reports it after the warm runs; a cold one holds nothing.

Then the same functions with `--sandbox microvm` (qemu under TCG here), where an instance is warm
(a VM restored from the function's snapshot ahead of its event), deduplicated (the snapshot in
the store, restored on demand) or cold (a boot). One service walks each function through its
states: a cold boot, after which the service snapshots it; the first restore, which records the
memory's working set; then --vm-warm-runs warm invocations, each waiting until the service has
restored the next VM ahead. A second service keeps no warm VMs (keep-alive 0): --vm-dedup-runs
restores from the snapshot it finds in the store. A third keeps nothing (keep-alive 0, no
deduplication): --vm-cold-runs boots. Memory held per idle instance: a warm VM's qemu
(proportional set size); a deduplicated instance holds no process, and the table gives what its
snapshot added to the store instead.

Then load (`thaw-bench load`, bounded in requests and time) on the same functions, with the
agent admitting --load-admission invocations at once (two per function): the capacity, as
goodput of that many clients back to back (closed loop), then Poisson arrivals (open loop) at
--load-factors times it, the rates mixed 50/30/20% across the functions. For each: requests,
answered, refused (429 at once), lost or mismatched, goodput and latency. --sections picks
parts: latency, load, microvm.

    api-bench.py [--thaw PATH] [--corpus DIR] [--tags py,perl,web] [--warm-runs 50]
                 [--warm-gap 0.2] [--cold-runs 10] [--empty-runs 5] [--cold-gap 1.0] [--origin-latency 20]
                 [--load-seconds 10] [--load-factors 0.5,1,1.5,2,3] [--load-admission 4]
                 [--vm-warm-runs 10] [--vm-dedup-runs 5] [--vm-cold-runs 3] [--guest PATH]
                 [--sections latency,load,microvm] [--svg PATH] [--vm-svg PATH] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw && swift build -c release --product thaw-bench`. Needs root (namespaces, loop devices,
mounts, FUSE) and boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import time
import urllib.request

from benchlib import (DEFAULT_CORPUS, DEFAULT_THAW, EVENT_HANDLERS, MIB, BenchError, check_arguments, drop_caches_keeping, fmt, free_port,
                      installation_files, machine_line, run_in_work_directory, table, wait_for_port)

STARTS = EVENT_HANDLERS
KEY_ID, SECRET = "AKIATHAWBENCH0000001", "thaw-bench-secret"
KINDS = ["warm", "cold", "cold, empty worker"]
COLORS = {"warm": "#d62728", "deduplicated": "#9467bd", "cold": "#1f77b4", "cold, empty worker": "#2ca02c"}


class Service:
    """One `thaw serve-api` process on a free port, with a boto3 client for it."""

    def __init__(self, bench: "Bench", extra: list[str]):
        import boto3
        from botocore.config import Config
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(bench.work, "api.log"), "a")
        argv = [bench.args.thaw, "serve-api", "--listen", f"127.0.0.1:{self.port}", "--credentials", bench.credentials,
                "--origin-latency", str(bench.args.origin_latency), "--cache-dir", os.path.join(bench.work, "cache"),
                "--max-instances-per-function", "1", *bench.store_args, *extra]
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=bench.env)
        try:
            wait_for_port(self.port, "thaw serve-api")
        except BenchError:
            self.stop()
            raise
        session = boto3.session.Session(aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1")
        self.client = session.client("lambda", endpoint_url=self.endpoint,
                                     config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                   read_timeout=120, connect_timeout=10))

    def invoke(self, name: str, n: int) -> tuple[float, str]:
        """Seconds to the whole answer, and how the service says it started."""
        payload = json.dumps({"n": n}).encode()
        began = time.perf_counter()
        answer = self.client.invoke(FunctionName=name, Payload=payload)
        body = answer["Payload"].read()
        seconds = time.perf_counter() - began
        if answer.get("FunctionError") or json.loads(body).get("event") != {"n": n}:
            raise BenchError(f"{name} answered {body[:300]!r} ({answer.get('FunctionError')})")
        return seconds, answer["ResponseMetadata"]["HTTPHeaders"].get("x-thaw-start", "?")

    def metrics(self) -> str:
        return urllib.request.urlopen(self.endpoint + "/metrics").read().decode()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Bench:
    def __init__(self, args: argparse.Namespace, work: str):
        self.args = args
        self.work = work
        self.env = {**os.environ, "THAW_HOME": os.path.join(work, "home")}
        self.store_args = ["--store", os.path.join(work, "store"), "--keys", os.path.join(work, "keys")]
        self.credentials = os.path.join(work, "api-credentials")
        with open(self.credentials, "w") as f:
            f.write(f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n")
        self.resident = installation_files(args.thaw)

    def create(self, service: Service, tag: str) -> None:
        service.client.create_function(
            FunctionName=tag, PackageType="Image", Role="arn:aws:iam::000000000000:role/thaw", Timeout=120,
            Code={"ImageUri": f"oci:{self.args.corpus}/oci:{tag}"}, ImageConfig={"EntryPoint": STARTS[tag]})

    def expect(self, start: str, wanted: str, tag: str) -> None:
        if start != wanted:
            raise BenchError(f"an invocation of {tag} meant to be {wanted} started {start}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


def cdf_svg(samples: dict[str, list[float]], title: str) -> str:
    """A latency CDF per start kind on a log time axis, as hand-written SVG."""
    width, height, left, right, top, bottom = 720, 420, 70, 200, 40, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for series in samples.values() for v in series]
    import math
    low = 10 ** math.floor(math.log10(min(values) * 1000))
    high = 10 ** math.ceil(math.log10(max(values) * 1000))

    def x(ms: float) -> float:
        return left + plot_w * (math.log10(ms) - math.log10(low)) / (math.log10(high) - math.log10(low))

    def y(fraction: float) -> float:
        return top + plot_h * (1 - fraction)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="24" font-size="14">{title}</text>']
    decade = low
    while decade <= high:
        parts.append(f'<line x1="{x(decade):.1f}" y1="{top}" x2="{x(decade):.1f}" y2="{top + plot_h}" stroke="#ddd"/>')
        label = f"{decade:g} ms" if decade < 1000 else f"{decade / 1000:g} s"
        parts.append(f'<text x="{x(decade):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{label}</text>')
        decade *= 10
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{left}" y1="{y(fraction):.1f}" x2="{left + plot_w}" y2="{y(fraction):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y(fraction) + 4:.1f}" text-anchor="end">{fraction:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 18}" text-anchor="middle">latency to the whole answer (log scale)</text>')
    parts.append(f'<text x="18" y="{top + plot_h / 2}" text-anchor="middle" transform="rotate(-90 18 {top + plot_h / 2})">'
                 'fraction of invocations</text>')
    for index, (kind, series) in enumerate(samples.items()):
        ordered = sorted(series)
        points = [(x(ordered[0] * 1000), y(0))]
        for i, value in enumerate(ordered):
            points.append((x(value * 1000), y(i / len(ordered))))
            points.append((x(value * 1000), y((i + 1) / len(ordered))))
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline fill="none" stroke="{COLORS[kind]}" stroke-width="2" points="{path}"/>')
        ly = top + 20 + index * 22
        parts.append(f'<line x1="{left + plot_w + 16}" y1="{ly}" x2="{left + plot_w + 40}" y2="{ly}" stroke="{COLORS[kind]}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w + 46}" y="{ly + 4}">{kind} (n={len(series)})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def run(args: argparse.Namespace, tags: list[str], bench: Bench) -> None:
    print(f"# Thaw invoke service (thaw serve-api)\n\n{machine_line()}; origin latency "
          f"{args.origin_latency:g} ms per request; client-side latency to the whole answer\n", flush=True)
    sections = args.sections.split(",")
    if "latency" in sections:
        latency(args, tags, bench)
    if "load" in sections:
        load(args, tags, bench)
    if "microvm" in sections:
        microvm(args, tags, bench)


VM_KINDS = ["warm", "deduplicated", "cold"]


def metric(text: str, pattern: str) -> float:
    found = re.search("^" + pattern + r" (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for_metric(service: Service, pattern: str, at_least: float, what: str, seconds: float = 300) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = metric(service.metrics(), pattern)
        if value >= at_least:
            return value
        time.sleep(0.2)
    raise BenchError(f"{what} did not happen within {seconds:.0f} s")


def microvm(args: argparse.Namespace, tags: list[str], bench: Bench) -> None:
    samples: dict[str, dict[str, list[float]]] = {tag: {kind: [] for kind in VM_KINDS} for tag in tags}
    first: dict[str, tuple[float, float]] = {}
    warm_bytes: dict[str, float] = {}
    stored: dict[str, float] = {}
    vm = ["--sandbox", "microvm", "--guest", args.guest, "--max-instances-per-function", "1"]
    warm_pattern = r'thaw_api_instances\{state="warm"\}'

    for tag in tags:
        # A service per function, so that no other function's VM runs beside its figures.
        service = Service(bench, [*vm, "--keep-alive", "600", "--keep-dedup", "600"])
        try:
            bench.create(service, tag)
            cold, start = service.invoke(tag, 0)
            bench.expect(start, "cold", tag)
            stored[tag] = wait_for_metric(service, r"thaw_api_deduplicated_stored_bytes", 1, f"the snapshot of {tag}")
            restore, start = service.invoke(tag, 1)
            bench.expect(start, "deduplicated", tag)
            first[tag] = (cold, restore)
            for n in range(2, args.vm_warm_runs + 2):
                wait_for_metric(service, warm_pattern, 1, f"a warm VM of {tag}")
                time.sleep(0.5)
                seconds, start = service.invoke(tag, n)
                bench.expect(start, "warm", tag)
                samples[tag]["warm"].append(seconds)
            wait_for_metric(service, warm_pattern, 1, f"a warm VM of {tag}")
            time.sleep(1)
            text = service.metrics()
            warm_bytes[tag] = metric(text, r'thaw_api_idle_instance_bytes\{state="warm"\}') / max(1, metric(text, warm_pattern))
        finally:
            service.stop()

    service = Service(bench, [*vm, "--keep-alive", "0", "--keep-alive-min", "0", "--keep-alive-max", "0", "--keep-dedup", "600"])
    try:
        for tag in tags:
            for n in range(args.vm_dedup_runs):
                time.sleep(1)
                seconds, start = service.invoke(tag, n)
                bench.expect(start, "deduplicated", tag)
                samples[tag]["deduplicated"].append(seconds)
    finally:
        service.stop()

    service = Service(bench, [*vm, "--keep-alive", "0", "--keep-alive-min", "0", "--keep-alive-max", "0",
                              "--keep-dedup", "0", "--keep-dedup-min", "0", "--keep-dedup-max", "0"])
    try:
        for tag in tags:
            for n in range(args.vm_cold_runs):
                time.sleep(1)
                seconds, start = service.invoke(tag, n)
                bench.expect(start, "cold", tag)
                samples[tag]["cold"].append(seconds)
    finally:
        service.stop()

    print("\n## microVM instances (--sandbox microvm, TCG)\n")
    rows = []
    for tag in tags:
        for kind in VM_KINDS:
            series = samples[tag][kind]
            held = {"warm": fmt(warm_bytes[tag] / MIB, 1) + " MiB", "deduplicated": f"0 (store: {fmt(stored[tag] / MIB, 1)} MiB)",
                    "cold": "0"}[kind]
            rows.append([tag, kind, str(len(series)), fmt(statistics.median(series) * 1000, 1),
                         fmt(percentile(series, 0.99) * 1000, 1), held])
    print(table(["function", "start", "n", "p50 ms", "p99 ms", "held per idle instance"], rows))
    print("\nFirst start of each function: " + "; ".join(
        f"{tag} cold boot {first[tag][0]:.2f} s, first restore (no record yet) {first[tag][1]:.2f} s" for tag in tags))
    merged = {kind: [v for tag in tags for v in samples[tag][kind]] for kind in VM_KINDS}
    with open(args.vm_svg, "w") as f:
        f.write(cdf_svg(merged, f"microVM invocation latency by start kind ({', '.join(tags)}; TCG; origin {args.origin_latency:g} ms)"))
    print(f"\nCDF: {args.vm_svg}")
    for kind in VM_KINDS:
        series = merged[kind]
        print(f"{kind}: p50 {statistics.median(series) * 1000:.1f} ms, p99 {percentile(series, 0.99) * 1000:.1f} ms (n={len(series)})")


def load(args: argparse.Namespace, tags: list[str], bench: Bench) -> None:
    service = Service(bench, ["--max-concurrent-invocations", str(args.load_admission), "--max-instances-per-function", "2",
                              "--keep-alive", "600", "--keep-alive-min", "600"])

    def generate(extra: list[str]) -> dict:
        out = subprocess.run([args.thaw_bench, "load", "--endpoint", service.endpoint, "--key-id", KEY_ID, "--secret", SECRET,
                              "--timeout", "120", *extra], capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError(f"thaw-bench load failed: {out.stderr.strip()[-400:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    try:
        for tag in tags:
            try:
                bench.create(service, tag)
            except service.client.exceptions.ResourceConflictException:
                pass
        even = [part for tag in tags for part in ("--function", f"{tag}:1")]
        generate(["--closed", str(args.load_admission), "--seconds", "3", *even])  # instances made
        closed = generate(["--closed", str(args.load_admission), "--seconds", str(args.load_seconds), *even])
        capacity = closed["goodput"]
        shares = [0.5, 0.3, 0.2][:len(tags)]
        shares = [share / sum(shares) for share in shares]
        rows = [["closed loop", "-", str(closed["sent"]), str(closed["answered"]), str(closed["refused"]),
                 str(closed["failed"] + closed["mismatched"]), fmt(closed["goodput"], 1), fmt(closed["answer_p50_ms"], 1),
                 fmt(closed["answer_p99_ms"], 1), fmt(closed["refusal_p99_ms"], 1)]]
        for factor in [float(f) for f in args.load_factors.split(",") if f]:
            rates = [part for tag, share in zip(tags, shares) for part in ("--function", f"{tag}:{capacity * factor * share:.3f}")]
            result = generate(["--seconds", str(args.load_seconds), "--max-requests", "100000", *rates])
            rows.append([f"open loop {factor:g}×", fmt(capacity * factor, 1), str(result["sent"]), str(result["answered"]),
                         str(result["refused"]), str(result["failed"] + result["mismatched"]), fmt(result["goodput"], 1),
                         fmt(result["answer_p50_ms"], 1), fmt(result["answer_p99_ms"], 1), fmt(result["refusal_p99_ms"], 1)])
        print(f"\n## Load ({', '.join(tags)}; {args.load_admission} invocations at once, 2 per function; {args.load_seconds:g} s each)\n")
        print(table(["load", "offered /s", "sent", "answered", "refused", "lost or wrong", "goodput /s", "p50 ms", "p99 ms",
                     "refusal p99 ms"], rows))
    finally:
        service.stop()


def latency(args: argparse.Namespace, tags: list[str], bench: Bench) -> None:
    samples: dict[str, dict[str, list[float]]] = {tag: {kind: [] for kind in KINDS} for tag in tags}
    idle_bytes: dict[str, float] = {}

    # Warm: one service that keeps instances; the first invocation of each function is cold
    # and records its start, the rest are warm.
    service = Service(bench, [])
    try:
        for tag in tags:
            bench.create(service, tag)
            _, start = service.invoke(tag, 0)
            bench.expect(start, "cold", tag)
            time.sleep(0.5)
            for n in range(1, args.warm_runs + 1):
                time.sleep(args.warm_gap)
                seconds, start = service.invoke(tag, n)
                bench.expect(start, "warm", tag)
                samples[tag]["warm"].append(seconds)
            time.sleep(2)  # the instance measures itself 0.5 s after its next handler starts
            text = service.metrics()
            count = float(re.search(r'thaw_api_instances\{state="warm"\} (\S+)', text).group(1))
            held = float(re.search(r'thaw_api_idle_instance_bytes\{state="warm"\} (\S+)', text).group(1))
            idle_bytes[tag] = held / count if count else float("nan")
    finally:
        service.stop()

    # Cold on a worker with the image cached and recorded: nothing kept between invocations.
    service = Service(bench, ["--keep-alive", "0", "--keep-alive-min", "0", "--keep-alive-max", "0"])
    try:
        for tag in tags:
            for n in range(args.cold_runs):
                time.sleep(args.cold_gap)
                seconds, start = service.invoke(tag, n)
                bench.expect(start, "cold", tag)
                samples[tag]["cold"].append(seconds)
    finally:
        service.stop()

    # Cold on an empty worker: a fresh service, no L1, dropped page caches.
    for tag in tags:
        for n in range(args.empty_runs):
            subprocess.run(["rm", "-rf", os.path.join(bench.work, "cache")], check=True)
            drop_caches_keeping(bench.resident)
            service = Service(bench, ["--disk-cache", "0"])
            try:
                seconds, start = service.invoke(tag, n)
                bench.expect(start, "cold", tag)
                samples[tag]["cold, empty worker"].append(seconds)
            finally:
                service.stop()

    rows = []
    for tag in tags:
        for kind in KINDS:
            series = samples[tag][kind]
            memory = fmt(idle_bytes[tag] / MIB, 1) + " MiB" if kind == "warm" else "0"
            rows.append([tag, kind, str(len(series)), fmt(statistics.median(series) * 1000, 1),
                         fmt(percentile(series, 0.99) * 1000, 1), memory])
    print(table(["function", "start", "n", "p50 ms", "p99 ms", "held per idle instance"], rows))
    merged = {kind: [v for tag in tags for v in samples[tag][kind]] for kind in KINDS}
    with open(args.svg, "w") as f:
        f.write(cdf_svg(merged, f"Invocation latency by start kind ({', '.join(tags)}; origin {args.origin_latency:g} ms)"))
    print(f"\nCDF: {args.svg}")
    for kind in KINDS:
        series = merged[kind]
        print(f"{kind}: p50 {statistics.median(series) * 1000:.1f} ms, p99 {percentile(series, 0.99) * 1000:.1f} ms (n={len(series)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thaw", default=DEFAULT_THAW)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--tags", default="py,perl,web")
    parser.add_argument("--warm-runs", type=int, default=50)
    parser.add_argument("--warm-gap", type=float, default=0.2, help="seconds between warm invocations")
    parser.add_argument("--cold-runs", type=int, default=10)
    parser.add_argument("--empty-runs", type=int, default=5)
    parser.add_argument("--cold-gap", type=float, default=1.0, help="seconds between cold invocations (keep-alive is 0)")
    parser.add_argument("--origin-latency", type=float, default=20)
    parser.add_argument("--thaw-bench", default=os.path.join(os.path.dirname(DEFAULT_THAW), "thaw-bench"))
    parser.add_argument("--load-seconds", type=float, default=10)
    parser.add_argument("--load-factors", default="0.5,1,1.5,2,3")
    parser.add_argument("--load-admission", type=int, default=4)
    parser.add_argument("--vm-warm-runs", type=int, default=10)
    parser.add_argument("--vm-dedup-runs", type=int, default=5)
    parser.add_argument("--vm-cold-runs", type=int, default=3)
    parser.add_argument("--guest", default="/var/lib/thaw/vm/thaw-guest", help="the microVM guest init (scripts/build-guest.sh)")
    parser.add_argument("--sections", default="latency,load,microvm", help="which parts to run: latency, load, microvm")
    parser.add_argument("--svg", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                      "docs", "api-latency-cdf.svg"))
    parser.add_argument("--vm-svg", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                         "docs", "api-microvm-latency-cdf.svg"))
    parser.add_argument("--work")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tags = [t for t in args.tags.split(",") if t]
    check_arguments(parser, tags, STARTS, "namespaces, loop devices, mounts and FUSE", [args.thaw, args.thaw_bench],
                    "swift build -c release --product thaw && swift build -c release --product thaw-bench")
    if min(args.warm_runs, args.cold_runs, args.empty_runs) < 1:
        parser.error("--warm-runs, --cold-runs and --empty-runs must be at least 1")
    return run_in_work_directory(args, "thaw-api-bench-", lambda work: run(args, tags, Bench(args, work)))


if __name__ == "__main__":
    raise SystemExit(main())
