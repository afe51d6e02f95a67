#!/usr/bin/env bash
# Runs the web server and two Celery workers together; Ctrl-C stops them all:
# - the main worker (classification, re-embedding, the periodic sweep) on the default queue only;
# - the training worker on the "training" queue (training jobs, label checks): one job at a time, a fresh process
#   per job (TensorFlow's memory goes back when a training ends), so classification never waits behind a training.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${ARTSITE_HOST:-127.0.0.1}
PORT=${ARTSITE_PORT:-8000}
TRAINING_QUEUE=${ARTSITE_TRAINING_QUEUE:-training}

$PY -m celery -A artsite worker --beat --loglevel=INFO --concurrency="${ARTSITE_WORKERS:-1}" \
    -Q celery -n "main@%h" --schedule var/celerybeat-schedule &
WORKER=$!
$PY -m celery -A artsite worker --loglevel=INFO -Q "$TRAINING_QUEUE" --concurrency 1 --max-tasks-per-child 1 \
    -n "training@%h" &
TRAINER=$!
trap 'kill $WORKER $TRAINER 2>/dev/null; wait $WORKER $TRAINER 2>/dev/null' EXIT INT TERM
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
