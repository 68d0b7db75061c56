#!/usr/bin/env bash
# Seed a demo on an empty database, then serve Gatehouse under gunicorn until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export GATEHOUSE_BIND="${GATEHOUSE_BIND:-127.0.0.1:5000}"
export GATEHOUSE_EXTERNAL_URL="${GATEHOUSE_EXTERNAL_URL:-http://$GATEHOUSE_BIND}"

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

echo
echo "Gatehouse:  $GATEHOUSE_EXTERNAL_URL"
[ -f instance/demo-credentials.txt ] && sed 's/^/  /' instance/demo-credentials.txt
echo "Stop with Ctrl-C."
wait -n "${pids[@]}"
