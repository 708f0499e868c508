"""The ``tributary`` command: serve, dev, migrate, validate, emit-ready, runs."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from service import devenv
from service.app import Service
from service.bus.dead_letter import DeadLetters
from service.bus.envelope import (
    CONTENT_TYPE,
    DATASET_READY,
    RUN_REQUESTED,
    CloudEvent,
    new_event,
)
from service.bus.kafka import ensure_topics, make_consumer, make_producer
from service.config import Settings, env_var, load_settings
from service.errors import ConfigError, Problem, SpecError, TributaryError
from service.executor.remote import Worker
from service.observability import configure_logging, get_logger
from service.spec.loader import Pipeline, load_pipeline_dir, load_pipeline_file
from service.spec.plan import format_plan, make_plan
from service.spec.validate import Capacity, suggest
from service.store import connect, create_database_if_missing

log = get_logger(__name__)

DEV_POSTGRES_PORT = 15432  # a throwaway cluster's port when no PostgreSQL answers
DEV_REDIS_PORT = 16379  # a private redis-server's port when no Redis answers
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        sys.exit(EXIT_USAGE)
    try:
        code = args.handler(args)
    except ConfigError as exc:
        print(f"tributary: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"tributary: {problem}", file=sys.stderr)
        sys.exit(1)
    except TributaryError as exc:
        print(f"tributary: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tributary", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (default: config/<env>.toml)"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service with the configured servers")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser(
        "worker", help="run tasks requested over Kafka (executor: remote), any number of them"
    )
    worker.set_defaults(handler=cmd_worker)

    dev = commands.add_parser(
        "dev", help="run the service on embedded defaults: starts what it needs, loads examples"
    )
    dev.set_defaults(handler=cmd_dev)

    migrate = commands.add_parser("migrate", help="apply pending database migrations and exit")
    migrate.set_defaults(handler=cmd_migrate)

    validate = commands.add_parser("validate", help="check pipeline files; exit 1 on any problem")
    validate.add_argument("paths", nargs="+", type=Path, help="pipeline files or directories")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.set_defaults(handler=cmd_validate)

    plan = commands.add_parser("plan", help="dry run: what a run would do, nothing executed")
    plan.add_argument("pipeline", help="a pipeline id, or a pipeline file")
    plan.add_argument("--partition", required=True, help="e.g. 2026-11-21")
    plan.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    plan.add_argument("--resume-from", metavar="TASK", help="re-run TASK and what depends on it")
    plan.add_argument("--pipelines-dir", type=Path, help="where to find PIPELINE by id")
    plan.add_argument("--format", choices=("text", "json"), default="text")
    plan.set_defaults(handler=cmd_plan)

    emit = commands.add_parser("emit-ready", help="produce a dataset.ready event")
    emit.add_argument("dataset")
    emit.add_argument("partition", help="e.g. 2026-11-21")
    emit.add_argument("--version", dest="data_version", help="version or checksum of the data")
    emit.add_argument("--producer", default="tributary-cli")
    emit.set_defaults(handler=cmd_emit_ready)

    trigger = commands.add_parser("trigger", help="request a run by hand (run.requested)")
    trigger.add_argument("pipeline")
    trigger.add_argument("--date", required=True, help="the run's batch date, e.g. 2026-11-21")
    trigger.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    trigger.add_argument("--reason", help="why, for the run's history")
    trigger.set_defaults(handler=cmd_trigger)

    runs = commands.add_parser("runs", help="inspect runs").add_subparsers(metavar="ACTION")
    runs_list = runs.add_parser("list", help="the latest runs, newest first")
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--pipeline")
    runs_list.add_argument("--json", action="store_true")
    runs_list.set_defaults(handler=cmd_runs_list)
    runs_show = runs.add_parser("show", help="one run and its tasks")
    runs_show.add_argument("run_id")
    runs_show.set_defaults(handler=cmd_runs_show)
    return parser


# --- settings --------------------------------------------------------------------------------


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings as configured; in the dev environment, what a live ``tributary dev`` chose."""
    overrides: dict[str, Any] = {}
    if os.environ.get("TRIBUTARY_ENV", "dev") == "dev" and args.config is None:
        overrides = devenv.read_endpoints()
    return load_settings(args.config, overrides=overrides)


# --- commands --------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    configure_logging(
        settings.log_level, debug_file=settings.debug_log_file, secrets=settings.secret_values()
    )
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings, ready: Callable[[Service], None] | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    service = Service(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)
    if ready is None:
        await service.run(stop)
        return
    runner = asyncio.create_task(service.run(stop))
    started = asyncio.create_task(service.started.wait())
    await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    if service.started.is_set():
        ready(service)
    await runner


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    configure_logging(
        settings.log_level, debug_file=settings.debug_log_file, secrets=settings.secret_values()
    )
    asyncio.run(_work(settings))
    return 0


async def _work(settings: Settings) -> None:
    """A remote worker: requests from Kafka in, heartbeats and completions out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if settings.kafka_create_topics:
        await ensure_topics(
            settings,
            [settings.topic_requests, settings.topic_completions, settings.topic_dead_letter],
        )
    producer = make_producer(settings)
    consumer = make_consumer(settings, [settings.topic_requests], settings.kafka_worker_group)
    await producer.start()
    await consumer.start()
    worker = Worker(
        consumer,
        producer,
        DeadLetters(producer, settings.topic_dead_letter),
        settings.topic_completions,
        settings.instance_id,
        settings.task_log_dir,
        settings.max_parallel_tasks,
    )
    log.info("worker.started", worker_id=settings.instance_id)
    try:
        await worker.run(stop)
    finally:
        await consumer.stop()
        await producer.stop()
        log.info("worker.stopped", worker_id=settings.instance_id, finished=worker.finished)


def cmd_dev(args: argparse.Namespace) -> int:
    """Bring up Kafka, PostgreSQL and Redis as needed, then serve the example pipelines."""
    base = load_settings(args.config)
    configure_logging(base.log_level)
    started = devenv.StartedProcesses()
    state_dir = devenv.DEV_STATE_DIR
    try:
        overrides = _dev_servers(base, started, state_dir)
        settings = load_settings(args.config, overrides=overrides)
        configure_logging(
            settings.log_level, debug_file=settings.debug_log_file, secrets=settings.secret_values()
        )
        devenv.write_endpoints(
            {k: v for k, v in overrides.items() if k != "kafka_enable_idempotence"}
        )
        asyncio.run(_serve(settings, ready=_dev_banner))
    finally:
        devenv.remove_endpoints()
        started.stop_all()
    return 0


def _dev_servers(
    base: Settings, started: devenv.StartedProcesses, state_dir: Path
) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    explicit = set(os.environ)

    if env_var("kafka_bootstrap_servers") not in explicit:
        host, port = devenv.host_port(base.kafka_bootstrap_servers.split(",")[0], 9092)
        if not devenv.port_open(host, port):
            started.add("tansu", devenv.start_tansu(port, state_dir / "tansu.log"))
            log.info("dev.kafka_started", bootstrap_servers=f"127.0.0.1:{port}", broker="tansu")
        overrides["kafka_bootstrap_servers"] = f"{host}:{port}"

    database_url = base.database_url
    if env_var("database_url") not in explicit:
        host, port = devenv.host_port(database_url, 5432)
        if not devenv.port_open(host, port):
            server = devenv.start_throwaway_postgres(state_dir / "pg", DEV_POSTGRES_PORT, started)
            database_url = f"{server}/{database_url.rsplit('/', 1)[-1]}"
            log.info("dev.postgres_started", data_dir=str(state_dir / "pg"), port=DEV_POSTGRES_PORT)
        overrides["database_url"] = database_url
    if asyncio.run(create_database_if_missing(database_url)):
        log.info("dev.database_created", database=database_url.rsplit("/", 1)[-1])

    if env_var("redis_url") not in explicit:
        redis_url = base.redis_url
        if redis_url and not devenv.port_open(*devenv.host_port(redis_url, 6379)):
            process = devenv.start_redis(DEV_REDIS_PORT, state_dir / "redis.log")
            if process is None:
                log.warning("dev.no_redis", effect="running without live state")
                redis_url = None
            else:
                started.add("redis", process)
                redis_url = f"redis://127.0.0.1:{DEV_REDIS_PORT}/0"
        overrides["redis_url"] = redis_url
    return overrides


def _dev_banner(service: Service) -> None:
    settings = service.settings
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    print(
        f"\nTributary dev is up (Ctrl-C stops it and everything it started):\n"
        f"  HTTP      http://{settings.http_host}:{service.http_port}/api/runs\n"
        f"  Kafka     {settings.kafka_bootstrap_servers}\n"
        f"  Postgres  {settings.database_url}\n"
        f"  Redis     {settings.redis_url or 'none: running without live state'}\n"
        f"  Pipelines {settings.pipelines_dir}\n"
        f"In another terminal:\n"
        f"  tributary emit-ready customers_raw {yesterday:%Y%m%d}\n"
        f"  tributary emit-ready orders_raw {today:%Y-%m-%d}\n"
        f"  tributary runs list\n",
        file=sys.stderr,
        flush=True,
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    configure_logging(settings.log_level)

    async def migrate() -> list[str]:
        store = await connect(settings.database_url, 2)
        try:
            return [f"{m.version:04d}_{m.name}" for m in await store.migrate()]
        finally:
            await store.close()

    applied = asyncio.run(migrate())
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    return 0


def spec_context(args: argparse.Namespace) -> tuple[Capacity, Path, str]:
    """Node capacity and pipelines directory from the settings, if they load; else this machine."""
    try:
        settings = settings_for(args)
    except ConfigError as exc:
        first = str(exc).splitlines()[-1].strip()
        machine = Settings.model_fields
        capacity = Capacity(
            machine["node_cpu_cores"].get_default(call_default_factory=True),
            machine["node_memory_mb"].get_default(call_default_factory=True),
        )
        return (
            capacity,
            Path("pipelines"),
            f"this machine's capacity (settings did not load: {first})",
        )
    capacity = Capacity(settings.node_cpu_cores, settings.node_memory_mb)
    return capacity, settings.pipelines_dir, "node capacity from the settings"


def cmd_validate(args: argparse.Namespace) -> int:
    capacity, _, capacity_source = spec_context(args)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    valid: list[Pipeline] = []
    for path in args.paths:
        if path.is_dir():
            result = load_pipeline_dir(path, capacity)
            valid.extend(result.pipelines)
            errors.extend(result.problems)
            warnings.extend(result.warnings)
            continue
        try:
            pipeline = load_pipeline_file(path, capacity)
        except SpecError as exc:
            errors.extend(exc.problems)
            continue
        valid.append(pipeline)
        warnings.extend(pipeline.warnings)
    if args.format == "json":
        print(
            orjson.dumps(
                {
                    "valid": not errors,
                    "pipelines": [
                        {"id": p.id, "file": p.source, "spec_hash": p.spec_hash} for p in valid
                    ],
                    "errors": [p.to_json() for p in errors],
                    "warnings": [p.to_json() for p in warnings],
                    "capacity": {"cpu_cores": capacity.cpu_cores, "memory_mb": capacity.memory_mb},
                }
            ).decode()
        )
    else:
        for problem in [*errors, *warnings]:
            print(problem)
        print(
            f"{len(valid)} valid pipeline(s), {len(errors)} error(s), {len(warnings)} "
            f"warning(s); checked against {capacity_source}: {capacity.cpu_cores:g} cores, "
            f"{capacity.memory_mb} MB",
            file=sys.stderr,
        )
    return 1 if errors else 0


def cmd_plan(args: argparse.Namespace) -> int:
    capacity, pipelines_dir, _ = spec_context(args)
    pipeline = _find_pipeline(args.pipeline, args.pipelines_dir or pipelines_dir, capacity)
    plan = make_plan(pipeline, args.partition, _params(args.param), args.resume_from, capacity)
    if args.format == "json":
        print(orjson.dumps(plan.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_plan(plan))
    return 0


def _find_pipeline(name: str, directory: Path, capacity: Capacity) -> Pipeline:
    """A pipeline file, or a pipeline id in the pipelines directory."""
    if Path(name).is_file():
        return load_pipeline_file(Path(name), capacity)
    result = load_pipeline_dir(directory, capacity)
    found = {p.id: p for p in result.pipelines}
    if name in found:
        return found[name]
    refused = [p for p in result.problems if name in p.file]
    if refused:
        raise SpecError(refused)
    raise SpecError([Problem(f"no pipeline {name!r} in {directory}{suggest(name, found)}")])


def cmd_emit_ready(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    data = {"dataset": args.dataset, "partition": args.partition, "producer": args.producer}
    if args.data_version:
        data["version"] = args.data_version
    event = new_event(DATASET_READY, "urn:tributary:cli", data, subject=args.dataset)
    asyncio.run(_produce(settings, args.dataset, event))
    print(
        f"sent {DATASET_READY} {args.dataset} {args.partition} (event {event.id}) "
        f"to {settings.topic_triggers}"
    )
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    try:
        date.fromisoformat(args.date)
    except ValueError:
        raise SpecError(
            [Problem(f"expected a date YYYY-MM-DD, got {args.date!r}", "--date")]
        ) from None
    data: dict[str, Any] = {
        "pipeline_id": args.pipeline,
        "batch_date": args.date,
        "params": _params(args.param),
        "requested_by": os.environ.get("USER", "tributary-cli"),
    }
    if args.reason:
        data["reason"] = args.reason
    event = new_event(RUN_REQUESTED, "urn:tributary:cli", data, subject=args.pipeline)
    asyncio.run(_produce(settings, args.pipeline, event))
    print(
        f"sent {RUN_REQUESTED} {args.pipeline} {args.date} (event {event.id}); "
        f"see it with: tributary runs list --pipeline {args.pipeline}"
    )
    return 0


async def _produce(settings: Settings, key: str, event: CloudEvent) -> None:
    """Send one event to the triggers topic (created if missing and allowed)."""
    if settings.kafka_create_topics:
        await ensure_topics(settings, [settings.topic_triggers])
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic_triggers,
            event.to_bytes(),
            key=key.encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
    finally:
        await producer.stop()


def _params(items: Sequence[str]) -> dict[str, str]:
    given = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SpecError([Problem(f"expected NAME=VALUE, got {item!r}", "--param")])
        given[name] = value
    return given


def cmd_runs_list(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    runs = _with_store(settings, lambda store: store.list_runs(args.limit, args.pipeline))
    if args.json:
        print(orjson.dumps([asdict(run) for run in runs]).decode())
        return 0
    rows = [("RUN ID", "PIPELINE", "BATCH DATE", "STATE", "CREATED (UTC)", "DURATION")]
    for run in runs:
        duration = (
            (run.ended_at - run.started_at).total_seconds()
            if run.ended_at and run.started_at
            else None
        )
        rows.append(
            (
                run.run_id,
                run.pipeline_id,
                run.batch_date.isoformat(),
                run.state,
                f"{run.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                f"{duration:.2f}s" if duration is not None else "-",
            )
        )
    _print_table(rows)
    if not runs:
        print("no runs yet", file=sys.stderr)
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    settings = settings_for(args)

    async def fetch(store: Any) -> tuple[Any, Any]:
        return await store.get_run(args.run_id), await store.list_task_instances(args.run_id)

    run, tasks = _with_store(settings, fetch)
    if run is None:
        print(f"tributary: no run {args.run_id!r}", file=sys.stderr)
        return 1
    print(
        orjson.dumps(
            {"run": asdict(run), "tasks": [asdict(t) for t in tasks]}, option=orjson.OPT_INDENT_2
        ).decode()
    )
    return 0


def _with_store(settings: Settings, query: Callable[[Any], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        store = await connect(settings.database_url, 2)
        try:
            return await query(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
