#!/usr/bin/env bash
# Installs what Thaw needs from Debian when it is missing.
#   setup.sh build   what building Thaw needs (libzstd, zlib, libssl, ISA-L, SQLite, libfuse3, pkg-config) and e2fsck for the demo
#   setup.sh test    the above plus the real tools the tests check against, and the microVM's qemu and kernel
#   setup.sh bench   the above plus the tools the benchmarks compare against (restic, casync)
set -euo pipefail
what=${1:-build}
case "$what" in build|test|bench) ;; *) echo "usage: setup.sh [build|test|bench]" >&2; exit 2 ;; esac

packages=(pkg-config libzstd-dev zlib1g-dev libssl-dev libisal-dev libsqlite3-dev libxml2 e2fsprogs libfuse3-dev fuse3)
if [ "$what" != build ]; then
  # umoci/skopeo: reference unpacker and converter; zstd: fixture compression;
  # debootstrap/rsync: the real-image corpus; util-linux: losetup and mount;
  # openssl/coreutils: the chunk format's cross-check; curl: the S3 fault proxy's controls;
  # python3-pip: the S3 server (moto) and the AWS CLI; libnss-myhostname: BUCKET.localhost
  # resolves to loopback, for virtual-hosted S3 addressing against the local server.
  packages+=(umoci skopeo zstd debootstrap rsync util-linux python3 python3-pip ca-certificates openssl coreutils curl libnss-myhostname)
  # libnbd-bin (nbdinfo, nbdcopy) and qemu-utils (qemu-img, qemu-io): real NBD clients for the NBD
  # server's tests; nbdkit: a reference NBD server to compare its behaviour with.
  packages+=(libnbd-bin qemu-utils nbdkit)
  # busybox-static: the static shell and tools of the small function images the sandbox tests
  # build, and of the microVM's initramfs; qemu-system-x86 and linux-image-cloud-amd64: the
  # microVM sandbox (qemu -M microvm booting Debian's cloud kernel).
  packages+=(busybox-static qemu-system-x86 linux-image-cloud-amd64)
  # memcached: the real nodes of the shared L2 cache's tests.
  packages+=(memcached)
  # postgresql: the real server the metadata store's tests run against (beside SQLite).
  packages+=(postgresql)
fi
[ "$what" = bench ] && packages+=(restic casync)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift is not on PATH (expected at /opt/swift)" >&2; exit 1; }

if [ "$what" != build ]; then
  # A real S3-compatible server (moto_server) and the AWS CLI, from PyPI when missing.
  pip_missing=()
  command -v moto_server >/dev/null && python3 -c "import flask, flask_cors" 2>/dev/null || pip_missing+=("moto[server]")
  command -v aws >/dev/null || pip_missing+=(awscli)
  python3 -c "import botocore" 2>/dev/null || pip_missing+=(botocore)
  if [ ${#pip_missing[@]} -gt 0 ]; then
    echo "installing from PyPI: ${pip_missing[*]}"
    python3 -m pip install -q "${pip_missing[@]}" 2>/dev/null \
      || python3 -m pip install -q --break-system-packages "${pip_missing[@]}"
  fi
fi
