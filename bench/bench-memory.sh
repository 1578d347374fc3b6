#!/bin/bash
# SPDX-License-Identifier: MIT
# bench-memory.sh: peak memory of `tileheat multi --engine fast` on a 20 000² and a 100 000²
# synthetic slide with a few tissue islands (examples/gen-demo-slide --islands). Target: peak RSS
# at most 1 GiB for both, about the same for both. Not a test; see bench/README-memory.md.
#
# Run from a build directory:   ../bench/bench-memory.sh
# Environment:
#   TILEHEAT          the tileheat binary (default ./tileheat)
#   GEN_DEMO_SLIDE    the generator (default ./examples/gen-demo-slide)
#   TH_BENCH_DIR      slide cache and outputs (default /tmp/tileheat-bench)
#   TH_BENCH_SIZES    slide sides, smallest first (default "20000 100000")
#   TH_BENCH_ISLANDS  tissue islands per slide (default 5); TH_BENCH_SEED (default 1)
#   TH_BENCH_ARGS     extra tileheat arguments, e.g. "--threads 2 --min-tissue 0.2"
#   TH_BENCH_REGEN=1  regenerate cached slides (after changing the generator)
#   TH_BENCH_LIMIT_MIB  the peak RSS target (default 1024)
# Exit status: 0 every run within the target, 1 a run over it or failed, 2 setup error.
set -u

TILEHEAT=${TILEHEAT:-./tileheat}
GEN=${GEN_DEMO_SLIDE:-./examples/gen-demo-slide}
DIR=${TH_BENCH_DIR:-/tmp/tileheat-bench}
SIZES=${TH_BENCH_SIZES:-20000 100000}
ISLANDS=${TH_BENCH_ISLANDS:-5}
SEED=${TH_BENCH_SEED:-1}
LIMIT_MIB=${TH_BENCH_LIMIT_MIB:-1024}
TIME=/usr/bin/time
PROG=bench-memory

die() {
    echo "$PROG: $*" >&2
    exit 2
}

[ -x "$TIME" ] || die "$TIME not found (GNU time is needed for -v)"
[ -x "$TILEHEAT" ] || die "$TILEHEAT: not found; run from the build directory or set TILEHEAT"
mkdir -p "$DIR" || die "$DIR: cannot create"

# Field of `/usr/bin/time -v` output file $1 whose label starts with $2.
time_field() {
    sed -n "s/^[[:space:]]*$2[^:]*([^)]*): //p; s/^[[:space:]]*$2[^:(]*: //p" "$1" | head -n 1
}

# Wall seconds from /usr/bin/time -v's "h:mm:ss" or "m:ss.ss".
wall_seconds() {
    time_field "$1" "Elapsed (wall clock) time" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s }'
}

peak_mib() {
    time_field "$1" "Maximum resident set size" | awk '{ printf "%.1f", $1 / 1024 }'
}

# Value at jq path $2 of JSON file $1, or "n/a" (jq, else python3, else nothing).
json_get() {
    local v=""
    if command -v jq >/dev/null 2>&1; then
        v=$(jq -r "$2 // empty" "$1" 2>/dev/null)
    elif command -v python3 >/dev/null 2>&1; then
        v=$(python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].strip(".").split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2" 2>/dev/null)
    fi
    echo "${v:-n/a}"
}

# "name 1.23, name 4.56" from performance.stages_seconds of run.json $1.
json_stages() {
    if command -v jq >/dev/null 2>&1; then
        jq -r '(.performance.stages_seconds // {}) | to_entries
               | map("\(.key) \(.value)") | join(", ")' "$1" 2>/dev/null
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json, sys
s = json.load(open(sys.argv[1])).get("performance", {}).get("stages_seconds", {})
print(", ".join("%s %s" % kv for kv in s.items()))' "$1" 2>/dev/null
    fi
}

# Generate (or reuse) the slide of side $1; prints its path, and "gen_s gen_mib note" into $2
# (for a cached slide: "cached cached" and how long it took when it was generated, if known).
make_slide() {
    local side=$1 slide="$DIR/demo-islands$ISLANDS-seed$SEED-$1.tif"
    if [ -s "$slide" ] && [ "${TH_BENCH_REGEN:-0}" != 1 ]; then
        if [ -s "$slide.time" ]; then
            echo "cached cached (generated in $(wall_seconds "$slide.time") s," \
                "peak RSS $(peak_mib "$slide.time") MiB)" >"$2"
        else
            echo "cached cached" >"$2"
        fi
        echo "$slide"
        return 0
    fi
    [ -x "$GEN" ] || die "$GEN: not found; run from the build directory or set GEN_DEMO_SLIDE"
    echo "$PROG: generating $slide (${side}x$side, $ISLANDS islands)" >&2
    if ! "$TIME" -v -o "$slide.time" "$GEN" --width "$side" --height "$side" \
        --islands "$ISLANDS" --seed "$SEED" -v -o "$slide" >&2; then
        die "$GEN failed for ${side}x$side"
    fi
    echo "$(wall_seconds "$slide.time") $(peak_mib "$slide.time")" \
        "(generated in $(wall_seconds "$slide.time") s, peak RSS $(peak_mib "$slide.time") MiB)" >"$2"
    echo "$slide"
}

failed=0
rows=()
first_peak=""
first_side=""
ratio_line=""
stage_lines=()
for side in $SIZES; do
    gen_info="$DIR/gen-$side.info"
    slide=$(make_slide "$side" "$gen_info") || exit 2
    read -r gen_s gen_mib gen_note <"$gen_info"
    out="$DIR/out-$side"
    rm -rf "$out"
    echo "$PROG: tileheat multi $slide --engine fast -o $out ${TH_BENCH_ARGS:-}" >&2
    # shellcheck disable=SC2086 # TH_BENCH_ARGS is a list of words
    "$TIME" -v -o "$DIR/time-$side.txt" "$TILEHEAT" multi "$slide" --engine fast -o "$out" \
        ${TH_BENCH_ARGS:-} >"$DIR/tileheat-$side.log" 2>&1
    rc=$?
    wall=$(wall_seconds "$DIR/time-$side.txt")
    peak=$(peak_mib "$DIR/time-$side.txt")
    user=$(time_field "$DIR/time-$side.txt" "User time")
    sys=$(time_field "$DIR/time-$side.txt" "System time")
    report="$out/report.json"
    run=n/a skipped=n/a total=n/a stages=""
    if [ -s "$report" ]; then
        run=$(json_get "$report" .tiles.processed)
        skipped=$(json_get "$report" .tiles.skipped)
        total=$(json_get "$report" .tiles.total)
        stages=$(json_stages "$out/run.json")
    fi
    if [ "$rc" -ne 0 ]; then
        verdict="FAIL (exit $rc; see $DIR/tileheat-$side.log)"
        failed=1
    elif awk -v p="$peak" -v l="$LIMIT_MIB" 'BEGIN { exit !(p != "" && p <= l) }'; then
        verdict=PASS
    else
        verdict="FAIL (over $LIMIT_MIB MiB)"
        failed=1
    fi
    rows+=("$(printf '%-15s %9s %9s %9s %12s %10s %9s %9s  %s' "${side}x$side" "$gen_s" \
        "$gen_mib" "$wall" "$peak" "$run" "$skipped" "$total" "$verdict")")
    stage_lines+=("  ${side}x$side: slide ${gen_note:-cached}")
    stage_lines+=("  ${side}x$side: tileheat wall $wall s (user $user s, sys $sys s), peak RSS $peak MiB")
    stage_lines+=("  ${side}x$side: tileheat stages (s): ${stages:-n/a}")
    if [ -z "$first_peak" ]; then
        first_peak=$peak first_side=$side
    elif [ -n "$peak" ] && [ -n "$first_peak" ]; then
        ratio_line=$(awk -v a="$peak" -v b="$first_peak" -v sa="$side" -v sb="$first_side" \
            'BEGIN { if (b > 0) printf "peak RSS ratio %sx%s / %sx%s: %.2f", sa, sa, sb, sb, a / b }')
    fi
done

echo
echo "tileheat memory benchmark: tileheat multi --engine fast ${TH_BENCH_ARGS:-}"
echo "slides: $DIR (gen-demo-slide --islands $ISLANDS --seed $SEED, 0.5 um/px); target peak RSS <= $LIMIT_MIB MiB"
printf '%-15s %9s %9s %9s %12s %10s %9s %9s  %s\n' slide "gen s" "gen MiB" "wall s" \
    "peak MiB" "tiles run" skipped total target
for r in "${rows[@]}"; do
    echo "$r"
done
[ -n "$ratio_line" ] && echo "$ratio_line"
echo "per-stage timings:"
for s in "${stage_lines[@]}"; do
    echo "$s"
done
exit $failed
