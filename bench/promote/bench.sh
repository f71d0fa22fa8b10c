#!/usr/bin/env bash
# Times promotion (bench/promote/RESULTS.md records a run):
#   1. `pipe gates BUILD --to production` on a 10,000-entry ledger (target ≤ 50 ms, whole
#      process: policy read from git, ledger queries, evidence re-hashed, every gate), against
#      the floor of one `sqlite3` query over the same ledger;
#   2. `pipe ledger verify` of 100,000 entries (target ≥ 50,000 entries/s), against `git fsck
#      --full` of a 100,000-commit chain (git's own hash-chain check).
#
#   bash bench/promote/bench.sh            # from the repository root
#
# Needs: release builds (`cargo build --release --bin pipe -p pipe-promote --examples`),
# hyperfine, sqlite3, git, ssh-keygen. Writes the hyperfine exports to $OUT
# (default target/bench-promote/).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PIPE="${PIPE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pipe}"
GEN="${GEN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/ledger_gen}"
OUT="${OUT:-$ROOT/target/bench-promote}"
mkdir -p "$OUT"
for tool in hyperfine sqlite3 git ssh-keygen; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` is not installed" >&2; exit 2; }
done
for bin in "$PIPE" "$GEN"; do
  [ -x "$bin" ] || { echo "error: no binary at \`$bin\` (cargo build --release --bin pipe -p pipe-promote --examples)" >&2; exit 2; }
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export PIPE_STATE_DIR="$TMP/state" PIPE_CACHE_DIR="$TMP/cache" NO_COLOR=1
repo="$TMP/repo"
mkdir -p "$repo/.github/workflows" "$repo/.pipe" "$TMP/keys"
cd "$repo"
git init -q -b main && git config user.name bob && git config user.email bob@example.invalid
cat > .github/workflows/ci.yml <<'YML'
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      image: ${{ steps.d.outputs.digest }}
    steps:
      - id: d
        run: echo "digest=sha256:$(echo app | sha256sum | cut -d' ' -f1)" >> "$GITHUB_OUTPUT"
  test:
    runs-on: ubuntu-latest
    steps:
      - run: printf 'SF:a\nDA:1,1\nDA:2,1\nend_of_record\n' > lcov.info
    reports:
      coverage: lcov.info
YML
cat > .pipe/environments.yml <<'YML'
build:
  subjects: [{ name: app, output: build.image }]
groups:
  rm: [alice, bob, carol]
environments:
  staging:
    gates:
      jobs: [build, test]
  production:
    promote: { from: [staging] }
    gates:
      jobs: [build, test]
      coverage: { min_lines: 50 }
      soak: { in: staging, min: 1s }
      approvals:
        rules: [{ name: rm, from: [group:rm], count: 2 }]
      windows:
        deny: [{ name: freeze, from: "2001-01-01T00:00", to: "2001-01-02T00:00" }]
YML
: > .pipe/allowed_signers
for who in alice carol; do
  ssh-keygen -q -t ed25519 -N '' -C "$who" -f "$TMP/keys/$who"
  echo "$who $(cut -d' ' -f1,2 "$TMP/keys/$who.pub")" >> .pipe/allowed_signers
done
echo "lcov.info" > .gitignore
git add -A && git commit -qm bench
"$PIPE" run -q >/dev/null 2>&1
alias=$("$PIPE" builds --json | sed -n 's/.*"alias": "\(.*\)".*/\1/p' | head -1)
state=$(dirname "$(find "$PIPE_STATE_DIR" -name ledger.db | head -1)")
"$PIPE" promote "$alias" --to staging -q >/dev/null
"$GEN" "$state" 9998 2>/dev/null
for who in alice carol; do "$PIPE" approve "$alias" --to production --key "$TMP/keys/$who" -q; done
sleep 1
entries=$(sqlite3 "$state/ledger.db" 'select count(*) from entries')
echo "== pipe gates on a ledger of $entries entries"
"$PIPE" gates "$alias" --to production
build=$("$PIPE" builds --json | sed -n 's/.*"id": "\(sha256:[0-9a-f]*\)".*/\1/p' | head -1)
hyperfine --warmup 3 --runs 30 -N \
  --export-json "$OUT/gates.json" --export-markdown "$OUT/gates.md" \
  -n "pipe gates" "$PIPE gates $alias --to production --json" \
  -n "sqlite3 floor" "sqlite3 $state/ledger.db \"select text from entries where build = '$build' or kind = 'release.recorded'\""

echo "== pipe ledger verify of 100,000 entries"
"$GEN" "$state" 100000 2>/dev/null
"$PIPE" ledger verify
# The peer: git's own hash-chain check over a 100,000-commit history.
chain="$TMP/chain"
git init -q "$chain"
python3 - "$chain" <<'PY'
import subprocess, sys
chain = sys.argv[1]
p = subprocess.Popen(["git", "-C", chain, "fast-import", "--quiet"], stdin=subprocess.PIPE)
w = p.stdin
for i in range(1, 100001):
    msg = f"entry {i}\n".encode()
    w.write(f"commit refs/heads/main\nmark :{i}\ncommitter x <x@example.invalid> {1700000000 + i} +0000\ndata {len(msg)}\n".encode() + msg)
    if i > 1:
        w.write(f"from :{i - 1}\n".encode())
    w.write(b"\n")
w.close()
sys.exit(p.wait())
PY
hyperfine --warmup 1 --runs 5 -N -i \
  --export-json "$OUT/verify.json" --export-markdown "$OUT/verify.md" \
  -n "pipe ledger verify (100,000)" "$PIPE ledger verify" \
  -n "git fsck --full (100,000 commits)" "git -C $chain fsck --full --no-progress"
