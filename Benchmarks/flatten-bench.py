#!/usr/bin/env python3
"""Benchmarks `thaw flatten` against the usual way of turning an OCI image into ext4.

The usual way is two steps: `umoci unpack` writes the merged tree to disk, then
`mke2fs -d` copies that tree into a new ext4 image. Thaw does it in one pass, straight from the
layer blobs. For each image of the corpus (scripts/corpus.sh) this script runs both, side by side,
and reports wall time and peak RSS of every step (taken from the child's rusage via wait4).

It then measures what the images share: each output is cut into fixed-size chunks (512 KiB by
default, Thaw's chunk size), all-zero chunks are ignored, and the SHA-256 sets are compared for
image pairs built on the same base layer. Thaw places each layer's data in its own chunk-aligned
region so a shared layer yields shared chunks; `mke2fs -d` packs files in tree order, so it
mostly does not. The totals show the effect on a store that keeps each distinct chunk once.

    flatten-bench.py [--thaw PATH] [--corpus DIR] [--tags base,py,perl,web,slim] [--work DIR]
                     [--chunk-size 524288] [--keep]

The output is plain text meant to be pasted into the README. Exit status is non-zero when any
step failed or the thaw binary is missing (the other columns are still measured).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field

from benchlib import (DEFAULT_CORPUS, DEFAULT_THAW, MIB, BenchError, Layout, Run, fmt, machine_line, measure, table,
                      tool_version)

DEFAULT_TAGS = "base,py,perl,web,slim"
BASE_PAIRS = [("base", "py"), ("py", "perl"), ("py", "web"), ("perl", "web"), ("py", "slim")]


# --------------------------------------------------------------------------------------------
# Sizing the mke2fs image


def tree_usage(root: str) -> tuple[int, int]:
    """(bytes allocated, number of inodes) under `root`, counting each hard-linked inode once."""
    seen: set[tuple[int, int]] = set()
    allocated = 0
    inodes = 0
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(directory, name))
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            inodes += 1
            allocated += st.st_blocks * 512
    return allocated, inodes + 1


def mke2fs_arguments(root: str, output: str) -> list[str]:
    """Size: allocated bytes x 1.25 + 64 MiB, in whole MiB. Inodes: mke2fs's default ratio
    (one per 16 KiB), raised only if the tree would not fit."""
    allocated, inodes = tree_usage(root)
    size_mib = -(-(allocated * 5 // 4 + 64 * MIB) // MIB)
    argv = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", root]
    needed = inodes + inodes // 10 + 64
    if size_mib * MIB // 16384 < needed:
        argv += ["-N", str(needed)]
    return argv + [output, f"{size_mib}M"]


# --------------------------------------------------------------------------------------------
# Chunks


def chunk_set(path: str, chunk_size: int) -> set[bytes]:
    """SHA-256 of every chunk of the file that is not all zeros (holes are skipped unread)."""
    digests: set[bytes] = set()
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            try:
                data_at = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            if data_at >= offset + chunk_size:
                offset += (data_at - offset) // chunk_size * chunk_size
                continue
            chunk = os.pread(fd, chunk_size, offset)
            if chunk.count(0) != len(chunk):
                digests.add(hashlib.sha256(chunk).digest())
            offset += chunk_size
    finally:
        os.close(fd)
    return digests


# --------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class TagResult:
    tag: str
    layers: int = 0
    layer_bytes: int = 0
    thaw: Run | None = None
    umoci: Run | None = None
    mke2fs: Run | None = None
    thaw_image: str = ""
    mke2fs_image: str = ""
    failures: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    corpus_oci = os.path.join(args.corpus, "oci")
    if not os.path.isfile(os.path.join(corpus_oci, "index.json")):
        raise BenchError(f"no corpus at {args.corpus} (expected {corpus_oci}/index.json); "
                         f"build it with scripts/corpus.sh (THAW_CORPUS=DIR to choose where)")
    for tool in ("umoci", "mke2fs"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not on PATH (scripts/setup.sh test installs it)")
    tags = [t for t in args.tags.split(",") if t]
    if not tags:
        raise BenchError("--tags is empty")
    if args.chunk_size <= 0 or args.chunk_size % 4096:
        raise BenchError("--chunk-size must be a positive multiple of 4096")

    thaw = os.path.abspath(args.thaw)
    have_thaw = os.path.isfile(thaw) and os.access(thaw, os.X_OK)
    problems: list[str] = []
    if not have_thaw:
        problems.append(f"thaw binary {thaw} is missing; build it with `swift build -c release --product thaw`")
        print(f"note: {problems[-1]}; the thaw columns are skipped", file=sys.stderr)

    own_work = args.work is None
    work = args.work or tempfile.mkdtemp(prefix="thaw-bench-", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    created: list[str] = []

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    if load > 0.5:
        print(f"warning: load average is {load:.2f}; other work on this machine will skew the times",
              file=sys.stderr)

    floor = measure(["true"], os.path.join(work, "floor.log"), sync=False)
    created.append(os.path.join(work, "floor.log"))
    if not floor.ok:
        raise BenchError(f"cannot measure a trivial command: {floor.log}")

    layout = Layout(corpus_oci)
    results: list[TagResult] = []
    for tag in tags:
        result = TagResult(tag)
        manifest = layout.manifest(tag)
        result.layers = len(manifest.get("layers", []))
        print(f"[{tag}] reading {result.layers} layer blobs", file=sys.stderr)
        result.layer_bytes = sum(layout.uncompressed_size(layer) for layer in manifest.get("layers", []))
        results.append(result)

    for result in results:
        tag = result.tag
        if have_thaw:
            result.thaw_image = os.path.join(work, f"{tag}.thaw.ext4")
            created.append(result.thaw_image)
            if os.path.exists(result.thaw_image):
                os.unlink(result.thaw_image)
            print(f"[{tag}] thaw flatten", file=sys.stderr)
            result.thaw = measure([thaw, "flatten", f"oci:{corpus_oci}:{tag}", "-o", result.thaw_image,
                                   "--chunk-size", str(args.chunk_size)],
                                  os.path.join(work, f"{tag}.thaw.log"))
            created.append(os.path.join(work, f"{tag}.thaw.log"))
            if not result.thaw.ok:
                result.failures.append(f"thaw flatten failed ({result.thaw.status}): {result.thaw.log}")

        bundle = os.path.join(work, f"bundle-{tag}")
        created.append(bundle)
        if os.path.exists(bundle):
            shutil.rmtree(bundle)
        print(f"[{tag}] umoci unpack", file=sys.stderr)
        result.umoci = measure(["umoci", "unpack", "--image", f"{corpus_oci}:{tag}", bundle],
                               os.path.join(work, f"{tag}.umoci.log"))
        created.append(os.path.join(work, f"{tag}.umoci.log"))
        if not result.umoci.ok:
            result.failures.append(f"umoci unpack failed ({result.umoci.status}): {result.umoci.log}")
            continue
        result.mke2fs_image = os.path.join(work, f"{tag}.mke2fs.ext4")
        created.append(result.mke2fs_image)
        if os.path.exists(result.mke2fs_image):
            os.unlink(result.mke2fs_image)
        argv = mke2fs_arguments(os.path.join(bundle, "rootfs"), result.mke2fs_image)
        print(f"[{tag}] {' '.join(argv[:-2])} ... {argv[-1]}", file=sys.stderr)
        result.mke2fs = measure(argv, os.path.join(work, f"{tag}.mke2fs.log"))
        created.append(os.path.join(work, f"{tag}.mke2fs.log"))
        if not result.mke2fs.ok:
            result.failures.append(f"mke2fs failed ({result.mke2fs.status}): {result.mke2fs.log}")

    out = []
    out.append(f"Thaw flatten benchmark: {machine_line()}")
    out.append(f"corpus {args.corpus}; {tool_version(['umoci', '--version'])}; "
               f"{tool_version(['mke2fs', '-V']).split(' (')[0]}; chunk size {args.chunk_size // 1024} KiB")
    out.append("times are wall seconds; RSS is each process's own peak resident set from wait4 (below the "
               f"launcher's floor of {floor.max_rss_kib / 1024:.1f} MiB: the highest VmHWM sampled every 5 ms)")
    out.append("caches warm (every blob is read once before timing); dirty pages synced before each step")
    out.append("")
    rows = []
    for r in results:
        thaw_s = r.thaw.seconds if r.thaw and r.thaw.ok else None
        umoci_s = r.umoci.seconds if r.umoci and r.umoci.ok else None
        mke2fs_s = r.mke2fs.seconds if r.mke2fs and r.mke2fs.ok else None
        pair = umoci_s + mke2fs_s if umoci_s is not None and mke2fs_s is not None else None
        rows.append([
            r.tag, str(r.layers), fmt(r.layer_bytes / MIB),
            fmt(thaw_s, 2), fmt(r.layer_bytes / MIB / thaw_s if thaw_s else None, 0),
            fmt(r.thaw.rss_mib(floor) if thaw_s is not None else None),
            fmt(umoci_s, 2), fmt(mke2fs_s, 2), fmt(pair, 2),
            fmt(thaw_s / pair if thaw_s is not None and pair else None, 2),
            fmt(r.umoci.rss_mib(floor) if umoci_s is not None else None),
            fmt(r.mke2fs.rss_mib(floor) if mke2fs_s is not None else None),
        ])
    out.append(table(["image", "layers", "layer MiB", "thaw s", "thaw MiB/s", "thaw RSS MiB", "umoci s",
                      "mke2fs s", "umoci+mke2fs s", "thaw/pair", "umoci RSS MiB", "mke2fs RSS MiB"], rows))
    out.append("layer MiB: the layer tars after decompression; thaw MiB/s is over those bytes")
    out.append("")

    size_rows = []
    for r in results:
        def sizes(path: str) -> tuple[str, str]:
            if not path or not os.path.exists(path):
                return "-", "-"
            st = os.stat(path)
            return fmt(st.st_size / MIB), fmt(st.st_blocks * 512 / MIB)
        size_rows.append([r.tag, *sizes(r.thaw_image if r.thaw and r.thaw.ok else ""),
                          *sizes(r.mke2fs_image if r.mke2fs and r.mke2fs.ok else "")])
    out.append(table(["image", "thaw file MiB", "thaw allocated MiB", "mke2fs file MiB", "mke2fs allocated MiB"],
                     size_rows))
    out.append("")

    print(f"hashing {args.chunk_size // 1024} KiB chunks", file=sys.stderr)
    tools = ["thaw", "mke2fs"]
    chunks: dict[str, dict[str, set[bytes]]] = {tool: {} for tool in tools}
    for r in results:
        if r.thaw and r.thaw.ok:
            chunks["thaw"][r.tag] = chunk_set(r.thaw_image, args.chunk_size)
        if r.mke2fs and r.mke2fs.ok:
            chunks["mke2fs"][r.tag] = chunk_set(r.mke2fs_image, args.chunk_size)

    chunk_mib = args.chunk_size / MIB
    pair_rows = []
    for a, b in BASE_PAIRS:
        if a not in tags or b not in tags:
            continue
        for tool in tools:
            sa, sb = chunks[tool].get(a), chunks[tool].get(b)
            if sa is None or sb is None:
                pair_rows.append([f"{a}-{b}", tool, "-", "-", "-", "-", "-"])
                continue
            shared = len(sa & sb)
            pair_rows.append([f"{a}-{b}", tool, str(len(sa)), str(len(sb)), str(shared),
                              fmt(shared * chunk_mib), fmt(100 * shared / len(sb) if sb else None)])
    out.append(f"chunks shared between images on the same base ({args.chunk_size // 1024} KiB chunks, "
               "all-zero chunks ignored)")
    out.append(table(["pair A-B", "tool", "chunks A", "chunks B", "shared", "shared MiB", "% of B"], pair_rows))
    out.append("")

    total_rows = []
    for tool in tools:
        sets = chunks[tool]
        if len(sets) != len(results):
            total_rows.append([tool, "-", "-", "-", "-", "-"])
            continue
        each = sum(len(s) for s in sets.values())
        union = len(set().union(*sets.values())) if sets else 0
        total_rows.append([tool, str(each), fmt(each * chunk_mib), str(union), fmt(union * chunk_mib),
                           fmt(each / union if union else None, 2)])
    out.append(f"all {len(results)} images in one chunk store ({', '.join(r.tag for r in results)})")
    out.append(table(["tool", "chunks, per image", "MiB", "distinct chunks", "distinct MiB", "dedup ratio"],
                     total_rows))

    print("\n".join(out))

    for r in results:
        for failure in r.failures:
            problems.append(f"{r.tag}: {failure}")

    if not args.keep:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for path in created:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.unlink(path)
    else:
        print(f"\nkept {work}", file=sys.stderr)

    if problems:
        print("", file=sys.stderr)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time `thaw flatten` against `umoci unpack` + `mke2fs -d` on the corpus and "
                    "count the chunks the resulting ext4 images share.")
    parser.add_argument("--thaw", default=DEFAULT_THAW, help="the thaw binary (default: .build/release/thaw)")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS,
                        help="corpus directory holding oci/ (default: $THAW_CORPUS or /var/cache/thaw-corpus)")
    parser.add_argument("--tags", default=DEFAULT_TAGS, help=f"comma-separated tags (default: {DEFAULT_TAGS})")
    parser.add_argument("--work", help="where to write images and bundles (default: a temporary directory)")
    parser.add_argument("--chunk-size", type=int, default=512 * 1024, help="chunk size in bytes (default: 524288)")
    parser.add_argument("--keep", action="store_true", help="keep images, bundles and logs")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"flatten-bench.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
