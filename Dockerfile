# The application image, used by docker-compose for the web server, the Celery worker and the training worker.
# ARTSITE_EXTRAS=serving (the default: web and the classification worker) installs requirements.txt only: the model
# runs as its TFLite copy on ai-edge-litert, no TensorFlow in the image. ARTSITE_EXTRAS=training (the training
# worker) adds requirements-training.txt: TensorFlow, Keras and the label check's libraries.
FROM python:3.11-slim-bookworm
ARG ARTSITE_EXTRAS=serving
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt requirements-training.txt ./
RUN case "$ARTSITE_EXTRAS" in \
      serving) pip install -r requirements.txt ;; \
      training) pip install -r requirements-training.txt ;; \
      *) echo "ARTSITE_EXTRAS must be serving or training, not '$ARTSITE_EXTRAS'" >&2; exit 1 ;; \
    esac
COPY . .
RUN DJANGO_SETTINGS_MODULE=artsite.settings.production DJANGO_SECRET_KEY=build DJANGO_ALLOWED_HOSTS=* \
    DATABASE_URL=postgres://build@localhost/build CELERY_BROKER_URL=redis://localhost ARTSITE_METRICS_TOKEN=build \
    python manage.py collectstatic --noinput -v 0
RUN useradd --system --uid 1000 artsite && mkdir -p /data/media /data/models && chown -R artsite /data
USER artsite
EXPOSE 8000
CMD ["gunicorn", "artsite.wsgi:application", "-c", "artsite/gunicorn_conf.py", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60"]
