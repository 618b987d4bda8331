#!/usr/bin/env bash
# Installs what Thaw needs from Debian when it is missing.
#   setup.sh build   what building Thaw needs (libzstd, zlib, pkg-config) and e2fsck for the demo
#   setup.sh test    the above plus the real tools the tests check against
set -euo pipefail
what=${1:-build}

packages=(pkg-config libzstd-dev zlib1g-dev e2fsprogs)
if [ "$what" = test ]; then
  # umoci/skopeo: reference unpacker and converter; zstd: fixture compression;
  # debootstrap/rsync: the real-image corpus; util-linux: losetup and mount.
  packages+=(umoci skopeo zstd debootstrap rsync util-linux python3 ca-certificates)
fi

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
