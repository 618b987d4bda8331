#!/usr/bin/env bash
# Builds (once) the corpus of real OCI images from Debian packages that the tests and the
# benchmark read: tags base, py, perl, web, slim in $THAW_CORPUS/oci, and docker/py.tar.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${THAW_CORPUS:-/var/cache/thaw-corpus}
exec bash scripts/build-corpus-images.sh "$out"
