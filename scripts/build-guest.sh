#!/usr/bin/env bash
# Builds Thaw's microVM guest init (the `thaw-guest` product) as a static executable, and
# installs it where `thaw run --sandbox microvm` looks for it: $THAW_HOME/vm/thaw-guest
# (THAW_HOME defaults to /var/lib/thaw for root). The initramfs around it (busybox, the
# kernel's virtio and overlay modules) is built by `thaw run` on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
home=${THAW_HOME:-$([ "$(id -u)" -eq 0 ] && echo /var/lib/thaw || echo "$HOME/.local/share/thaw")}
# A scratch path of its own: the static flags must not touch the main build's products.
mkdir -p .build
swift build -c release --product thaw-guest --scratch-path .build/guest --static-swift-stdlib \
  -Xswiftc -static-executable -Xlinker -s >.build/guest-build.log 2>&1 || { cat .build/guest-build.log >&2; exit 1; }
install -D -m 0755 .build/guest/release/thaw-guest "$home/vm/thaw-guest"
echo "$home/vm/thaw-guest"
