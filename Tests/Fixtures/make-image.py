#!/usr/bin/env python3
"""Writes OCI test images for Thaw's tests.

Thaw flattens OCI images into deterministic ext4 filesystems. Its tests need images whose edge
cases are known in advance: every file type, odd modes and owners, xattrs, long names in both
pax and GNU form, whiteouts and opaque directories, hard links, files over 4 GiB, large
directories, layers shared between images, multi-platform indexes, and deliberately broken
images. The layer tars are written with Python's `tarfile`, a tar writer independent of Thaw's
own, so a misreading shared by Thaw's tar reader and writer cannot hide in a round trip.

Output is deterministic: fixed mtimes, fixed owners, gzip with mtime 0, the zstd CLI at a fixed
level. Running the same command twice writes the same blobs.

    make-image.py OUT_DIR --variant NAME [--compression gzip|zstd|none|mixed] [--tag TAG]
                  [--docker-archive FILE.tar]

OUT_DIR becomes (or is added to) an OCI image layout; the image is tagged with the annotation
`org.opencontainers.image.ref.name` = TAG (default: the variant name), replacing any earlier
entry with that tag. `--docker-archive` also writes the image as a `docker save` archive whose
RepoTags are `TAG:latest`. With `--compression mixed` layer 1 is gzip, layer 2 zstd, layer 3 an
uncompressed tar, and so on. The `huge` variant always uses an uncompressed layer.

Variants: full, many, huge, shared-a, shared-b, multiarch, and the hostile ones (hostile-dotdot,
hostile-absolute, hostile-hardlink-missing, hostile-hardlink-outside, hostile-truncated,
hostile-blob-digest, hostile-diffid, hostile-media-type, hostile-size-field). Each hostile image
is well formed except for one defect in its second layer.

One line is printed per image written: tag, manifest digest and layer count.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Iterable

MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
CREATED = "2023-11-14T22:13:20Z"

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
REF_NAME = "org.opencontainers.image.ref.name"
ZSTD_LEVEL = "-3"
COPY_BUFFER = 1 << 20
MIB = 1 << 20


class FixtureError(Exception):
    """A problem worth one clear line on stderr and exit status 1."""


# --------------------------------------------------------------------------------------------
# Content


def pattern(seed: str, size: int) -> bytes:
    """`size` bytes that never repeat (SHAKE-256 of the seed), so every block differs."""
    return hashlib.shake_256(seed.encode()).digest(size)


class BlockNumbers(io.RawIOBase):
    """A stream of `size` bytes in which each 4 KiB block starts with its number (u64, little
    endian) and is otherwise zero. Generated on the fly, so 4 GiB never sit in memory."""

    BLOCK = 4096

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        remaining = self.size - self.position
        if n is None or n < 0 or n > remaining:
            n = remaining
        if n <= 0:
            return b""
        first = self.position // self.BLOCK
        last = (self.position + n - 1) // self.BLOCK
        buffer = bytearray((last - first + 1) * self.BLOCK)
        for i, block in enumerate(range(first, last + 1)):
            struct.pack_into("<Q", buffer, i * self.BLOCK, block)
        start = self.position - first * self.BLOCK
        self.position += n
        return bytes(buffer[start:start + n])


def capability_v2(permitted: int, effective: bool = True) -> bytes:
    """A `security.capability` value in VFS_CAP_REVISION_2 form (20 bytes)."""
    magic = 0x02000000 | (0x000001 if effective else 0)
    return struct.pack("<IIIII", magic, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)


ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def posix_acl(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """A `system.posix_acl_*` value in the kernel's xattr form (version 2, then tag/perm/id)."""
    out = struct.pack("<I", 2)
    for tag, perm, ident in sorted(entries, key=lambda e: (e[0], e[2])):
        out += struct.pack("<HHI", tag, perm, ident)
    return out


# --------------------------------------------------------------------------------------------
# Layers


@dataclass
class Member:
    info: tarfile.TarInfo
    data: Callable[[], io.RawIOBase] | None = None


@dataclass
class Layer:
    """The entries of one layer tar plus, for hostile images, what to break afterwards."""

    comment: str
    format: int = tarfile.PAX_FORMAT
    members: list[Member] = field(default_factory=list)
    patch_tar: Callable[[str], None] | None = None   # edits the uncompressed tar before hashing
    patch_blob: Callable[[str, str], None] | None = None  # (blob path, compression) after hashing
    media_type: str | None = None   # overrides the media type derived from the compression
    wrong_diff_id: bool = False
    compression: str | None = None  # forces a compression for this layer

    def _info(self, name: str, kind: bytes, mode: int, uid: int, gid: int, mtime: int | str,
              xattrs: dict[str, bytes] | None) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        if isinstance(mtime, str):
            # A pax mtime with a fraction: the ustar field gets the whole seconds.
            self._need_pax(name, "a fractional mtime")
            info.mtime = int(mtime.split(".")[0])
            info.pax_headers["mtime"] = mtime
        else:
            info.mtime = mtime
        for key, value in (xattrs or {}).items():
            self._need_pax(name, "xattrs")
            info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        return info

    def _need_pax(self, name: str, what: str) -> None:
        if self.format != tarfile.PAX_FORMAT:
            raise FixtureError(f"{name}: {what} need a pax layer")

    def _add(self, info: tarfile.TarInfo, data: Callable[[], io.RawIOBase] | None = None) -> None:
        self.members.append(Member(info, data))

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int | str = MTIME,
            xattrs: dict[str, bytes] | None = None) -> None:
        self._add(self._info(name, tarfile.DIRTYPE, mode, uid, gid, mtime, xattrs))

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: int | str = MTIME, xattrs: dict[str, bytes] | None = None) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid, mtime, xattrs)
        info.size = len(data)
        self._add(info, lambda: io.BytesIO(data))

    def stream(self, name: str, size: int, source: Callable[[], io.RawIOBase], mode: int = 0o644) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, 0, 0, MTIME, None)
        info.size = size
        self._add(info, source)

    def symlink(self, name: str, target: str, mode: int = 0o777, uid: int = 0, gid: int = 0,
                mtime: int | str = MTIME) -> None:
        info = self._info(name, tarfile.SYMTYPE, mode, uid, gid, mtime, None)
        info.linkname = target
        self._add(info)

    def hardlink(self, name: str, target: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        info = self._info(name, tarfile.LNKTYPE, mode, uid, gid, MTIME, None)
        info.linkname = target
        self._add(info)

    def device(self, name: str, kind: str, major: int, minor: int, mode: int = 0o600,
               uid: int = 0, gid: int = 0) -> None:
        info = self._info(name, tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE, mode, uid, gid, MTIME, None)
        info.devmajor, info.devminor = major, minor
        self._add(info)

    def fifo(self, name: str, mode: int = 0o644) -> None:
        self._add(self._info(name, tarfile.FIFOTYPE, mode, 0, 0, MTIME, None))

    def whiteout(self, path: str) -> None:
        parent, _, base = path.rpartition("/")
        self.file((parent + "/" if parent else "") + ".wh." + base, mode=0o600)

    def opaque(self, directory: str) -> None:
        self.file(directory.rstrip("/") + "/.wh..wh..opq", mode=0o600)


# --------------------------------------------------------------------------------------------
# Variants


def variant_full() -> list[Layer]:
    """Every entry type and attribute Thaw must carry, then whiteouts over four layers."""
    l1 = Layer("base tree: every file type, modes, owners, xattrs, pax long names")
    l1.dir(".")
    l1.dir("etc")
    l1.file("etc/hostname", b"thaw\n")
    l1.file("etc/empty")
    l1.dir("empty-dir")
    l1.dir("empty-dir-0700", mode=0o700)
    l1.dir("data")
    l1.file("data/small.txt", b"hello, thaw\n")
    l1.file("data/multiblock.bin", pattern("multiblock", 10_000))
    l1.file("data/pattern-3m.bin", pattern("pattern-3m", 3 * MIB + 123))
    l1.file("data/zeros-256k.bin", bytes(256 * 1024))
    l1.file("data/mtime-ns.txt", b"nanoseconds\n", mtime="1700000123.123456789")
    l1.file("data/mtime-2100.txt", b"year 2100\n", mtime=4_102_444_800)
    l1.file("data/mtime-zero.txt", b"epoch\n", mtime=0)
    l1.dir("links")
    l1.symlink("links/short", "../data/small.txt")
    l1.symlink("links/long", "../" + "/".join(["a-rather-long-directory-name-%02d" % i for i in range(7)]) + "/target")
    l1.symlink("links/dangling", "/nonexistent/target")
    l1.symlink("links/absolute", "/etc/hostname")
    l1.symlink("links/mode-0755", "../etc/hostname", mode=0o755)
    l1.hardlink("links/short-hardlink", "links/short")  # a hard link to a symlink
    l1.dir("hl")
    l1.dir("other")
    l1.file("hl/one", b"hard-linked content\n")
    l1.hardlink("hl/two", "hl/one")
    l1.hardlink("other/three", "hl/one")
    l1.dir("dev")
    l1.device("dev/null", "c", 1, 3, mode=0o666)
    l1.device("dev/sda1", "b", 8, 1, mode=0o660, gid=6)
    l1.device("dev/nvme-259-300", "b", 259, 300, mode=0o660, gid=6)
    l1.device("dev/char-4095-1048575", "c", 4095, 1_048_575)
    l1.fifo("dev/fifo")
    l1.hardlink("dev/null-hardlink", "dev/null")
    l1.dir("bin")
    l1.file("bin/setuid", b"#!/bin/sh\n", mode=0o4755)
    l1.file("bin/setgid", b"#!/bin/sh\n", mode=0o2755, gid=50)
    l1.file("bin/setuid-owned", b"#!/bin/sh\n", mode=0o4750, uid=1000, gid=1000)
    l1.file("bin/ping-cap", b"\x7fELF-ish\n", mode=0o755,
            xattrs={"security.capability": capability_v2(1 << 13)})  # CAP_NET_RAW
    l1.dir("tmp", mode=0o1777)
    l1.dir("shared-group", mode=0o2775, gid=100)
    l1.dir("modes")
    l1.file("modes/0600", b"0600\n", mode=0o600)
    l1.file("modes/0751", b"0751\n", mode=0o751)
    l1.file("modes/0000", b"0000\n", mode=0o000)
    l1.dir("modes/readonly-dir", mode=0o555)
    l1.file("modes/readonly-dir/inside", b"inside a 0555 directory\n")
    l1.dir("owners", uid=70_000, gid=100_000)
    l1.file("owners/big-ids", b"uid 100000 gid 70000\n", uid=100_000, gid=70_000)
    l1.symlink("owners/link", "big-ids", uid=100_000, gid=100_000)
    l1.dir("xattrs", xattrs={"user.thaw.dir": b"on a directory"})
    l1.file("xattrs/user.txt", b"one user xattr\n", xattrs={"user.thaw.test": b"hello"})
    many = {f"user.thaw.attribute-{i}": pattern(f"xattr-{i}", 24).hex().encode() for i in range(5)}
    l1.file("xattrs/many.txt", b"five xattrs, too big for the inode\n", xattrs=many)
    l1.file("xattrs/many-again.txt", b"the same five xattrs\n", xattrs=many)
    l1.file("xattrs/binary.txt", b"binary xattr value\n", xattrs={"user.thaw.binary": bytes(range(256))})
    l1.file("xattrs/big.txt", b"one 2000-byte xattr\n", xattrs={"user.thaw.big": pattern("big-xattr", 1000).hex().encode()})
    l1.dir("acl")
    l1.file("acl/file", b"has an access ACL\n", mode=0o664, xattrs={"system.posix_acl_access": posix_acl([
        (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID), (ACL_USER, 6, 1000), (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
        (ACL_MASK, 6, ACL_UNDEFINED_ID), (ACL_OTHER, 4, ACL_UNDEFINED_ID)])})
    l1.dir("acl/default-empty", mode=0o775, xattrs={"system.posix_acl_default": posix_acl([
        (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID), (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID), (ACL_GROUP, 7, 1000),
        (ACL_MASK, 7, ACL_UNDEFINED_ID), (ACL_OTHER, 5, ACL_UNDEFINED_ID)])})
    long_dir = "long/" + "d" * 60 + "/" + "e" * 60
    l1.dir("long")
    l1.dir("long/" + "d" * 60)
    l1.dir(long_dir)
    l1.file(long_dir + "/a-file-whose-path-is-longer-than-one-hundred-bytes.txt", b"pax path record\n")
    l1.file("implicit/a/b/c.txt", b"parents not declared in the tar\n")
    l1.dir("unicode")
    l1.file("unicode/caf\u00e9 \u2615.txt", b"utf-8 name\n")
    l1.file("unicode/with space.txt", b"space\n")
    # Targets for the second layer's whiteouts and replacements.
    l1.dir("wh")
    l1.file("wh/remove-me.txt", b"layer 1\n")
    l1.file("wh/keep-me.txt", b"layer 1, kept\n")
    l1.dir("wh/gone-dir")
    l1.file("wh/gone-dir/a", b"a\n")
    l1.dir("wh/gone-dir/sub")
    l1.file("wh/gone-dir/sub/b", b"b\n")
    l1.dir("opq")
    l1.file("opq/old1", b"old\n")
    l1.dir("opq/oldsub")
    l1.file("opq/oldsub/old2", b"old\n")
    l1.file("f2d", b"a file that becomes a directory\n")
    l1.dir("d2f")
    l1.file("d2f/child", b"a directory that becomes a file\n")
    l1.dir("redecl")
    l1.file("redecl/keep.txt", b"survives the re-declaration of its directory\n")
    l1.symlink("link2file", "data/small.txt")
    l1.dir("xdir", xattrs={"user.thaw.redeclared": b"layer 1"})
    l1.file("xfile", b"layer 1\n", xattrs={"user.thaw.replaced": b"layer 1"})

    l2 = Layer("whiteouts, opaque directory, replacements, GNU long names", format=tarfile.GNU_FORMAT)
    l2.whiteout("wh/remove-me.txt")
    l2.whiteout("wh/gone-dir")
    l2.dir("opq")
    l2.file("opq/new1.txt", b"new, written before the opaque marker\n")
    l2.opaque("opq")
    l2.file("opq/newsub/new2.txt", b"new, in an implicit directory\n")
    l2.dir("f2d")
    l2.file("f2d/inner.txt", b"inside what was a file\n")
    l2.file("d2f", b"was a directory\n")
    l2.file("hl/two", b"no longer linked\n")
    l2.dir("redecl", mode=0o750, uid=1000, gid=1000)
    l2.file("link2file", b"was a symlink\n")
    l2.dir("xdir", mode=0o711)
    l2.file("xfile", b"layer 2, no xattrs\n")
    l2.file("layer2-only.txt", b"removed again by layer 3\n")
    gnu_dir = "gnu/" + "x" * 70 + "/" + "y" * 70
    l2.dir("gnu")
    l2.dir("gnu/" + "x" * 70)
    l2.dir(gnu_dir)
    gnu_file = gnu_dir + "/a-file-whose-path-needs-a-gnu-longname-record.txt"
    l2.file(gnu_file, b"GNU 'L' record\n", uid=100_000, gid=70_000)
    l2.symlink("gnu/long-symlink", "../" + "z" * 120 + "/" + "w" * 120)
    l2.hardlink("gnu/long-hardlink", gnu_file)

    l3 = Layer("whiteout of layer 2's work, re-adding what layer 2 removed")
    l3.whiteout("layer2-only.txt")
    l3.whiteout("f2d/inner.txt")
    l3.file("wh/remove-me.txt", b"back again in layer 3\n", mode=0o640)
    l3.dir("wh/gone-dir", mode=0o700)
    l3.whiteout("never-existed")

    l4 = Layer("ustar layer: prefix field, directory after its child, replaced file", format=tarfile.USTAR_FORMAT)
    l4.file("late/child.txt", b"written before its directory entry\n")
    l4.dir("late", mode=0o700, uid=1000, gid=1000)
    prefix_dir = "ustar-prefix/" + "p" * 90
    l4.dir("ustar-prefix")
    l4.dir(prefix_dir)
    l4.file(prefix_dir + "/" + "q" * 80 + ".txt", b"ustar prefix field\n")
    l4.file("data/small.txt", b"hello again, thaw, from layer 4\n", mode=0o640)
    return [l1, l2, l3, l4]


def variant_many() -> list[Layer]:
    layer = Layer("a directory of 50,000 files")
    layer.dir("many")
    for i in range(50_000):
        layer.file(f"many/f{i:05d}", b"%d\n" % i)
    layer.dir("etc")
    layer.file("etc/hostname", b"many\n")
    layer.file("README", b"one directory with 50,000 entries\n")
    return [layer]


HUGE_SIZE = (4 << 30) + 12 * 1024


def variant_huge() -> list[Layer]:
    layer = Layer("one file of 4 GiB + 12 KiB", compression="none")
    layer.stream("huge.bin", HUGE_SIZE, lambda: BlockNumbers(HUGE_SIZE))
    layer.file("small.txt", b"next to a huge file\n")
    return [layer]


def shared_layers() -> list[Layer]:
    l1 = Layer("shared layer 1: 48 files of 96 KiB")
    l1.dir("shared")
    l1.dir("shared/one")
    for i in range(48):
        l1.file(f"shared/one/file-{i:02d}.bin", pattern(f"shared-1-{i}", 96 * 1024 + i))
    l2 = Layer("shared layer 2: 24 files of 160 KiB")
    l2.dir("shared/two")
    for i in range(24):
        l2.file(f"shared/two/file-{i:02d}.bin", pattern(f"shared-2-{i}", 160 * 1024 + 7 * i))
    return [l1, l2]


def variant_shared(name: str) -> list[Layer]:
    l3 = Layer(f"{name} only: 3 files of 1.5 MiB")
    l3.dir("own")
    for i in range(3):
        l3.file(f"own/{name}-{i}.bin", pattern(f"{name}-{i}", 3 * MIB // 2 + 11 * i))
    l3.file("own/name.txt", name.encode() + b"\n")
    return shared_layers() + [l3]


def variant_arch(arch: str) -> list[Layer]:
    layer = Layer(f"{arch} root")
    layer.file("arch", arch.encode())
    return [layer]


def base_layer() -> Layer:
    layer = Layer("a normal first layer")
    layer.dir("etc")
    layer.file("etc/hostname", b"hostile\n")
    layer.dir("data")
    layer.file("data/ok.txt", b"fine\n")
    return layer


def tar_header_offset(path: str, name: str) -> tuple[int, int]:
    """The header offset and data offset of member `name` in the tar at `path`."""
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.name == name:
                return member.offset, member.offset_data
    raise FixtureError(f"{name} is not in {path}")


def hostile(defect: str) -> list[Layer]:
    layer = Layer(f"defect: {defect}", format=tarfile.USTAR_FORMAT)
    layer.file("layer2.txt", b"a normal entry before the defect\n")
    if defect == "dotdot":
        layer.file("a/../../etc/x", b"escapes the root\n")
    elif defect == "absolute":
        layer.file("/etc/passwd", b"root::0:0::/:/bin/sh\n")
    elif defect == "hardlink-missing":
        layer.hardlink("data/link", "does/not/exist")
    elif defect == "hardlink-outside":
        layer.hardlink("data/link", "../outside")
    elif defect == "truncated":
        layer.file("big.bin", pattern("truncated", 64 * 1024))

        def cut(path: str) -> None:
            _, data = tar_header_offset(path, "big.bin")
            with open(path, "r+b") as f:
                f.truncate(data + 20_000 + 7)
        layer.patch_tar = cut
    elif defect == "blob-digest":
        layer.file("data.bin", pattern("blob-digest", 8192))
        layer.patch_blob = alter_blob
    elif defect == "diffid":
        layer.wrong_diff_id = True
    elif defect == "media-type":
        layer.media_type = "application/vnd.example.unknown"
    elif defect == "size-field":
        layer.file("bad-size.txt", b"x" * 100)

        def garble(path: str) -> None:
            header, _ = tar_header_offset(path, "bad-size.txt")
            with open(path, "r+b") as f:
                f.seek(header)
                block = bytearray(f.read(512))
                block[124:136] = b"12x4?junk!!\0"
                block[148:156] = b" " * 8
                block[148:156] = b"%06o\0 " % sum(block)
                f.seek(header)
                f.write(block)
        layer.patch_tar = garble
    else:
        raise FixtureError(f"unknown hostile variant {defect}")
    return [base_layer(), layer]


def alter_blob(path: str, compression: str) -> None:
    """Changes a blob's bytes but not what it decompresses to, where the format allows."""
    with open(path, "r+b") as f:
        if compression == "gzip":
            f.seek(9)  # the gzip header's OS byte
            os_byte = f.read(1)[0]
            f.seek(9)
            f.write(bytes([3 if os_byte != 3 else 255]))
        elif compression == "zstd":
            f.seek(-1, os.SEEK_END)  # the last byte of the trailing skippable frame
            last = f.read(1)[0]
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last ^ 0xFF]))
        else:
            # An uncompressed tar: flip a byte of file data (its diff_id breaks with it).
            _, data = tar_header_offset(path, "data.bin")
            f.seek(data)
            first = f.read(1)[0]
            f.seek(data)
            f.write(bytes([first ^ 0xFF]))


HOSTILE = ["dotdot", "absolute", "hardlink-missing", "hardlink-outside", "truncated", "blob-digest",
           "diffid", "media-type", "size-field"]
VARIANTS = ["full", "many", "huge", "shared-a", "shared-b", "multiarch"] + ["hostile-" + h for h in HOSTILE]


# --------------------------------------------------------------------------------------------
# Writing the layout


class HashingWriter:
    """A write-only file that hashes what passes through and knows its position."""

    def __init__(self, file):
        self.file = file
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.file.write(data)
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count


def sha256_file(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(COPY_BUFFER):
            sha.update(chunk)
    return sha.hexdigest()


def canonical_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class WrittenLayer:
    descriptor: dict
    diff_id: str
    tar_path: str  # the uncompressed tar (may be the blob itself)
    comment: str


@dataclass
class WrittenImage:
    manifest: dict   # descriptor of the manifest
    config: bytes
    layers: list[WrittenLayer]


class Layout:
    """An OCI image layout being written: content-addressed blobs plus index.json."""

    def __init__(self, root: str):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        self.scratch = os.path.join(root, f".make-image-{os.getpid()}")
        self.counter = 0
        self.index_path = os.path.join(root, "index.json")
        self.index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}
        if os.path.exists(self.index_path):
            try:
                with open(self.index_path, "rb") as f:
                    self.index = json.load(f)
            except (OSError, ValueError) as error:
                raise FixtureError(f"cannot read existing {self.index_path}: {error}")
            if not isinstance(self.index, dict) or not isinstance(self.index.get("manifests"), list):
                raise FixtureError(f"{self.index_path} has no manifests list")
        os.makedirs(self.blobs, exist_ok=True)
        layout_file = os.path.join(root, "oci-layout")
        if not os.path.exists(layout_file):
            with open(layout_file, "wb") as f:
                f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
        os.makedirs(self.scratch, exist_ok=True)

    def temp(self, suffix: str) -> str:
        self.counter += 1
        return os.path.join(self.scratch, f"{self.counter}{suffix}")

    def blob_path(self, hex_digest: str) -> str:
        return os.path.join(self.blobs, hex_digest)

    def adopt(self, path: str, hex_digest: str) -> str:
        """Moves a finished file into blobs/sha256 under its digest."""
        final = self.blob_path(hex_digest)
        os.chmod(path, 0o644)
        os.replace(path, final)
        return final

    def put(self, data: bytes) -> dict:
        hex_digest = hashlib.sha256(data).hexdigest()
        final = self.blob_path(hex_digest)
        if not os.path.exists(final):
            temp = self.temp(".blob")
            with open(temp, "wb") as f:
                f.write(data)
            self.adopt(temp, hex_digest)
        return {"digest": "sha256:" + hex_digest, "size": len(data)}

    def write_tar(self, layer: Layer) -> tuple[str, str]:
        """Writes the layer's uncompressed tar; returns (path, sha256 hex)."""
        path = self.temp(".tar")
        with open(path, "wb") as raw:
            writer = HashingWriter(raw)
            with tarfile.open(fileobj=writer, mode="w", format=layer.format, encoding="utf-8",
                              copybufsize=COPY_BUFFER) as tar:
                for member in layer.members:
                    if member.data is None:
                        tar.addfile(member.info)
                    else:
                        with member.data() as source:
                            tar.addfile(member.info, source)
        if layer.patch_tar:
            layer.patch_tar(path)
            return path, sha256_file(path)
        return path, writer.sha.hexdigest()

    def compress(self, tar_path: str, compression: str, skippable_tail: bool) -> str:
        if compression == "none":
            return tar_path
        out = self.temp("." + compression)
        if compression == "gzip":
            with open(tar_path, "rb") as src, open(out, "wb") as raw:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                    shutil.copyfileobj(src, gz, COPY_BUFFER)
        elif compression == "zstd":
            if shutil.which("zstd") is None:
                raise FixtureError("zstd compression needs the zstd command (apt-get install zstd)")
            with open(tar_path, "rb") as src, open(out, "wb") as dst:
                result = subprocess.run(["zstd", "-q", "-c", ZSTD_LEVEL], stdin=src, stdout=dst,
                                        stderr=subprocess.PIPE)
            if result.returncode != 0:
                raise FixtureError(f"zstd failed: {result.stderr.decode(errors='replace').strip()}")
            if skippable_tail:
                with open(out, "ab") as dst:
                    payload = b"thaw-skippable-frame"
                    dst.write(struct.pack("<II", 0x184D2A50, len(payload)) + payload)
        else:
            raise FixtureError(f"unknown compression {compression}")
        return out

    def write_layer(self, layer: Layer, compression: str) -> WrittenLayer:
        compression = layer.compression or compression
        tar_path, diff_hex = self.write_tar(layer)
        if compression == "none":
            blob_hex, size = diff_hex, os.path.getsize(tar_path)
            if layer.patch_blob:
                # The blob is about to be altered; keep the intact tar for a docker archive.
                intact = self.temp(".tar")
                shutil.copyfile(tar_path, intact)
                blob = self.adopt(tar_path, blob_hex)
                tar_path = intact
            else:
                blob = tar_path = self.adopt(tar_path, blob_hex)
        else:
            compressed = self.compress(tar_path, compression, skippable_tail=layer.patch_blob is not None)
            blob_hex, size = sha256_file(compressed), os.path.getsize(compressed)
            blob = self.adopt(compressed, blob_hex)
        if layer.patch_blob:
            layer.patch_blob(blob, compression)
        descriptor = {
            "mediaType": layer.media_type or MEDIA_LAYER[compression],
            "digest": "sha256:" + blob_hex,
            "size": size,
        }
        diff_id = "sha256:" + (hashlib.sha256(b"not the layer").hexdigest() if layer.wrong_diff_id else diff_hex)
        return WrittenLayer(descriptor, diff_id, tar_path, layer.comment)

    def write_image(self, variant: str, layers: list[Layer], compression: str,
                    architecture: str = "amd64", extra_history: list[dict] | None = None) -> WrittenImage:
        written = []
        for i, layer in enumerate(layers):
            chosen = compression
            if compression == "mixed":
                chosen = ("gzip", "zstd", "none")[i % 3]
            written.append(self.write_layer(layer, chosen))
        history = [{"created": CREATED, "created_by": f"make-image.py --variant {variant}: layer {i + 1}",
                    "comment": w.comment} for i, w in enumerate(written)]
        history += extra_history or []
        config = {
            "created": CREATED,
            "architecture": architecture,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        f"THAW_FIXTURE={variant}"],
                "Cmd": ["/bin/sh"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [w.diff_id for w in written]},
            "history": history,
        }
        config_bytes = canonical_json(config)
        config_descriptor = {"mediaType": MEDIA_CONFIG, **self.put(config_bytes)}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_descriptor,
            "layers": [w.descriptor for w in written],
        }
        manifest_descriptor = {"mediaType": MEDIA_MANIFEST, **self.put(canonical_json(manifest))}
        return WrittenImage(manifest_descriptor, config_bytes, written)

    def tag(self, descriptor: dict, tag: str) -> None:
        """Adds `descriptor` to index.json under `tag`, replacing an entry with the same tag."""
        entry = {**descriptor, "annotations": {REF_NAME: tag}}
        manifests = self.index["manifests"]
        for i, existing in enumerate(manifests):
            if (existing.get("annotations") or {}).get(REF_NAME) == tag:
                manifests[i] = entry
                break
        else:
            manifests.append(entry)
        temp = self.temp(".json")
        with open(temp, "wb") as f:
            f.write(canonical_json(self.index))
        os.replace(temp, self.index_path)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def write_docker_archive(path: str, image: WrittenImage, tag: str) -> None:
    """A `docker save` archive: config `<hex>.json`, layers `<diff-id hex>/layer.tar`, manifest.json."""
    config_name = hashlib.sha256(image.config).hexdigest() + ".json"
    layer_names = [w.diff_id.split(":", 1)[1] + "/layer.tar" for w in image.layers]
    repo_tag = tag if ":" in tag else tag + ":latest"
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]
    name, _, version = repo_tag.rpartition(":")
    repositories = {name: {version: image.layers[-1].diff_id.split(":", 1)[1]}}

    def info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.type, entry.size, entry.mtime = kind, size, MTIME
        entry.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        entry.uname = entry.gname = ""
        return entry

    temp = path + ".partial"
    with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFFER) as tar:
        tar.addfile(info(config_name, len(image.config)), io.BytesIO(image.config))
        seen = set()
        for layer, name in zip(image.layers, layer_names):
            if name in seen:
                continue
            seen.add(name)
            tar.addfile(info(name.split("/")[0], kind=tarfile.DIRTYPE))
            with open(layer.tar_path, "rb") as src:
                tar.addfile(info(name, os.path.getsize(layer.tar_path)), src)
        data = canonical_json(manifest)
        tar.addfile(info("manifest.json", len(data)), io.BytesIO(data))
        data = canonical_json(repositories)
        tar.addfile(info("repositories", len(data)), io.BytesIO(data))
    os.replace(temp, path)


def build(args: argparse.Namespace) -> None:
    variant = args.variant
    tag = args.tag or variant
    layout = Layout(args.out_dir)
    try:
        if variant == "multiarch":
            platforms = []
            images = {}
            for arch in ("amd64", "arm64"):
                image = layout.write_image(variant, variant_arch(arch), args.compression, architecture=arch)
                images[arch] = image
                platforms.append({**image.manifest, "platform": {"architecture": arch, "os": "linux"}})
            index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": platforms}
            index_descriptor = {"mediaType": MEDIA_INDEX, **layout.put(canonical_json(index))}
            layout.tag(index_descriptor, tag)
            print(f"{tag}\t{index_descriptor['digest']}\tindex of {len(platforms)} manifests")
            for arch, image in images.items():
                print(f"{tag} linux/{arch}\t{image.manifest['digest']}\t{len(image.layers)} layer")
            chosen = images["amd64"]
        else:
            extra = None
            if variant == "full":
                layers = variant_full()
                extra = [{"created": CREATED, "created_by": "ENV THAW_FIXTURE=full", "empty_layer": True}]
            elif variant == "many":
                layers = variant_many()
            elif variant == "huge":
                layers = variant_huge()
            elif variant in ("shared-a", "shared-b"):
                layers = variant_shared(variant)
            elif variant.startswith("hostile-"):
                layers = hostile(variant[len("hostile-"):])
            else:
                raise FixtureError(f"unknown variant {variant}")
            chosen = layout.write_image(variant, layers, args.compression, extra_history=extra)
            layout.tag(chosen.manifest, tag)
            count = len(chosen.layers)
            print(f"{tag}\t{chosen.manifest['digest']}\t{count} layer{'s' if count != 1 else ''}")
        if args.docker_archive:
            write_docker_archive(args.docker_archive, chosen, tag)
            print(f"{tag}\tdocker archive {args.docker_archive}")
    finally:
        layout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a Thaw test image into an OCI image layout.",
        epilog="variants: " + ", ".join(VARIANTS))
    parser.add_argument("out_dir", metavar="OUT_DIR", help="OCI image layout to create or add to")
    parser.add_argument("--variant", required=True, choices=VARIANTS, metavar="NAME", help="which image to write")
    parser.add_argument("--compression", default="gzip", choices=["gzip", "zstd", "none", "mixed"],
                        help="layer compression (mixed: gzip, zstd, none, repeating); default gzip")
    parser.add_argument("--tag", help="tag for index.json (default: the variant name)")
    parser.add_argument("--docker-archive", metavar="FILE.tar", help="also write a `docker save` archive")
    args = parser.parse_args(argv)
    try:
        build(args)
    except FixtureError as error:
        print(f"make-image.py: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"make-image.py: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
