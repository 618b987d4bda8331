#!/usr/bin/env bash
# Runs every Thaw test. Installs the real tools the tests use (e2fsck, debugfs, umoci, skopeo,
# zstd, moto_server, the AWS CLI, nbdinfo, nbdcopy, qemu-img) and builds the corpus of real
# images first. Loop mounts need root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/corpus.sh
scripts/build-guest.sh >/dev/null
export THAW_CORPUS=${THAW_CORPUS:-/var/cache/thaw-corpus}
exec swift test "$@"
