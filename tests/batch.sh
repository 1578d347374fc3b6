#!/bin/bash
# SPDX-License-Identifier: MIT
# `tileheat batch` and `summarize` (TAP), on real slides: outputs byte-identical to single runs,
# resume and redo, sharding, two concurrent workers on one folder, SIGKILL at any moment then a
# rerun, SIGTERM, cohort validation, directory cohorts, the cohort table; and the single runs'
# output-folder rules.
set -u
. "${TH_SRCDIR:-.}/tests/tap.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tileheat-batch-XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if [ ! -d "$DATA/slides" ]; then
  echo "1..0 # SKIP no shared data at $DATA"
  exit 0
fi
CMU="$DATA/slides/CMU-1-Small-Region.svs"
PYR="$DATA/slides/CMU-1-Small-Region.generic-pyramid.tiff"
OPTS="--width 300 -q"

# The files of a slide's folder that must be the same bytes as a single run's.
same_outputs() {
  for f in heatmap.png tiles.csv tissue.png; do cmp -s "$1/$f" "$2/$f" || return 1; done
  cmp -s "$1/report.json" "$2/report.json" &&
    [ "$(ls "$1" | tr '\n' ' ')" = "$(ls "$2" | tr '\n' ' ')" ]
}
# outcome of ID in a batch's stdout
outcome() { awk -F'\t' -v id="$2" '$1 == id { print $2 }' "$1"; }
# every cell of cohort.csv's column NAME, one per line, in row order
column() {
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next } { print $c }' "$1"
}
leftovers() { { find "$1/.tileheat/work" "$1/.tileheat/locks" -mindepth 1; find "$1" -name "*.tmp-*"; } | head -n 3; }

# ---- the single runs the batch must reproduce byte for byte
"$TH" multi $OPTS -o "$TMP/ref/cmu" "$CMU" && "$TH" multi $OPTS -o "$TMP/ref/pyr" "$PYR"
check '[ $? -eq 0 ]' "single runs for reference"

# ---- a CSV cohort: relative paths, ids, a file that does not open
mkdir -p "$TMP/c"
ln -s "$CMU" "$TMP/c/cmu.svs"
ln -s "$PYR" "$TMP/c/pyr.tiff"
printf 'slide,id\ncmu.svs,a\npyr.tiff,b\n"%s",broken\n%s,c\n' "$DATA/bad/broken.svs" "$CMU" >"$TMP/c/cohort.csv"
"$TH" multi $OPTS -o "$TMP/ref/cmu-rel" "$TMP/c/cmu.svs"
"$TH" multi $OPTS -o "$TMP/ref/pyr-rel" "$TMP/c/pyr.tiff"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/out" $OPTS >"$TMP/log1" 2>"$TMP/err1"
rc=$?
check '[ $rc -eq 3 ]' "a batch with a failed slide exits 3 (got $rc)"
check '[ "$(outcome "$TMP/log1" a)$(outcome "$TMP/log1" b)$(outcome "$TMP/log1" c)$(outcome "$TMP/log1" broken)" = donedonedonefailed ]' \
  "one line per slide: done, done, done, failed"
check '[ "$(awk -F"\t" "NF != 4" "$TMP/log1" | wc -l)" -eq 0 ] && [ ! -s "$TMP/err1" ]' \
  "every line is id TAB outcome TAB seconds TAB message; nothing on stderr"
check 'grep -q "^broken	failed	[0-9.]*	.*broken.svs: not a supported slide" "$TMP/log1"' \
  "the failed line says why"
check 'same_outputs "$TMP/out/a" "$TMP/ref/cmu-rel" && same_outputs "$TMP/out/b" "$TMP/ref/pyr-rel"' \
  "each slide's folder holds exactly a single run's files, the same bytes"
check 'same_outputs "$TMP/out/c" "$TMP/ref/cmu"' "... with the slide path as the cohort gives it"
check '[ ! -e "$TMP/out/broken" ] && [ -z "$(leftovers "$TMP/out")" ]' \
  "no folder for the failed slide, no staging folder or lock left"
check '[ "$(column "$TMP/out/cohort.csv" status | tr "\n" " ")" = "done done failed done " ]' \
  "cohort.csv: one row per cohort row, in order, with its status"
check '[ "$(column "$TMP/out/cohort.csv" tiles_run | head -n 1)" = "$(sed -n "s/.*\"processed\":[[:space:]]*\([0-9]*\).*/\1/p" "$TMP/ref/cmu/report.json" | head -n 1)" ]' \
  "cohort.csv: tiles run as report.json says"
pct=$(column "$TMP/out/cohort.csv" percent_cellular | head -n 1)
ref=$(awk '/"name":[[:space:]]*"cellular"/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$TMP/ref/cmu/report.json")
check 'awk -v a="$pct" -v b="$ref" "BEGIN { d = a - b; exit !(a > 0 && d < 1e-3 && d > -1e-3) }"' \
  "cohort.csv: percent_cellular $pct = report.json's $ref"
check 'grep -q "\"failed\":[[:space:]]*1" "$TMP/out/cohort.json" && grep -q "\"done\":[[:space:]]*3" "$TMP/out/cohort.json"' \
  "cohort.json counts 3 done, 1 failed"

# ---- resume: done slides are skipped, failed ones retried; a changed option redoes
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/out" $OPTS >"$TMP/log2"
check '[ "$(outcome "$TMP/log2" a)$(outcome "$TMP/log2" b)$(outcome "$TMP/log2" broken)" = skippedskippedfailed ]' \
  "rerun: done slides skipped, the failed one retried"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/out" --width 200 -q --dry-run >"$TMP/dry"
check 'grep -q "^a	run	options changed" "$TMP/dry" && grep -q "^broken	run	failed before" "$TMP/dry"' \
  "--dry-run with another --width: would redo (options changed)"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/out" $OPTS --dry-run >"$TMP/dry2"
check 'grep -q "^a	skip	done" "$TMP/dry2" && [ "$(wc -l <"$TMP/dry2")" -eq 4 ]' "--dry-run: done slides would be skipped"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/out" --width 200 -q >"$TMP/log3"
check '[ "$(outcome "$TMP/log3" a)" = done ] && [ "$(od -An -tu1 -j16 -N8 "$TMP/out/a/heatmap.png" | awk "{print \$7*256+\$8}")" = 200 ]' \
  "a changed option redoes the slide (heatmap now 200 px)"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/out" --width 200 -q --force >"$TMP/log4"
check '[ "$(outcome "$TMP/log4" a)$(outcome "$TMP/log4" b)" = donedone ]' "--force redoes done slides"
"$TH" summarize "$TMP/out" >"$TMP/sum"
check '[ $? -eq 0 ] && grep -q "3 done, 1 failed, 0 pending" "$TMP/sum"' "summarize rewrites the table"

# ---- sharding: every row exactly once; shards' results merge into one table
printf 'slide,id\n' >"$TMP/c/seven.csv"
for i in 0 1 2 3 4 5 6; do printf 'cmu.svs,s%d\n' "$i" >>"$TMP/c/seven.csv"; done
for i in 0 1 2; do "$TH" batch multi "$TMP/c/seven.csv" -o "$TMP/sh" $OPTS --shard $i/3 --dry-run; done >"$TMP/shards"
check '[ "$(cut -f1 "$TMP/shards" | sort | tr "\n" " ")" = "s0 s1 s2 s3 s4 s5 s6 " ]' \
  "--shard I/3 for I = 0, 1, 2 covers every row exactly once"
SLURM_ARRAY_TASK_ID=11 SLURM_ARRAY_TASK_MIN=10 SLURM_ARRAY_TASK_MAX=12 \
  "$TH" batch multi "$TMP/c/seven.csv" -o "$TMP/sh" $OPTS --dry-run >"$TMP/slurm-shard"
check '[ "$(cut -f1 "$TMP/slurm-shard" | tr "\n" " ")" = "s1 s4 " ]' \
  "a Slurm array task (ID 11 of 10-12) takes shard 1/3"
SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=2 SLURM_JOB_ID=1 \
  "$TH" batch multi "$TMP/c/seven.csv" -o "$TMP/sh" $OPTS >"$TMP/sh0"
check '[ "$(cut -f1,2 "$TMP/sh0" | sort | tr "\n\t" " :")" = "s0:done s2:done s4:done s6:done " ] && grep -q "pending" "$TMP/sh/cohort.csv"' \
  "shard 0/2 from SLURM_ARRAY_TASK_COUNT runs its rows; the table shows the others pending"
# one slide in the shard: one worker with every thread, as many as Slurm gives the task
SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=7 SLURM_JOB_ID=1 SLURM_CPUS_PER_TASK=3 \
  "$TH" batch multi "$TMP/c/seven.csv" -o "$TMP/sh3" $OPTS >/dev/null
check 'grep -q "\"threads\":[[:space:]]*3" "$TMP/sh3/s0/run.json"' "SLURM_CPUS_PER_TASK sets the thread count"
"$TH" batch multi "$TMP/c/seven.csv" -o "$TMP/sh" $OPTS --shard 1/2 >"$TMP/sh1"
check '[ "$(column "$TMP/sh/cohort.csv" status | sort -u)" = done ] && [ "$(column "$TMP/sh/cohort.csv" id | wc -l)" -eq 7 ]' \
  "the last shard's table merges both: 7 rows, all done"

# ---- two workers on one folder at once: every slide runs exactly once between them
printf 'slide,id\n' >"$TMP/c/eight.csv"
for i in 0 1 2 3; do printf 'cmu.svs,x%d\npyr.tiff,y%d\n' "$i" "$i" >>"$TMP/c/eight.csv"; done
"$TH" batch multi "$TMP/c/eight.csv" -o "$TMP/two" $OPTS --threads 1 >"$TMP/w1" &
p1=$!
"$TH" batch multi "$TMP/c/eight.csv" -o "$TMP/two" $OPTS --threads 1 >"$TMP/w2" &
p2=$!
wait $p1
rc1=$?
wait $p2
rc2=$?
check '[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ]' "two concurrent batches both succeed"
done_ids=$(cat "$TMP/w1" "$TMP/w2" | awk -F'\t' '$2 == "done" { print $1 }' | sort | tr '\n' ' ')
check '[ "$done_ids" = "x0 x1 x2 x3 y0 y1 y2 y3 " ]' "... and run every slide exactly once between them ($done_ids)"
check '[ "$(cat "$TMP/w1" "$TMP/w2" | wc -l)" -eq 16 ] && [ -z "$(leftovers "$TMP/two")" ]' \
  "... the other worker says skipped or locked for each; no lock or staging folder left"
check 'same_outputs "$TMP/two/x3" "$TMP/out/a" || same_outputs "$TMP/two/x3" "$TMP/ref/cmu-rel"' \
  "... with a single run's bytes"

# ---- SIGKILL at any moment, then a rerun: the same bytes as an uninterrupted run
"$TH" batch multi "$TMP/c/eight.csv" -o "$TMP/whole" $OPTS >/dev/null
kill_ok=true
for delay in 0.05 0.3 0.6 0.9 1.3; do
  rm -rf "$TMP/k"
  "$TH" batch multi "$TMP/c/eight.csv" -o "$TMP/k" $OPTS >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  # what the killed run left: complete folders or none, and no empty folder
  for d in "$TMP"/k/*/; do
    [ -d "$d" ] || continue
    if [ ! -f "$d/report.json" ] || [ ! -f "$d/heatmap.png" ]; then
      kill_ok=false
      echo "# killed after ${delay}s: $d is incomplete"
    fi
  done
  done_before=$(ls "$TMP/k/.tileheat/records" 2>/dev/null | grep -c "\.json$")
  "$TH" batch multi "$TMP/c/eight.csv" -o "$TMP/k" $OPTS >"$TMP/klog"
  redone=$(awk -F'\t' '$2 == "done"' "$TMP/klog" | wc -l)
  if [ $((done_before + redone)) -ne 8 ] || [ -n "$(leftovers "$TMP/k")" ]; then
    kill_ok=false
    echo "# killed after ${delay}s: $done_before done before, $redone redone, leftovers: $(leftovers "$TMP/k")"
  fi
  for id in x0 x1 x2 x3 y0 y1 y2 y3; do
    if ! same_outputs "$TMP/k/$id" "$TMP/whole/$id"; then
      kill_ok=false
      echo "# killed after ${delay}s: $id differs from the uninterrupted run"
    fi
  done
done
check '$kill_ok' "SIGKILL after 0.05-1.3 s: complete folders or none; the rerun redoes only the rest; same bytes as an uninterrupted run"

# ---- SIGTERM stops between tiles: status 143, nothing half-done, the rerun completes
rm -rf "$TMP/t"
"$TH" batch multi "$TMP/c/eight.csv" -o "$TMP/t" $OPTS >/dev/null 2>"$TMP/terr" &
pid=$!
sleep 0.5
kill -TERM $pid
wait $pid
rc=$?
check '[ $rc -eq 143 ] && grep -q "stopped by SIGTERM" "$TMP/terr" && [ -z "$(leftovers "$TMP/t")" ] && ! grep -q cancelled "$TMP/t/cohort.csv"' \
  "SIGTERM: exit 143, no lock or staging folder left, the slide it stopped is not recorded as failed (got $rc)"
"$TH" batch multi "$TMP/c/eight.csv" -o "$TMP/t" $OPTS >/dev/null
check '[ "$(column "$TMP/t/cohort.csv" status | sort -u)" = done ]' "... and a rerun completes the cohort"

# ---- a directory cohort: the files a reader opens, sorted by name
mkdir -p "$TMP/dir"
ln -s "$PYR" "$TMP/dir/b.tiff"
ln -s "$CMU" "$TMP/dir/a.svs"
echo "notes" >"$TMP/dir/notes.txt"
"$TH" batch multi "$TMP/dir" -o "$TMP/dout" $OPTS >"$TMP/dlog"
check '[ $? -eq 0 ] && [ "$(cut -f1,2 "$TMP/dlog" | sort | tr "\n\t" " :")" = "a:done b:done " ]' \
  "a directory cohort runs the slides in it and leaves other files out"

# ---- validation before anything runs
printf 'slide,id\ncmu.svs,same\npyr.tiff,same\n' >"$TMP/c/dup.csv"
"$TH" batch multi "$TMP/c/dup.csv" -o "$TMP/never" $OPTS 2>"$TMP/e"
rc=$?
check '[ $rc -eq 1 ] && grep -q "dup.csv:3: id .same. is also line 2" "$TMP/e" && [ ! -e "$TMP/never" ]' \
  "duplicate ids: an error naming both rows, before anything is created"
printf 'id,mpp\na,0.5\n' >"$TMP/c/nocol.csv"
"$TH" batch multi "$TMP/c/nocol.csv" -o "$TMP/never" $OPTS 2>"$TMP/e"
check '[ $? -eq 1 ] && grep -q "no .slide. column" "$TMP/e" && [ ! -e "$TMP/never" ]' "a missing slide column is an error"
printf 'slide,colour\ncmu.svs,red\n' >"$TMP/c/unk.csv"
"$TH" batch multi "$TMP/c/unk.csv" -o "$TMP/never" $OPTS 2>"$TMP/e"
check '[ $? -eq 1 ] && grep -q "unknown column .colour." "$TMP/e"' "an unknown column is an error naming it"
printf 'slide,class\ncmu.svs,stroma\npyr.tiff,nosuch\n' >"$TMP/c/cls.csv"
"$TH" batch single "$TMP/c/cls.csv" -o "$TMP/never" $OPTS 2>"$TMP/e"
check '[ $? -eq 1 ] && grep -q "cls.csv:3: unknown class .nosuch." "$TMP/e" && [ ! -e "$TMP/never" ]' \
  "an unknown class in the class column names its row"
touch "$TMP/afile"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/afile/out" $OPTS 2>"$TMP/e"
check '[ $? -eq 1 ] && [ "$(wc -l <"$TMP/e")" -eq 1 ] && grep -q "afile" "$TMP/e"' \
  "an output folder that cannot be made: a one-line error before any slide runs"
"$TH" batch multi "$TMP/c/cohort.csv" $OPTS 2>"$TMP/e"
check '[ $? -eq 2 ] && grep -q "needs an output folder" "$TMP/e"' "batch without -o is a usage error"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/x" --shard 3/3 2>"$TMP/e"
check '[ $? -eq 2 ] && grep -q -- "--shard: expected I/N" "$TMP/e"' "--shard 3/3 is a usage error"
"$TH" batch single "$TMP/c/cls.csv" -o "$TMP/x" --top 2 2>"$TMP/e"
check '[ $? -eq 2 ] && grep -q "does not apply to .batch single." "$TMP/e"' "multi's options do not apply to batch single"

# ---- int8 over a cohort on one calibration file: calibrated once, every slide on its ranges
"$TH" calibrate "$TMP/c/cohort.csv" -o "$TMP/cal.json" --sample 8 >"$TMP/calout" 2>"$TMP/e"
check '[ $? -eq 0 ] && grep -q "from 6 tiles of 3 slides" "$TMP/calout" && [ "$(wc -l <"$TMP/e")" -eq 1 ] && grep -q "broken.svs.*(not in the sample)" "$TMP/e"' \
  "calibrate on a cohort: 2 tiles from each of its slides, the one that does not open left out with a warning"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/i8" $OPTS --precision int8 --calibration "$TMP/cal.json" >"$TMP/i8log" 2>/dev/null
"$TH" multi $OPTS --precision int8 --calibration "$TMP/cal.json" -o "$TMP/ref/i8" "$TMP/c/cmu.svs"
sha=$(sha256sum "$TMP/cal.json" | cut -d" " -f1)
ONEDNN_MAX_CPU_ISA=AVX2 "$TH" multi $OPTS --precision int8 --calibration "$TMP/cal.json" -o "$TMP/avx2" "$TMP/c/cmu.svs" 2>"$TMP/e"
check '[ $? -eq 0 ] && grep -q "no VNNI or AMX" "$TMP/e" && grep -q "no VNNI or AMX" "$TMP/avx2/report.json"' \
  "int8 on a CPU without VNNI (oneDNN capped at AVX2) runs and says it may be no faster than fp32"
if grep -qE 'avx512_vnni|avx_vnni|amx_int8' /proc/cpuinfo; then
  check '! grep -q "no VNNI" "$TMP/ref/i8/report.json"' "... and says nothing on this CPU, which has VNNI"
else
  check 'grep -q "no VNNI" "$TMP/ref/i8/report.json"' "... as on this CPU, which has no VNNI"
fi
check '[ "$(outcome "$TMP/i8log" a)$(outcome "$TMP/i8log" c)" = donedone ] && grep -q "\"calibration_sha256\":[[:space:]]*\"$sha\"" "$TMP/i8/a/report.json" && same_outputs "$TMP/i8/a" "$TMP/ref/i8"' \
  "batch --calibration: every slide on the file's ranges (report.json names its SHA-256), the bytes of a single run on it"
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/i8" $OPTS --precision int8 --calibration "$TMP/cal.json" --dry-run >"$TMP/dry"
check 'grep -q "^a	skip	done" "$TMP/dry"' "... a rerun on the same file skips them"
"$TH" calibrate "$TMP/c/cmu.svs" -o "$TMP/cal.json" --sample 4 -q
"$TH" batch multi "$TMP/c/cohort.csv" -o "$TMP/i8" $OPTS --precision int8 --calibration "$TMP/cal.json" --dry-run >"$TMP/dry"
check 'grep -q "^a	run	options changed" "$TMP/dry"' "... and a new calibration in the file redoes them"

# ---- single runs: the default folder is not another slide's; a failed run leaves no folder
mkdir -p "$TMP/cwd/other"
ln -s "$PYR" "$TMP/cwd/other/CMU-1-Small-Region.tiff"
(cd "$TMP/cwd" && "$TH" multi $OPTS "$CMU" && "$TH" multi $OPTS "$CMU") 2>"$TMP/e"
check '[ $? -eq 0 ]' "single: rerunning a slide into its default folder is fine"
(cd "$TMP/cwd" && "$TH" multi $OPTS other/CMU-1-Small-Region.tiff) 2>"$TMP/e"
check '[ $? -eq 1 ] && grep -q "holds the run of another slide" "$TMP/e"' \
  "single: the default folder holding another slide's run is refused"
"$TH" multi $OPTS -o "$TMP/cwd/new/deeper" "$DATA/slides/TCGA-CR-7395-01A-01-TS1.svs" 2>/dev/null
check '[ $? -eq 1 ] && [ ! -e "$TMP/cwd/new" ]' "single: a run that fails leaves none of the folders it made"
(cd "$TMP/cwd" && "$TH" multi $OPTS "$DATA/bad/broken.svs") 2>/dev/null
check '[ $? -eq 1 ] && [ ! -e "$TMP/cwd/broken.tileheat" ]' "single: a slide that does not open leaves no default folder"
"$TH" multi $OPTS -o "$TMP/afile/out" "$DATA/bad/broken.svs" 2>"$TMP/e"
check '[ $? -eq 1 ] && grep -q "afile/out: cannot create directory" "$TMP/e"' \
  "single: an output folder that cannot be made is reported before the slide is read"

tap_end
