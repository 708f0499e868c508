# Tributary: `tributary serve` on a slim Python base, as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY migrations ./migrations
COPY schemas ./schemas
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRIBUTARY_ENV=prod
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin tributary \
    && install -d -o tributary -g tributary /app /var/log/tributary /var/lib/tributary /etc/tributary/pipelines
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
WORKDIR /app
COPY config ./config
USER tributary
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["tributary"]
CMD ["serve"]
