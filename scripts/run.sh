#!/usr/bin/env bash
# The whole stack on one machine until Ctrl-C: nginx on the public address in front of
# gunicorn on a unix socket, the container registry beside them, and a periodic clean-up.
# A demo is seeded on an empty database.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
FLASK="$BIN/flask --app wsgi"
PORTS="$BIN/python scripts/ports.py"

export GATEHOUSE_LISTEN="${GATEHOUSE_LISTEN:-127.0.0.1:5000}"
export GATEHOUSE_EXTERNAL_URL="${GATEHOUSE_EXTERNAL_URL:-http://$GATEHOUSE_LISTEN}"
export GATEHOUSE_REGISTRY_URL="${GATEHOUSE_REGISTRY_URL:-127.0.0.1:5050}"
GC_INTERVAL="${GATEHOUSE_GC_INTERVAL:-3600}"
JOBS_INTERVAL="${GATEHOUSE_JOBS_INTERVAL:-60}"
# Sockets, logs and generated configs of this run (tests point it elsewhere).
RUN_DIR="${GATEHOUSE_RUN_DIR:-instance/run}"
CREDENTIALS="${GATEHOUSE_DEMO_CREDENTIALS_FILE:-instance/demo-credentials.txt}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"

busy() {  # address, variable that sets it
  echo "make run: $1 is already in use (another Gatehouse, or another program)." >&2
  echo "  Stop what listens there, or choose another address: $2=127.0.0.1:<port> make run" >&2
  exit 1
}

have_nginx=$(command -v nginx >/dev/null 2>&1 && echo yes || echo no)
have_registry=$(command -v docker-registry >/dev/null 2>&1 && echo yes || echo no)
if [ "$have_nginx" = yes ]; then
  $PORTS free "$GATEHOUSE_LISTEN" || busy "$GATEHOUSE_LISTEN" GATEHOUSE_LISTEN
  export GATEHOUSE_BIND="unix:$RUN_DIR/gunicorn.sock"
  # nginx is the one proxy in front: believe its X-Forwarded-For, let it serve downloads.
  export GATEHOUSE_TRUSTED_PROXIES=1 GATEHOUSE_ACCEL_REDIRECT=true
else
  $PORTS free "$GATEHOUSE_LISTEN" || busy "$GATEHOUSE_LISTEN" GATEHOUSE_LISTEN
  export GATEHOUSE_BIND="$GATEHOUSE_LISTEN"
fi
if [ "$have_registry" = yes ]; then
  $PORTS free "$GATEHOUSE_REGISTRY_URL" || busy "$GATEHOUSE_REGISTRY_URL" GATEHOUSE_REGISTRY_URL
fi

$FLASK seed-demo >/dev/null

pids=()
cleanup() {
  trap - INT TERM EXIT
  # Quick shutdown: gunicorn on SIGINT and nginx on SIGTERM close idle keep-alive
  # connections (an open browser tab) at once instead of waiting for them.
  [ -n "${gunicorn_pid:-}" ] && kill -INT "$gunicorn_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ $running = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# The periodic jobs, now and then on a timer: each GC_INTERVAL the leftovers of a crash
# (uploads whose writer is gone, stale push quarantines) go and expiry warnings are
# mailed; each JOBS_INTERVAL queued webhooks are delivered (and failed ones retried).
every_gc_interval() {
  $FLASK packages gc "$@" || true
  $FLASK repositories gc || true
  $FLASK notify || true
}
every_jobs_interval() {
  $FLASK webhooks deliver || true
}
# At start no nginx of ours runs yet: every upload spool file is a crash's leftover.
every_gc_interval --spool-age 0 >>"$RUN_DIR/jobs.log" 2>&1
every_jobs_interval >>"$RUN_DIR/jobs.log" 2>&1
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  waited=0
  while :; do
    sleep "$JOBS_INTERVAL" & sleeper=$!
    wait "$sleeper"
    every_jobs_interval >>"$RUN_DIR/jobs.log" 2>&1
    waited=$((waited + JOBS_INTERVAL))
    if [ "$waited" -ge "$GC_INTERVAL" ]; then
      every_gc_interval >>"$RUN_DIR/jobs.log" 2>&1
      waited=0
    fi
  done
) &
pids+=($!)

$BIN/gunicorn -c gunicorn.conf.py wsgi:app &
gunicorn_pid=$!
pids+=($gunicorn_pid)
if ! $PORTS wait "$GATEHOUSE_BIND" "$gunicorn_pid" 60; then
  echo "make run: gunicorn did not start (see its messages above)." >&2
  exit 1
fi

if [ "$have_nginx" = yes ]; then
  $FLASK nginx config --listen "$GATEHOUSE_LISTEN" --upstream "$GATEHOUSE_BIND" \
    --runtime-dir "$RUN_DIR/nginx" $([ "$(id -u)" = 0 ] && echo --user root) \
    >"$RUN_DIR/nginx.conf"
  mkdir -p "$RUN_DIR/nginx"
  nginx -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx.conf" -g 'daemon off;' \
    -e "$RUN_DIR/nginx/error.log" &
  nginx_pid=$!
  pids+=($nginx_pid)
  if ! $PORTS wait "$GATEHOUSE_LISTEN" "$nginx_pid" 15; then
    echo "make run: nginx did not start; last lines of $RUN_DIR/nginx/error.log:" >&2
    tail -n 20 "$RUN_DIR/nginx/error.log" >&2 || true
    exit 1
  fi
  front="nginx on $GATEHOUSE_LISTEN → gunicorn on $GATEHOUSE_BIND (logs: $RUN_DIR/nginx/)"
else
  nginx_pid=$gunicorn_pid
  front="gunicorn alone on $GATEHOUSE_LISTEN: install nginx (make system-packages) for production's shape"
fi

# The real container registry beside the app, trusting Gatehouse's /jwt/auth tokens. If it
# cannot start, say why and keep serving everything else.
if [ "$have_registry" = yes ]; then
  $FLASK registry config >"$RUN_DIR/registry.yml"
  : >"$RUN_DIR/registry.log"
  (
    # distribution reads REGISTRY_* variables as overrides of its config file.
    for var in $(compgen -e | grep '^REGISTRY_' || true); do unset "$var"; done
    exec docker-registry serve "$RUN_DIR/registry.yml"
  ) >>"$RUN_DIR/registry.log" 2>&1 &
  registry_pid=$!
  pids+=($registry_pid)
  if $PORTS wait "$GATEHOUSE_REGISTRY_URL" "$registry_pid" 15; then
    registry="http://$GATEHOUSE_REGISTRY_URL (log: $RUN_DIR/registry.log)"
  else
    registry="NOT RUNNING: docker-registry failed to start; last lines of $RUN_DIR/registry.log:"
    registry+=$'\n'"$(tail -n 10 "$RUN_DIR/registry.log" | sed 's/^/    /')"
  fi
else
  registry="not started: install docker-registry (make system-packages)"
fi

echo
echo "Gatehouse:  $GATEHOUSE_EXTERNAL_URL"
echo "Front:      $front"
echo "Registry:   $registry"
[ -f "$CREDENTIALS" ] && sed 's/^/  /' "$CREDENTIALS"
echo "Stop with Ctrl-C."
# The registry may stop on its own without taking the app down.
wait -n "$gunicorn_pid" "$nginx_pid" || true
