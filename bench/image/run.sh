#!/usr/bin/env bash
# `pipe image` against its peers, measured in one run:
#   pack:    a ~200 MB tree (copies of /usr/lib/gcc, /usr/lib/python3, /usr/share/perl: real
#            binaries, libraries and text) into one single-platform image at gzip level 1,
#            against `tar -cf - . | gzip -1` of the same tree (both single-threaded gzip);
#   rebuild: the same build again with nothing changed (the layer is reused, not repacked),
#            against the first build;
#   push:    to a `docker-registry` on 127.0.0.1, first into an empty registry, then again
#            when the registry has every blob (only manifests may be sent).
# Usage: bench/image/run.sh [PIPE_BINARY]   (RUNS=N runs per measure, default 5; median kept)
# Needs docker-registry (Debian's package); leaves nothing running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PIPE=${1:-${CARGO_TARGET_DIR:-$root/target}/release/pipe}
N=${RUNS:-5}
W=$(mktemp -d)
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

ms() { # ms CMD… → milliseconds of one run
  local s e
  s=$(date +%s%N)
  "$@" >/dev/null 2>&1
  e=$(date +%s%N)
  echo $(((e - s) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

mkdir -p "$W/tree"
for d in /usr/lib/gcc /usr/lib/python3 /usr/share/perl; do
  mkdir -p "$W/tree$d" && cp -a "$d/." "$W/tree$d/"
done
bytes=$(du -sb "$W/tree" | cut -f1)
files=$(find "$W/tree" -type f | wc -l)
echo "tree: $((bytes / 1000000)) MB, $files files; pipe: $PIPE; runs: $N; load: $(cut -d' ' -f1-3 /proc/loadavg)"

build() { # build OUT CACHE
  PIPE_CACHE_DIR="$2" "$PIPE" image build -q -t bench/tree:v1 --platform linux/amd64 \
    --layer "$W/tree:/" --compression-level 1 -o "$1"
}

tar_ms=() pack_ms=() rebuild_ms=()
for _ in $(seq "$N"); do
  tar_ms+=("$(ms sh -c "tar -C '$W/tree' -cf - . | gzip -1 > '$W/peer.tgz'")")
  rm -rf "$W/out" "$W/cache"
  pack_ms+=("$(ms build "$W/out" "$W/cache")")
  rebuild_ms+=("$(ms build "$W/out" "$W/cache")")
done
t=$(printf '%s\n' "${tar_ms[@]}" | median)
p=$(printf '%s\n' "${pack_ms[@]}" | median)
r=$(printf '%s\n' "${rebuild_ms[@]}" | median)
gz=$(stat -c %s "$W/peer.tgz")
layer=$(find "$W/out/blobs/sha256" -type f -size +1M -printf '%s\n' | head -1)
echo "tar | gzip -1:          median ${t} ms  (${tar_ms[*]})  → $((gz / 1000000)) MB"
echo "pipe image build:       median ${p} ms  (${pack_ms[*]})  → $((layer / 1000000)) MB layer"
echo "pipe rebuild, no change: median ${r} ms  (${rebuild_ms[*]})"
awk -v t="$t" -v p="$p" -v r="$r" -v b="$bytes" 'BEGIN {
  printf "throughput: pipe %.1f MB/s, tar|gzip -1 %.1f MB/s → pipe/peer = %.2fx (goal >= 0.8x)\n", b/p/1000, b/t/1000, t/p
  printf "rebuild / first build = %.3fx (goal <= 0.1x)\n", r/p
}'

# Push: first into an empty registry, then again with every blob present.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$W/reg.yml" <<EOF
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $W/regdata}
http: {addr: "127.0.0.1:$port"}
EOF
docker-registry serve "$W/reg.yml" >/dev/null 2>&1 &
REG_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
push() { "$PIPE" image push "$W/out" "127.0.0.1:$port/bench/tree:v1" --insecure-registry "127.0.0.1:$port" --json -q; }
s=$(date +%s%N); first=$(push); e=$(date +%s%N); first_ms=$(((e - s) / 1000000))
again_ms=()
for _ in $(seq "$N"); do
  s=$(date +%s%N); again=$(push); e=$(date +%s%N); again_ms+=($(((e - s) / 1000000)))
done
echo "push into an empty registry: ${first_ms} ms  $first"
echo "push with every blob present: median $(printf '%s\n' "${again_ms[@]}" | median) ms (${again_ms[*]})  $again"
