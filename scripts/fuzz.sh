#!/usr/bin/env bash
# Runs one cargo-fuzz target for a bounded time; exits non-zero if it finds
# a crash (the input is left in fuzz/artifacts/TARGET/).
#
# Usage: scripts/fuzz.sh TARGET SECONDS     e.g. scripts/fuzz.sh radius_decode 60
# Targets: radius_decode, radius_dictionary, import_csv, import_pskc (see fuzz/fuzz_targets/).
#
# Works on the stable toolchain: cargo-fuzz passes nightly-only rustc flags,
# which RUSTC_BOOTSTRAP=1 allows. `--sanitizer none` skips AddressSanitizer:
# the fuzzed crates forbid `unsafe`, so ASan would only slow the run down
# (about 5x here: ~36k vs ~200k execs/s) without finding more. Both work.
# New inputs found during the run go to a scratch directory; the committed
# seed corpus in fuzz/corpus/TARGET is only read. To keep an interesting
# input, copy it there by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: scripts/fuzz.sh TARGET SECONDS"
target=${1:?$usage}
seconds=${2:?$usage}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "$usage" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cd fuzz
seeds="corpus/$target"
[ -d "$seeds" ] || { echo "no seed corpus at fuzz/$seeds" >&2; exit 2; }
export RUSTC_BOOTSTRAP=1
exec_status=0
cargo fuzz run --sanitizer none "$target" "$scratch" "$seeds" -- \
  -max_total_time="$seconds" -print_final_stats=1 || exec_status=$?
if [ "$exec_status" -ne 0 ]; then
  echo "fuzz target $target failed (exit $exec_status); crashing inputs are in fuzz/artifacts/$target/" >&2
fi
exit "$exec_status"
