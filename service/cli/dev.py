"""``tributary dev``: the service on embedded defaults, with what it needs brought up first
(the embedded broker, a PostgreSQL and a Redis when none answers) and stopped at the end."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from service import devenv
from service.app import Service
from service.cli.serving import serve
from service.config import Settings, env_var, load_settings
from service.observability import configure_logging, get_logger
from service.store import create_database_if_missing

log = get_logger(__name__)

README_DAY = date(2026, 11, 21)  # the example dates the README walks through
DEV_POSTGRES_PORT = 15432  # a throwaway cluster's port when no PostgreSQL answers
DEV_REDIS_PORT = 16379  # a private redis-server's port when no Redis answers


def cmd_dev(args: argparse.Namespace) -> int:
    """Bring up Kafka, PostgreSQL and Redis as needed, then serve the example pipelines."""
    base = load_settings(args.config)
    configure_logging(base.log_level, console=base.console_logs())
    started = devenv.StartedProcesses()
    try:
        overrides = _dev_servers(base, started, devenv.DEV_STATE_DIR)
        if base.api_tokens is None:  # an operator token for this session's commands
            token = secrets.token_urlsafe(24)
            dev_token = {"dev": {"token": token, "role": "operator"}}
            overrides["api_tokens"] = orjson.dumps(dev_token).decode()
            overrides["cli_token"] = token
        settings = load_settings(args.config, overrides=overrides)
        configure_logging(
            settings.log_level,
            debug_file=settings.debug_log_file,
            secrets=settings.secret_values(),
            console=settings.console_logs(),
        )
        endpoints = {k: v for k, v in overrides.items() if k != "kafka_enable_idempotence"}

        def ready(service: Service) -> None:
            # What commands in another terminal need: the servers, the API and its token.
            api = f"http://{settings.http_host}:{service.http_port}"
            devenv.write_endpoints({**endpoints, "api_url": api})
            _banner(service)

        asyncio.run(serve(settings, ready=ready))
    finally:
        devenv.remove_endpoints()
        started.stop_all()
    return 0


def _dev_servers(
    base: Settings, started: devenv.StartedProcesses, state_dir: Path
) -> dict[str, Any]:
    explicit = set(os.environ)
    overrides: dict[str, Any] = {}
    if env_var("kafka_bootstrap_servers") not in explicit:
        overrides["kafka_bootstrap_servers"] = _kafka(base, started, state_dir)
    database_url = base.database_url
    if env_var("database_url") not in explicit:
        database_url = overrides["database_url"] = _postgres(base, started, state_dir)
    if asyncio.run(create_database_if_missing(database_url)):
        log.info("dev.database_created", database=database_url.rsplit("/", 1)[-1])
    if env_var("redis_url") not in explicit:
        overrides["redis_url"] = _redis(base, started, state_dir)
    if env_var("redis_key_prefix") not in explicit:  # two dev instances, two databases
        database = database_url.rsplit("/", 1)[-1].split("?", 1)[0]
        overrides["redis_key_prefix"] = f"{base.redis_key_prefix}:{database}"
    return overrides


def _kafka(base: Settings, started: devenv.StartedProcesses, state_dir: Path) -> str:
    host, port = devenv.host_port(base.kafka_bootstrap_servers.split(",")[0], 9092)
    if not devenv.port_open(host, port):
        started.add("tansu", devenv.start_tansu(port, state_dir / "tansu.log"))
        log.info("dev.kafka_started", bootstrap_servers=f"127.0.0.1:{port}", broker="tansu")
    return f"{host}:{port}"


def _postgres(base: Settings, started: devenv.StartedProcesses, state_dir: Path) -> str:
    database_url = base.database_url
    host, port = devenv.host_port(database_url, 5432)
    if devenv.port_open(host, port):
        return database_url
    server = devenv.start_throwaway_postgres(state_dir / "pg", DEV_POSTGRES_PORT, started)
    log.info("dev.postgres_started", data_dir=str(state_dir / "pg"), port=DEV_POSTGRES_PORT)
    return f"{server}/{database_url.rsplit('/', 1)[-1]}"


def _redis(base: Settings, started: devenv.StartedProcesses, state_dir: Path) -> str | None:
    redis_url = base.redis_url
    if not redis_url or devenv.port_open(*devenv.host_port(redis_url, 6379)):
        return redis_url
    process = devenv.start_redis(DEV_REDIS_PORT, state_dir / "redis.log")
    if process is None:
        log.warning("dev.no_redis", effect="running without live state")
        return None
    started.add("redis", process)
    return f"redis://127.0.0.1:{DEV_REDIS_PORT}/0"


def _banner(service: Service) -> None:
    settings = service.settings
    token = settings.cli_token.get_secret_value() if settings.cli_token else "(your api_tokens)"
    print(
        f"\nTributary dev is up (Ctrl-C stops it and everything it started):\n"
        f"  Dashboard http://{settings.http_host}:{service.http_port}/  (sign in with the token)\n"
        f"  API       http://{settings.http_host}:{service.http_port}/api/runs\n"
        f"  Kafka     {settings.kafka_bootstrap_servers}\n"
        f"  Postgres  {settings.database_url}\n"
        f"  Redis     {settings.redis_url or 'none: running without live state'}\n"
        f"  Pipelines {settings.pipelines_dir}\n"
        f"In another terminal:\n"
        f"  tributary emit-ready customers_raw {README_DAY - timedelta(days=1):%Y%m%d}\n"
        f"  tributary emit-ready orders_raw {README_DAY:%Y-%m-%d}\n"
        f"  tributary runs list\n"
        f"  tributary runs cancel RUN_ID   (commands send the dev operator token)\n"
        f"API token (operator): {token}\n",
        file=sys.stderr,
        flush=True,
    )
