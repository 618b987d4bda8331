#!/usr/bin/env python3
"""Compares two directory trees the way Thaw's tests need.

Thaw's tests check the ext4 images it writes by reading them back with real tools (a read-only
loop mount, `debugfs rdump`) and comparing the tree they see with the tree `umoci unpack`
produces for the same image. This script does that comparison without following symlinks:

  - the set of relative paths (a top-level `lost+found` in ACTUAL is ignored when EXPECTED has
    none, since every ext4 filesystem has one);
  - file type, permission bits including setuid/setgid/sticky, uid and gid;
  - size and SHA-256 of regular files, symlink targets, device major/minor;
  - hard-link groups: which paths share an inode (every type but directories; only paths present
    in both trees count);
  - xattrs in every namespace, values compared as bytes;
  - with --mtime, the modification time in whole seconds of everything but directories
    (directory mtimes change whenever an unpacker adds an entry).

Each difference is one line, `PATH: what differs (expected X, actual Y)`; at most 50 are printed,
then a count, then a summary line. Exit status: 0 equal, 1 different, 2 usage or read errors.

    compare-trees.py EXPECTED ACTUAL [--ignore-hardlinks] [--ignore-xattrs] [--ignore-devices]
                     [--ignore-special-bits] [--ignore-symlink-owners] [--mtime]

The --ignore options exist for trees extracted by `debugfs rdump`, which writes every hard link
as a separate file, drops xattrs, device nodes and fifos, clears setuid/setgid/sticky bits, and
leaves symlinks owned by the user running it with the current time as their mtime.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import stat
import sys
from dataclasses import dataclass

MAX_LINES = 50
HASH_BUFFER = 1 << 20

TYPE_NAMES = {
    stat.S_IFREG: "regular file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
SPECIAL_TYPES = {stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}


class ReadError(Exception):
    """A tree could not be read; reported with exit status 2."""


@dataclass
class Node:
    path: str       # relative, "." for the root
    full: str       # absolute path on disk
    st: os.stat_result

    @property
    def kind(self) -> int:
        return stat.S_IFMT(self.st.st_mode)


def scan(root: str, drop_lost_found: bool) -> dict[str, Node]:
    """Every entry under `root` (root included as "."), by relative path, without following links."""
    nodes: dict[str, Node] = {}
    try:
        nodes["."] = Node(".", root, os.stat(root))  # the root itself may be reached through a link
    except OSError as error:
        raise ReadError(f"cannot read {root}: {error.strerror}")
    stack = [("", root)]
    while stack:
        relative, directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as error:
            raise ReadError(f"cannot list {directory}: {error.strerror}")
        for entry in entries:
            path = relative + entry.name
            if drop_lost_found and path == "lost+found":
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as error:
                raise ReadError(f"cannot stat {entry.path}: {error.strerror}")
            nodes[path] = Node(path, entry.path, st)
            if stat.S_ISDIR(st.st_mode):
                stack.append((path + "/", entry.path))
    return nodes


def file_digest(path: str) -> str:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(HASH_BUFFER):
                sha.update(chunk)
    except OSError as error:
        raise ReadError(f"cannot read {path}: {error.strerror}")
    return sha.hexdigest()


def xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise ReadError(f"cannot list xattrs of {path}: {error.strerror}")
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as error:
            raise ReadError(f"cannot read xattr {name} of {path}: {error.strerror}")
    return values


def link_groups(nodes: dict[str, Node], common: set[str]) -> dict[str, frozenset[str]]:
    """For each non-directory in `common`, the set of paths in `common` sharing its inode."""
    by_inode: dict[tuple[int, int], set[str]] = {}
    for path in common:
        node = nodes[path]
        if node.kind != stat.S_IFDIR:
            by_inode.setdefault((node.st.st_dev, node.st.st_ino), set()).add(path)
    groups = {}
    for paths in by_inode.values():
        group = frozenset(paths)
        for path in paths:
            groups[path] = group
    return groups


def show(value) -> str:
    if isinstance(value, bytes):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, frozenset):
        return "[" + ", ".join(sorted(value)) + "]"
    return str(value)


def mode_text(mode: int) -> str:
    return "%04o" % stat.S_IMODE(mode)


class Comparison:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.differences: list[str] = []

    def differ(self, path: str, what: str, expected, actual) -> None:
        self.differences.append(f"{path}: {what} (expected {show(expected)}, actual {show(actual)})")

    def run(self, expected_root: str, actual_root: str) -> int:
        expected = scan(expected_root, drop_lost_found=False)
        actual = scan(actual_root, drop_lost_found="lost+found" not in expected)
        if self.args.ignore_devices:
            for tree in (expected, actual):
                for path in [p for p, n in tree.items() if n.kind in SPECIAL_TYPES]:
                    del tree[path]

        for path in sorted(expected.keys() - actual.keys()):
            self.differ(path, "missing", TYPE_NAMES.get(expected[path].kind, "entry"), "nothing")
        for path in sorted(actual.keys() - expected.keys()):
            self.differ(path, "unexpected", "nothing", TYPE_NAMES.get(actual[path].kind, "entry"))

        common = expected.keys() & actual.keys()
        if not self.args.ignore_hardlinks:
            expected_groups = link_groups(expected, common)
            actual_groups = link_groups(actual, common)
        grouped: set[str] = set()  # paths already named in a reported hard-link difference

        for path in sorted(common):
            e, a = expected[path], actual[path]
            if e.kind != a.kind:
                self.differ(path, "type", TYPE_NAMES.get(e.kind, "?"), TYPE_NAMES.get(a.kind, "?"))
                continue
            mode_mask = 0o777 if self.args.ignore_special_bits else 0o7777
            if e.st.st_mode & mode_mask != a.st.st_mode & mode_mask:
                self.differ(path, "mode", mode_text(e.st.st_mode), mode_text(a.st.st_mode))
            if not (self.args.ignore_symlink_owners and e.kind == stat.S_IFLNK):
                if e.st.st_uid != a.st.st_uid:
                    self.differ(path, "uid", e.st.st_uid, a.st.st_uid)
                if e.st.st_gid != a.st.st_gid:
                    self.differ(path, "gid", e.st.st_gid, a.st.st_gid)
            if e.kind == stat.S_IFREG:
                if e.st.st_size != a.st.st_size:
                    self.differ(path, "size", e.st.st_size, a.st.st_size)
                else:
                    de, da = file_digest(e.full), file_digest(a.full)
                    if de != da:
                        self.differ(path, "content sha256", de[:16], da[:16])
            elif e.kind == stat.S_IFLNK:
                te, ta = os.readlink(e.full), os.readlink(a.full)
                if te != ta:
                    self.differ(path, "symlink target", te, ta)
            elif e.kind in (stat.S_IFCHR, stat.S_IFBLK):
                de = (os.major(e.st.st_rdev), os.minor(e.st.st_rdev))
                da = (os.major(a.st.st_rdev), os.minor(a.st.st_rdev))
                if de != da:
                    self.differ(path, "device", "%d,%d" % de, "%d,%d" % da)
            if not self.args.ignore_hardlinks and e.kind != stat.S_IFDIR:
                ge, ga = expected_groups[path], actual_groups[path]
                if ge != ga and path not in grouped:
                    grouped.update(ge | ga)
                    self.differ(path, "hard-link group", ge, ga)
            if self.args.mtime and e.kind != stat.S_IFDIR:
                me, ma = e.st.st_mtime_ns // 1_000_000_000, a.st.st_mtime_ns // 1_000_000_000
                if me != ma:
                    self.differ(path, "mtime", me, ma)
            if not self.args.ignore_xattrs:
                xe, xa = xattrs(e.full), xattrs(a.full)
                for name in sorted(xe.keys() | xa.keys()):
                    if name not in xa:
                        self.differ(path, f"xattr {name}", xe[name], "absent")
                    elif name not in xe:
                        self.differ(path, f"xattr {name}", "absent", xa[name])
                    elif xe[name] != xa[name]:
                        self.differ(path, f"xattr {name}", xe[name], xa[name])

        for line in self.differences[:MAX_LINES]:
            print(line)
        if len(self.differences) > MAX_LINES:
            print(f"... and {len(self.differences) - MAX_LINES} more differences")
        compared = len(expected.keys() | actual.keys())
        verdict = "equal" if not self.differences else f"{len(self.differences)} differences"
        print(f"compared {compared} entries ({len(expected)} expected, {len(actual)} actual): {verdict}")
        return 0 if not self.differences else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare two directory trees: paths, types, modes, owners, contents, links, "
                    "devices, xattrs and optionally mtimes. Exit 0 equal, 1 different, 2 error.")
    parser.add_argument("expected", metavar="EXPECTED", help="the reference tree (e.g. umoci unpack's rootfs)")
    parser.add_argument("actual", metavar="ACTUAL", help="the tree under test (e.g. a loop mount of Thaw's output)")
    parser.add_argument("--ignore-hardlinks", action="store_true", help="do not compare hard-link groups")
    parser.add_argument("--ignore-xattrs", action="store_true", help="do not compare extended attributes")
    parser.add_argument("--ignore-devices", action="store_true",
                        help="skip device nodes, fifos and sockets in both trees (debugfs rdump drops them)")
    parser.add_argument("--ignore-special-bits", action="store_true",
                        help="compare only the rwx bits, not setuid/setgid/sticky (debugfs rdump drops them)")
    parser.add_argument("--ignore-symlink-owners", action="store_true",
                        help="do not compare the uid/gid of symlinks (debugfs rdump does not set them)")
    parser.add_argument("--mtime", action="store_true", help="compare mtimes (whole seconds) of non-directories")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(errors="backslashreplace")
    for label, path in (("EXPECTED", args.expected), ("ACTUAL", args.actual)):
        if not os.path.isdir(path):
            print(f"compare-trees.py: error: {label} {path} is not a directory", file=sys.stderr)
            return 2
    try:
        return Comparison(args).run(args.expected, args.actual)
    except ReadError as error:
        print(f"compare-trees.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
