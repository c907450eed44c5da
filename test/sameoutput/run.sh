#!/usr/bin/env bash
# Writes the sorted events of BIN on every conformance capture and on the
# bench capture, with --workers 1 and 4, into OUTDIR: run it with the binary
# before and after a change and diff -r the two directories (the plug-in
# refactor was checked this way). Usage: run.sh BIN OUTDIR [BENCH_PCAP]
# Extra pktpipe flags go in $ARGS, e.g. ARGS="--analyzers all,features".
set -euo pipefail
bin=$1 out=$2 bench=${3:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
shared=${SHARED:-$here/../shared}
mkdir -p "$out"
list=$(find "$shared/conformance" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.pcap.gz' -o -name '*.pcapng.gz' -o -name '*.cap' -o -name '*.pcap.zst' \) | sort)
[ -n "$bench" ] && list="$list"$'\n'"$bench"
for w in 1 4; do
  mkdir -p "$out/w$w"
  while IFS= read -r f; do
    name=$(echo "${f#$shared/conformance/}" | tr '/' '_')
    rc=0
    "$bin" -r "$f" --workers "$w" --no-progress ${ARGS:-} -o - 2>/dev/null | LC_ALL=C sort > "$out/w$w/$name.events" || rc=$?
    echo "$rc" > "$out/w$w/$name.rc"
  done <<< "$list"
done
echo "$(ls "$out/w1" | grep -c events) captures x 2 worker counts in $out"
