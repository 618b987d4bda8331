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

taking turns (one of each kind, then again), each timed until the function's response arrives on `thaw run`'s standard output, which it
writes before its agent shuts down (a pull, until it exits), and again until `thaw run`
exited. A start is a process start, its agent, the sandbox and the handler. Also the bytes
fetched from the origin against the image size. The same for one image in the microVM sandbox (--microvm-tag, TCG on hosts whose KVM cannot run stock guests; its root
disk is the agent's NBD export, or the local copy for the baseline).

    run-bench.py [--thaw PATH] [--corpus DIR] [--tags py,perl,web] [--runs 3]
                 [--origin-latency 20] [--microvm-tag py] [--microvm-runs 1] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw --static-swift-stdlib --scratch-path .build/static`
(the default --thaw: a start execs `thaw` twice, and without the Swift runtime's 30 shared
libraries to load each exec takes some 12 ms instead of 18; the baseline's start uses the same
binary) and `scripts/build-guest.sh` (the microVM's guest init). Needs root (namespaces, loop
devices, mounts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from benchlib import (DEFAULT_CORPUS, MIB, REPO, BenchError, check_arguments, drop_caches_keeping, fmt, installation_files,
                      machine_line, run_in_work_directory, table)

# The thaw this benchmark runs: statically linked (see the module's doc), in a build directory
# of its own so that it does not replace the other benchmarks' build.
STATIC_THAW = os.path.join(REPO, ".build", "static", "release", "thaw")
STATIC_BUILD = "swift build -c release --product thaw --static-swift-stdlib --scratch-path .build/static"

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

    def command(self, argv: list[str], what: str, cold: bool = True,
                until_response: bool = False) -> tuple[float, float, subprocess.CompletedProcess]:
        """Runs `argv`; returns the seconds until its first output when `until_response`
        (`thaw run` writes the function's response, in one piece, as soon as it has it), else
        until it exits; the seconds until it exits; and what it wrote."""
        if cold:
            drop_caches_keeping(self.resident)
        began = time.monotonic()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))
        reader.start()
        first = os.read(process.stdout.fileno(), 1 << 20) if until_response else b""
        answered = time.monotonic() - began
        rest = process.stdout.read()
        process.wait()
        reader.join()
        exited = time.monotonic() - began
        out = subprocess.CompletedProcess(argv, process.returncode, (first + rest).decode(errors="replace"),
                                          (errors[0] if errors else b"").decode(errors="replace"))
        if out.returncode != 0:
            raise BenchError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
        return (answered if until_response else exited), exited, out

    def push(self, tag: str) -> str:
        _, _, out = self.command([self.args.thaw, "push", f"oci:{self.args.corpus}/oci:{tag}", *self.store_args],
                              f"thaw push {tag}")
        for line in out.stdout.splitlines():
            if " as manifest " in line:
                return line.split(" as manifest ")[1].strip()
        raise BenchError(f"no manifest id in thaw push's output: {out.stdout[-400:]}")

    def run(self, tag: str, manifest: str, extra: list[str], cold: bool = True) -> tuple[float, dict]:
        """One `thaw run`: the seconds until its response, and its breakdown (with the seconds
        until it exited, as "exitSeconds")."""
        argv = [self.args.thaw, "run", manifest, "--json", "--disk-cache", "0",
                "--origin-latency", str(self.args.origin_latency), *extra, *self.store_args, "--", *STARTS[tag]]
        seconds, exited, out = self.command(argv, f"thaw run {tag}", cold, until_response=True)
        if not out.stdout.strip():
            raise BenchError(f"thaw run {tag} wrote no response")
        breakdown = json.loads(out.stderr.strip().splitlines()[-1])
        breakdown["exitSeconds"] = exited
        return seconds, breakdown

    def relayout(self, manifest: str) -> str:
        _, _, out = self.command([self.args.thaw, "relayout", manifest, *self.store_args], "thaw relayout")
        for line in out.stdout.splitlines():
            if " again as " in line:
                return line.split(" again as ")[1].split()[0]
        raise BenchError(f"no manifest id in thaw relayout's output: {out.stdout[-400:]}")

    def record_path(self, manifest: str) -> str | None:
        """Where the store keeps `manifest`'s access record, if it has one."""
        for root, _, files in os.walk(os.path.join(self.work, "store")):
            if os.path.basename(os.path.dirname(root)) == "records" and manifest in files:
                return os.path.join(root, manifest)
        return None

    def take_record(self, manifest: str) -> tuple[str, bytes]:
        """Removes `manifest`'s record from the store and returns where it was and its bytes."""
        path = self.record_path(manifest)
        if path is None:
            raise BenchError(f"manifest {manifest} has no access record")
        with open(path, "rb") as file:
            data = file.read()
        os.remove(path)
        return path, data

    def image(self, tag: str, sandbox: list[str] | None = None, runs: int | None = None) -> tuple[list[str], list[str]]:
        """Two rows for `tag`, `runs` starts of each kind: the seconds until the response, with
        bytes fetched and speed-ups; and the seconds until `thaw run` exited."""
        manifest = self.push(tag)
        runs = runs or self.args.runs
        sandbox = sandbox or []
        kinds = ["lazy", "prefetch", "relaid lazy", "relaid prefetch", "local"]
        seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
        exits: dict[str, list[float]] = {kind: [] for kind in kinds}
        fetched: dict[str, list[int]] = {kind: [] for kind in kinds}
        size = 0

        def start(kind: str, image: str, extra: list[str], cold: bool = True, prefetched: bool = False) -> None:
            nonlocal size
            took, b = self.run(tag, image, ["--no-record", *extra, *sandbox], cold)
            if prefetched != ("prefetchChunks" in b):
                raise BenchError(f"{tag}: the {kind} start {'did not prefetch' if prefetched else 'prefetched'}")
            seconds[kind].append(took)
            exits[kind].append(b["exitSeconds"])
            fetched[kind].append(b["bytesFromOrigin"])
            size = b["imageBytes"]

        # Recorded once, and laid out again once; each record is then put back in the store only
        # for the starts that prefetch it. The kinds take turns, so that a machine getting
        # faster or slower during the run moves them all alike.
        self.run(tag, manifest, sandbox)
        relaid = self.relayout(manifest)
        records = {manifest: self.take_record(manifest), relaid: self.take_record(relaid)}

        def with_record(image: str, kind: str) -> None:
            path, data = records[image]
            with open(path, "wb") as file:
                file.write(data)
            try:
                start(kind, image, [], prefetched=True)
            finally:
                os.remove(path)

        copy = os.path.join(self.work, f"{tag}.ext4")
        pulls: list[float] = []
        for _ in range(runs):
            start("lazy", manifest, [])
            with_record(manifest, "prefetch")
            start("relaid lazy", relaid, [])
            with_record(relaid, "relaid prefetch")
            pull_seconds, _, _ = self.command([self.args.thaw, "pull", manifest, "-o", copy, "--concurrency", "16",
                                               "--origin-latency", str(self.args.origin_latency), *self.store_args],
                                              f"thaw pull {tag}")
            # The copy just downloaded is in the page cache, as it would be.
            start("local", manifest, ["--image-file", copy], cold=False)
            pulls.append(pull_seconds)
            os.remove(copy)
        m = statistics.median
        full = m([pull + local for pull, local in zip(pulls, seconds["local"])])
        full_exit = m([pull + local for pull, local in zip(pulls, exits["local"])])
        name = tag if not sandbox else f"{tag} (microvm)"
        answered = [name, fmt(size / MIB)]
        for kind in kinds[:4]:
            answered += [fmt(m(seconds[kind]), 2), fmt(100 * m(fetched[kind]) / size)]
        answered += [fmt(full, 2), fmt(m(seconds["local"]), 2), fmt(full / m(seconds["prefetch"])) + "×",
                     fmt(full / m(seconds["relaid prefetch"])) + "×"]
        exited = [name] + [fmt(m(exits[kind]), 2) for kind in kinds[:4]] + [fmt(full_exit, 2), fmt(m(exits["local"]), 2),
                                                                            fmt(full_exit / m(exits["relaid prefetch"])) + "×"]
        return answered, exited


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thaw", default=STATIC_THAW)
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
                    "namespaces, loop devices and mounts", [args.thaw], STATIC_BUILD)

    def body(work: str) -> None:
        bench = Bench(args, work)
        print(f"# Thaw cold starts (process sandbox)\n\n{machine_line()}; origin latency {args.origin_latency:g} ms "
              f"per request; median of {args.runs}\n", flush=True)
        rows = [bench.image(tag) for tag in tags]
        if args.microvm_tag:
            rows.append(bench.image(args.microvm_tag, ["--sandbox", "microvm", "--timeout", "300", "--guest", args.guest],
                                    args.microvm_runs))
        print("Seconds until the response:\n")
        print(table(["image", "MiB", "lazy s", "fetched %", "prefetch s", "fetched %", "relaid lazy s", "fetched %",
                     "relaid prefetch s", "fetched %", "full download s", "of which start s", "full / prefetch",
                     "full / relaid prefetch"], [answered for answered, _ in rows]))
        print("\nSeconds until thaw run exited (its agent shut down, its mounts gone):\n")
        print(table(["image", "lazy s", "prefetch s", "relaid lazy s", "relaid prefetch s", "full download s",
                     "of which start s", "full / relaid prefetch"], [exited for _, exited in rows]))

    return run_in_work_directory(args, "thaw-run-bench-", body)

if __name__ == "__main__":
    sys.exit(main())
