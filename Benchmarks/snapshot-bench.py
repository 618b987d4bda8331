#!/usr/bin/env python3
"""Figures for memory snapshots: a cold microVM boot against a restore, with and without the
recorded working set, and what storing snapshots costs.

For each corpus function (default py, perl and web; each loads its runtime and then waits for
its event on standard input), with the origin a directory store slowed by --origin-latency ms
per request (default 20), each start a fresh `thaw run` process with an empty L1
(`--disk-cache 0`) and dropped page caches, the median of --runs:

  cold      `thaw run --cold --sandbox microvm`: boot, mount the lazily served image, start
            the handler, answer; the image's own access record is prefetched, as widely as a
            restore prefetches its memory (the best cold start Thaw has without a snapshot);
  restore   `thaw run --from-snapshot` with no memory record: the guest faults its RAM in
            from the store page by page, each fault a 4 KiB read through FUSE;
  prefetch  the same after one recorded restore: the recorded memory chunks are fetched in
            parallel and loaded into the page cache while the guest runs, demand faults first.

Every answer is checked against the cold boot's. Times are to the response (the breakdown's
`response received`, from the command's start), as a caller waits for it; the wall time of the
command, which adds the agent's shutdown, is shown beside. Reported too: bytes of
memory and image fetched from the origin, the reads that reached the agent through FUSE, and
for the prefetched restore the share of the chunks it needed that the record listed (a chunk
outside it is a fetch the record did not plan).

Then what storing costs, for the same functions' snapshots in one store: the raw non-zero
4 KiB pages of their RAM files; the bytes the store holds for them (64 KiB chunks, equal chunks
stored once, zstd-compressed as `thaw snapshot` stores them by default, and for comparison
whole, `--no-memory-compression`); equal pages stored once; and similar pages as patches against the first
function's snapshot as the base (`thaw-bench medes`, --patch-limit bytes at most, computed from
the RAM files at page granularity); with `nokaslr` (the default) and, for comparison, without
it. Then the same snapshots taken into a fresh store with the first as the base and the others
with `thaw snapshot --base`: the bytes the store really holds, and restores of the patched
snapshots (their chunks rebuilt from deltas and the base) against the same functions stored
without a base. Then --chunk-sizes: for one function, the stored bytes, chunk count and restore times for
each memory chunk size. Then the effect of qemu's huge-page advice on a restore
(--restore-huge-pages keeps it). --sections picks parts: starts, storage, patches, chunks, huge.

    snapshot-bench.py [--thaw PATH] [--corpus DIR] [--tags py,perl,web] [--runs 3]
                      [--origin-latency 20] [--vm-memory 256] [--chunk-sizes 4,64,512]
                      [--chunk-tag py] [--no-kaslr-compare] [--sections LIST] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw && swift build -c release --product thaw-bench` and `scripts/build-guest.sh`. Needs root
(mounts, FUSE). Under TCG (hosts whose KVM cannot run stock guests) a cold boot takes seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

from benchlib import (DEFAULT_CORPUS, DEFAULT_THAW, EVENT_HANDLERS, MIB, BenchError, check_arguments, fmt, machine_line,
                      run_in_work_directory, table)

# Each function waits for its event after loading its runtime: the point a snapshot is taken at.
STARTS = EVENT_HANDLERS
EVENT = '{"n": 7}'
# A cold boot prefetches its image's record as widely as a restore prefetches its memory's
# (`--memory-prefetch-concurrency`, 64), so the comparison is of boot against restore only.
COLD_PREFETCH = ["--prefetch-concurrency", "64", "--origin-fetches", "128"]


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def tree_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


class Store:
    """One directory store with its keys, under the work directory."""

    def __init__(self, bench: "Bench", name: str):
        self.bench = bench
        self.path = os.path.join(bench.work, name)
        self.args = ["--store", os.path.join(self.path, "store"), "--keys", os.path.join(self.path, "keys")]
        self.manifests: dict[str, str] = {}

    def stored_bytes(self) -> int:
        """Bytes of chunks, manifests, snapshot records and patch tables (access records are left out)."""
        roots = os.path.join(self.path, "store", "roots")
        return sum(tree_bytes(os.path.join(roots, root, kind)) for root in os.listdir(roots)
                   for kind in ("chunks", "manifests", "snapshots", "patches"))

    def push(self, tag: str) -> str:
        if tag not in self.manifests:
            _, out = self.bench.command([self.bench.args.thaw, "push", f"oci:{self.bench.args.corpus}/oci:{tag}", *self.args],
                                        f"thaw push {tag}")
            ids = [line.split(" as manifest ")[1].strip() for line in out.stdout.splitlines() if " as manifest " in line]
            if not ids:
                raise BenchError(f"no manifest id in thaw push's output: {out.stdout[-400:]}")
            self.manifests[tag] = ids[0]
        return self.manifests[tag]

    def forget_record(self, manifest: str) -> None:
        for root, _, files in os.walk(os.path.join(self.path, "store")):
            if os.path.basename(os.path.dirname(root)) == "records" and manifest in files:
                os.remove(os.path.join(root, manifest))


class Bench:
    def __init__(self, args: argparse.Namespace, work: str):
        self.args = args
        self.work = work
        self.env = {**os.environ, "THAW_HOME": os.path.join(work, "home")}
        self.vm = ["--vm-memory", str(args.vm_memory), "--timeout", "300", "--guest", args.guest]

    def command(self, argv: list[str], what: str) -> tuple[float, subprocess.CompletedProcess]:
        drop_caches()
        began = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        seconds = time.monotonic() - began
        if out.returncode != 0:
            raise BenchError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
        return seconds, out

    def run(self, store: Store, tag: str, extra: list[str]) -> tuple[float, dict, str]:
        argv = [self.args.thaw, "run", store.push(tag), "--json", "--disk-cache", "0", "--event", EVENT,
                "--origin-latency", str(self.args.origin_latency), *self.vm, *extra, *store.args, "--", *STARTS[tag]]
        wall, out = self.command(argv, f"thaw run {tag} {' '.join(extra)}")
        breakdown = json.loads(out.stderr.strip().splitlines()[-1])
        breakdown["wall"] = wall
        # Seconds from the command's start to the response, as the caller sees it; the wall
        # time adds the agent's shutdown after it.
        return breakdown.get("response_received", wall), breakdown, out.stdout

    def snapshot(self, store: Store, tag: str, extra: list[str]) -> float:
        argv = [self.args.thaw, "snapshot", store.push(tag), *self.vm, *extra, *store.args, "--", *STARTS[tag]]
        seconds, out = self.command(argv, f"thaw snapshot {tag}")
        if not re.search(r"snapshot of \w+ stored", out.stderr):
            raise BenchError(f"thaw snapshot {tag} did not report a stored snapshot: {out.stderr[-400:]}")
        return seconds

    def restores(self, store: Store, tag: str, expected: str, extra: list[str] = []) -> dict:
        """Lazy restores (no memory record), one recording restore, then prefetched restores."""
        m = statistics.median
        lazy, prefetch = [], []
        memory_id = None
        for _ in range(self.args.runs):
            if memory_id:
                store.forget_record(memory_id)
            seconds, b, answer = self.run(store, tag, ["--from-snapshot", "--no-record", *extra])
            self.check(tag, "a restore", answer, expected)
            memory_id = b["memory"]["manifest"]
            store.forget_record(memory_id)
            lazy.append((seconds, b))
        _, b, answer = self.run(store, tag, ["--from-snapshot", *extra])  # records
        self.check(tag, "the recording restore", answer, expected)
        for _ in range(self.args.runs):
            seconds, b, answer = self.run(store, tag, ["--from-snapshot", "--no-record", *extra])
            self.check(tag, "a prefetched restore", answer, expected)
            if "prefetchChunks" not in b["memory"]:
                raise BenchError(f"{tag}: the restore after the recorded one did not prefetch its memory")
            prefetch.append((seconds, b))

        def fetched(runs):
            return m([r[1]["memory"]["bytesFromOrigin"] + r[1]["bytesFromOrigin"] for r in runs])

        def served_by_record(b):
            mem = b["memory"]
            outside, hits = mem["fetchesOutsideRecord"], mem["recordedChunksRead"]
            return 100 * hits / (hits + outside) if hits + outside else None

        return {
            "lazy": m([r[0] for r in lazy]), "lazy_fetched": fetched(lazy),
            "lazy_faults": m([r[1]["memory"]["reads"] for r in lazy]),
            "lazy_chunks": m([r[1]["memory"]["originFetches"] for r in lazy]),
            "prefetch_reads": m([r[1]["memory"]["reads"] for r in prefetch]),
            "prefetch": m([r[0] for r in prefetch]), "prefetch_fetched": fetched(prefetch),
            "prefetch_wall": m([r[1]["wall"] for r in prefetch]),
            "record": prefetch[0][1]["memory"]["prefetchChunks"],
            "served": m([served_by_record(r[1]) or 0 for r in prefetch]),
            "outside": m([r[1]["memory"]["fetchesOutsideRecord"] for r in prefetch]),
            "memory_id": memory_id,
            "rebuilt": m([r[1]["memory"].get("chunksRebuilt", 0) for r in lazy]),
        }

    @staticmethod
    def check(tag: str, what: str, answer: str, expected: str) -> None:
        # Compared as JSON: perl orders a hash's keys differently in every process.
        if json.loads(answer) != json.loads(expected):
            raise BenchError(f"{tag}: {what} answered {answer!r}, the cold boot {expected!r}")

    # ---------------------------------------------------------------------------------------

    def starts(self, store: Store, tags: list[str]) -> list[list[str]]:
        rows = []
        for tag in tags:
            _, _, expected = self.run(store, tag, ["--cold", "--sandbox", "microvm", *COLD_PREFETCH])  # records the image
            if '"ok"' not in expected:
                raise BenchError(f"{tag}: the cold boot answered {expected!r}")
            cold = []
            for _ in range(self.args.runs):
                seconds, b, answer = self.run(store, tag, ["--cold", "--sandbox", "microvm", "--no-record", *COLD_PREFETCH])
                self.check(tag, "a cold boot", answer, expected)
                cold.append((seconds, b["bytesFromOrigin"], b["wall"]))
            self.snapshot(store, tag, [])
            r = self.restores(store, tag, expected)
            self.restore_figures = {**getattr(self, "restore_figures", {}), tag: r}
            cold_s = statistics.median([c[0] for c in cold])
            cold_wall = statistics.median([c[2] for c in cold])
            rows.append([tag, fmt(cold_s, 2), fmt(cold_wall, 2), fmt(statistics.median([c[1] for c in cold]) / MIB),
                         fmt(r["lazy"], 2), fmt(r["lazy_fetched"] / MIB), str(r["lazy_faults"]),
                         fmt(r["prefetch"], 2), fmt(r["prefetch_wall"], 2), fmt(r["prefetch_fetched"] / MIB), str(r["prefetch_reads"]),
                         str(r["record"]), str(r["outside"]), fmt(r["served"]) + "%", fmt(cold_s / r["prefetch"]) + "×"])
            self.expected = getattr(self, "expected", {})
            self.expected[tag] = expected
            store.manifests[tag + ":memory"] = r["memory_id"]
        return rows

    def medes(self, store: Store, memory_ids: list[str]) -> dict[str, float]:
        """`thaw-bench medes` over the snapshots' RAM files, the first one the base."""
        paths = []
        for number, memory_id in enumerate(memory_ids):
            path = os.path.join(self.work, f"ram-{number}.img")
            self.command([self.args.thaw, "pull", memory_id, "-o", path, *store.args], "thaw pull of a snapshot's memory")
            paths.append(path)
        _, out = self.command([self.args.thaw_bench, "medes", "--patch-limit", str(self.args.patch_limit), *paths], "thaw-bench medes")
        for path in paths:
            os.remove(path)
        return {line.split()[0]: float(line.split()[1]) for line in out.stdout.splitlines() if len(line.split()) == 2}

    def storage(self, tags: list[str], kaslr_compare: bool, first: Store) -> list[list[str]]:
        rows = []
        variants = [("nokaslr", "compressed", [], first), ("nokaslr", "whole", ["--no-memory-compression"], None)]
        if kaslr_compare:
            variants.append(("kaslr", "compressed", ["--no-nokaslr"], None))
        for name, stored_as, extra, store in variants:
            if store is None:
                store = Store(self, f"store-{name}-{stored_as}")
                for tag in tags:
                    store.push(tag)
                before = store.stored_bytes()
                for tag in tags:
                    self.snapshot(store, tag, extra)
                    _, b, _ = self.run(store, tag, ["--from-snapshot", "--no-record"])
                    store.manifests[tag + ":memory"] = b["memory"]["manifest"]
                stored = store.stored_bytes() - before
            else:
                stored = self.snapshot_bytes
            f = self.medes(store, [store.manifests[t + ":memory"] for t in tags])
            raw = f["raw-bytes"]
            if store is first:
                self.raw_bytes = raw
            rows.append([name, stored_as, fmt(raw / MIB), fmt(stored / MIB), fmt(100 * stored / raw) + "%",
                         fmt(f["identical-only-bytes"] / MIB), fmt(100 * f["identical-only-bytes"] / raw) + "%",
                         fmt(f["with-patches-bytes"] / MIB), fmt(100 * f["with-patches-bytes"] / raw) + "%",
                         str(int(f["patched-pages"])), fmt(f["rebuild-us-per-page"], 2)])
        return rows

    def chunk_sizes(self, tag: str, sizes: list[int]) -> list[list[str]]:
        rows = []
        for kib in sizes:
            store = Store(self, f"store-{kib}k")
            store.push(tag)
            _, _, expected = self.run(store, tag, ["--cold", "--sandbox", "microvm"])
            before = store.stored_bytes()
            self.snapshot(store, tag, ["--memory-chunk-kib", str(kib)])
            stored = store.stored_bytes() - before
            r = self.restores(store, tag, expected)
            rows.append([f"{kib} KiB", fmt(stored / MIB), fmt(r["lazy"], 2), str(r["lazy_faults"]), fmt(r["lazy_fetched"] / MIB),
                         fmt(r["prefetch"], 2), str(r["record"]), fmt(r["prefetch_fetched"] / MIB)])
        return rows

    def expected_answer(self, store: Store, tag: str) -> str:
        expected = getattr(self, "expected", {})
        if tag not in expected:
            _, _, expected[tag] = self.run(store, tag, ["--cold", "--sandbox", "microvm", *COLD_PREFETCH])
            self.expected = expected
        return expected[tag]

    def patches(self, tags: list[str]) -> tuple[list[list[str]], list[str]]:
        """The first function's snapshot stored whole as the base, the others with --base: the
        bytes the store holds for the three, and restores of the patched ones."""
        store = Store(self, "store-patched")
        for tag in tags:
            store.push(tag)
        expected = {tag: self.expected_answer(store, tag) for tag in tags}
        before = store.stored_bytes()
        self.snapshot(store, tags[0], [])
        for tag in tags[1:]:
            self.snapshot(store, tag, ["--base", store.push(tags[0]), "--patch-limit", str(self.args.patch_limit)])
        stored = store.stored_bytes() - before
        rows = []
        for tag in tags[1:]:
            r = self.restores(store, tag, expected[tag])
            whole = getattr(self, "restore_figures", {}).get(tag)
            rows.append([tag, fmt(r["lazy"], 2), fmt(whole["lazy"], 2) if whole else "-", fmt(r["prefetch"], 2),
                         fmt(whole["prefetch"], 2) if whole else "-", str(r["rebuilt"]), fmt(r["served"]) + "%"])
        raw = getattr(self, "raw_bytes", None)
        whole_bytes = getattr(self, "snapshot_bytes", None)
        summary = [f"stored for the {len(tags)} snapshots with patches against {tags[0]}: {stored / MIB:.1f} MiB"
                   + (f", {100 * stored / raw:.1f}% of their {raw / MIB:.1f} MiB of non-zero pages" if raw else "")
                   + (f"; without --base: {whole_bytes / MIB:.1f} MiB" if whole_bytes else "")]
        return rows, summary

    def huge_pages(self, store: Store, tag: str) -> list[list[str]]:
        rows = []
        expected = self.expected[tag]
        memory_id = store.manifests[tag + ":memory"]
        for name, extra in [("refused (default)", []), ("kept", ["--restore-huge-pages"])]:
            runs = []
            for _ in range(self.args.runs):
                store.forget_record(memory_id)
                seconds, b, answer = self.run(store, tag, ["--from-snapshot", "--no-record", *extra])
                self.check(tag, f"a restore with huge pages {name}", answer, expected)
                runs.append((seconds, b["memory"]["reads"], b["memory"]["bytesRead"]))
            m = statistics.median
            rows.append([name, fmt(m([r[0] for r in runs]), 2), str(m([r[1] for r in runs])), fmt(m([r[2] for r in runs]) / MIB)])
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thaw", default=DEFAULT_THAW)
    parser.add_argument("--thaw-bench", default=os.path.join(os.path.dirname(DEFAULT_THAW), "thaw-bench"))
    parser.add_argument("--patch-limit", type=int, default=2048, help="largest patch kept, in bytes (else the page is stored whole)")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--tags", default="py,perl,web")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--origin-latency", type=float, default=20)
    parser.add_argument("--vm-memory", type=int, default=256, help="MiB of guest memory")
    parser.add_argument("--chunk-sizes", default="4,64,512", help="memory chunk sizes in KiB to compare; empty skips")
    parser.add_argument("--chunk-tag", default="py")
    parser.add_argument("--no-kaslr-compare", action="store_true", help="skip the snapshots taken without nokaslr")
    parser.add_argument("--guest", default="/var/lib/thaw/vm/thaw-guest", help="the static guest init (scripts/build-guest.sh)")
    parser.add_argument("--sections", default="starts,storage,patches,chunks,huge",
                        help="which parts to run: starts, storage, patches, chunks, huge")
    parser.add_argument("--work")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tags = [t for t in args.tags.split(",") if t]
    sizes = [int(s) for s in args.chunk_sizes.split(",") if s]
    check_arguments(parser, tags + [args.chunk_tag], STARTS, "mounts and FUSE", [args.thaw, args.thaw_bench],
                    "swift build -c release --product thaw && swift build -c release --product thaw-bench")
    return run_in_work_directory(args, "thaw-snapshot-bench-", lambda work: run(args, tags, sizes, Bench(args, work)))


def run(args: argparse.Namespace, tags: list[str], sizes: list[int], bench: "Bench") -> None:
    print(f"# Thaw memory snapshots (microVM)\n\n{machine_line()}; origin latency {args.origin_latency:g} ms per request; "
          f"{args.vm_memory} MiB guests; median of {args.runs}\n", flush=True)
    sections = set(args.sections.split(","))
    store = Store(bench, "store")
    for tag in tags:
        store.push(tag)
    if "starts" in sections:
        before = store.stored_bytes()
        rows = bench.starts(store, tags)
        bench.snapshot_bytes = store.stored_bytes() - before  # all the snapshots wrote
        print(table(["function", "cold s", "cold wall s", "cold MiB", "restore s", "restore MiB", "restore faults", "prefetch s",
                     "prefetch wall s", "prefetch MiB", "prefetch FUSE reads", "recorded", "fetched outside", "served by record",
                     "cold / prefetch"], rows), flush=True)
    if "storage" in sections and "starts" in sections:
        print("\n## Stored bytes for the snapshots of " + ", ".join(tags) + "\n")
        print(table(["guest kernel", "chunks stored", "raw non-zero MiB", "stored MiB (64 KiB chunks)", "stored / raw",
                     "pages once MiB", "pages once / raw", "with patches MiB", "with patches / raw", "patched pages",
                     "rebuild µs/page"],
                    bench.storage(tags, not args.no_kaslr_compare, store)), flush=True)
    if "patches" in sections and len(tags) > 1:
        rows, summary = bench.patches(tags)
        print(f"\n## Snapshots stored with patches against {tags[0]} (thaw snapshot --base)\n")
        print("\n".join(summary) + "\n")
        print(table(["function", "restore s", "restore s, without --base", "prefetch s", "prefetch s, without --base",
                     "chunks rebuilt", "served by record"], rows), flush=True)
    if sizes and "chunks" in sections:
        print(f"\n## Memory chunk size ({args.chunk_tag})\n")
        print(table(["chunk", "stored MiB", "restore s", "restore faults", "restore MiB", "prefetch s", "recorded",
                     "prefetch MiB"], bench.chunk_sizes(args.chunk_tag, sizes)), flush=True)
    if "huge" in sections and "starts" in sections:
        print(f"\n## qemu's huge-page advice in a restore without record ({tags[0]})\n")
        print(table(["huge-page advice", "restore s", "FUSE reads", "MiB read"], bench.huge_pages(store, tags[0])))


if __name__ == "__main__":
    sys.exit(main())
