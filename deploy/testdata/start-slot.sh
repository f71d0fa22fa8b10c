#!/bin/sh
# Example blue-green deploy command: (re)start the service of this build in the idle slot.
# pipe gives it PIPE_SLOT, PIPE_SLOT_PORT, PIPE_BUILD, PIPE_BUILD_ALIAS and PIPE_SUBJECT_*;
# SERVICE_DIR (deploy.env) is where pid files go. A build whose alias starts with `bad`
# serves a failing /healthz; one whose alias starts with `noisy` reports 500s in /metrics.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pidfile="$SERVICE_DIR/$PIPE_SLOT.pid"
if [ -f "$pidfile" ]; then
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
  # wait for the port to be free
  i=0; while [ $i -lt 50 ] && python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PIPE_SLOT_PORT)))" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
fi
health=200; errors=0
case "${PIPE_BUILD_ALIAS:-}" in bad*) health=503 ;; noisy*) errors=1000 ;; esac
nohup python3 "$here/service.py" --port "$PIPE_SLOT_PORT" --version "${PIPE_BUILD_ALIAS:-$PIPE_BUILD}" \
  --health "$health" --errors "$errors" --pidfile "$pidfile" >"$SERVICE_DIR/$PIPE_SLOT.log" 2>&1 &
# a deploy is done when the service listens (at most 20 s)
i=0
until python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PIPE_SLOT_PORT)))" 2>/dev/null; do
  i=$((i+1)); [ $i -lt 200 ] || { echo "the service did not start listening on $PIPE_SLOT_PORT" >&2; exit 1; }
  sleep 0.1
done
echo "started ${PIPE_BUILD_ALIAS:-$PIPE_BUILD} in slot $PIPE_SLOT on port $PIPE_SLOT_PORT"
