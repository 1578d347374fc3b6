#!/bin/sh
# SPDX-License-Identifier: MIT
# CLI tests (TAP): the cases in tests/cli-cases.txt (exit code, one-line message, no output left
# behind), then real runs on CMU-1-Small-Region: outputs present and consistent, and identical
# bytes for 1 and 2 threads.
set -u
. "${TH_SRCDIR:-.}/tests/tap.sh"
MODEL="$SRC/tests/data/models/cli-model.onnx"
UNET="$DATA/models/tissue-unet.onnx"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tileheat-cli-XXXXXX")
trap 'rm -rf "$TMP"' EXIT


if [ ! -d "$DATA/slides" ]; then
  echo "1..0 # SKIP no shared data at $DATA"
  exit 0
fi

# Keras cases are skipped when tileheat is built without HDF5
KERAS="$SRC/tests/data/keras"
no_keras=0
"$TH" info --model "$KERAS/seq-bn.h5" 2>&1 | grep -q "without Keras" && no_keras=1

# ---- table-driven cases
tab=$(printf '\t')
case_no=0
while IFS="$tab" read -r want regex args; do
  case "$want" in ''|'#'*) continue ;; esac
  case_no=$((case_no + 1))
  OUT="$TMP/case$case_no"
  mkdir -p "$OUT"
  case "$args" in *'$KERAS'*) if [ "$no_keras" = 1 ]; then ok "# SKIP tileheat $args (no HDF5)"; continue; fi ;; esac
  expanded=$(printf '%s' "$args" | sed -e "s|\$DATA|$DATA|g" -e "s|\$OUT|$OUT|g" \
    -e "s|\$MODEL|$MODEL|g" -e "s|\$UNET|$UNET|g" -e "s|\$SRC|$SRC|g" -e "s|\$KERAS|$KERAS|g")
  # shellcheck disable=SC2086
  (cd "$TMP" && "$TH" $expanded >"$TMP/stdout" 2>"$TMP/stderr" </dev/null)
  got=$?
  first=$(head -n 1 "$TMP/stderr")
  lines=$(wc -l <"$TMP/stderr")
  desc="tileheat $args"
  if [ "$got" != "$want" ]; then
    not_ok "$desc: exit $got, expected $want"
    sed 's/^/# stderr: /' "$TMP/stderr"
    continue
  fi
  if [ "$want" = 0 ]; then
    check "[ \"$lines\" -eq 0 ] && [ -s \"$TMP/stdout\" ]" "$desc: prints to stdout only"
    continue
  fi
  if ! printf '%s\n' "$first" | grep -Eq "$regex"; then
    not_ok "$desc: message '$first' does not match /$regex/"
    continue
  fi
  if [ "$want" = 1 ] && [ "$lines" -ne 1 ]; then
    not_ok "$desc: $lines lines on stderr, expected 1"
    sed 's/^/# stderr: /' "$TMP/stderr"
    continue
  fi
  if [ -n "$(ls -A "$OUT")" ]; then
    not_ok "$desc: left files behind: $(ls -A "$OUT" | tr '\n' ' ')"
    continue
  fi
  ok "$desc"
done <"$SRC/tests/cli-cases.txt"

# ---- real runs
SLIDE="$DATA/slides/CMU-1-Small-Region.svs"
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}'; }


"$TH" multi --model "$MODEL" --threads 1 --quiet --min-tissue 0 -o "$TMP/m1" "$SLIDE" 2>"$TMP/err1"
check '[ $? -eq 0 ]' "multi on CMU-1-Small-Region with 1 thread succeeds"
"$TH" multi --model "$MODEL" --threads 2 --min-tissue 0 -o "$TMP/m2" "$SLIDE" >"$TMP/table" 2>"$TMP/err2"
check '[ $? -eq 0 ]' "multi with 2 threads succeeds"
for f in heatmap.png tiles.csv; do
  check "cmp -s '$TMP/m1/$f' '$TMP/m2/$f'" "$f identical for 1 and 2 threads"
done
check 'cmp -s "$TMP/m1/report.json" "$TMP/m2/report.json" && [ -s "$TMP/m1/report.json" ]' \
  "report.json identical for 1 and 2 threads"
check 'grep -q "\"shown_by\":[[:space:]]*\"--top 3\"" "$TMP/m1/report.json" && grep -q "\"scale_high\":" "$TMP/m1/report.json" && grep -q "\"drawn\":[[:space:]]*true" "$TMP/m1/report.json"' \
  "report.json records the drawing: why these classes, their scales, which were drawn"
check 'grep -q "peak_rss_bytes" "$TMP/m1/run.json" && grep -q "\"tiles\":" "$TMP/m1/run.json" && ! grep -q "performance" "$TMP/m1/report.json"' \
  "run.json records stage timings and peak memory, report.json does not"
check '[ ! -s "$TMP/err1" ] && [ ! -s "$TMP/err2" ]' "nothing on stderr when not a TTY"
check '[ "$(ls -A "$TMP/m1" | tr "\n" " ")" = "heatmap.png report.json run.json tiles.csv " ]' \
  "exactly heatmap.png, report.json, run.json, tiles.csv and no temporary files"
check 'grep -q "\"sha256\":[[:space:]]*\"$(sha256sum "$MODEL" | cut -c1-64)\"" "$TMP/m1/run.json"' \
  "run.json records the model's SHA-256"
check 'grep -q "\"source\":[[:space:]]*\"openslide\"" "$TMP/m1/run.json" && grep -q "\"--threads\"" "$TMP/m1/run.json"' \
  "run.json records the µm/px source and the command line"
check '[ "$(wc -l <"$TMP/m1/tiles.csv")" -eq 118 ]' "tiles.csv: header + 9 × 13 full tiles"
check 'grep -q "\"total\":[[:space:]]*117" "$TMP/m1/report.json"' "report.json: 117 tiles in the grid"
check '[ "$(png_size "$TMP/m1/heatmap.png" | cut -d" " -f2)" -eq 2000 ]' \
  "heatmap.png: 2000 px on the long side"
sum=$(awk -F, 'NR > 1 { for (i = 7; i <= NF; i++) s += $i; n++ } END { printf "%.3f", s / n }' "$TMP/m1/tiles.csv")
check '[ "$sum" = "1.000" ]' "tiles.csv: probabilities sum to 1 per tile ($sum)"
check 'grep -q "117 tiles run of 117 (9 × 13)" "$TMP/table" && grep -q "^peak memory: " "$TMP/table"' \
  "the table, stage timings and peak memory are printed"
check 'grep -q "slide 0.499 µm/px (openslide), tiles 0.499 µm/px" "$TMP/table"' \
  "the table gives the slide's µm/px with its source, and the tiles'"

# run.json: the command line as typed, in its order; --top above the classes there are: a note
"$TH" multi "$SLIDE" --model "$MODEL" --top 6 --width 100 -o "$TMP/order" 2>"$TMP/errorder" >/dev/null
check 'grep -q "\"multi\", \"$SLIDE\", \"--model\"" "$TMP/order/run.json"' \
  "run.json: the command line in the order typed (the slide before the options)"
check '[ "$(wc -l <"$TMP/errorder")" -eq 1 ] && grep -q "note: --top 6: the model has [0-9] non-background classes; drawing [0-9]" "$TMP/errorder"' \
  "--top 6 with fewer classes: one line says how many are drawn"

# tissue skipping (default) with the bundled model, and the optional outputs
"$TH" multi --quiet --geojson --raw --tiff -o "$TMP/t" "$SLIDE" 2>"$TMP/errt"
check '[ $? -eq 0 ] && [ ! -s "$TMP/errt" ]' "multi with the bundled model, tissue skipping, --geojson --raw --tiff"
check '[ "$(ls -A "$TMP/t" | tr "\n" " ")" = "cam.npy heatmap.png heatmap.tiff probabilities.npy report.json run.json tiles.csv tiles.geojson tissue.png " ]' \
  "tissue.png, heatmap.tiff, tiles.geojson, cam.npy and probabilities.npy written, no temporary files"
"$TH" info "$TMP/t/heatmap.tiff" >"$TMP/tiffinfo"
check 'grep -q "generic-tiff" "$TMP/tiffinfo" && grep -q "level 0 .*2220 × 2967" "$TMP/tiffinfo" && grep -q "mpp: *0.499" "$TMP/tiffinfo"' \
  "heatmap.tiff: OpenSlide opens it as a pyramid at the slide's level-0 size and µm/px"
skipped=$(sed -n 's/.*"skipped":[[:space:]]*\([0-9]*\).*/\1/p' "$TMP/t/report.json" | head -n 1)
processed=$(sed -n 's/.*"processed":[[:space:]]*\([0-9]*\).*/\1/p' "$TMP/t/report.json" | head -n 1)
check '[ "$skipped" -gt 20 ] && [ $((skipped + processed)) -eq 117 ] && [ "$(wc -l <"$TMP/t/tiles.csv")" -eq $((processed + 1)) ]' \
  "glass tiles skipped ($skipped of 117), tiles.csv lists the $processed run"
check '[ "$(grep -c "\"objectType\":[[:space:]]*\"tile\"" "$TMP/t/tiles.geojson")" -eq "$processed" ]' \
  "tiles.geojson: one tile feature per tile run"

# a plain image without µm/px: taken at the model's resolution, with a one-line warning
"$TH" multi --quiet -o "$TMP/p" "$DATA/images/CMU-1-Small-Region.crop1024.png" 2>"$TMP/errp"
check '[ $? -eq 0 ] && [ "$(wc -l <"$TMP/errp")" -eq 1 ] && grep -q "warning: .*no µm/px.*give --mpp" "$TMP/errp"' \
  "plain PNG without µm/px: runs, warns once"
check 'grep -A1 "\"warnings\"" "$TMP/p/report.json" | grep -q "no µm/px"' "... and report.json's warnings say so"

# a fluorescence slide under the bundled brightfield model: one warning line, in report.json too
"$TH" multi --quiet --width 200 -o "$TMP/dapi" "$DATA/slides/test3-DAPI-2.ndpi" 2>"$TMP/errd"
check '[ $? -eq 0 ] && [ "$(wc -l <"$TMP/errd")" -eq 1 ] && grep -q "warning: .*test3-DAPI-2.ndpi: the slide looks like fluorescence" "$TMP/errd" && grep -q "looks like fluorescence" "$TMP/dapi/report.json"' \
  "a fluorescence slide with a brightfield model: a one-line warning, also in report.json"
check 'grep -q "\"warnings\":[[:space:]]*\[\]" "$TMP/t/report.json"' "CMU-1-Small-Region: no warning"

# TCGA has no µm/px: with --mpp (our estimate, 1.0) it runs, enlarged 2× to the model's 0.5
"$TH" multi --quiet --mpp 1.0 --width 300 -o "$TMP/tcga" "$DATA/slides/TCGA-CR-7395-01A-01-TS1.svs"
check '[ $? -eq 0 ] && grep -q "\"source\":[[:space:]]*\"--mpp\"" "$TMP/tcga/report.json" && grep -q "\"resampled\":[[:space:]]*true" "$TMP/tcga/report.json"' \
  "TCGA with --mpp 1.0: resampled, source --mpp"

"$TH" single --model "$MODEL" --quiet --width 500 --colormap magma -o "$TMP/s" "$SLIDE"
check '[ $? -eq 0 ]' "single succeeds"
check '[ "$(png_size "$TMP/s/heatmap.png" | cut -d" " -f2)" -eq 500 ]' "--width 500 is honoured"

# default output directory: SLIDE-NAME.tileheat in the current directory
(cd "$TMP" && "$TH" multi --model "$MODEL" --quiet "$SLIDE")
check '[ -f "$TMP/CMU-1-Small-Region.tileheat/report.json" ]' "default -o is SLIDE-NAME.tileheat/"

"$TH" single --model "$MODEL" --quiet --width 100 -o "$TMP/a/b/c" "$SLIDE"
check '[ -f "$TMP/a/b/c/heatmap.png" ]' "-o creates missing parent directories"

# a FIFO as slide or model: a one-line error at once, never a blocked open()
mkfifo "$TMP/pipe.svs"
timeout 20 "$TH" multi -o "$TMP/fifo" "$TMP/pipe.svs" 2>"$TMP/errf"
rc1=$?
timeout 20 "$TH" multi -m "$TMP/pipe.svs" -o "$TMP/fifo" "$SLIDE" 2>"$TMP/errm"
rc2=$?
check '[ $rc1 -eq 1 ] && [ $rc2 -eq 1 ] && grep -q "pipe.svs: a FIFO (named pipe), not a file" "$TMP/errf" && grep -q "pipe.svs: a FIFO" "$TMP/errm" && [ ! -e "$TMP/fifo" ]' \
  "a FIFO as the slide or the model: one-line error, no hang (exit $rc1, $rc2)"

# past `ulimit -f` (50 KB): a one-line write error, no temporary file, no silent kill
(ulimit -f 100 && "$TH" multi --model "$MODEL" -q -o "$TMP/fsize" "$SLIDE") 2>"$TMP/errz"
rc=$?
check '[ $rc -eq 1 ] && [ "$(wc -l <"$TMP/errz")" -eq 1 ] && grep -q "fsize/heatmap.png: .*File too large" "$TMP/errz" && ! grep -q "tileheat-run" "$TMP/errz" && [ -z "$(ls -A "$TMP/fsize" 2>/dev/null | grep tmp)" ]' \
  "a file over ulimit -f: exit $rc, one line naming the file and EFBIG, no temporary left"

# the output set is one unit: a rerun removes what it no longer writes; a failed or stopped run
# leaves the earlier set as it was; a second run into the folder meanwhile is refused
OS="$TMP/set"
"$TH" multi --model "$MODEL" -q --width 200 --geojson -o "$OS" "$SLIDE" &&
  "$TH" multi --model "$MODEL" -q --width 200 -o "$OS" "$SLIDE"
check '[ $? -eq 0 ] && [ ! -e "$OS/tiles.geojson" ] && [ "$(ls -A "$OS" | tr "\n" " ")" = "heatmap.png report.json run.json tiles.csv tissue.png " ]' \
  "a rerun without --geojson removes the earlier tiles.geojson, and leaves no lock or staging folder"
cp -r "$OS" "$TMP/set-before"
(ulimit -f 100 && "$TH" multi --model "$MODEL" -q --width 1500 -o "$OS" "$SLIDE") 2>/dev/null
check '[ $? -eq 1 ] && diff -r "$OS" "$TMP/set-before" >/dev/null' \
  "a run that fails while writing leaves the earlier set byte for byte, and no temporary"
# a run of some seconds: the bundled model on the reference engine, the slide enlarged 2×
"$TH" multi -q --engine ref --mpp 1.0 --min-tissue 0 -o "$OS" "$SLIDE" 2>/dev/null &
pid=$!
sleep 0.5
"$TH" multi --model "$MODEL" -q --width 200 -o "$OS" "$SLIDE" 2>"$TMP/errlock"
rc=$?
kill -TERM $pid 2>/dev/null
wait $pid
rc_first=$?
check '[ $rc -eq 1 ] && grep -q "another tileheat run is writing here (held by .* pid $pid since" "$TMP/errlock"' \
  "a second run into a folder being written fails at once, naming the holder"
check '[ $rc_first -eq 143 ] && diff -r "$OS" "$TMP/set-before" >/dev/null' \
  "SIGTERM during a run: exit 143, the earlier set unchanged, no lock or staging folder left"

# a Keras model: a run, then the same run with the model converted to ONNX gives the same bytes
if [ "$no_keras" = 0 ]; then
  "$TH" multi --model "$KERAS/functional.h5" -q --width 300 --roi 600,1200,900,900 -o "$TMP/k1" "$SLIDE" 2>"$TMP/errk"
  check '[ $? -eq 0 ] && grep -q "tumor" "$TMP/k1/tiles.csv" && grep -q "\"format\":[[:space:]]*\"Keras HDF5 (.h5)\"" "$TMP/k1/run.json" && grep -q "\"sidecar\":[[:space:]]*\"functional.json\"" "$TMP/k1/run.json"' \
    "multi with a Keras .h5: its sidecar's class names, run.json names the format and the sidecar"
  "$TH" convert "$KERAS/functional.h5" -o "$TMP/functional.onnx" >"$TMP/convert-out"
  check '[ $? -eq 0 ] && grep -q "functional.onnx: Keras HDF5 (.h5) model, 3 classes, input 64 × 48 px, preprocess unit" "$TMP/convert-out"' \
    "convert writes the ONNX file and says what it holds"
  "$TH" multi --model "$TMP/functional.onnx" -q --width 300 --roi 600,1200,900,900 -o "$TMP/k2" "$SLIDE"
  grep -v '"model":' "$TMP/k1/report.json" >"$TMP/k1.json"
  grep -v '"model":' "$TMP/k2/report.json" >"$TMP/k2.json"
  check 'cmp -s "$TMP/k1/tiles.csv" "$TMP/k2/tiles.csv" && cmp -s "$TMP/k1/heatmap.png" "$TMP/k2/heatmap.png" && cmp -s "$TMP/k1.json" "$TMP/k2.json"' \
    "the converted ONNX model gives the Keras model's tiles.csv, heatmap.png and report.json (but its model path) byte for byte"
  "$TH" info "$KERAS/vgg19-gap.h5" --preprocess caffe >"$TMP/kinfo"
  check 'grep -q "format: *Keras HDF5" "$TMP/kinfo" && grep -q "preprocess: *caffe (BGR" "$TMP/kinfo" && grep -q "conv *block5_conv4" "$TMP/kinfo" && grep -q "dense 8 -> 4 classes, softmax" "$TMP/kinfo"' \
    "info MODEL.h5: format, preprocessing and the layers"
fi

"$TH" info >"$TMP/default-info"
check 'grep -q "background  (background)" "$TMP/default-info" && grep -q "224 × 224" "$TMP/default-info"' \
  "info without --model describes the bundled model"

"$TH" info --model "$MODEL" "$SLIDE" >"$TMP/info"
check 'grep -q "aperio" "$TMP/info" && grep -q "2220 × 2967" "$TMP/info"' "info describes the slide"

tap_end
