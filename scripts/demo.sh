#!/usr/bin/env bash
# Runs Thaw's main job on its embedded defaults: generates sample images, flattens them,
# checks them with e2fsck, shows what they share, pushes both to a local store and pulls one
# back, then reads the other lazily through the read path the agent serves. Installs what it
# needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
swift build --product thaw
exec .build/debug/thaw demo "$@"
