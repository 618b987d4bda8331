#!/usr/bin/env python3
"""Figures for the README's L2 section, over five real memcached nodes started here
(`memcached -I 2m`, loopback):

  coding    `thaw-bench erasure`: Reed-Solomon (k = 4, m = 1) encode and rebuild on one core;
  latency   `thaw-bench l2-latency`: chunk fetch latency p50, p99 and p99.9 for 4-of-5 coding,
            4-of-4 striping and a single whole copy, healthy and with one node stopped (SIGSTOP);
  start     `thaw run` of a corpus image (--tag, default py) with an empty L1 (a fresh agent,
            `--disk-cache 0`), served from the origin (a directory store slowed by
            --origin-latency ms per request) against served from a warm L2, without and with
            the prefetch of a recorded start; bytes from each tier and wall time, median of --runs.

    l2-bench.py [--thaw PATH] [--bench PATH] [--corpus DIR] [--tag py] [--runs 3]
                [--origin-latency 20] [--fetches 10000] [--phase-limit SECONDS] [--l2-timeout 200]
                [--only coding,latency,start] [--work DIR] [--keep]

Each latency phase runs --fetches fetches; with no node parity, a stopped node makes most
fetches wait out the node timeout, so the whole latency part takes about 35 minutes
(--phase-limit cuts each phase short, and the fetch count is printed).

Build first: `swift build -c release --product thaw && swift build -c release --product thaw-bench`. Needs root for the
start (namespaces, loop devices, mounts).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchlib import DEFAULT_CORPUS, DEFAULT_THAW, MIB, REPO, BenchError, fmt, free_port, machine_line, table, wait_for_port

DEFAULT_BENCH = os.path.join(REPO, ".build", "release", "thaw-bench")


def load_run_bench():
    """run-bench.py's `Bench` (push, run with a breakdown) and its starts; its name has a dash."""
    spec = importlib.util.spec_from_file_location("run_bench", os.path.join(REPO, "Benchmarks", "run-bench.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Memcached:
    """Five memcached nodes on free loopback ports, stopped (and resumed, if stopped) at exit."""

    def __init__(self, count: int = 5):
        self.ports = [free_port() for _ in range(count)]
        self.processes = [subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "root",
                                            "-m", "2048", "-I", "2m"]) for port in self.ports]
        for port in self.ports:
            wait_for_port(port, f"memcached on port {port}")

    @property
    def nodes(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def flush(self) -> None:
        for port in self.ports:
            subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'flush_all\\r\\nquit\\r\\n' >&3; cat <&3"],
                           capture_output=True, timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def bench_lines(argv: list[str], what: str) -> list[list[str]]:
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


def latency_rows(args, cluster: Memcached) -> list[list[str]]:
    rows = []
    argv = [args.bench, "l2-latency", cluster.nodes, str(cluster.processes[0].pid), str(args.fetches), str(args.l2_timeout)]
    if args.phase_limit:
        argv.append(str(args.phase_limit))
    lines = bench_lines(argv, "thaw-bench l2-latency")
    healthy_p99 = {}
    for words in lines:
        _, coding, state, *pairs = words
        values = dict(pair.split("=") for pair in pairs)
        p99 = int(values["p99"])
        if state == "healthy":
            healthy_p99[coding] = p99
        ratio = fmt(p99 / healthy_p99[coding], 2) + "×" if state != "healthy" and healthy_p99.get(coding) else ""
        rows.append([coding, state, values["fetches"], values["misses"], fmt(int(values["p50"]) / 1000, 2),
                     fmt(p99 / 1000, 2), fmt(int(values["p999"]) / 1000, 2), ratio])
    return rows


def start_rows(args, cluster: Memcached, work: str) -> list[list[str]]:
    run_bench = load_run_bench()
    bench = run_bench.Bench(argparse.Namespace(thaw=args.thaw, corpus=args.corpus, origin_latency=args.origin_latency), work)
    tag = args.tag
    manifest = bench.push(tag)
    l2 = ["--l2", cluster.nodes, "--l2-timeout", str(args.l2_timeout)]

    def row(name: str, extra: list[str], prefetch: bool) -> list[str]:
        seconds, origin, from_l2 = [], [], []
        size = 0
        for _ in range(args.runs):
            wall, b = bench.run(tag, manifest, ["--no-record", *extra])
            if prefetch != ("prefetchChunks" in b):
                raise BenchError(f"{name}: the start {'did not prefetch' if prefetch else 'prefetched'}")
            seconds.append(wall)
            origin.append(b["bytesFromOrigin"])
            from_l2.append(b.get("bytesFromL2", 0))
            size = b["imageBytes"]
        m = statistics.median
        return [name, fmt(m(seconds), 2), fmt(m(origin) / MIB), fmt(m(from_l2) / MIB), fmt(100 * (m(origin) + m(from_l2)) / size)]

    bench.forget_record(manifest)
    rows = [row("lazy, origin only", [], False)]
    cluster.flush()
    bench.run(tag, manifest, ["--no-record", *l2])  # fills L2 through write-back
    rows.append(row("lazy, warm L2", l2, False))
    bench.run(tag, manifest, [])  # records the start
    rows.append(row("prefetch, origin only", [], True))
    rows.append(row("prefetch, warm L2", l2, True))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thaw", default=DEFAULT_THAW)
    parser.add_argument("--bench", default=DEFAULT_BENCH)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--tag", default="py")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--origin-latency", type=float, default=20)
    parser.add_argument("--fetches", type=int, default=10_000)
    parser.add_argument("--phase-limit", type=int, help="seconds after which a latency phase stops early")
    parser.add_argument("--l2-timeout", type=int, default=200, help="ms an L2 node may take (thaw's default)")
    parser.add_argument("--only", default="coding,latency,start", help="parts to run, comma-separated")
    parser.add_argument("--work")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if not parts <= {"coding", "latency", "start"}:
        parser.error(f"--only takes coding, latency and start, not {args.only}")
    for path, product in ((args.thaw, "thaw"), (args.bench, "thaw-bench")):
        if not os.access(path, os.X_OK):
            parser.error(f"{path} is not built: swift build -c release --product {product}")
    if os.geteuid() != 0:
        parser.error("needs root for the start: namespaces, loop devices and mounts")
    if shutil.which("memcached") is None:
        parser.error("memcached is not installed (scripts/setup.sh test)")
    work = args.work or tempfile.mkdtemp(prefix="thaw-l2-bench-")
    os.makedirs(work, exist_ok=True)
    cluster = Memcached()
    status = 0
    print(f"# Thaw L2 cache\n\n{machine_line()}; five local memcached nodes\n", flush=True)
    try:
        if "coding" in parts:
            coding = dict((words[0], words[1]) for words in bench_lines([args.bench, "erasure", "3"], "thaw-bench erasure"))
            print(f"Reed-Solomon 4+1 on one core: encode {coding['rs-4+1-encode']} MB/s, "
                  f"rebuild with a data shard lost {coding['rs-4+1-rebuild']} MB/s\n", flush=True)
        if "latency" in parts:
            limit = f" or {args.phase_limit} s" if args.phase_limit else ""
            print(f"Fetch latency in ms, one fetch at a time, node timeout {args.l2_timeout} ms "
                  f"(a phase stops at {args.fetches} fetches{limit}):\n", flush=True)
            print(table(["coding", "nodes", "fetches", "misses", "p50", "p99", "p99.9", "p99 / healthy"],
                        latency_rows(args, cluster)) + "\n", flush=True)
        if "start" in parts:
            print(f"Start of {args.tag} with an empty L1, origin latency {args.origin_latency:g} ms, median of {args.runs}:\n",
                  flush=True)
            print(table(["start", "s", "origin MiB", "L2 MiB", "fetched % of image"], start_rows(args, cluster, work)))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
