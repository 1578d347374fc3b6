#!/usr/bin/env bash
# Debian 12 packages tileheat needs to build, test, and (for the Python helpers) regenerate
# reference data and the default model. The Slurm and munge packages let make check run
# tests/slurm.sh on a throwaway single-node cluster (tools/slurm-local.sh); their services are
# not started by the install. Chromium and firefox-esr (Debian's) run the viewer's browser test; the viewer's
# npm packages (third_party/package.json: OpenSeadragon, puppeteer-core) go into
# third_party/node_modules, which is not committed, where configure finds OpenSeadragon.
# TH_PYTHON_DEPS=1 adds the Python helpers' packages, TH_FUZZ_DEPS=1
# clang and its libFuzzer runtime for `configure CC=clang --enable-fuzz` (about 300 MB, so only
# when asked).
set -euo pipefail
BUILD="build-essential autoconf automake libtool pkg-config libopenslide-dev libtiff-dev libpng-dev zlib1g-dev
 libprotobuf-c-dev protobuf-c-compiler libcjson-dev libdnnl-dev nettle-dev libhdf5-dev libzip-dev
 libjpeg-dev slurmctld slurmd slurm-client munge chromium firefox-esr"
command -v npm >/dev/null 2>&1 || BUILD="$BUILD npm" # the machine's Node.js may bring its own
PYTHON="python3-torch python3-onnx python3-openslide python3-skimage python3-numpy python3-h5py"
FUZZ="clang libclang-rt-14-dev"
missing=$(for p in $BUILD ${TH_PYTHON_DEPS:+$PYTHON} ${TH_FUZZ_DEPS:+$FUZZ}; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  # Keep the packages' maintainer scripts from starting munged, slurmctld or slurmd
  # (invoke-rc.d and deb-systemd-invoke obey policy-rc.d; exit 101 = action forbidden).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
here=$(cd "$(dirname "$0")/.." && pwd)
lock="$here/third_party/package-lock.json"
if [ ! "$here/third_party/node_modules/.package-lock.json" -nt "$lock" ]; then
  (cd "$here/third_party" && npm ci --no-audit --no-fund --loglevel=error)
fi
