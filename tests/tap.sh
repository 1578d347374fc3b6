# SPDX-License-Identifier: MIT
# Sourced by the shell tests (cli.sh, batch.sh, slurm.sh): the paths make check passes in the
# environment, and TAP helpers. `check 'SHELL-CONDITION' "description"` is one test.
SRC=${TH_SRCDIR:-.}
BUILD=${TH_BUILDDIR:-.}
DATA=${TH_DATA:-$SRC/../shared/data}
TH="$BUILD/tileheat"
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { if eval "$1"; then ok "$2"; else not_ok "$2"; fi; }
# The plan, after the tests, and the exit status.
tap_end() {
  echo "1..$n"
  [ "$failed" -eq 0 ]
}
