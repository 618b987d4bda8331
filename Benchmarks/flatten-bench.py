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
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field

MIB = 1 << 20
READ_BUFFER = 4 * MIB
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_THAW = os.path.join(REPO, ".build", "release", "thaw")
DEFAULT_CORPUS = os.environ.get("THAW_CORPUS", "/var/cache/thaw-corpus")
DEFAULT_TAGS = "base,py,perl,web,slim"
BASE_PAIRS = [("base", "py"), ("py", "perl"), ("py", "web"), ("perl", "web"), ("py", "slim")]
REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


class BenchError(Exception):
    """Stops the benchmark with one clear line."""


# --------------------------------------------------------------------------------------------
# Running and measuring


@dataclass
class Run:
    seconds: float
    max_rss_kib: int     # wait4: exact unless at the launcher's floor
    status: int
    log: str
    sampled_rss_kib: int = 0  # highest VmHWM seen while it ran (a lower bound)

    @property
    def ok(self) -> bool:
        return self.status == 0

    def rss_mib(self, floor: "Run | None") -> float:
        """wait4's peak when above the launcher's floor, else the sampled peak."""
        if floor is not None and self.max_rss_kib <= floor.max_rss_kib + 512 and self.sampled_rss_kib:
            return self.sampled_rss_kib / 1024
        return self.max_rss_kib / 1024


# ru_maxrss of a process counts the memory of the process it was forked from: at exec the
# kernel folds the old address space's peak into it, so a child of this script would report this
# script's own peak. A small launcher therefore forks the measured command, resets the copied
# address space's peak (/proc/self/clear_refs) before exec, and reports the command's own wait4
# rusage. A floor of a few MiB is left from the launcher; for commands that stay below it, the
# launcher also samples VmHWM of the command's fresh address space every 5 ms after exec.
LAUNCHER = r"""
import os, select, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
exec_read, exec_write = os.pipe()  # close-on-exec: EOF means the exec happened
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(report)
    os.close(exec_read)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        os.write(2, ("cannot run %s: %s\n" % (argv[0], error.strerror)).encode())
        os.write(exec_write, b"!")
    os._exit(127)
os.close(exec_write)
failed = os.read(exec_read, 1)
sampled = 0
if not failed:
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    status_path = "/proc/%d/status" % pid
    while not poller.poll(5):
        try:
            with open(status_path, "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        sampled = max(sampled, int(line.split()[1]))
                        break
        except (OSError, ValueError):
            pass
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
os.write(report, ("%d %d %d %.6f" % (os.waitstatus_to_exitcode(status), usage.ru_maxrss, sampled, seconds)).encode())
"""


def measure(argv: list[str], log_path: str, sync: bool = True) -> Run:
    """Runs `argv` with output to `log_path`; its wall time and its own peak RSS."""
    if sync:
        os.sync()  # earlier steps' dirty pages are not this step's cost
    read_end, write_end = os.pipe()
    try:
        with open(log_path, "wb") as log:
            launcher = subprocess.Popen([sys.executable, "-S", "-I", "-c", LAUNCHER, str(write_end), *argv],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        pass_fds=(write_end,))
            os.close(write_end)
            write_end = -1
            with os.fdopen(read_end, "rb") as pipe:
                read_end = -1
                report = pipe.read().decode()
            launcher.wait()
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    with open(log_path, "rb") as log:
        tail = log.read()[-2000:].decode(errors="replace").strip()
    try:
        status, rss, sampled, seconds = report.split()
        return Run(float(seconds), int(rss), int(status), tail, int(sampled))
    except ValueError:
        return Run(0.0, 0, 127, tail or f"the launcher for {argv[0]} reported nothing")


# --------------------------------------------------------------------------------------------
# The corpus


def read_json(path: str):
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise BenchError(f"cannot read {path}: {error}")


class Layout:
    def __init__(self, path: str):
        self.path = path
        self.index = read_json(os.path.join(path, "index.json"))
        self._sizes: dict[str, int] = {}

    def blob(self, digest: str) -> str:
        algorithm, _, hex_digest = digest.partition(":")
        return os.path.join(self.path, "blobs", algorithm, hex_digest)

    def manifest(self, tag: str) -> dict:
        for entry in self.index.get("manifests", []):
            if (entry.get("annotations") or {}).get(REF_NAME) == tag:
                descriptor = entry
                break
        else:
            raise BenchError(f"no tag {tag} in {self.path}/index.json")
        while descriptor.get("mediaType") in INDEX_TYPES:
            nested = read_json(self.blob(descriptor["digest"]))
            matches = [m for m in nested.get("manifests", [])
                       if (m.get("platform") or {}).get("os") == "linux"
                       and (m.get("platform") or {}).get("architecture") == "amd64"]
            if not matches:
                raise BenchError(f"{tag}: no linux/amd64 manifest in its index")
            descriptor = matches[0]
        return read_json(self.blob(descriptor["digest"]))

    def uncompressed_size(self, layer: dict) -> int:
        """Bytes of the layer tar after decompression (cached by digest). Reading every blob
        here also puts the corpus in the page cache, the same for both contenders."""
        digest = layer["digest"]
        if digest in self._sizes:
            return self._sizes[digest]
        path = self.blob(digest)
        media = layer.get("mediaType", "")
        total = 0
        if media.endswith("+zstd") or media.endswith(".zstd"):
            with open(path, "rb") as blob:
                child = subprocess.Popen(["zstd", "-dcq"], stdin=blob, stdout=subprocess.PIPE)
                while chunk := child.stdout.read(READ_BUFFER):
                    total += len(chunk)
                if child.wait() != 0:
                    raise BenchError(f"zstd cannot decompress {path}")
        elif media.endswith("gzip"):
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            with open(path, "rb") as blob:
                while chunk := blob.read(READ_BUFFER):
                    total += len(inflater.decompress(chunk))
                    while inflater.unconsumed_tail:
                        total += len(inflater.decompress(inflater.unconsumed_tail))
                    if inflater.eof and inflater.unused_data:
                        # Concatenated gzip members.
                        rest = inflater.unused_data
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                        total += len(inflater.decompress(rest))
                total += len(inflater.flush())
        else:
            total = os.path.getsize(path)
        self._sizes[digest] = total
        return total


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


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def machine_line() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores{', ' + model if model else ''}, Linux {platform.release()}"


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


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
