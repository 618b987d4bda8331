"""What the benchmarks under Benchmarks/ share: running a command and measuring its wall time
and its own peak RSS, reading the corpus's OCI layout, and printing tables.

Imported by the scripts beside it (Python puts the script's directory on the path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1 << 20
READ_BUFFER = 4 * MIB
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_THAW = os.path.join(REPO, ".build", "release", "thaw")
DEFAULT_CORPUS = os.environ.get("THAW_CORPUS", "/var/cache/thaw-corpus")
REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")

# Corpus functions that load what their kind of handler loads, then read their event from
# standard input and answer with it: what a snapshot is taken of, and what the invoke service runs.
EVENT_HANDLERS = {
    "py": ["python3", "-c", "import json, email, http.client, sys; event = json.loads(sys.stdin.readline()); "
           "print(json.dumps({'ok': True, 'event': event}))"],
    "perl": ["perl", "-MJSON", "-MDBI", "-MLWP::UserAgent", "-e",
             "my $event = decode_json(scalar <STDIN>); print encode_json({ok => 1, event => $event})"],
    "web": ["sh", "-c", "nginx -t 2>/dev/null; curl --version >/dev/null; read -r event; "
            "printf '{\"ok\": true, \"event\": %s}\\n' \"$event\""],
}


class BenchError(Exception):
    """Stops the benchmark with one clear line."""


def check_arguments(parser: argparse.ArgumentParser, tags: list[str], starts: dict, root_for: str,
                    programs: list[str], build: str) -> None:
    """Stops with the parser's error when a tag has no start defined, the user is not root
    (`root_for` says why root is needed), or a program is not built (`build` says how)."""
    for tag in tags:
        if tag not in starts:
            parser.error(f"no start is defined for tag '{tag}' (known: {', '.join(starts)})")
    if os.geteuid() != 0:
        parser.error(f"needs root: {root_for}")
    for program in programs:
        if not os.access(program, os.X_OK):
            parser.error(f"{program} is not built: {build}")


def run_in_work_directory(args: argparse.Namespace, prefix: str, body: Callable[[str], None]) -> int:
    """Runs `body` with a work directory (--work, or a new temporary one), removed afterwards
    unless --keep; a `BenchError` becomes one line on standard error and exit status 1."""
    work = args.work or tempfile.mkdtemp(prefix=prefix)
    os.makedirs(work, exist_ok=True)
    try:
        body(work)
        return 0
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


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


def measure(argv: list[str], log_path: str, sync: bool = True, env: dict[str, str] | None = None) -> Run:
    """Runs `argv` with output to `log_path` (and `env` added to this process's environment);
    its wall time and its own peak RSS."""
    if sync:
        os.sync()  # earlier steps' dirty pages are not this step's cost
    read_end, write_end = os.pipe()
    try:
        with open(log_path, "wb") as log:
            launcher = subprocess.Popen([sys.executable, "-S", "-I", "-c", LAUNCHER, str(write_end), *argv],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        pass_fds=(write_end,), env={**os.environ, **(env or {})})
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


# --------------------------------------------------------------------------------------------
# Servers the benchmarks start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise BenchError(f"{what} did not happen within {seconds:.0f} s")


def wait_for_port(port: int, what: str) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False
    wait_for(listening, what)


def installation_files(program: str) -> list[str]:
    """A program and the shared libraries it loads (ldd): what stays resident on a worker whose
    agent runs all the time."""
    files = [os.path.realpath(program)]
    out = subprocess.run(["ldd", program], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and parts[1].strip().startswith("/"):
            files.append(parts[1].split()[0])
    return files


def drop_caches_keeping(files: list[str]) -> None:
    """Drops the page cache, then reads `files` back in: the image and the store are cold, as in
    a cold start, while the Thaw installation is resident, as on a worker running its agent."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
