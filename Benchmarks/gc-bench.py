#!/usr/bin/env python3
"""Figures for the README's garbage-collection section, on a directory store and on an S3 store
(moto_server on loopback):

  copy-forward  the corpus images base, py, perl and web pushed under function names, then py's
                name moved to slim (py with a changed top layer), so py's old manifest falls out
                of use; `thaw roots rotate`, then `thaw gc` re-seals every named manifest into the
                new root: MB re-sealed per second;
  delete        `thaw gc --quiet-hours 0` deletes the old root as a whole: seconds and objects
                (a directory renamed away and removed; on S3, DeleteObjects 1,000 keys a request);
  reclaimed     bytes the old root held against the new one: what dropping py's old manifest freed
                (file sizes in the directory; on S3, object sizes from ListObjectsV2).

    gc-bench.py [--store dir|s3|both] [--thaw PATH] [--corpus DIR] [--runs 1] [--work DIR] [--keep]

Build first: `swift build -c release --product thaw`. The S3 rows need moto_server and boto3
(`scripts/setup.sh test`).
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

from benchlib import DEFAULT_CORPUS, DEFAULT_THAW, MIB, BenchError, fmt, free_port, machine_line, table, wait_for_port

NAMED = ["base", "py", "perl", "web"]


def tree_objects(path: str) -> tuple[int, int]:
    """Files under `path` and their bytes."""
    count = total = 0
    for root, _, files in os.walk(path):
        for name in files:
            count += 1
            total += os.lstat(os.path.join(root, name)).st_size
    return count, total


class DirectoryTarget:
    """A directory store; its metadata is the default file beside it."""
    kind = "dir"

    def __init__(self, work: str):
        self.store = os.path.join(work, "store")
        self.env: dict[str, str] = {}

    def arguments(self) -> list[str]:
        return ["--store", self.store]

    def root_objects(self, root: str) -> tuple[int, int]:
        return tree_objects(os.path.join(self.store, "roots", root))


class MotoServer:
    """moto_server on a free loopback port, for the S3 rows; `stop` ends it."""

    ACCESS_KEY = "thaw-bench-access"
    SECRET_KEY = "thaw-bench-secret"

    def __init__(self, work: str):
        if shutil.which("moto_server") is None:
            raise BenchError("moto_server is not installed: scripts/setup.sh test")
        try:
            import boto3  # installed with moto
        except ImportError:
            raise BenchError("boto3 is not installed: scripts/setup.sh test")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(work, "moto.log"), "wb")
        self.process = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, "moto_server")
        except BenchError:
            self.stop()
            raise
        # Credentials from the environment only (not on thaw's command line), and no AWS config
        # file of the user's in the way.
        self.env = {"AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
                    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class S3Target:
    """An S3 store in a fresh bucket of the moto server, under a key prefix; its metadata is a
    file in the run's directory rather than the default under $THAW_HOME."""
    kind = "s3"
    PREFIX = "gc"

    def __init__(self, moto: MotoServer, work: str, bucket: str):
        self.moto = moto
        self.bucket = bucket
        self.work = work
        self.env = moto.env
        moto.client.create_bucket(Bucket=bucket)

    def arguments(self) -> list[str]:
        return ["--store", f"s3://{self.bucket}/{self.PREFIX}", "--endpoint", self.moto.endpoint,
                "--metadata", os.path.join(self.work, "metadata.sqlite")]

    def root_objects(self, root: str) -> tuple[int, int]:
        """Objects under the root and their bytes, by ListObjectsV2."""
        count = total = 0
        pages = self.moto.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.PREFIX}/roots/{root}/")
        for page in pages:
            for entry in page.get("Contents", []):
                count += 1
                total += entry["Size"]
        return count, total


def thaw(args, target, argv: list[str], what: str) -> tuple[float, str]:
    began = time.monotonic()
    out = subprocess.run([args.thaw, *argv], capture_output=True, text=True, env={**os.environ, **target.env})
    seconds = time.monotonic() - began
    if out.returncode != 0:
        raise BenchError(f"{target.kind}: {what} failed ({out.returncode}): {(out.stderr or out.stdout).strip()[-800:]}")
    return seconds, out.stdout


def one_run(args, work: str, target) -> list[str]:
    common = [*target.arguments(), "--keys", os.path.join(work, "keys")]
    for tag in NAMED:
        thaw(args, target, ["push", f"oci:{args.corpus}/oci:{tag}", "--name", tag, *common], f"push {tag}")
    thaw(args, target, ["push", f"oci:{args.corpus}/oci:slim", "--name", "py", *common], "push slim as py")
    thaw(args, target, ["roots", "rotate", *common], "roots rotate")
    _, old_bytes = target.root_objects("r0001")
    os.sync()
    copy_seconds, copy_out = thaw(args, target, ["gc", *common], "gc (copy forward)")
    match = re.search(r"re-sealed: ([0-9.]+) MiB", copy_out)
    if not match:
        raise BenchError(f"{target.kind}: gc printed no re-sealed figure: {copy_out}")
    resealed_mib = float(match.group(1))
    _, new_bytes = target.root_objects("r0002")
    old_objects, _ = target.root_objects("r0001")
    os.sync()
    delete_seconds, delete_out = thaw(args, target, ["gc", "--quiet-hours", "0", *common], "gc (delete)")
    deleted = re.search(r"deleted: r0001 \((\d+) objects\)", delete_out)
    left, _ = target.root_objects("r0001")
    if not deleted or left:
        raise BenchError(f"{target.kind}: the old root was not deleted ({left} objects left): {delete_out}")
    if int(deleted.group(1)) != old_objects:
        raise BenchError(f"{target.kind}: gc deleted {deleted.group(1)} objects, the old root held {old_objects}")
    return [target.kind, fmt(resealed_mib), fmt(copy_seconds, 2), fmt(resealed_mib * MIB / 1e6 / copy_seconds),
            deleted.group(1), fmt(delete_seconds, 2), fmt(old_bytes / MIB), fmt(new_bytes / MIB),
            fmt((old_bytes - new_bytes) / MIB)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["dir", "s3", "both"], default="both",
                        help="which store kinds to measure (default: both)")
    parser.add_argument("--thaw", default=DEFAULT_THAW)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not os.access(args.thaw, os.X_OK):
        parser.error(f"{args.thaw} is not built: swift build -c release --product thaw")
    kinds = ["dir", "s3"] if args.store == "both" else [args.store]
    work = args.work or tempfile.mkdtemp(prefix="thaw-gc-bench-")
    names = {"dir": "directory store", "s3": "S3 store, moto_server on loopback"}
    print(f"# Thaw garbage collection ({'; '.join(names[k] for k in kinds)})\n\n{machine_line()}\n", flush=True)
    status = 0
    moto = None
    try:
        rows = []
        if "s3" in kinds:
            moto = MotoServer(work)
        for kind in kinds:
            for run in range(args.runs):
                run_dir = os.path.join(work, f"{kind}-run{run}")
                os.makedirs(run_dir, exist_ok=True)
                target = DirectoryTarget(run_dir) if kind == "dir" else S3Target(moto, run_dir, f"thaw-gc-bench-{run}")
                rows.append(one_run(args, run_dir, target))
                shutil.rmtree(run_dir, ignore_errors=True)
        print(table(["store", "re-sealed MiB", "copy s", "copy MB/s", "objects deleted", "delete s", "old root MiB",
                     "new root MiB", "reclaimed MiB"], rows))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    finally:
        if moto is not None:
            moto.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
