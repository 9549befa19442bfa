# Botlyne: a slim runtime image, built in two stages so compilers and caches stay behind.
# Build: docker build -t botlyne .
# Migrate: docker run --rm -e DATABASE_URL=... botlyne botlyne db upgrade
# Serve:   docker run -e DATABASE_URL=... -e AUTO_MIGRATE=false -p 8000:8000 botlyne

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/botlyne
COPY pyproject.toml README.md alembic.ini /src/
COPY app /src/app
COPY migrations /src/migrations
RUN /opt/botlyne/bin/pip install /src

FROM python:3.11-slim
ENV PATH=/opt/botlyne/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOTLYNE_DATA_DIR=/var/lib/botlyne
RUN groupadd --system --gid 10001 botlyne \
    && useradd --system --uid 10001 --gid botlyne --home-dir /var/lib/botlyne --create-home botlyne
COPY --from=build /opt/botlyne /opt/botlyne
USER 10001:10001
WORKDIR /var/lib/botlyne
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
CMD ["botlyne", "serve", "--host", "0.0.0.0", "--port", "8000"]
