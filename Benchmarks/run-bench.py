#!/usr/bin/env python3
"""Figures for the README's cold-start table: `thaw run` in the process sandbox.

For each corpus image (default py, perl, web) and its realistic start, with the origin a
directory store slowed by --origin-latency ms per request (default 20, an object store's
first-byte latency), each start on a fresh agent (empty L1, `--disk-cache 0`) and dropped page
caches (the Thaw binary and its shared libraries read back in, as they are resident on a worker
whose agent runs), the median of --runs:

  lazy      `thaw run` with no access record: only the chunks read are fetched;
  prefetch  `thaw run` after a recorded start: the record's chunks are fetched in parallel;
  relaid    after `thaw relayout`, which copies the blocks the recorded start read into a hot
            region: `thaw run` of the new manifest without its record (lazy) and with it
            (prefetch);
  full      the no-lazy-loading baseline: `thaw pull` of the whole image (16 fetches at once,
            the same latency), then `thaw run --image-file` on the local copy (still in the page
            cache after the download), whose own time is shown as well ("of which start");
  ceiling   the most any lazy start could gain over the full download: full / (the local-copy
            start + one origin round trip). A lazy start does all a local-copy start does (the
            manifest fetch included) and waits at least once more for the origin, for the
            chunk that holds the superblock;

with the wall time of each command (a process start, its agent, the sandbox and the handler),
and the bytes fetched from the origin against the image size. The same three for one image in
the microVM sandbox (--microvm-tag, TCG on hosts whose KVM cannot run stock guests; its root
disk is the agent's NBD export, or the local copy for the baseline).

    run-bench.py [--thaw PATH] [--corpus DIR] [--tags py,perl,web] [--runs 3]
                 [--origin-latency 20] [--microvm-tag py] [--microvm-runs 1] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw` and `scripts/build-guest.sh` (the microVM's
guest init). Needs root (namespaces, loop devices, mounts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import (DEFAULT_CORPUS, DEFAULT_THAW, MIB, BenchError, check_arguments, drop_caches_keeping, fmt, installation_files,
                      machine_line, run_in_work_directory, table)

# The start each corpus image's function makes: what a handler of that kind loads.
STARTS = {
    "py": ["python3", "-c", "import json, email, http.client, sys; print(json.dumps({'ok': True}))"],
    "perl": ["perl", "-MJSON", "-MDBI", "-MLWP::UserAgent", "-e", "print encode_json({ok => 1})"],
    "web": ["sh", "-c", "nginx -t 2>/dev/null; curl --version >/dev/null && echo '{\"ok\": true}'"],
}


class Bench:
    def __init__(self, args: argparse.Namespace, work: str):
        self.args = args
        self.work = work
        self.env = {**os.environ, "THAW_HOME": os.path.join(work, "home")}
        self.store_args = ["--store", os.path.join(work, "store"), "--keys", os.path.join(work, "keys")]
        self.resident = installation_files(args.thaw)

    def command(self, argv: list[str], what: str, cold: bool = True) -> tuple[float, subprocess.CompletedProcess]:
        if cold:
            drop_caches_keeping(self.resident)
        began = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        seconds = time.monotonic() - began
        if out.returncode != 0:
            raise BenchError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
        return seconds, out

    def push(self, tag: str) -> str:
        _, out = self.command([self.args.thaw, "push", f"oci:{self.args.corpus}/oci:{tag}", *self.store_args],
                              f"thaw push {tag}")
        for line in out.stdout.splitlines():
            if " as manifest " in line:
                return line.split(" as manifest ")[1].strip()
        raise BenchError(f"no manifest id in thaw push's output: {out.stdout[-400:]}")

    def run(self, tag: str, manifest: str, extra: list[str], cold: bool = True) -> tuple[float, dict]:
        argv = [self.args.thaw, "run", manifest, "--json", "--disk-cache", "0",
                "--origin-latency", str(self.args.origin_latency), *extra, *self.store_args, "--", *STARTS[tag]]
        seconds, out = self.command(argv, f"thaw run {tag}", cold)
        breakdown = json.loads(out.stderr.strip().splitlines()[-1])
        return seconds, breakdown

    def relayout(self, manifest: str) -> str:
        _, out = self.command([self.args.thaw, "relayout", manifest, *self.store_args], "thaw relayout")
        for line in out.stdout.splitlines():
            if " again as " in line:
                return line.split(" again as ")[1].split()[0]
        raise BenchError(f"no manifest id in thaw relayout's output: {out.stdout[-400:]}")

    def forget_record(self, manifest: str) -> None:
        for root, _, files in os.walk(os.path.join(self.work, "store")):
            if os.path.basename(os.path.dirname(root)) == "records" and manifest in files:
                os.remove(os.path.join(root, manifest))

    def image(self, tag: str, sandbox: list[str] | None = None, runs: int | None = None) -> list[str]:
        """One row: lazy, prefetch and full-download starts of `tag`, `runs` times each."""
        manifest = self.push(tag)
        runs = runs or self.args.runs
        sandbox = sandbox or []
        lazy, lazy_bytes, prefetch, prefetch_bytes, full, local = [], [], [], [], [], []
        size = 0
        for _ in range(runs):
            self.forget_record(manifest)
            seconds, b = self.run(tag, manifest, ["--no-record", *sandbox])
            lazy.append(seconds)
            lazy_bytes.append(b["bytesFromOrigin"])
            size = b["imageBytes"]
        self.run(tag, manifest, sandbox)  # records
        for _ in range(runs):
            seconds, b = self.run(tag, manifest, ["--no-record", *sandbox])
            if "prefetchChunks" not in b:
                raise BenchError(f"{tag}: the start after the recorded one did not prefetch")
            prefetch.append(seconds)
            prefetch_bytes.append(b["bytesFromOrigin"])
        relaid = self.relayout(manifest)
        hot, hot_bytes, hot_lazy, hot_lazy_bytes = [], [], [], []
        for _ in range(runs):
            seconds, b = self.run(tag, relaid, ["--no-record", *sandbox])
            if "prefetchChunks" not in b:
                raise BenchError(f"{tag}: the relaid image's start did not prefetch")
            hot.append(seconds)
            hot_bytes.append(b["bytesFromOrigin"])
        self.forget_record(relaid)
        for _ in range(runs):
            seconds, b = self.run(tag, relaid, ["--no-record", *sandbox])
            hot_lazy.append(seconds)
            hot_lazy_bytes.append(b["bytesFromOrigin"])
        copy = os.path.join(self.work, f"{tag}.ext4")
        for _ in range(runs):
            pull_seconds, _ = self.command([self.args.thaw, "pull", manifest, "-o", copy, "--concurrency", "16",
                                            "--origin-latency", str(self.args.origin_latency), *self.store_args],
                                           f"thaw pull {tag}")
            # The copy just downloaded is in the page cache, as it would be.
            seconds, _ = self.run(tag, manifest, ["--no-record", "--image-file", copy, *sandbox], cold=False)
            full.append(pull_seconds + seconds)
            local.append(seconds)
            os.remove(copy)
        m = statistics.median
        name = tag if not sandbox else f"{tag} (microvm)"
        return [name, fmt(size / MIB), fmt(m(lazy), 2), fmt(100 * m(lazy_bytes) / size), fmt(m(prefetch), 2),
                fmt(100 * m(prefetch_bytes) / size), fmt(m(hot_lazy), 2), fmt(100 * m(hot_lazy_bytes) / size),
                fmt(m(hot), 2), fmt(100 * m(hot_bytes) / size), fmt(m(full), 2), fmt(m(local), 2),
                fmt(m(full) / m(prefetch)) + "×", fmt(m(full) / m(hot)) + "×",
                fmt(m(full) / (m(local) + self.args.origin_latency / 1000)) + "×"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thaw", default=DEFAULT_THAW)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--tags", default="py,perl,web")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--origin-latency", type=float, default=20)
    parser.add_argument("--microvm-tag", default="py", help="image for the microVM row; empty skips it")
    parser.add_argument("--microvm-runs", type=int, default=1)
    parser.add_argument("--guest", default="/var/lib/thaw/vm/thaw-guest", help="the static guest init (scripts/build-guest.sh)")
    parser.add_argument("--work")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tags = [t for t in args.tags.split(",") if t]
    check_arguments(parser, tags + ([args.microvm_tag] if args.microvm_tag else []), STARTS,
                    "namespaces, loop devices and mounts", [args.thaw], "swift build -c release --product thaw")

    def body(work: str) -> None:
        bench = Bench(args, work)
        print(f"# Thaw cold starts (process sandbox)\n\n{machine_line()}; origin latency {args.origin_latency:g} ms "
              f"per request; median of {args.runs}\n", flush=True)
        rows = [bench.image(tag) for tag in tags]
        if args.microvm_tag:
            rows.append(bench.image(args.microvm_tag, ["--sandbox", "microvm", "--timeout", "300", "--guest", args.guest],
                                    args.microvm_runs))
        print(table(["image", "MiB", "lazy s", "fetched %", "prefetch s", "fetched %", "relaid lazy s", "fetched %",
                     "relaid prefetch s", "fetched %", "full download s", "of which start s", "full / prefetch",
                     "full / relaid prefetch", "ceiling"], rows))

    return run_in_work_directory(args, "thaw-run-bench-", body)

if __name__ == "__main__":
    sys.exit(main())
