#!/usr/bin/env bash
# The README's test command: install the Debian packages, build out of tree, run make check.
# Set TH_NO_APT=1 to skip the package install.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TH_NO_APT:-}" ] && [ "$(id -u)" = 0 ]; then
  bash tools/install-deps.sh
fi
if [ -f config.status ]; then
  echo "tools/test.sh: the source tree is configured in place; run 'make distclean' here (or" \
    "build out of tree, as the README does) and try again" >&2
  exit 1
fi
./autogen.sh >/dev/null
rm -rf build-ci && mkdir build-ci && cd build-ci
../configure --quiet
make -j"$(nproc)" >/dev/null
make -j"$(nproc)" check
