#!/usr/bin/env bash
# Runs the web server and a Celery worker (with the periodic sweep) together; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${ARTSITE_HOST:-127.0.0.1}
PORT=${ARTSITE_PORT:-8000}

$PY -m celery -A artsite worker --beat --loglevel=INFO --concurrency="${ARTSITE_WORKERS:-1}" \
    --schedule var/celerybeat-schedule &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM
exec_web() {
  if [ "${ARTSITE_DEV_SERVER:-0}" = "1" ]; then
    $PY manage.py runserver "$HOST:$PORT"
  else
    $PY -m gunicorn artsite.wsgi:application -c artsite/gunicorn_conf.py --bind "$HOST:$PORT" \
        --workers "${ARTSITE_WEB_WORKERS:-2}" \
        --access-logfile - --timeout 60
  fi
}
exec_web
