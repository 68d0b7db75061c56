#!/usr/bin/env bash
# Seed a demo on an empty database, then serve Gatehouse under gunicorn until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export GATEHOUSE_BIND="${GATEHOUSE_BIND:-127.0.0.1:5000}"
export GATEHOUSE_EXTERNAL_URL="${GATEHOUSE_EXTERNAL_URL:-http://$GATEHOUSE_BIND}"
export GATEHOUSE_REGISTRY_URL="${GATEHOUSE_REGISTRY_URL:-127.0.0.1:5050}"

$BIN/flask --app wsgi seed-demo >/dev/null

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$BIN/gunicorn -c gunicorn.conf.py wsgi:app &
pids+=($!)

# The real container registry beside the app, trusting Gatehouse's /jwt/auth tokens.
if command -v docker-registry >/dev/null 2>&1; then
  $BIN/flask --app wsgi registry config >instance/registry.yml
  (
    # distribution reads REGISTRY_* variables as overrides of its config file.
    for var in $(compgen -e | grep '^REGISTRY_' || true); do unset "$var"; done
    exec docker-registry serve instance/registry.yml
  ) >>instance/registry.log 2>&1 &
  pids+=($!)
  registry="$GATEHOUSE_REGISTRY_URL (log: instance/registry.log)"
else
  registry="not started: install docker-registry (make system-packages)"
fi

echo
echo "Gatehouse:  $GATEHOUSE_EXTERNAL_URL"
echo "Registry:   $registry"
[ -f instance/demo-credentials.txt ] && sed 's/^/  /' instance/demo-credentials.txt
echo "Stop with Ctrl-C."
wait -n "${pids[@]}"
