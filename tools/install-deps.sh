#!/usr/bin/env bash
# Debian 12 packages tileheat needs to build, test, and (for the Python helpers) regenerate
# reference data and the default model.
set -euo pipefail
BUILD="build-essential autoconf automake libtool pkg-config libopenslide-dev libtiff-dev libpng-dev zlib1g-dev
 libprotobuf-c-dev protobuf-c-compiler libcjson-dev libdnnl-dev nettle-dev"
PYTHON="python3-torch python3-onnx python3-openslide python3-skimage python3-numpy"
missing=$(for p in $BUILD ${TH_PYTHON_DEPS:+$PYTHON}; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
