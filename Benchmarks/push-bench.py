#!/usr/bin/env python3
"""Benchmarks `thaw push`: sealing speed, full and incremental pushes, and what a store keeps.

1. Seal throughput on one core (`thaw-bench seal`) against this machine's own bound, measured
   in the same run with `openssl speed` over 512 KiB blocks: sealing hashes a chunk twice
   (the key is SHA-256 of the plaintext, the name SHA-256 of the ciphertext) and encrypts it
   once, so the bound is 1 / (2 / sha256 + 1 / aes-256-ctr).
2. A full push of each corpus image (scripts/corpus.sh) into an empty directory store, side by
   side with `restic backup` of the same image unpacked by `umoci unpack` into an empty
   repository, and `casync make` of the same image flattened by `thaw flatten` into an empty
   chunk store. Thaw's time includes flattening from the layer blobs; the others start from
   the tree or the image prepared beforehand, untimed. Each tool runs with its defaults.
3. An incremental push: the image's parent (the corpus image whose layers are a prefix of its
   own) is pushed first, untimed, then the image itself, timed, against its full push.
4. Stored bytes: the whole corpus pushed into one store, against the images' own sizes, and
   restic and casync holding the same corpus in one repository or store each.

Times are the median of --runs runs (3 by default), each into a fresh store; the corpus is
read once beforehand, so every contender finds it in the page cache. Peak RSS is the command's
own (wait4 through a launcher, see benchlib.py).

    push-bench.py [--thaw PATH] [--thaw-bench PATH] [--corpus DIR] [--tags base,py,perl,web,slim]
                  [--runs 3] [--seal-seconds 3] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw && swift build -c release --product
thaw-bench`; `scripts/setup.sh bench` installs restic, casync and the rest. The output is
plain text meant for the README. Exit status is non-zero when any step failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from benchlib import (DEFAULT_CORPUS, DEFAULT_THAW, MIB, REPO, BenchError, Layout, Run, fmt, machine_line,
                      measure, table, tool_version)

DEFAULT_THAW_BENCH = os.path.join(REPO, ".build", "release", "thaw-bench")
DEFAULT_TAGS = "base,py,perl,web,slim"
SEAL_BLOCK = 512 * 1024
RESTIC_PASSWORD = "thaw-bench"


# --------------------------------------------------------------------------------------------
# 1. Seal throughput


def openssl_speed(algorithm: str, seconds: int) -> float:
    """Single-core MB/s (10^6 bytes) of `openssl speed -evp ALGORITHM` over 512 KiB blocks."""
    argv = ["openssl", "speed", "-mr", "-bytes", str(SEAL_BLOCK), "-seconds", str(seconds), "-evp", algorithm]
    out = subprocess.run(argv, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("+F:"):
            return float(line.split(":")[-1]) / 1e6  # bytes per second
    raise BenchError(f"`{' '.join(argv)}` printed no result: {out.stderr.strip()[:300]}")


def thaw_bench_seal(path: str, seconds: int) -> dict[str, float]:
    out = subprocess.run([path, "seal", str(seconds)], capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"{path} seal failed: {out.stderr.strip()[:300]}")
    figures = {}
    for line in out.stdout.splitlines():
        name, _, value = line.partition(" ")
        figures[name] = float(value)
    for name in ("seal", "sha256", "aes-256-ctr"):
        if name not in figures:
            raise BenchError(f"{path} seal printed no '{name}' figure")
    return figures


def seal_section(args: argparse.Namespace) -> str:
    print("[seal] thaw-bench seal, openssl speed", file=sys.stderr)
    ours = thaw_bench_seal(args.thaw_bench, args.seal_seconds)
    sha = openssl_speed("sha256", args.seal_seconds)
    aes = openssl_speed("aes-256-ctr", args.seal_seconds)
    bound = 1 / (2 / sha + 1 / aes)
    rows = [
        ["openssl sha256", fmt(sha), ""],
        ["openssl aes-256-ctr", fmt(aes), ""],
        ["bound: 1 / (2/sha256 + 1/aes)", fmt(bound), "100%"],
        ["thaw seal (swift-crypto)", fmt(ours["seal"]), f"{ours['seal'] / bound * 100:.0f}%"],
        ["  its sha256 alone", fmt(ours["sha256"]), ""],
        ["  its aes-256-ctr alone", fmt(ours["aes-256-ctr"]), ""],
    ]
    return (f"Seal throughput, one core, 512 KiB chunks ({args.seal_seconds} s each; goal: at least 70% of the bound)\n"
            + table(["", "MB/s", "of bound"], rows))


# --------------------------------------------------------------------------------------------
# Running the contenders


@dataclass
class Timed:
    runs: list[Run] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def seconds(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.ok else None

    def rss(self, floor: Run) -> float | None:
        return max(r.rss_mib(floor) for r in self.runs) if self.ok else None


class Bench:
    def __init__(self, args: argparse.Namespace, work: str):
        self.args = args
        self.work = work
        self.corpus_oci = os.path.join(args.corpus, "oci")
        self.thaw = os.path.abspath(args.thaw)
        self.thaw_env = {"THAW_HOME": os.path.join(work, "thaw-home")}
        self.restic_env = {"RESTIC_PASSWORD": RESTIC_PASSWORD, "RESTIC_CACHE_DIR": os.path.join(work, "restic-cache")}
        self.failures: list[str] = []
        self.floor = measure(["true"], os.path.join(work, "floor.log"), sync=False)

    def fresh(self, name: str) -> str:
        path = os.path.join(self.work, name)
        if os.path.exists(path):
            shutil.rmtree(path)
        return path

    def step(self, what: str, argv: list[str], env: dict[str, str] | None = None) -> Run:
        log = os.path.join(self.work, re.sub(r"[^A-Za-z0-9.-]+", "_", what) + ".log")
        result = measure(argv, log, env=env)
        if not result.ok:
            self.failures.append(f"{what} failed ({result.status}): {result.log}")
        return result

    # Thaw

    def thaw_push(self, tag: str, store: str) -> Run:
        return self.step(f"thaw push {tag}", [self.thaw, "push", f"oci:{self.corpus_oci}:{tag}", "--store", store],
                         env=self.thaw_env)

    def thaw_flatten(self, tag: str) -> str:
        image = os.path.join(self.work, f"{tag}.ext4")
        if not os.path.exists(image):
            run = self.step(f"thaw flatten {tag}", [self.thaw, "flatten", f"oci:{self.corpus_oci}:{tag}", "-o", image])
            if not run.ok:
                raise BenchError(f"thaw flatten {tag} failed: {run.log}")
        return image

    # restic

    def unpacked_tree(self, tag: str) -> str:
        bundle = os.path.join(self.work, f"bundle-{tag}")
        if not os.path.isdir(os.path.join(bundle, "rootfs")):
            run = self.step(f"umoci unpack {tag}", ["umoci", "unpack", "--image", f"{self.corpus_oci}:{tag}", bundle])
            if not run.ok:
                raise BenchError(f"umoci unpack {tag} failed: {run.log}")
        return os.path.join(bundle, "rootfs")

    def restic_init(self, repo: str) -> None:
        run = self.step("restic init", ["restic", "init", "--repo", repo], env=self.restic_env)
        if not run.ok:
            raise BenchError(f"restic init failed: {run.log}")

    def restic_backup(self, tag: str, repo: str) -> Run:
        # From inside the tree, so every snapshot has the same paths whatever the work directory.
        tree = self.unpacked_tree(tag)
        return self.step(f"restic backup {tag}", ["sh", "-c", 'cd "$1" && exec restic backup --quiet --repo "$2" .',
                                                   "restic", tree, repo], env=self.restic_env)

    # casync

    def casync_make(self, tag: str, store: str) -> Run:
        image = self.thaw_flatten(tag)
        index = os.path.join(self.work, f"{tag}-{os.path.basename(store)}.caibx")
        if os.path.exists(index):
            os.unlink(index)
        return self.step(f"casync make {tag}", ["casync", "make", f"--store={store}", index, image])


def tree_bytes(path: str) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under `path`."""
    apparent = allocated = 0
    for directory, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def data_bytes(path: str) -> int:
    """Bytes of a sparse file that are not holes."""
    total = 0
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            total += end - start
            offset = end
    finally:
        os.close(fd)
    return total


def mb(value: int | float) -> str:
    return f"{value / MIB:.1f}"


# --------------------------------------------------------------------------------------------
# 2-4. Pushes and stored bytes


def parent_of(tag: str, layers: dict[str, list[str]]) -> str | None:
    """The corpus image with the most layers that are a strict prefix of `tag`'s layers."""
    best = None
    for other, other_layers in layers.items():
        if other != tag and len(other_layers) < len(layers[tag]) and layers[tag][:len(other_layers)] == other_layers:
            if best is None or len(other_layers) > len(layers[best]):
                best = other
    return best


def push_sections(bench: Bench, tags: list[str], layout: Layout) -> list[str]:
    runs = bench.args.runs
    layers = {tag: [l["digest"] for l in layout.manifest(tag).get("layers", [])] for tag in tags}
    sizes = {tag: sum(layout.uncompressed_size(l) for l in layout.manifest(tag).get("layers", [])) for tag in tags}

    # Prepared, untimed: the unpacked trees for restic and the flattened images for casync.
    for tag in tags:
        print(f"[{tag}] preparing: umoci unpack, thaw flatten", file=sys.stderr)
        bench.unpacked_tree(tag)
        bench.thaw_flatten(tag)

    full: dict[str, dict[str, Timed]] = {}
    for tag in tags:
        full[tag] = {"thaw": Timed(), "restic": Timed(), "casync": Timed()}
        for n in range(runs):
            print(f"[{tag}] full push, run {n + 1} of {runs}", file=sys.stderr)
            full[tag]["thaw"].runs.append(bench.thaw_push(tag, bench.fresh("thaw-store")))
            repo = bench.fresh("restic-repo")
            bench.restic_init(repo)
            full[tag]["restic"].runs.append(bench.restic_backup(tag, repo))
            full[tag]["casync"].runs.append(bench.casync_make(tag, bench.fresh("casync-store")))

    rows = []
    for tag in tags:
        t, r, c = (full[tag][k] for k in ("thaw", "restic", "casync"))
        rows.append([tag, mb(sizes[tag]),
                     fmt(t.seconds, 2), fmt(t.rss(bench.floor), 0),
                     fmt(r.seconds, 2), fmt(r.rss(bench.floor), 0),
                     fmt(c.seconds, 2), fmt(c.rss(bench.floor), 0),
                     speedup(r.seconds, t.seconds), speedup(c.seconds, t.seconds)])
    full_text = (f"Full push into an empty store, median of {runs} (s; peak RSS MiB; goal: thaw at least 2x faster than both)\n"
                 + table(["image", "layers MiB", "thaw s", "MiB", "restic s", "MiB", "casync s", "MiB",
                          "vs restic", "vs casync"], rows))

    incremental_rows = []
    for tag in tags:
        parent = parent_of(tag, layers)
        if parent is None:
            continue
        timed = Timed()
        for n in range(runs):
            print(f"[{tag}] incremental push after {parent}, run {n + 1} of {runs}", file=sys.stderr)
            store = bench.fresh("thaw-store")
            if not bench.thaw_push(parent, store).ok:
                break
            timed.runs.append(bench.thaw_push(tag, store))
        full_seconds = full[tag]["thaw"].seconds
        share = f"{timed.seconds / full_seconds * 100:.0f}%" if timed.seconds and full_seconds else "-"
        reused = reuse_summary(timed.runs[-1].log) if timed.runs else "-"
        manifest_layers = layout.manifest(tag).get("layers", [])
        new_bytes = sum(layout.uncompressed_size(l) for l in manifest_layers[len(layers[parent]):])
        incremental_rows.append([f"{parent} -> {tag}", f"{new_bytes / sizes[tag] * 100:.0f}%", fmt(full_seconds, 2),
                                 fmt(timed.seconds, 2), share, reused])
    noop = Timed()
    if tags:
        store = bench.fresh("thaw-store")
        if bench.thaw_push(tags[0], store).ok:
            for n in range(runs):
                noop.runs.append(bench.thaw_push(tags[0], store))
    incremental_text = (f"Incremental push: the parent pushed first, then the image, median of {runs} "
                        "(goal: at most 25% of the full push)\n"
                        + table(["pair", "new layers", "full s", "incremental s", "share", "what the push did"],
                                incremental_rows)
                        + "\nthe same image pushed again (every layer reused, the fixed cost of a push): "
                        + f"{fmt(noop.seconds, 2)} s")

    return [full_text, incremental_text, stored_section(bench, tags, layout, sizes)]


def speedup(other: float | None, ours: float | None) -> str:
    return f"{other / ours:.1f}x" if other and ours else "-"


def reuse_summary(log: str) -> str:
    """'N layers reused, M chunks new' from thaw push's report."""
    layers = re.search(r"layers: (\d+), (\d+) reused", log)
    chunks = re.search(r"chunks: (\d+) new", log)
    if not layers or not chunks:
        return "-"
    return f"{layers.group(2)} of {layers.group(1)} layers reused, {chunks.group(1)} chunks new"


def stored_section(bench: Bench, tags: list[str], layout: Layout, sizes: dict[str, int]) -> str:
    print("[corpus] one store for every image: thaw, restic, casync", file=sys.stderr)
    thaw_store = bench.fresh("thaw-store")
    repo = bench.fresh("restic-repo")
    bench.restic_init(repo)
    casync_store = bench.fresh("casync-store")
    for tag in tags:
        bench.thaw_push(tag, thaw_store)
        bench.restic_backup(tag, repo)
        bench.casync_make(tag, casync_store)

    image_apparent = sum(os.path.getsize(bench.thaw_flatten(tag)) for tag in tags)
    image_data = sum(data_bytes(bench.thaw_flatten(tag)) for tag in tags)
    layer_tars = sum(sizes.values())
    compressed = 0
    distinct: dict[str, int] = {}
    for tag in tags:
        for layer in layout.manifest(tag).get("layers", []):
            compressed += layer["size"]
            distinct[layer["digest"]] = layer["size"]
    thaw_apparent, thaw_allocated = tree_bytes(thaw_store)
    restic_apparent, _ = tree_bytes(repo)
    casync_apparent, _ = tree_bytes(casync_store)
    rows = [
        ["flattened images, apparent size", mb(image_apparent), "per image"],
        ["flattened images, data (not holes)", mb(image_data), "per image"],
        ["layer tars, uncompressed", mb(layer_tars), "per image"],
        ["layer blobs, compressed", mb(compressed), "per image"],
        ["layer blobs, compressed, each once", mb(sum(distinct.values())), "what a registry keeps"],
        ["thaw store (chunks, manifests, layer records)", mb(thaw_apparent), f"{mb(thaw_allocated)} MiB on disk"],
        ["restic repository", mb(restic_apparent), "content-defined chunks, compressed"],
        ["casync store", mb(casync_apparent), "content-defined chunks, compressed"],
    ]
    return (f"Stored bytes for the corpus ({', '.join(tags)}) in one store each\n"
            + table(["", "MiB", ""], rows)
            + f"\nthaw keeps {thaw_apparent / image_data * 100:.0f}% of the images' data"
            + f" and {thaw_apparent / layer_tars * 100:.0f}% of their layer tars")


# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    corpus_oci = os.path.join(args.corpus, "oci")
    if not os.path.isfile(os.path.join(corpus_oci, "index.json")):
        raise BenchError(f"no corpus at {args.corpus}; build it with scripts/corpus.sh (THAW_CORPUS=DIR to choose where)")
    for tool in ("openssl", "umoci", "restic", "casync"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not on PATH (scripts/setup.sh bench installs it)")
    for binary, product in ((args.thaw, "thaw"), (args.thaw_bench, "thaw-bench")):
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise BenchError(f"{binary} is missing; build it with `swift build -c release --product {product}`")
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    tags = [t for t in args.tags.split(",") if t]
    if not tags:
        raise BenchError("--tags is empty")

    try:
        if os.getloadavg()[0] > 0.5:
            print(f"warning: load average is {os.getloadavg()[0]:.2f}; other work will skew the times", file=sys.stderr)
    except OSError:
        pass

    own_work = args.work is None
    work = args.work or tempfile.mkdtemp(prefix="thaw-push-bench-", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    try:
        sections = [seal_section(args)]
        bench = Bench(args, work)
        layout = Layout(corpus_oci)
        for tag in tags:
            print(f"[{tag}] reading its layer blobs", file=sys.stderr)
            for layer in layout.manifest(tag).get("layers", []):
                layout.uncompressed_size(layer)
        sections += push_sections(bench, tags, layout)
        print(f"Machine: {machine_line()}")
        print(f"Tools: {tool_version(['openssl', 'version'])}; {tool_version(['restic', 'version'])}; "
              f"{tool_version(['casync', '--version'])}")
        for section in sections:
            print()
            print(section)
        if bench.failures:
            print("\nFailures:")
            for failure in bench.failures:
                print(f"  {failure}")
            return 1
        return 0
    finally:
        if own_work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"\nkept {work}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--thaw", default=DEFAULT_THAW, help="the thaw binary (default: the release build)")
    parser.add_argument("--thaw-bench", default=DEFAULT_THAW_BENCH, help="the thaw-bench binary")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help="the corpus (scripts/corpus.sh)")
    parser.add_argument("--tags", default=DEFAULT_TAGS, help="corpus images, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure; the median is shown")
    parser.add_argument("--seal-seconds", type=int, default=3, help="seconds per seal and openssl figure")
    parser.add_argument("--work", help="work directory (default: a new one under /var/tmp, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"push-bench: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
