# chiso: the API, the dashboard and /metrics. `chiso serve` applies migrations on start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in a layer of their own that code changes do not rebuild.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project, installed as a wheel: the migrations travel inside the package (app/migrations is a
# link to the top-level migrations/ that the build follows), found by app/db/migrate.py there.
COPY migrations ./migrations
COPY app ./app
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app chiso \
    && mkdir -p /app/var \
    && chown chiso /app/var

USER chiso
EXPOSE 8000
# Several workers: PROMETHEUS_MULTIPROC_DIR is set (under /tmp) and emptied by `chiso serve` itself.
CMD ["chiso", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
