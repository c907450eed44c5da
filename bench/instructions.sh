#!/usr/bin/env bash
# Counts the user-space instructions of one pipeline run with valgrind's
# cachegrind and prints the total, the count per packet and the functions
# that execute the most. Instructions, unlike time, hardly move with the
# machine's load (about 2% from run to run, exactly the same per function),
# so a change's cost or gain shows on a shared machine where CPU time moves
# by 15-50%; the kernel's work in read(2) and write(2) is not counted.
# Usage: instructions.sh PKTPIPE CAPTURE [PACKETS]   (make bench-instructions)
# Extra pktpipe flags go in $ARGS (default: --analyzers all,features --workers 2).
set -euo pipefail
bin=$1 capture=$2 packets=${3:-}
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out/cg" \
  "$bin" -r "$capture" ${ARGS:---analyzers all,features --workers 2} -o "file:$out/events.json" --quiet 2>"$out/log" ||
  { cat "$out/log" >&2; exit 1; }
total=$(grep -o 'I *refs: *[0-9,]*' "$out/log" | tr -dc '0-9')
echo "instructions: $total${packets:+ ($((total / packets)) per packet over $packets packets)}"
# The collector's functions (mark, scan, sweep, write barriers).
cg_annotate --threshold=0 "$out/cg" | awk -v total="$total" '
  /file:function/ { body = 1; next }
  body && /%\)/ {
    n = $1; gsub(",", "", n)
    if ($0 ~ /runtime\.(gc|scan|mark|tryDefer|wbBuf|bulkBarrier|findObject|typePointers|greentea)/) gc += n
    if (shown++ < 25) print
  }
  END { if (total > 0) printf "collector: %.1f%% of the instructions\n", 100 * gc / total }'
