#!/usr/bin/env bash
# Times `pipe scan` against cargo-audit in the same run (bench/scan/RESULTS.md records a run).
#
#   bash bench/scan/bench.sh            # from the repository root
#
# Needs: a release build of pipe (`cargo build --release`), cargo-audit
# (`cargo install cargo-audit --locked`), hyperfine (`apt-get install hyperfine`), and
# ../shared/advisory-db beside the repository. Writes the hyperfine exports to $OUT (default target/bench-scan/).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SHARED="$ROOT/../shared/advisory-db"
PIPE="${PIPE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pipe}"
OUT="${OUT:-$ROOT/target/bench-scan}"
LOCK="$ROOT/tests/scan/cargo-audit/lockfiles/24-500-packages/Cargo.lock"
mkdir -p "$OUT"
for tool in hyperfine cargo-audit; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` is not installed" >&2; exit 2; }
done
[ -x "$PIPE" ] || { echo "error: no pipe binary at \`$PIPE\` (cargo build --release)" >&2; exit 2; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# cargo-audit reads the RustSec layout from a git checkout.
cp -r "$SHARED/rustsec" "$TMP/rustsec"
(cd "$TMP/rustsec" && git init -q && git add -A && git -c user.name=x -c user.email=x@example.invalid commit -qm db)
"$PIPE" scan db import "$SHARED/osv" --db "$TMP/pipe-db" >/dev/null

echo "== Cargo.lock with $(grep -c '^\[\[package' "$LOCK") packages: pipe vs cargo-audit"
hyperfine --warmup 3 --runs 30 -N -i \
  --export-json "$OUT/cargo-lock.json" --export-markdown "$OUT/cargo-lock.md" \
  -n "cargo audit" "cargo audit --db $TMP/rustsec --no-fetch --no-yanked --stale --json --file $LOCK" \
  -n "cargo-audit (binary, no cargo wrapper)" "$(command -v cargo-audit) audit --db $TMP/rustsec --no-fetch --no-yanked --stale --json --file $LOCK" \
  -n "pipe scan" "$PIPE scan fs $LOCK --db $TMP/pipe-db --output json"

echo "== this repository, end to end"
hyperfine --warmup 3 --runs 30 -N -i \
  --export-json "$OUT/repo.json" --export-markdown "$OUT/repo.md" \
  -n "pipe scan fs ." "$PIPE scan fs $ROOT --db $TMP/pipe-db --output json"

echo "== database import (8617 OSV files) and status"
hyperfine --warmup 1 --runs 5 -N \
  --export-json "$OUT/import.json" --export-markdown "$OUT/import.md" \
  -n "pipe scan db import" "$PIPE scan db import $SHARED/osv --db $TMP/pipe-db2"
hyperfine --warmup 3 --runs 30 -N \
  --export-json "$OUT/status.json" --export-markdown "$OUT/status.md" \
  -n "pipe scan db status" "$PIPE scan db status --db $TMP/pipe-db"
ls -l "$TMP/pipe-db/osv.db" | awk '{print "database size: " $5 " bytes"}' | tee "$OUT/db-size.txt"
