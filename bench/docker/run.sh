#!/usr/bin/env bash
# Container overhead of pipe's docker executor against the engine itself, measured in one run:
#   peers (shared/bench/peers/docker.sh): `docker run --rm`, `docker exec`, create+start+rm,
#     and the raw Engine API (docker_api_bench.py: create+start+wait, exec create+start+inspect)
#   api_bridge.py: the Engine API on the bridge network job containers use, and pipe's own job
#     model done by the API alone (create, start, an exec per step, forced remove)
#   pipe: per-step overhead in a running job container (a job of 21 steps minus a job of 1,
#     divided by 20), per-job container start (a 1-step job in a container minus the same job
#     on the host), and 50 jobs x 5 steps at -p 2.
# Usage: bench/docker/run.sh [PIPE_BINARY]   (RUNS=N hyperfine runs, default 10)
# Uses the machine's engine (DOCKER_HOST or the default socket); leaves nothing running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PIPE=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/pipe}
N=${RUNS:-10}
IMG=pipebench/busybox
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
peers=${PEERS:-$root/../shared/bench/peers}
[ -d "$peers" ] || peers=/work/shared/bench/peers

echo "== peers (engine: ${DOCKER_HOST:-unix:///var/run/docker.sock})"
DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock} RUNS=$N WORK="$W/peers" "$peers/docker.sh"

mk() { # mk DIR WORKFLOW-TEXT
  mkdir -p "$1/.github/workflows" "$1/.git"
  printf '%s' "$2" > "$1/.github/workflows/ci.yml"
}
steps() { for _ in $(seq "$1"); do printf '      - run: "true"\n'; done; }
mk "$W/s1" "on: push
jobs:
  j:
    runs-on: ubuntu-latest
    container: $IMG
    steps:
$(steps 1)
"
mk "$W/s21" "on: push
jobs:
  j:
    runs-on: ubuntu-latest
    container: $IMG
    steps:
$(steps 21)
"
mk "$W/host1" "on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
$(steps 1)
"
{
  printf 'on: push\njobs:\n'
  for j in $(seq 50); do
    printf '  j%s:\n    runs-on: ubuntu-latest\n    container: %s\n    steps:\n' "$j" "$IMG"
    steps 5
  done
} > "$W/fifty.yml"
mk "$W/fifty" "$(cat "$W/fifty.yml")"

export PIPE_STATE_DIR="$W/state"
run() { echo "cd $1 && $PIPE -q run --progress plain ${2:-}"; }
echo "== pipe ($PIPE)"
hyperfine -N --warmup 2 --runs "$N" --export-json "$W/pipe.json" \
  "sh -c '$(run "$W/host1")'" \
  "sh -c '$(run "$W/s1")'" \
  "sh -c '$(run "$W/s21")'"
hyperfine -N --warmup 1 --runs 3 --export-json "$W/fifty.json" \
  "sh -c '$(run "$W/fifty" "-p 2")'"
hyperfine -N --warmup 2 --runs "$N" --export-json "$W/bridge.json" \
  "docker run --rm $IMG true"
python3 "$here/api_bridge.py" "$IMG" "$N" > "$W/api_bridge.txt"
python3 "$here/api_bridge.py" --jobs "$IMG" 50 5 2 >> "$W/api_bridge.txt"
python3 "$here/api_bridge.py" --jobs "$IMG" 20 1 1 >> "$W/api_bridge.txt"
cat "$W/api_bridge.txt"
python3 - "$W/pipe.json" "$W/fifty.json" "$W/peers/docker_cli.json" "$W/bridge.json" "$W/api_bridge.txt" <<'PY'
import json, statistics, sys
def meds(path):
    return [statistics.median(r["times"]) for r in json.load(open(path))["results"]]
host1, s1, s21 = meds(sys.argv[1])
fifty = meds(sys.argv[2])[0]
run_rm, exec_, _, _ = meds(sys.argv[3])
bridge = meds(sys.argv[4])[0]
api = dict(l.rsplit(" ", 1) for l in open(sys.argv[5]).read().splitlines())
api_csw, api_total = float(api["api-bridge c+s+w"]), float(api["api-bridge total"])
print(f"pipe per-step overhead in a job container: {(s21 - s1) / 20 * 1e3:.1f} ms (docker exec CLI {exec_ * 1e3:.1f} ms)")
print(f"pipe per-job container start (+remove):    {(s1 - host1) * 1e3:.1f} ms "
      f"(docker run --rm: {run_rm * 1e3:.1f} ms with --network none, {bridge * 1e3:.1f} ms on the bridge)")
print(f"  vs the API on the same bridge network: c+s+w {api_csw:.1f} ms ({(s1 - host1) * 1e3 / api_csw:.2f}x), "
      f"c+s+w+remove {api_total:.1f} ms ({(s1 - host1) * 1e3 / api_total:.2f}x)")
api_jobs = float(api["api-jobs wall"])
api_one = float(api["api-jobs-20-1-1 wall"]) / 20 * 1e3
print(f"  vs the API doing pipe's job model (create, start, one exec, forced remove): "
      f"{api_one:.1f} ms ({(s1 - host1) * 1e3 / api_one:.2f}x)")
print(f"pipe 50 jobs x 5 steps at -p 2:            {fifty:.2f} s (the API doing the same on 2 threads: "
      f"{api_jobs:.2f} s, {fifty / api_jobs:.2f}x)")
PY
