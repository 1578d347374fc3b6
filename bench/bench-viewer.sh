#!/bin/bash
# SPDX-License-Identifier: MIT
# bench-viewer.sh: what --viewer costs (issue 17, item 5). Runs `tileheat multi SLIDE --engine fast`
# without and with --viewer on each slide under /usr/bin/time -v and prints wall time, peak RSS
# and the run's "viewer" stage. Not a test; figures in bench/README.md.
#
# Run from a build directory:   ../bench/bench-viewer.sh [SLIDE...]
# Default slides: CMU-1-Small-Region and bench-memory.sh's cached 100 000² slide (make it first
# with ../bench/bench-memory.sh). TILEHEAT (default ./tileheat), TH_BENCH_DIR (default
# /tmp/tileheat-bench), TH_BENCH_ARGS (extra arguments, e.g. "--threads 2").
set -u
TILEHEAT=${TILEHEAT:-./tileheat}
DIR=${TH_BENCH_DIR:-/tmp/tileheat-bench}
DATA=${TH_DATA:-$(dirname "$0")/../../shared/data}
if [ $# -eq 0 ]; then
    set -- "$DATA/slides/CMU-1-Small-Region.svs" "$DIR/demo-islands5-seed1-100000.tif"
fi
field() { sed -n "s/^[[:space:]]*$2[^:]*([^)]*): //p; s/^[[:space:]]*$2[^:(]*: //p" "$1" | head -n 1; }
wall() { field "$1" "Elapsed (wall clock) time" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s }'; }
peak() { field "$1" "Maximum resident set size" | awk '{ printf "%.1f", $1 / 1024 }'; }
mkdir -p "$DIR/viewer-bench" || exit 2
printf '%-40s %-8s %8s %10s %10s %12s\n' slide viewer "wall s" "peak MiB" "viewer s" "viewer MB"
for slide in "$@"; do
    [ -s "$slide" ] || { echo "bench-viewer: $slide: not found" >&2; continue; }
    name=$(basename "$slide")
    for v in no yes; do
        out="$DIR/viewer-bench/$name-$v"
        rm -rf "$out"
        extra=""
        [ "$v" = yes ] && extra=--viewer
        # shellcheck disable=SC2086 # word lists
        /usr/bin/time -v -o "$out.time" "$TILEHEAT" multi "$slide" --engine fast -o "$out" $extra \
            ${TH_BENCH_ARGS:-} >"$out.log" 2>&1 || { echo "bench-viewer: $name failed (see $out.log)" >&2; continue; }
        vs=$(grep -o 'viewer [0-9.]* s' "$out.log" | awk '{ print $2 }')
        size=$( [ -d "$out/viewer" ] && du -sm "$out/viewer" | cut -f1)
        printf '%-40s %-8s %8s %10s %10s %12s\n' "$name" "$v" "$(wall "$out.time")" "$(peak "$out.time")" \
            "${vs:--}" "${size:--}"
    done
done
