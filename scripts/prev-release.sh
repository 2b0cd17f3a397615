#!/usr/bin/env bash
# Builds the previous release's `tessera` (debug) for the rolling-upgrade
# tests (crates/cli/tests/cases/upgrade.rs, scripts/deb-test.sh), once:
# the binary is kept under target/prev-release/<commit>/ and reused.
#
#   scripts/prev-release.sh          # prints the binary's path
#
# Exit status 3 when the commit is not in this clone's history (shallow).
#
# The release is the commit in scripts/prev-release.commit. Its source
# comes from this repository's history (git archive), and it builds in the
# same target directory as the current tree, so the dependencies both
# share (same Cargo.lock) are compiled once; only tessera's own crates
# build again (~3 min on 2 cores, once per commit).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
COMMIT=$(tr -d '[:space:]' < scripts/prev-release.commit)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/prev-release/$COMMIT

if [ -x "$OUT/tessera" ] && [ -f "$OUT/src/Cargo.toml" ]; then
  echo "$OUT/tessera"
  exit 0
fi
# Exit status 3: the commit is not here (a shallow clone); scripts/test.sh
# then runs everything else and says loudly which tests it could not run.
if ! git cat-file -e "$COMMIT^{commit}" 2>/dev/null; then
  echo "prev-release: commit $COMMIT is not in this repository's history (a shallow clone?); fetch it or deepen the clone" >&2
  exit 3
fi
echo "prev-release: building tessera at ${COMMIT:0:12} (once; kept in $OUT)" >&2
rm -rf "$OUT"
mkdir -p "$OUT/src"
git archive "$COMMIT" | tar -x -C "$OUT/src"
# The previous release's build replaces target/debug/tessera; keep the
# current one aside and put it back, so a test run in progress (or the
# next cargo command) never sees the old binary under the new name.
CURRENT="$TARGET/debug/tessera"
SAVED=""
if [ -f "$CURRENT" ]; then
  SAVED="$OUT/current-tessera.saved"
  cp -p "$CURRENT" "$SAVED"
fi
restore() {
  if [ -n "$SAVED" ] && [ -f "$SAVED" ]; then
    cp -p "$SAVED" "$CURRENT.tmp" && mv -f "$CURRENT.tmp" "$CURRENT"
    rm -f "$SAVED"
  else
    rm -f "$CURRENT"
  fi
}
trap restore EXIT
(cd "$OUT/src" && CARGO_TARGET_DIR="$TARGET" cargo build -p tessera --locked --quiet)
cp -p "$CURRENT" "$OUT/tessera.tmp"
mv -f "$OUT/tessera.tmp" "$OUT/tessera"
echo "$OUT/tessera"
