#!/usr/bin/env python3
"""Figures for the README's garbage-collection section, on a directory store:

  copy-forward  the corpus images base, py, perl and web pushed under function names, then py's
                name moved to slim (py with a changed top layer), so py's old manifest falls out
                of use; `thaw roots rotate`, then `thaw gc` re-seals every named manifest into the
                new root: MB re-sealed per second;
  delete        `thaw gc --quiet-hours 0` deletes the old root as a whole: seconds and objects;
  reclaimed     bytes the old root held against the new one: what dropping py's old manifest freed.

    gc-bench.py [--thaw PATH] [--corpus DIR] [--runs 1] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import DEFAULT_CORPUS, DEFAULT_THAW, MIB, BenchError, fmt, machine_line, table

NAMED = ["base", "py", "perl", "web"]


def tree_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def thaw(args, argv: list[str], what: str) -> tuple[float, str]:
    began = time.monotonic()
    out = subprocess.run([args.thaw, *argv], capture_output=True, text=True)
    seconds = time.monotonic() - began
    if out.returncode != 0:
        raise BenchError(f"{what} failed ({out.returncode}): {(out.stderr or out.stdout).strip()[-800:]}")
    return seconds, out.stdout


def one_run(args, work: str) -> list[str]:
    store = os.path.join(work, "store")
    common = ["--store", store, "--keys", os.path.join(work, "keys")]
    for tag in NAMED:
        thaw(args, ["push", f"oci:{args.corpus}/oci:{tag}", "--name", tag, *common], f"push {tag}")
    thaw(args, ["push", f"oci:{args.corpus}/oci:slim", "--name", "py", *common], "push slim as py")
    thaw(args, ["roots", "rotate", *common], "roots rotate")
    old_root = os.path.join(store, "roots", "r0001")
    new_root = os.path.join(store, "roots", "r0002")
    old_bytes = tree_bytes(old_root)
    os.sync()
    copy_seconds, copy_out = thaw(args, ["gc", *common], "gc (copy forward)")
    match = re.search(r"re-sealed: ([0-9.]+) MiB", copy_out)
    if not match:
        raise BenchError(f"gc printed no re-sealed figure: {copy_out}")
    resealed_mib = float(match.group(1))
    new_bytes = tree_bytes(new_root)
    os.sync()
    delete_seconds, delete_out = thaw(args, ["gc", "--quiet-hours", "0", *common], "gc (delete)")
    deleted = re.search(r"deleted: r0001 \((\d+) objects\)", delete_out)
    if not deleted or os.path.exists(old_root):
        raise BenchError(f"the old root was not deleted: {delete_out}")
    return [fmt(resealed_mib), fmt(copy_seconds, 2), fmt(resealed_mib * MIB / 1e6 / copy_seconds),
            deleted.group(1), fmt(delete_seconds, 2), fmt(old_bytes / MIB), fmt(new_bytes / MIB),
            fmt((old_bytes - new_bytes) / MIB)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thaw", default=DEFAULT_THAW)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not os.access(args.thaw, os.X_OK):
        parser.error(f"{args.thaw} is not built: swift build -c release --product thaw")
    work = args.work or tempfile.mkdtemp(prefix="thaw-gc-bench-")
    print(f"# Thaw garbage collection (directory store)\n\n{machine_line()}\n", flush=True)
    status = 0
    try:
        rows = []
        for run in range(args.runs):
            run_dir = os.path.join(work, f"run{run}")
            os.makedirs(run_dir, exist_ok=True)
            rows.append(one_run(args, run_dir))
            shutil.rmtree(run_dir, ignore_errors=True)
        print(table(["re-sealed MiB", "copy s", "copy MB/s", "objects deleted", "delete s", "old root MiB", "new root MiB",
                     "reclaimed MiB"], rows))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
