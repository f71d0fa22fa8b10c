#!/usr/bin/env bash
# `pipe promote` to an environment with a deploy (a no-op script deploy, one verify sample of a
# `true` command check) against the same promotion to an environment without `deploy:`: the
# cost of the deploy wiring (environment lock, release records, one ledger entry per deploy
# event, the release recorded after verify). Usage: bench/promote/deploy.sh [N builds]
set -euo pipefail
N=${1:-10}
PIPE=${PIPE:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/pipe}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export PIPE_STATE_DIR=$tmp/state PIPE_CACHE_DIR=$tmp/cache NO_COLOR=1
mkdir -p "$tmp/repo/.github/workflows" "$tmp/repo/.pipe" && cd "$tmp/repo"
cat > .github/workflows/release.yml <<'WF'
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs: { app: "${{ steps.d.outputs.digest }}" }
    steps:
      - id: d
        run: echo "digest=sha256:$(printf '%s' '${{ vars.V }}' | sha256sum | cut -d' ' -f1)" >> "$GITHUB_OUTPUT"
WF
cat > .pipe/environments.yml <<'POL'
build: { subjects: [{ name: app, output: build.app }] }
environments:
  plain: { gates: { jobs: [build] } }
  deployed:
    gates: { jobs: [build] }
    deploy: { run: "true" }
    verify: { interval: 10ms, count: 1, checks: [{ command: { run: "true" } }] }
POL
git init -q -b main && git -c user.name=b -c user.email=b@x add -A && git -c user.name=b -c user.email=b@x commit -qm p
for i in $(seq 1 "$N"); do "$PIPE" run -q -W .github/workflows/release.yml --var V="$i" >/dev/null 2>&1; done
mapfile -t builds < <("$PIPE" builds --json | python3 -c 'import json,sys; bs=sorted(json.load(sys.stdin), key=lambda b: b["run"]); print("\n".join(b["alias"] for b in bs))')
time_one() { local s e; s=$(date +%s%N); "$PIPE" promote "$1" --to "$2" -q >/dev/null 2>&1 || { echo "promote $1 to $2 failed" >&2; exit 1; }; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
for env in plain deployed; do
  for b in "${builds[@]}"; do time_one "$b" "$env"; done > "$tmp/$env.us"
  python3 - "$env" "$tmp/$env.us" <<'PY'
import statistics, sys
xs = [int(l) / 1000 for l in open(sys.argv[2])]
print(f"{sys.argv[1]:<9} n={len(xs)}  mean {statistics.mean(xs):.1f} ms ± {statistics.stdev(xs):.1f}  min {min(xs):.1f}  max {max(xs):.1f}")
PY
done
echo "ledger entries: $("$PIPE" history --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
