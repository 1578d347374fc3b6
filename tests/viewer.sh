#!/bin/sh
# SPDX-License-Identifier: MIT
# The viewer (TAP): `multi --viewer` and `single --viewer` on CMU-1-Small-Region write a complete
# viewer folder (page, OpenSeadragon, pyramids, data), the same bytes for 1 and 2 threads, no
# file for a glass or clear tile (config.js maps them to one shared file), no temporary folder left; `tileheat view DIR` writes the same
# folder afterwards; `batch --viewer` writes the cohort page. Then tests/viewer-browser.js opens
# the viewers in Debian's chromium and firefox-esr (headless, through puppeteer-core) over
# file://: tiles load,
# every tile's URL is a file of the folder (glass and clear tiles the shared one), no console
# errors or failed requests, layers toggle, the deepest level loads, the colours
# match heatmap.png. Screenshots: tests/viewer-shots/BROWSER/ in the build folder.
# Skipped (TAP) without OpenSeadragon; the browser part without chromium, node or puppeteer-core,
# Firefox's without firefox-esr (tools/install-deps.sh installs them).
set -u
. "${TH_SRCDIR:-.}/tests/tap.sh"
CMU="$DATA/slides/CMU-1-Small-Region.svs"
CHROMIUM=${TH_CHROMIUM:-/usr/bin/chromium}
NODE_MODULES="$SRC/third_party/node_modules"
SHOTS="$BUILD/tests/viewer-shots"
T=$(mktemp -d "${TMPDIR:-/tmp}/th-viewer.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

if ! "$TH" multi "$CMU" --viewer --geojson --threads 2 -q -o "$T/multi" 2>"$T/err"; then
  if grep -q "OpenSeadragon is not installed" "$T/err"; then
    echo "1..0 # SKIP OpenSeadragon is not installed (tools/install-deps.sh, then configure)"
    exit 0
  fi
  not_ok "multi --viewer runs: $(cat "$T/err")"
  tap_end
  exit 1
fi
V="$T/multi/viewer"
check '[ -s "$V/index.html" ] && [ -s "$V/viewer.js" ] && [ -s "$V/config.js" ] &&
  [ -s "$V/openseadragon/openseadragon.min.js" ] && [ -s "$V/openseadragon/images/home_rest.png" ] &&
  [ -s "$V/slide.dzi" ] && [ -s "$V/slide_files/0/0_0.jpg" ] && [ -s "$V/layer2_files/10/1_1.png" ] &&
  [ -s "$V/thumbnail.jpg" ] && [ -s "$V/data/tiles-0.js" ] && [ ! -e "$V/layer3_files" ]' \
  "multi --viewer: page, OpenSeadragon, the slide, one layer per class shown (3), the data"
top=$(ls "$V/slide_files" | sort -n | tail -n 1)
# level 12's run lengths in config.js (own, shared, own, ...): its own tiles and the shared ones
runs=$(sed 's/.*"slide":{[^}]*"sharedRuns":\[//; s/\]\]}.*//; s/.*\[//' "$V/config.js")
own=$(echo "$runs" | awk -F, '{ for (i = 1; i <= NF; i += 2) s += $i; print s }')
all=$(echo "$runs" | awk -F, '{ for (i = 1; i <= NF; i++) s += $i; print s }')
check '[ "$top" = 12 ] && [ -s "$V/slide_files/12/4_5.jpg" ] && [ ! -e "$V/slide_files/12/9_0.jpg" ] &&
  [ "$all" = 108 ] && [ "$(ls "$V/slide_files/12" | wc -l)" = "$own" ] && [ "$own" -lt 108 ]' \
  "the slide's Deep Zoom levels: 13 (2220×2967 down to 1 px), 9×12 tiles of 256 px at level 0 ($own with a file)"
check '[ -s "$V/shared/glass.jpg" ] && [ -s "$V/shared/clear.png" ] &&
  [ "$(find "$V" -type f -links +1 ! -name thumbnail.jpg ! -path "*/slide_files/*/0_0.jpg" | wc -l)" = 0 ] && [ "$(ls "$V/layer0_files/10" | wc -l)" -lt 9 ] &&
  grep -q "\"shared\":\"shared/glass.jpg\",\"sharedRuns\":\[\[\]," "$V/config.js"' \
  "glass tiles and clear layer tiles have no file: config.js maps them to shared/glass.jpg, shared/clear.png"
check '! ls -a "$T/multi" | grep -q -e "^\.tileheat-run" -e "^viewer\." && ! grep -q "'\''" "$V/config.js" &&
  grep -q "\"links\":\[\"heatmap.png\",\"report.json\",\"tiles.csv\",\"tiles.geojson\"\]" "$V/config.js"' \
  "no temporary folder left; the page links heatmap.png, report.json, tiles.csv, tiles.geojson"
"$TH" multi "$CMU" --viewer --geojson --threads 1 -q -o "$T/multi1" 2>"$T/err"
check 'diff -r "$V" "$T/multi1/viewer" >/dev/null' "the same viewer for 1 and 2 threads"

# tileheat view: the same folder from the finished run
rm -rf "$T/multi1/viewer"
"$TH" view "$T/multi1" -q 2>"$T/err"
check 'diff -r "$V" "$T/multi1/viewer" >/dev/null' "tileheat view DIR writes what --viewer wrote"
"$TH" single "$CMU" --class stroma --colormap magma --viewer --threads 2 -q -o "$T/single" 2>"$T/err"
check '[ -s "$T/single/viewer/layer0_files/10/1_1.png" ] && [ ! -e "$T/single/viewer/layer1_files" ] &&
  grep -q "\"colormap\":\"magma\"" "$T/single/viewer/config.js"' "single --viewer: one layer, its colour map"
echo "{}" >"$T/single/run.json"
"$TH" view "$T/single" -q 2>"$T/err"
check '[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "run.json" "$T/err"' \
  "view on a folder whose run.json is not a run's: one line naming run.json"
check '"$TH" view "$T/nowhere" -q 2>&1 | grep -q "nowhere/run.json"' "view on a folder with no run: one line"

# batch: every slide's viewer, and the cohort page
printf 'slide,id\n%s,a\n%s,b\n' "$CMU" "$CMU" >"$T/cohort.csv"
"$TH" batch multi "$T/cohort.csv" -o "$T/batch" --viewer --threads 2 >/dev/null 2>"$T/err"
check '[ -s "$T/batch/index.html" ] && [ -s "$T/batch/index_files/cohort.js" ] &&
  grep -q "\"id\":\"a\"" "$T/batch/index_files/cohort-data.js" &&
  grep -q "\"viewer\":true" "$T/batch/index_files/cohort-data.js" &&
  diff -r "$T/batch/a/viewer" "$T/batch/b/viewer" >/dev/null && diff -r -x config.js "$V" "$T/batch/a/viewer" >/dev/null' \
  "batch --viewer: each slide's viewer (as multi's, but the links) and the cohort page, OUTDIR/index.html"

# the browsers: chromium, and Firefox where it is installed (tools/install-deps.sh installs both)
FIREFOX=${TH_FIREFOX:-/usr/bin/firefox-esr}
why=""
if [ ! -x "$CHROMIUM" ]; then
  why="chromium is not installed (tools/install-deps.sh installs Debian's)"
elif ! command -v node >/dev/null 2>&1; then
  why="node is not installed"
elif ! NODE_PATH="$NODE_MODULES" node -e "require.resolve('puppeteer-core')" 2>/dev/null; then
  why="puppeteer-core is not installed in third_party/node_modules (tools/install-deps.sh)"
fi
if [ -n "$why" ]; then
  n=$((n + 1))
  echo "ok $n # SKIP the browser: $why"
  tap_end
  exit
fi
browsers="$CHROMIUM"
if [ -x "$FIREFOX" ]; then
  browsers="$CHROMIUM $FIREFOX"
else
  n=$((n + 1))
  echo "ok $n # SKIP Firefox: $FIREFOX is not installed (tools/install-deps.sh installs firefox-esr)"
fi
for browser in $browsers; do
  name=$(basename "$browser")
  for kind in multi single; do
    mkdir -p "$SHOTS/$name/$kind"
    NODE_PATH="$NODE_MODULES" timeout 240 node "$SRC/tests/viewer-browser.js" "$browser" \
      "$T/$kind/viewer" "$T/$kind/heatmap.png" "$SHOTS/$name/$kind" "$n" >"$T/browser.tap" 2>&1
    cat "$T/browser.tap"
    got=$(grep -c -e '^ok ' -e '^not ok ' "$T/browser.tap")
    bad=$(grep -c '^not ok ' "$T/browser.tap")
    n=$((n + got))
    failed=$((failed + bad))
    if [ "$got" -eq 0 ]; then
      not_ok "the browser test of the $kind viewer ran in $name"
    fi
  done
done
tap_end
