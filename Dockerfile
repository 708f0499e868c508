# Tributary: `tributary serve` (or `tributary worker`) under tini, as a non-root user.
#
# The base is pinned to an exact tag. Pin its digest too where a registry is reachable:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm --format '{{json .Manifest.Digest}}'
#   docker build --build-arg PYTHON_BASE=python:3.11.14-slim-bookworm@sha256:<digest> .
# Stop it with more time than shutdown_drain_seconds (30 s in config/prod.toml): e.g.
# `docker stop -t 45`, `stop_grace_period: 45s`, `terminationGracePeriodSeconds: 45`.
ARG PYTHON_BASE=python:3.11.14-slim-bookworm

FROM ${PYTHON_BASE} AS build
RUN python -m venv /opt/tributary
ENV PATH=/opt/tributary/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies, exactly as locked: a layer of their own, rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
# Then the code.
COPY pyproject.toml README.md ./
COPY service ./service
COPY migrations ./migrations
COPY schemas ./schemas
RUN pip install --no-cache-dir --no-deps . && tributary --help > /dev/null

FROM ${PYTHON_BASE}
# tini is PID 1: it forwards SIGTERM to the service and reaps the orphaned grandchildren a
# task's own subprocesses can leave behind.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/tributary/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRIBUTARY_ENV=prod
RUN useradd --uid 10001 --no-log-init --no-create-home --home-dir /app --shell /usr/sbin/nologin tributary \
    && install -d -o tributary -g tributary /app /var/log/tributary /var/lib/tributary \
        /etc/tributary/pipelines /opt/tributary-tasks
COPY --from=build /opt/tributary /opt/tributary
WORKDIR /app
COPY config ./config
# Task scripts and their tools: mount or COPY them into /opt/tributary-tasks (pipelines call
# them by path), or build FROM this image and install what they need.
USER tributary
EXPOSE 8080
STOPSIGNAL SIGTERM
# Alive, on the configured port; readiness (/readyz) is for the orchestrator's probes.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRIBUTARY_HTTP_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["/usr/bin/tini", "--", "tributary"]
CMD ["serve"]
