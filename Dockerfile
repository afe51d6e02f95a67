# The application image, used by docker-compose for the web server, the Celery worker and the training worker.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN DJANGO_SETTINGS_MODULE=artsite.settings.production DJANGO_SECRET_KEY=build DJANGO_ALLOWED_HOSTS=* \
    DATABASE_URL=postgres://build@localhost/build CELERY_BROKER_URL=redis://localhost ARTSITE_METRICS_TOKEN=build \
    python manage.py collectstatic --noinput -v 0
RUN useradd --system --uid 1000 artsite && mkdir -p /data/media /data/models && chown -R artsite /data
USER artsite
EXPOSE 8000
CMD ["gunicorn", "artsite.wsgi:application", "-c", "artsite/gunicorn_conf.py", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60"]
