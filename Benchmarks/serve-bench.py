#!/usr/bin/env python3
"""Figures for the README's performance section: how the worker agent serves an image.

1. Warm-cache throughput: `nbdcopy` from `thaw serve` (every chunk already in L1 memory)
   against `nbdkit file` serving the pulled raw image (in the page cache), in the same run,
   each copied --runs times to nbdcopy's null: destination; the median MB/s.
2. Sparsity: each image is served by a fresh `thaw agent --mount` (cold cache), its file attached with
   `losetup -r` and mounted as ext4, and a realistic start run in a chroot; the bytes fetched
   from the origin (origin fetches × chunk size, read-ahead included) against the image size.
   Then the same after `thaw relayout`, which copies the blocks a recorded start read into a
   hot region: the relaid image served with no record and no prefetch. Last, the blocks a
   recorded first start read (`thaw inspect --record`) priced in smaller fetch units and in a
   layout of whole files in first-read order (`--sections first_start_bounds` alone).
3. Prefetch: the same start twice, each in a fresh agent with an empty L1 and the origin
   slowed by --origin-latency ms per request. The first records what it read (`thaw started`);
   the second prefetches that record. Each time runs from the request to serve the manifest
   (`PUT /v1/images/ID` to an agent already running) to the end of the start's command. A
   third start serves the relaid image, prefetching the record `thaw relayout` gave it.

    serve-bench.py [--thaw PATH] [--corpus DIR] [--tags py,perl,web] [--throughput-tag py]
                   [--runs 3] [--origin-latency 20] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw`; `scripts/setup.sh test` installs nbdkit,
nbdcopy and the rest. Needs root (loop devices, mounts, chroot). Exit status is non-zero when
any step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from benchlib import (DEFAULT_CORPUS, DEFAULT_THAW, MIB, BenchError, check_arguments, fmt, run_in_work_directory, free_port, machine_line, table, tool_version,
                      wait_for, wait_for_port)

# What each corpus image's function does when it starts.
STARTS = {
    "py": ["python3", "-c", "import json, email, http.client"],
    "perl": ["perl", "-MJSON", "-MDBI", "-MLWP::UserAgent", "-e", "1"],
    "web": ["sh", "-c", "nginx -v && curl --version >/dev/null"],
    "base": ["sh", "-c", "ls -l / >/dev/null"],
    "slim": ["python3", "-c", "import json, email, http.client"],
}


def run(argv: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        raise BenchError(f"{what} failed ({out.returncode}): {(out.stderr or out.stdout).strip()[-800:]}")
    return out


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class Bench:
    def __init__(self, args: argparse.Namespace, work: str):
        self.args = args
        self.work = work
        self.thaw = args.thaw
        self.store = os.path.join(work, "store")
        self.keys = os.path.join(work, "keys")
        self.env = {**os.environ, "THAW_HOME": os.path.join(work, "home")}
        self.manifests: dict[str, str] = {}
        self.images: dict[str, str] = {}
        self.relaid_manifests: dict[tuple[str, int | None], str] = {}

    def store_args(self) -> list[str]:
        return ["--store", self.store, "--keys", self.keys]

    def push(self, tag: str) -> str:
        if tag not in self.manifests:
            out = run([self.thaw, "push", f"oci:{self.args.corpus}/oci:{tag}", "--chunk-size", str(self.args.chunk_size),
                       *self.store_args()],
                      f"thaw push {tag}", env=self.env)
            ids = [line.split(" as manifest ")[1].strip() for line in out.stdout.splitlines() if " as manifest " in line]
            if not ids:
                raise BenchError(f"cannot find the manifest id in thaw push's output: {out.stdout[-500:]}")
            self.manifests[tag] = ids[0]
        return self.manifests[tag]

    def pull(self, tag: str) -> str:
        if tag not in self.images:
            path = os.path.join(self.work, f"{tag}.raw")
            run([self.thaw, "pull", self.push(tag), "-o", path, *self.store_args()], f"thaw pull {tag}", env=self.env)
            self.images[tag] = path
        return self.images[tag]

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                env=self.env)

    @staticmethod
    def stop(process: subprocess.Popen, what: str) -> None:
        process.terminate()
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise BenchError(f"{what} did not stop within 60 s of SIGTERM")
        if status != 0:
            raise BenchError(f"{what} exited with {status} after SIGTERM")

    # ----------------------------------------------------------------------------------------
    # 1. Warm throughput

    def nbdcopy_mb_s(self, uri: str, size: int) -> float:
        started = time.perf_counter()
        run(["nbdcopy", uri, "null:"], f"nbdcopy {uri}")
        return size / (time.perf_counter() - started) / 1e6

    def throughput(self) -> str:
        tag = self.args.throughput_tag
        manifest = self.push(tag)
        raw = self.pull(tag)
        size = os.path.getsize(raw)
        thaw_port, nbdkit_port = free_port(), free_port()
        log = os.path.join(self.work, "serve.log")
        serve = self.spawn([self.thaw, "serve", manifest, "--nbd", f"127.0.0.1:{thaw_port}",
                            "--memory-cache", str(2 * size + (64 << 20)), "--disk-cache", "0", "--no-record",
                            *self.store_args()], log)
        nbdkit = self.spawn(["nbdkit", "-f", "-r", "-i", "127.0.0.1", "-p", str(nbdkit_port), "file", raw],
                            os.path.join(self.work, "nbdkit.log"))
        try:
            wait_for_port(thaw_port, "thaw serve")
            wait_for_port(nbdkit_port, "nbdkit")
            thaw_uri = f"nbd://127.0.0.1:{thaw_port}/{manifest}"
            nbdkit_uri = f"nbd://127.0.0.1:{nbdkit_port}/"
            # Warm both: every chunk into L1, the raw file into the page cache.
            self.nbdcopy_mb_s(thaw_uri, size)
            self.nbdcopy_mb_s(nbdkit_uri, size)
            thaw_runs, nbdkit_runs = [], []
            for _ in range(self.args.runs):  # interleaved, so both see the same machine
                thaw_runs.append(self.nbdcopy_mb_s(thaw_uri, size))
                nbdkit_runs.append(self.nbdcopy_mb_s(nbdkit_uri, size))
        finally:
            self.stop(serve, "thaw serve")
            nbdkit.terminate()
            nbdkit.wait()
        thaw_mb, nbdkit_mb = statistics.median(thaw_runs), statistics.median(nbdkit_runs)
        rows = [["thaw serve (warm L1)", fmt(thaw_mb, 0), " ".join(fmt(r, 0) for r in thaw_runs)],
                ["nbdkit file (page cache)", fmt(nbdkit_mb, 0), " ".join(fmt(r, 0) for r in nbdkit_runs)]]
        return (f"## Warm-cache throughput: nbdcopy of {tag} ({size / MIB:.0f} MiB) to null:, median of {self.args.runs}\n\n"
                + table(["server", "MB/s", "runs"], rows)
                + f"\n\nthaw / nbdkit: {thaw_mb / nbdkit_mb:.2f}x (goal: at least 0.8x)\n")

    # ----------------------------------------------------------------------------------------
    # 2 and 3. Starts through a FUSE mount

    def start(self, tag: str, latency_ms: float, record: bool, prefetch: bool, loop_readahead: int | None = None,
              read_ahead: int = 4, manifest: str | None = None) -> dict:
        """One cold start of `tag` on a fresh agent (empty L1, files shown in a FUSE directory):
        ask the agent to serve the manifest, attach its file and mount it, run the start in a
        chroot. The clock runs from the request to the end of the start's command; the agent was
        started before, as a worker's agent is. Returns the time and the agent's figures."""
        manifest = manifest or self.push(tag)
        fuse = os.path.join(self.work, "fuse")
        root = os.path.join(self.work, "root")
        os.makedirs(fuse, exist_ok=True)
        os.makedirs(root, exist_ok=True)
        control = free_port()
        log = os.path.join(self.work, f"agent-{tag}.log")
        options = ["--origin-latency", str(latency_ms), "--record-idle", "600", "--read-ahead", str(read_ahead)]
        options += [] if record else ["--no-record"]
        options += [] if prefetch else ["--no-prefetch"]
        agent = self.spawn([self.thaw, "agent", "--nbd", "none", "--control", f"127.0.0.1:{control}", "--mount", fuse,
                            "--disk-cache", "0", *options, *self.store_args()], log)
        image = os.path.join(fuse, manifest + ".ext4")
        loop = None
        mounted = False
        try:
            wait_for_port(control, f"thaw agent (log {log})")
            drop_caches()
            started = time.perf_counter()
            request = urllib.request.Request(f"http://127.0.0.1:{control}/v1/images/{manifest}", method="PUT")
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
            wait_for(lambda: os.path.exists(image), f"{image} (log {log})")
            loop = run(["losetup", "-r", "-f", "--show", image], "losetup").stdout.strip()
            if loop_readahead is not None:
                run(["blockdev", "--setra", str(loop_readahead * 2), loop], "blockdev --setra")
            run(["mount", "-o", "ro", "-t", "ext4", loop, root], "mount")
            mounted = True
            run(["chroot", root, *STARTS[tag]], f"the start of {tag}")
            seconds = time.perf_counter() - started
            if record:
                run([self.thaw, "started", manifest, "--agent", f"127.0.0.1:{control}"], "thaw started", env=self.env)
            stats = json.loads(run([self.thaw, "stats", "--agent", f"127.0.0.1:{control}", "--json"], "thaw stats",
                                   env=self.env).stdout)
        finally:
            if mounted:
                subprocess.run(["umount", root])
            if loop:
                subprocess.run(["losetup", "-d", loop])
            self.stop(agent, f"thaw agent ({tag})")
        figures = next(i for i in stats["images"] if i["id"] == manifest)
        figures["seconds"] = seconds
        return figures

    def chunk_size(self, tag: str) -> int:
        out = run([self.thaw, "inspect", self.push(tag), *self.store_args()], "thaw inspect", env=self.env).stdout
        for line in out.splitlines():
            if "chunk size" in line:
                return int(line.split("chunk size")[1].split("KiB")[0].strip()) * 1024
        raise BenchError("thaw inspect printed no chunk size")

    def record_path(self, manifest: str) -> str:
        return os.path.join(self.store, "roots", "r0001", "records", "default", manifest)

    def relaid(self, tag: str, loop_readahead: int | None = None) -> str:
        """The manifest `thaw relayout` makes of `tag` after one recorded start with the loop's
        readahead at `loop_readahead` KiB (None: the kernel's default); made once for each."""
        if (tag, loop_readahead) not in self.relaid_manifests:
            manifest = self.push(tag)
            if os.path.exists(self.record_path(manifest)):
                os.remove(self.record_path(manifest))
            self.start(tag, 0, record=True, prefetch=False, loop_readahead=loop_readahead)
            out = run([self.thaw, "relayout", manifest, *self.store_args()], "thaw relayout", env=self.env).stdout
            line = next((l for l in out.splitlines() if " again as " in l), None)
            if line is None:
                raise BenchError(f"no manifest id in thaw relayout's output: {out[-400:]}")
            self.relaid_manifests[(tag, loop_readahead)] = line.split(" again as ")[1].split()[0]
        return self.relaid_manifests[(tag, loop_readahead)]

    def sparsity(self) -> str:
        rows = []
        for tag in self.args.tags:
            size = 0
            # 16 KiB is the readahead `thaw run` gives its loop devices (--device-read-ahead).
            for loop_readahead, read_ahead in [(None, 4), (0, 4), (0, 0), (16, 4)]:
                figures = self.start(tag, 0, record=False, prefetch=False, loop_readahead=loop_readahead,
                                     read_ahead=read_ahead)
                reads = figures["reads"]
                fetched = reads["originFetches"] * self.chunk_size(tag)
                size = figures["size"]
                rows.append([tag, "default" if loop_readahead is None else f"{loop_readahead} KiB", str(read_ahead),
                             fmt(size / MIB), fmt(reads["bytesRead"] / MIB), fmt(fetched / MIB),
                             fmt(100 * fetched / size), str(reads["readAheadFetches"])])
            # Relaid after a start recorded with the same loop readahead as the start measured.
            for loop_readahead in [None, 16]:
                figures = self.start(tag, 0, record=False, prefetch=False, loop_readahead=loop_readahead,
                                     manifest=self.relaid(tag, loop_readahead))
                reads = figures["reads"]
                fetched = reads["originFetches"] * self.chunk_size(tag)
                rows.append([f"{tag}, relaid", "default" if loop_readahead is None else f"{loop_readahead} KiB", "4",
                             fmt(figures["size"] / MIB), fmt(reads["bytesRead"] / MIB),
                             fmt(fetched / MIB), fmt(100 * fetched / size), str(reads["readAheadFetches"])])
        starts = "\n".join(f"- {tag}: `{' '.join(STARTS[tag])}`" for tag in self.args.tags)
        starts += "\n\nA relaid image's fetched % is of the image as pushed (the hot region adds to its size)."
        return ("## Sparsity: bytes fetched from the origin by one cold start through FUSE and a loop mount\n\n"
                + starts + "\n\n"
                + table(["image", "loop readahead", "thaw read-ahead", "image MiB", "read MiB", "fetched MiB", "fetched %",
                         "read-ahead fetches"], rows)
                + "\n\n(goal: at most 10% fetched)\n\n" + self.first_start_bounds())

    # Smaller fetch units the first-start analysis prices the same reads at (KiB).
    PIECES = [64, 32, 16]

    def first_start_bounds(self) -> str:
        """What the first start of an image as pushed would fetch in other ways, from the blocks
        a start at 16 KiB loop readahead read (its access record, `thaw inspect --record`):
        in whole chunks (what the agent does), in smaller pieces, and with its files laid out
        whole in the order the start first read them (what a start-ordered file layout, such
        as eStargz's, does when it knows the start)."""
        rows = []
        for tag in self.args.tags:
            manifest = self.push(tag)
            # Recorded here, so that the record is this start's whatever ran before.
            if os.path.exists(self.record_path(manifest)):
                os.remove(self.record_path(manifest))
            self.start(tag, 0, record=True, prefetch=False, loop_readahead=16)
            inspected = json.loads(run([self.thaw, "inspect", manifest, "--record", "--json", *self.store_args()],
                                       "thaw inspect --record", env=self.env).stdout)
            size, chunk = inspected["imageSize"], inspected["chunkSize"]
            record = inspected["record"]
            order = list(dict.fromkeys(b for first, count in record["blocks"] for b in range(first, first + count)))
            # Zero chunks are never fetched: the pieces count only blocks in stored chunks, as
            # the whole-chunk column (the record's chunks) does.
            stored = set(record["chunks"])
            fetchable = [b for b in order if b * 4096 // chunk in stored]
            row = [tag, fmt(size / MIB), fmt(len(order) * 4096 / MIB), fmt(100 * len(order) * 4096 / size),
                   f"{len(stored)} × {chunk // 1024} KiB = {fmt(100 * len(stored) * chunk / size)}%"]
            for piece in self.PIECES:
                pieces = {b * 4096 // (piece * 1024) for b in fetchable}
                row.append(f"{len(pieces)} × {piece} KiB = {fmt(100 * len(pieces) * piece * 1024 / size)}%")
            files, touched = self.whole_file_layout(self.pull(tag), order, chunk)
            row += [str(files), f"{touched} × {chunk // 1024} KiB = {fmt(100 * touched * chunk / size)}%"]
            rows.append(row)
        return ("## The first start of an image as pushed, fetched in other ways (its blocks read at 16 KiB loop readahead)\n\n"
                + table(["image", "image MiB", "read MiB", "read %", "whole chunks", *[f"{p} KiB pieces" for p in self.PIECES],
                         "files read", "whole files, first-read order"], rows)
                + "\n\nEach way is priced as fetches × unit, one fetch per unit the reads touch: a smaller unit "
                  "fetches less but makes more round trips. 'Whole files, first-read order' lays every file the start "
                  "read whole, one after another in the order the start first read them, after the metadata blocks it "
                  "read, and counts the chunks the same reads touch there.\n")

    @staticmethod
    def whole_file_layout(image: str, order: list[int], chunk: int) -> tuple[int, int]:
        """Lays the files that own `order`'s blocks (`debugfs icheck`) out whole, in the order
        first read, after the metadata blocks read (any block `debugfs blocks` does not list as
        a file's data: inode tables, bitmaps, extent-tree and xattr blocks), and returns how many
        files that is and how many chunks the blocks of `order` then lie in."""
        owners: dict[int, int | None] = {}
        for start in range(0, len(order), 2000):
            batch = order[start:start + 2000]
            out = run(["debugfs", "-R", "icheck " + " ".join(map(str, batch)), image], "debugfs icheck").stdout
            for line in out.splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 2 and fields[0].isdigit():
                    owners[int(fields[0])] = int(fields[1]) if fields[1].isdigit() else None
        missing = [b for b in order if b not in owners]
        if missing:
            raise BenchError(f"debugfs icheck did not answer for {len(missing)} blocks, the first {missing[0]}")
        inodes = list(dict.fromkeys(owners[b] for b in order if owners[b] is not None))
        script = os.path.join(os.path.dirname(image), "debugfs-blocks.cmd")
        with open(script, "w") as f:
            f.writelines(f"blocks <{i}>\n" for i in inodes)
        # One line per inode: its data blocks in logical order (debugfs echoes each command).
        out = [line for line in run(["debugfs", "-f", script, image], "debugfs blocks").stdout.splitlines()
               if not line.startswith("debugfs")]
        if len(out) != len(inodes):
            raise BenchError(f"debugfs blocks answered {len(out)} lines for {len(inodes)} inodes")
        index = {i: {int(b): n for n, b in enumerate(line.split())} for i, line in zip(inodes, out)}
        metadata = [b for b in order if owners[b] is None or b not in index[owners[b]]]
        position = len(metadata)
        base = {}
        for i in inodes:
            base[i] = position
            position += len(index[i])
        placed = list(range(len(metadata)))
        placed += [base[owners[b]] + index[owners[b]][b] for b in order if owners[b] is not None and b in index[owners[b]]]
        return len(inodes), len({p * 4096 // chunk for p in placed})

    def prefetch(self) -> str:
        rows = []
        latency = self.args.origin_latency
        for tag in self.args.tags:
            record = os.path.join(self.store, "roots", "r0001", "records", "default", self.push(tag))
            if os.path.exists(record):
                os.remove(record)
            first = self.start(tag, latency, record=True, prefetch=False)
            if not os.path.exists(record):
                raise BenchError(f"the first start of {tag} saved no access record")
            second = self.start(tag, latency, record=False, prefetch=True)
            third = self.start(tag, latency, record=False, prefetch=True, manifest=self.relaid(tag))
            r2 = second["reads"]
            r3 = third["reads"]
            rows.append([tag, fmt(first["seconds"], 2), fmt(second["seconds"], 2), fmt(first["seconds"] / second["seconds"], 1),
                         fmt(third["seconds"], 2), fmt(first["seconds"] / third["seconds"], 1),
                         str(first["reads"]["originFetches"]), str(second.get("prefetchChunks")), str(r2["prefetchHits"]),
                         str(r2["originFetches"] - r2["prefetchFetches"]), str(third.get("prefetchChunks")),
                         str(r3["originFetches"] - r3["prefetchFetches"])])
        return (f"## Prefetch: a cold start, then the same start prefetching its record (origin +{latency:g} ms per request)\n\n"
                + table(["image", "first s", "second s", "speed-up", "relaid s", "speed-up", "first fetches", "recorded",
                         "prefetch hits", "other fetches", "relaid recorded", "relaid other fetches"], rows)
                + "\n\n(goal: the second start at least 3x faster)\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thaw", default=DEFAULT_THAW)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--tags", default="py,perl,web")
    parser.add_argument("--throughput-tag", default="py")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--origin-latency", type=float, default=20)
    parser.add_argument("--chunk-size", type=int, default=512 * 1024, help="chunk size of the pushes (bytes)")
    parser.add_argument("--sections", default="throughput,sparsity,prefetch",
                        help="comma-separated: throughput, sparsity (with first_start_bounds), prefetch, first_start_bounds")
    parser.add_argument("--work")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.tags = [t for t in args.tags.split(",") if t]
    check_arguments(parser, args.tags, STARTS, "loop devices, mounts and chroot", [args.thaw], "swift build -c release --product thaw")

    def body(work: str) -> None:
        bench = Bench(args, work)
        print(f"# Thaw serving benchmark\n\n{machine_line()}; {tool_version(['nbdcopy', '--version'])}; "
              f"{tool_version(['nbdkit', '--version'])}\n", flush=True)
        for section in args.sections.split(","):
            print(getattr(bench, section)(), flush=True)

    return run_in_work_directory(args, "thaw-serve-bench-", body)

if __name__ == "__main__":
    sys.exit(main())
