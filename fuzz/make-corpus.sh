#!/usr/bin/env bash
# Seed corpora for the fuzz targets: make-corpus.sh BUILDDIR OUTDIR fills OUTDIR/{onnx,tiff,png,
# cohort} with the generated seeds (BUILDDIR/fuzz/gen-seeds, built by --enable-fuzz), the repo's
# generated test models, and small files of ../shared/data (whole when small, else their first
# 64 KB). Keep OUTDIR outside the repository: the shared data may not be copied into it.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUILDDIR OUTDIR" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
data=${TH_DATA:-$src/../shared/data}
out=$2
mkdir -p "$out"/{onnx,tiff,png,cohort}
"$1"/fuzz/gen-seeds "$out"
cp "$src"/tests/data/models/*.onnx "$out"/onnx/
cp "$src"/tests/data/cohort-table.csv "$out"/cohort/ 2>/dev/null || true
take() { # take FILE DIR: the file, cut to 64 KB
  [ -f "$1" ] && head -c 65536 "$1" >"$2/shared-$(basename "$1")"
  return 0
}
if [ -d "$data" ]; then
  for f in "$data"/slides/boxes.tiff "$data"/slides/small.svs "$data"/bad/*.svs "$data"/bad/*.tiff \
    "$data"/tiles/BACK-AAQSHYMA.tif "$data"/images/CMU-1-Small-Region.half.lzw.tif; do
    take "$f" "$out"/tiff
  done
  for f in "$data"/images/*.png "$data"/bad/*.png; do take "$f" "$out"/png; done
  for f in "$data"/bad/*.onnx; do take "$f" "$out"/onnx; done
fi
echo "seed corpora in $out: $(for d in onnx tiff png cohort; do printf '%s %s  ' "$d" "$(ls "$out/$d" | wc -l)"; done)"
