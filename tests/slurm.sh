#!/bin/sh
# SPDX-License-Identifier: MIT
# Slurm job-array test (TAP): start a throwaway single-node Slurm (tools/slurm-local.sh), submit
# examples/slurm/tileheat-array.sbatch as a 3-task array over every slide in $TH_DATA/slides plus
# two unreadable files, wait, and check: every task finished, each good slide's report and a
# heatmap byte-identical to a plain `tileheat multi` run, a failed row with an error for each bad
# slide, one cohort.csv row per cohort line and none pending, nothing left in squeue.
# Good and bad slides are whatever plain single-slide runs say, not a hard-coded list.
# Skipped (TAP) without slurmctld or root; tools/install-deps.sh installs Slurm and munge.
set -u
. "${TH_SRCDIR:-.}/tests/tap.sh"
SBATCH_SCRIPT="$SRC/examples/slurm/tileheat-array.sbatch"
LOCAL="$SRC/tools/slurm-local.sh"
TASKS=3
PATH="$PATH:/usr/sbin:/sbin" # slurmctld, slurmd and munged live in sbin
OPTS="--width 400 -q"

if ! command -v slurmctld >/dev/null 2>&1; then
  echo "1..0 # SKIP slurmctld not installed (tools/install-deps.sh installs it)"
  exit 0
fi
for c in slurmd munged sbatch squeue; do
  if ! command -v "$c" >/dev/null 2>&1; then
    echo "1..0 # SKIP $c not installed (tools/install-deps.sh installs slurmd, slurm-client, munge)"
    exit 0
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "1..0 # SKIP not root (the local Slurm's daemons run as root)"
  exit 0
fi
if [ ! -d "$DATA/slides" ]; then
  echo "1..0 # SKIP no shared data at $DATA"
  exit 0
fi

diag() { sed 's/^/# /'; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tileheat-slurm-XXXXXX")
# the cluster's own folder, under /tmp whatever TMPDIR says: munged wants a world-executable
# path to its socket, and a socket path is at most 107 bytes
CLUSTER=$(mktemp -d /tmp/tileheat-slurmd-XXXXXX)
cleanup() {
  "$LOCAL" stop "$CLUSTER" >/dev/null 2>&1
  rm -rf "$TMP" "$CLUSTER"
}
spid=""
trap cleanup EXIT
# a signal (or a closed pipe) ends the test through the EXIT trap; sbatch --wait runs in the
# background so that the shell sees the signal while it waits
trap '[ -z "$spid" ] || kill "$spid" 2>/dev/null; exit 130' INT TERM HUP PIPE

# the tails of the task logs and the daemons' logs, as TAP diagnostics
show_logs() {
  for f in "$TMP"/logs/*.log "$CLUSTER"/log/*.log; do
    [ -f "$f" ] || continue
    echo "# ---- tail of $(basename "$f")"
    tail -n 15 "$f" | diag
  done
}

# id of a slide path: file name without its last extension
slide_id() { b=$(basename "$1"); echo "${b%.*}"; }

# ---- reference: plain single-slide runs decide which slides are good
: >"$TMP/cohort.txt"
: >"$TMP/good"
: >"$TMP/bad"
for f in "$DATA"/slides/* "$DATA/bad/not-an-image.svs" "$DATA/bad/unopenable.tiff"; do
  [ -f "$f" ] || continue
  echo "$f" >>"$TMP/cohort.txt"
  id=$(slide_id "$f")
  # shellcheck disable=SC2086
  if "$TH" multi $OPTS -o "$TMP/ref/$id" "$f" >/dev/null 2>"$TMP/ref-$id.err"; then
    echo "$id" >>"$TMP/good"
  else
    echo "$id" >>"$TMP/bad"
  fi
done
lines=$(wc -l <"$TMP/cohort.txt")
ngood=$(wc -l <"$TMP/good")
nbad=$(wc -l <"$TMP/bad")
echo "# cohort: $lines slides, $ngood good ($(tr '\n' ' ' <"$TMP/good")), $nbad failing ($(tr '\n' ' ' <"$TMP/bad"))"
check '[ "$ngood" -gt 0 ] && grep -qx not-an-image "$TMP/bad" && grep -qx unopenable "$TMP/bad"' \
  "single runs: some slides good, the two bad files fail"
check '"$TH" batch --help >/dev/null 2>&1' "tileheat has the batch command"

# ---- the cluster
t0=$(date +%s)
if "$LOCAL" start "$CLUSTER" >"$TMP/env" 2>"$TMP/start.err"; then
  ok "local Slurm cluster started ($(tail -n 1 "$TMP/start.err" | sed 's/^slurm-local.sh: //'))"
else
  not_ok "local Slurm cluster started"
  diag <"$TMP/start.err"
  echo "1..$n"
  exit 1
fi
. "$TMP/env"

# ---- the array job: `sbatch --wait` returns the highest exit status of the tasks
mkdir -p "$TMP/logs"
expected=0
[ "$nbad" -gt 0 ] && expected=3
# shellcheck disable=SC2086
(cd "$TMP/logs" && TILEHEAT="$TH" exec timeout 300 sbatch --parsable --wait --array=0-$((TASKS - 1)) \
  --cpus-per-task=1 "$SBATCH_SCRIPT" multi "$TMP/cohort.txt" "$TMP/out" $OPTS) >"$TMP/jobid" 2>"$TMP/sbatch.err" &
spid=$!
wait "$spid"
rc=$?
spid=""
jobid=$(head -n 1 "$TMP/jobid")
jobid=${jobid%%;*}
echo "# array job $jobid finished with status $rc after $(($(date +%s) - t0)) s"
if [ "$rc" = "$expected" ]; then
  ok "sbatch --wait: status $rc"
else
  not_ok "sbatch --wait: status $rc, expected $expected"
  diag <"$TMP/sbatch.err"
fi

# every task ran to the end of the script
missing=""
for t in $(seq 0 $((TASKS - 1))); do
  log="$TMP/logs/tileheat-${jobid}_$t.log"
  grep -q '^# tileheat batch exited with status' "$log" 2>/dev/null || missing="$missing $t"
done
if [ -z "$missing" ]; then
  ok "all $TASKS array tasks finished (logs tileheat-${jobid}_N.log)"
else
  not_ok "array tasks without a finished log:$missing"
fi
check '[ "$(cat "$TMP"/logs/*.log 2>/dev/null | grep -c "^# last task: ")" = 1 ]' \
  "exactly one task ran summarize"

# each slide reported by exactly one task: <id>\t<outcome>\t<seconds>\t<message>
tab=$(printf '\t')
cat "$TMP"/logs/*.log 2>/dev/null | grep -v '^#' | grep "$tab" >"$TMP/lines"
bad_lines=""
while read -r id; do
  [ "$(cut -f1 "$TMP/lines" | grep -cxF "$id")" = 1 ] || bad_lines="$bad_lines $id"
done <<EOF
$(cat "$TMP/good" "$TMP/bad")
EOF
if [ -z "$bad_lines" ]; then
  ok "every slide has exactly one per-slide line in the task logs"
else
  not_ok "slides without exactly one per-slide line:$bad_lines"
  diag <"$TMP/lines"
fi

# ---- good slides: outputs as in the single runs
while read -r id; do
  [ -n "$id" ] || continue
  if [ -s "$TMP/out/$id/report.json" ] && cmp -s "$TMP/out/$id/heatmap.png" "$TMP/ref/$id/heatmap.png"; then
    ok "$id: report.json, heatmap.png identical to the single run"
  else
    not_ok "$id: report.json missing or heatmap.png differs from the single run"
    ls -l "$TMP/out/$id" 2>&1 | diag
  fi
done <"$TMP/good"

# ---- cohort.csv: id,slide,status,error,... (RFC 4180 quoting) -> id<TAB>status<TAB>error
csv="$TMP/out/cohort.csv"
check '[ -s "$csv" ] && [ -s "$TMP/out/cohort.json" ]' "cohort.csv and cohort.json written"
check 'head -n 1 "$csv" 2>/dev/null | grep -q "^id,slide,status,error,"' "cohort.csv header starts id,slide,status,error,"
awk '
  function field(s,    out, c, i, q) {
    out = ""; q = 0
    for (i = pos; i <= length(s); i++) {
      c = substr(s, i, 1)
      if (q) {
        if (c == "\"" && substr(s, i + 1, 1) == "\"") { out = out "\""; i++ }
        else if (c == "\"") q = 0
        else out = out c
      } else if (c == "\"") q = 1
      else if (c == ",") break
      else out = out c
    }
    pos = i + 1
    return out
  }
  NR > 1 { pos = 1; id = field($0); slide = field($0); status = field($0); err = field($0)
           gsub(/\t/, " ", err); print id "\t" status "\t" err }
' "$csv" 2>/dev/null >"$TMP/rows"
nrows=$(wc -l <"$TMP/rows")
check '[ "$nrows" = "$lines" ]' "cohort.csv has one row per cohort line ($nrows rows, $lines lines)"
check '! cut -f2 "$TMP/rows" | grep -qx pending' "cohort.csv has no pending row"
while read -r id; do
  [ -n "$id" ] || continue
  row=$(awk -F '\t' -v id="$id" '$1 == id' "$TMP/rows")
  if [ "$(printf '%s' "$row" | cut -f2)" = "done" ]; then
    ok "$id: done in cohort.csv"
  else
    not_ok "$id: not done in cohort.csv: $row"
  fi
done <"$TMP/good"
while read -r id; do
  [ -n "$id" ] || continue
  row=$(awk -F '\t' -v id="$id" '$1 == id' "$TMP/rows")
  if [ "$(printf '%s' "$row" | cut -f2)" = failed ] && [ -n "$(printf '%s' "$row" | cut -f3)" ]; then
    ok "$id: failed in cohort.csv with an error"
  else
    not_ok "$id: no failed row with an error in cohort.csv: $row"
  fi
done <"$TMP/bad"
if [ "$failed" -gt 0 ] && [ -f "$csv" ]; then
  echo "# cohort.csv:"
  diag <"$csv"
fi

# ---- nothing left behind in the queue
left=$(squeue -h -o '%i %T' 2>&1)
check '[ -z "$left" ]' "squeue is empty${left:+: $left}"

[ "$failed" -gt 0 ] && show_logs # the task logs, slurmctld's, slurmd's and munged's
tap_end
