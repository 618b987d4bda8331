#!/usr/bin/env bash
# Runs every Thaw test. Installs the real tools the tests use (e2fsck, debugfs, umoci, skopeo,
# zstd, moto_server, the AWS CLI, nbdinfo, nbdcopy, qemu-img, qemu, memcached) and builds the
# corpus of real images and the microVM's guest init first. Loop mounts need root.
#
# With no arguments, the suites that bound how long something takes (deadlines, timeouts, drains,
# unmounts) run first on their own, then the invoke service's load test alone (it compares the
# goodput at and past a capacity it measures, which other suites starting or ending would
# change), then every other suite, then the garbage collector's model test: the integration
# suites keep both cores busy for minutes (flattening corpus images, umoci, qemu), and a bound
# measured beside them measures the machine, not Thaw. Arguments go to one `swift test` as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/corpus.sh
scripts/build-guest.sh >/dev/null
export THAW_CORPUS=${THAW_CORPUS:-/var/cache/thaw-corpus}
if [ $# -gt 0 ]; then exec swift test "$@"; fi
timed='LazyImageTests|L2ReadPathTests|DrainTests|RawProtocolTests|L2CacheTests|MemcachedNodeTests|LoopMountTests|FUSEMountTests'
# The garbage collector's model test keeps a core busy for minutes on its own: it runs last, alone.
model='GCModelTests'
load='boundedLoadPastCapacityLosesNothingAndKeepsItsGoodput'
swift test --filter "$timed"
swift test --skip-build --filter "$load"
swift test --skip-build --skip "$timed|$load|$model"
exec swift test --skip-build --filter "$model"
