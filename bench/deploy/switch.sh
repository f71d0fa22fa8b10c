#!/usr/bin/env bash
# Blue-green switch latency: `pipe rollback` (lock, release record, upstream file written and
# renamed, `nginx -t`, SIGHUP, wait for the new workers, one verify sample through the proxy)
# against the manual runbook (write the upstream file, `nginx -t`, `nginx -s reload`, poll the
# proxy with curl until the other version answers), alternating between two running slots.
#
# usage: bench/deploy/switch.sh [N]      (PIPE=path/to/pipe, default target/release/pipe)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20}
PROFILE=${PROFILE:-release}
PIPE=${PIPE:-target/$PROFILE/pipe}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PIPE=$(cd "$(dirname "$PIPE")" && pwd)/$(basename "$PIPE")
[ -x "$PIPE" ] || { echo "build pipe first: cargo build --release (or set PIPE=)" >&2; exit 2; }
if [ "$PROFILE" = release ]; then cargo build -q --release -p pipe-deploy --example seed; else cargo build -q -p pipe-deploy --example seed; fi
SEED=target/$PROFILE/examples/seed

work=$(mktemp -d)
cleanup() {
  [ -f "$work/nginx/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  for s in blue green; do [ -f "$work/svc/$s.pid" ] && kill "$(cat "$work/svc/$s.pid")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/repo/.git" "$work/svc" "$work/nginx/tmp" "$work/state"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port); BLUE=$(port); GREEN=$(port)
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat >"$work/nginx/nginx.conf" <<CONF
$user
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body; proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/f; uwsgi_temp_path $work/nginx/tmp/u; scgi_temp_path $work/nginx/tmp/s;
  include $work/nginx/upstream.conf;
  server { listen 127.0.0.1:$P; location / { proxy_pass http://pipe_backend; } }
}
CONF
echo "upstream pipe_backend { server 127.0.0.1:9; }" >"$work/nginx/upstream.conf"
"$NGINX" -e stderr -c "$work/nginx/nginx.conf"
cat >"$work/env.yaml" <<YAML
deploy:
  strategy: blue_green
  run: $PWD/deploy/testdata/start-slot.sh
  env: { SERVICE_DIR: "$work/svc" }
  blue_green:
    slots: { blue: "127.0.0.1:$BLUE", green: "127.0.0.1:$GREEN" }
    proxy: { config: $work/nginx/nginx.conf, upstream_file: $work/nginx/upstream.conf, pid_file: $work/nginx/nginx.pid, nginx: $NGINX }
    pre_switch: [ { http: { url: "http://{slot_addr}/healthz" } } ]
verify:
  count: 1
  checks: [ { http: { url: "http://127.0.0.1:$P/readyz" } } ]
YAML
export PIPE_STATE_DIR="$work/pipe-state"
# the repository's state folder, as pipe computes it (runner/src/dirs.rs::repo_state_dir)
repo=$(cd "$work/repo" && pwd -P)
state="$PIPE_STATE_DIR/repos/repo-$(printf %s "$repo" | sha256sum | cut -c1-12)"
"$SEED" "$state" "$work/repo" production "$work/env.yaml" good-a 2>/dev/null
"$SEED" "$state" "$work/repo" production "$work/env.yaml" good-b 2>/dev/null
curl -fsS "http://127.0.0.1:$P/" | grep -q good-b

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
pipe_times=(); manual_times=()
for i in $(seq 1 "$N"); do
  # pipe: one rollback = one switch to the other slot, confirmed and verified
  t=$(date +%s%N)
  (cd "$work/repo" && "$PIPE" -q rollback production --reason bench >/dev/null)
  pipe_times+=("$(ms "$t")")
  # manual runbook: switch back the same way a person would
  cur=$(curl -fsS "http://127.0.0.1:$P/"); case "$cur" in *good-a*) want=good-b; addr=$GREEN ;; *) want=good-a; addr=$BLUE ;; esac
  t=$(date +%s%N)
  printf 'upstream pipe_backend { server 127.0.0.1:%s; }\n' "$addr" >"$work/nginx/upstream.conf.new"
  mv "$work/nginx/upstream.conf.new" "$work/nginx/upstream.conf"
  "$NGINX" -t -q -e stderr -c "$work/nginx/nginx.conf"
  "$NGINX" -s reload -e stderr -c "$work/nginx/nginx.conf" 2>/dev/null
  until curl -fsS "http://127.0.0.1:$P/" 2>/dev/null | grep -q "$want"; do sleep 0.005; done
  curl -fsS "http://127.0.0.1:$P/readyz" >/dev/null
  manual_times+=("$(ms "$t")")
  # put pipe's records back in step with the proxy: the manual switch went behind pipe's back
  (cd "$work/repo" && "$PIPE" -q rollback production --reason resync >/dev/null)
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1; s+=$1} END {printf "median %d ms, mean %.1f ms, min %d ms, max %d ms (n=%d)", a[int((NR+1)/2)], s/NR, a[1], a[NR], NR}'; }
echo "pipe rollback (switch + confirm + 1 verify sample): $(stats "${pipe_times[@]}")"
echo "manual runbook (mv + nginx -t + nginx -s reload + curl until switched): $(stats "${manual_times[@]}")"
