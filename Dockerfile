# `serve` in a container: python pipelines/nps_to_gainsight.py serve (README "Real-time webhooks (serve)").
#   docker build -t nps-connector .
#   docker run -d -p 8787:8787 -v nps-data:/data --env-file nps.env nps-connector
# Secrets come from the environment (NPS_TO_GAINSIGHT__SERVE__WEBHOOK_SECRET, SOURCES__CUSTOMERGAUGE__CLIENT_SECRET,
# DESTINATION__GAINSIGHT__ACCESS_KEY, ...) or a mounted /app/.dlt/secrets.toml; never baked into the image.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector_common connector_common
COPY destinations destinations
COPY pipelines pipelines
COPY sandbox sandbox
COPY sources sources
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir --no-compile . && find /venv -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --home-dir /app nps \
    && mkdir -p /app/.dlt /data && chown nps:nps /data
COPY --from=build /venv /venv
COPY .dlt/config.toml /app/.dlt/config.toml
WORKDIR /app
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DESTINATION__DUCKDB__CREDENTIALS=/data/nps_to_gainsight.duckdb \
    NPS_TO_GAINSIGHT__SERVE__HOST=0.0.0.0 \
    NPS_TO_GAINSIGHT__SERVE__PORT=8787 \
    NPS_TO_GAINSIGHT__LOG_FORMAT=json
USER nps
VOLUME ["/data"]
EXPOSE 8787
# 200 while the worker runs (503 once it has stopped); the first reconciliation may take a while.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=4).status != 200)"]
# SIGTERM drains (finishes the calls in flight and every spooled event) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "pipelines.nps_to_gainsight"]
CMD ["serve"]
