#!/bin/sh
# The roles of the Compose deployment: `postgres`, `tokens`, `server`, `agent`.
set -eu
role="${1:-}"
[ $# -gt 0 ] && shift
db="postgres://pipe:${PIPE_DB_PASSWORD}@postgres:5432/pipe"
case "$role" in
  postgres)
    # Runs as the `postgres` user (compose `user:`); the data lives in a named volume.
    data=/var/lib/postgresql/data
    if [ ! -s "$data/PG_VERSION" ]; then
      pw="$(mktemp)"
      printf '%s\n' "$PIPE_DB_PASSWORD" > "$pw"
      initdb -D "$data" -U pipe --pwfile="$pw" -A scram-sha-256 -E UTF8 --no-locale >/dev/null
      rm -f "$pw"
      printf "host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n" >> "$data/pg_hba.conf"
      # The `pipe` database (postgres --single creates it before any client can connect).
      echo "CREATE DATABASE pipe" | postgres --single -D "$data" postgres >/dev/null
    fi
    exec postgres -D "$data" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
    ;;
  tokens)
    # Once: migrate, then write an agent and a user token to the shared volume (mode 0600).
    if [ -s /shared/agent.token ] && [ -s /shared/user.token ]; then exit 0; fi
    for _ in $(seq 1 60); do
      pipe server migrate --database "$db" 2>/dev/null && break
      sleep 1
    done
    umask 077
    pipe server token --database "$db" --kind agent --name compose-agents > /shared/agent.token.tmp
    pipe server token --database "$db" --kind user --name "${PIPE_UI_USER:-admin}" > /shared/user.token.tmp
    mv /shared/agent.token.tmp /shared/agent.token
    mv /shared/user.token.tmp /shared/user.token
    ;;
  server)
    exec pipe --log-format json server --database "$db" --listen 0.0.0.0:8080 "$@"
    ;;
  agent)
    exec pipe --log-format json agent --server http://server:8080 \
      --token "$(cat /shared/agent.token)" --name "$(cat /etc/hostname)" \
      --work-dir /work "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
