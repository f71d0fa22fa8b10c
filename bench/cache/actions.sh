#!/usr/bin/env bash
# actions/cache and the artifact actions against `tar -c | zstd -1` and back, on 1 GiB of
# 10,000 files (random bytes, ~105 KiB each). Usage: bench/cache/actions.sh [PIPE] [RUNS]
# Needs a release build (`cargo build --release`) and zstd (`apt-get install zstd`).
# Page cache warm for every contender; the store is emptied before every save.
set -euo pipefail
PIPE=${1:-target/release/pipe}
PIPE=$(realpath "$PIPE")
RUNS=${2:-3}
W=$(mktemp -d "${TMPDIR:-/tmp}/pipe-actions-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
export PIPE_STATE_DIR=$W/state PIPE_CACHE_DIR=$W/cache NO_COLOR=1
mkdir -p "$W/repo" && cd "$W/repo"
git init -q -b main && git -c user.name=b -c user.email=b@b commit -q --allow-empty -m init
python3 - <<'PY'
import os
os.makedirs('data', exist_ok=True)
size = (1 << 30) // 10000
for i in range(10000):
    d = f'data/{i % 100:02d}'
    os.makedirs(d, exist_ok=True)
    with open(f'{d}/f{i}.bin', 'wb') as f:
        f.write(os.urandom(size))
PY
cat > save.yml <<'Y'
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache/save@v4
        with: {path: data, key: bench}
Y
cat > restore.yml <<'Y'
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache/restore@v4
        with: {path: data, key: bench}
Y
cat > upload.yml <<'Y'
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/upload-artifact@v4
        with: {name: data, path: data}
      - uses: actions/download-artifact@v4
        with: {name: data, path: got}
Y
now() { date +%s.%N; }
# Dirty pages left by the previous contender are written back first (`sync`, untimed), so no
# contender pays for another's writeback.
t() { local s; sync; s=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
GiB=$(du -sb data | cut -f1)
for i in $(seq "$RUNS"); do
  rm -rf "$W/cache" "$W/x.tar.zst"
  echo "tar_zstd_save $(t sh -c "tar -cf - data | zstd -1 -q -o $W/x.tar.zst")"
  echo "pipe_save $(t "$PIPE" run -W save.yml)"
  mv data data.orig
  echo "tar_zstd_restore $(t sh -c "zstd -dc $W/x.tar.zst | tar -xf -")"
  rm -rf data
  echo "pipe_restore $(t "$PIPE" run -W restore.yml)"
  diff -r -q data data.orig >/dev/null
  rm -rf data && mv data.orig data
  rm -rf got "$PIPE_STATE_DIR"
  sync
  # upload + download in one run; the two step durations come from the summary
  "$PIPE" run -W upload.yml --summary "$W/s.json" >/dev/null 2>&1
  python3 -c "import json;s=json.load(open('$W/s.json'))['jobs'][0]['steps'];print('pipe_upload',s[0]['duration_ms']/1000);print('pipe_download',s[1]['duration_ms']/1000)"
  diff -r -q got data >/dev/null
done | awk '{print $1, $2}' > "$W/times"
cat "$W/times" >&2
echo "bytes: $GiB, files: 10000, runs: $RUNS, $(date -u +%FT%TZ), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
for k in tar_zstd_save pipe_save tar_zstd_restore pipe_restore pipe_upload pipe_download; do
  m=$(grep "^$k " "$W/times" | cut -d' ' -f2 | median)
  echo "$k median ${m}s $(echo "scale=0; $GiB / $m / 1048576" | bc) MiB/s"
done
