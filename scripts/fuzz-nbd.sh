#!/usr/bin/env bash
# Fuzzes Thaw's NBD wire format (the handshake state machine and the request parser) with libFuzzer.
#   fuzz-nbd.sh [SECONDS]   build Fuzz/ with -sanitize=fuzzer, then fuzz for SECONDS (default 600)
# The corpus grows in Fuzz/.build/corpus-nbd across runs; a crashing input is written to
# Fuzz/.build/crashes-nbd/ and the script exits non-zero. Replay one with
#   Fuzz/.build/release/FuzzNBD Fuzz/.build/crashes-nbd/crash-…
set -euo pipefail
seconds=${1:-600}
cd "$(dirname "$0")/../Fuzz"

swift build -c release -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library --product FuzzNBD

corpus=.build/corpus-nbd
crashes=.build/crashes-nbd
mkdir -p "$corpus" "$crashes"

# Seeds: whole sessions a real client could send. The first byte of each input picks how the
# stream is split into deliveries; the rest is the client's bytes.
seed() { printf '%b' "$(printf '%s' "$2" | tr -d ' \n' | sed 's/\([0-9a-f][0-9a-f]\)/\\x\1/g')" > "$corpus/seed-$1"; }
flags=00000003
opt=49484156454f5054
seed go-read-write-disc "07 $flags $opt 00000007 0000000a 00000004 6469736b 0000
  25609513 0000 0000 0000000000000001 0000000000000000 00000200
  25609513 0000 0001 0000000000000002 0000000000000000 00000004 deadbeef
  25609513 0000 0002 0000000000000003 0000000000000000 00000000"
seed export-name-read "01 00000001 $opt 00000001 00000000
  25609513 0000 0000 0000000000000001 0000000000001000 00001000"
seed list-info-abort "03 $flags $opt 00000003 00000000
  $opt 00000006 00000010 00000004 6469736b 0003 0001 0002 0003
  $opt 00000002 00000000"
seed unsupported-then-go "05 $flags $opt 00000008 00000000
  $opt 0000000a 00000008 0000000000000000
  $opt 00000007 00000006 00000000 0000
  25609513 0000 0000 0000000000000007 0000000000000000 00000001"

echo "fuzzing for ${seconds}s"
exec .build/release/FuzzNBD -max_total_time="$seconds" -dict=nbd.dict -artifact_prefix="$crashes/" \
  -print_final_stats=1 "$corpus"
