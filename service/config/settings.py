"""Every setting of the service, with its type, default and meaning: one flat, frozen model,
validated once at start-up (``loading.py`` reads it from files and the environment; the
generated table in ``docs/configuration.md`` is kept equal to it by a test)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import AfterValidator, ConfigDict, Field, SecretStr

from service.config import urls
from service.config.json_secrets import checked_api_tokens, checked_check_databases
from service.config.kafka import KafkaSettings

DEFAULT_ENV = "dev"


def _machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(KafkaSettings):
    """Everything the service reads from its environment, validated once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(default=DEFAULT_ENV, description="Environment name; picks config/<env>.toml.")
    instance_id: str = Field(
        default_factory=_default_instance_id,
        description="Names this process in logs, the transition log and claims (default host-pid).",
    )

    database_url: Annotated[str, AfterValidator(urls.postgres_url)] = Field(
        description="PostgreSQL URL, postgresql://user@host:5432/db."
    )
    database_pool_size: int = Field(default=10, ge=2, le=200, description="Connections at most.")

    redis_url: Annotated[str | None, AfterValidator(urls.redis_url)] = Field(
        default=None, description="Redis URL for live state; unset runs without live state."
    )
    redis_key_prefix: str = Field(default="tributary", description="Prefix of every Redis key.")
    redis_state_ttl_seconds: int = Field(
        default=86_400, gt=0, description="How long live run state stays in Redis (seconds)."
    )

    topic_triggers: str = Field(
        default="tributary.triggers", description="Topic of dataset.ready events."
    )
    topic_completions: str = Field(
        default="tributary.completions", description="Topic of task.completed events."
    )
    topic_status: str = Field(
        default="tributary.status", description="Topic of run.status and task.status events."
    )
    topic_requests: str = Field(
        default="tributary.requests",
        description="Topic of task.requested events, for remote workers.",
    )
    topic_cancels: str = Field(
        default="tributary.cancels",
        description="Topic of task.cancel events: every remote worker reads it whole.",
    )
    topic_logs: str = Field(
        default="tributary.logs",
        description="Topic of task.log events: remote workers' attempt logs, which the "
        "service writes into its task_log_dir.",
    )
    remote_by_default: bool = Field(
        default=False,
        description="Run every task on remote workers, not only those with executor: remote "
        "(except tasks with cache: true, which the service runs: it checks their cache).",
    )
    dispatch_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a remote request waits for a worker to pick it up (its lease "
        "starts then) before it is requested again, for the same attempt; a worker discards "
        "a request it takes later.",
    )
    topic_dead_letter: str = Field(
        default="tributary.dead-letter",
        description="Topic of refused input: original bytes, the reason in headers.",
    )
    event_source: str = Field(
        default="urn:tributary", description="CloudEvents source of the events Tributary publishes."
    )

    alert_sinks: SecretStr | None = Field(
        default=None,
        json_schema_extra={"secret": True},
        description="Chat sinks as JSON: {name: {type: feishu|slack|dingtalk|wecom|webhook, "
        "url, secret}} (secret: URLs hold tokens). Unset: no alerts.",
    )
    alert_routes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Pipeline id or domain -> sink names; 'default' for the rest "
        "(unset: every sink gets every alert).",
    )
    alert_dashboard_url_template: str | None = Field(
        default=None,
        description="The 'Open run' link of alerts; {run_id}, {pipeline_id}, {task_id}. "
        "Unset: the dashboard's run page, <api_url>/runs/{run_id}.",
    )
    alert_logs_url_template: str | None = Field(
        default=None,
        description="The 'Logs' link of alerts, e.g. a log search for {trace_id}. Unset: the "
        "dashboard's page of the task's attempt and log, <api_url>/runs/{run_id}/tasks/"
        "{task_id} (the run's page for an alert about the whole run).",
    )
    alert_fold_window_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Alerts of one (pipeline, task, kind) inside this window become one.",
    )
    openlineage_url: str | None = Field(
        default=None,
        description="Send OpenLineage RunEvents (START, COMPLETE/FAIL per task attempt) to "
        "this HTTP endpoint, e.g. a Marquez /api/v1/lineage. Unset: off.",
    )
    openlineage_topic: str | None = Field(
        default=None,
        description="Or publish OpenLineage RunEvents to this Kafka topic (keyed "
        "run:{namespace}/{job}). Unset: off.",
    )
    openlineage_namespace: str = Field(
        default="tributary", description="OpenLineage job namespace."
    )
    pipelines_dir: Path = Field(
        default=Path("pipelines"), description="Directory of pipeline YAML files."
    )
    pipelines_reload_interval_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How often the pipelines directory is checked for changes (0: only on SIGHUP).",
    )
    node_cpu_cores: float = Field(
        default_factory=lambda: float(os.cpu_count() or 1),
        gt=0,
        description="CPU cores one node (the service's, or a worker's) offers tasks "
        "(default: this machine's).",
    )
    node_memory_mb: int = Field(
        default_factory=_machine_memory_mb,
        ge=1,
        description="Memory in MB one node (the service's, or a worker's) offers tasks "
        "(default: this machine's).",
    )

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(
        default=8080, ge=0, le=65_535, description="HTTP port (0 picks a free one)."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written to stdout."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="stdout's lines: json (for a log pipeline), console (readable, coloured), "
        "or auto: console on a terminal, json otherwise. The debug file is always JSON.",
    )

    def console_logs(self) -> bool:
        return self.log_format == "console" or (self.log_format == "auto" and sys.stdout.isatty())

    debug_log_file: Path | None = Field(
        default=None,
        description="Also write everything from DEBUG to this rotating file (10 MB x 5).",
    )

    check_databases: Annotated[SecretStr | None, AfterValidator(checked_check_databases)] = Field(
        default=None,
        json_schema_extra={"secret": True},
        description="Databases that sql checks (wait_for) may query, as JSON: {name: "
        '"postgresql://…"} (secret: DSNs hold passwords). A check naming another fails.',
    )
    check_concurrency: int = Field(
        default=8, ge=1, description="Checks (wait_for) this process pokes at once."
    )
    check_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long one poke of a check may take; longer counts as an error.",
    )

    api_tokens: Annotated[SecretStr | None, AfterValidator(checked_api_tokens)] = Field(
        default=None,
        json_schema_extra={"secret": True},
        description='API bearer tokens as JSON: {name: {"token": "…", "role": "viewer" or '
        '"operator"}} (secret). Set: every /api route needs a token (viewer: read; operator: '
        "read and commands). Unset: reads are open and commands refused (403).",
    )

    api_url: str | None = Field(
        default=None,
        description="Where tributary commands (runs cancel, backfill, …) reach the service's "
        "API, and where alert links send people (the dashboard). Unset: "
        "http://<http_host>:<http_port>.",
    )
    cli_token: SecretStr | None = Field(
        default=None,
        json_schema_extra={"secret": True},
        description="The bearer token tributary commands send to the API (secret; an "
        "operator's for commands). tributary dev sets one.",
    )

    def api_base(self) -> str:
        return (self.api_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    def alert_links(self) -> tuple[str, str]:
        """The templates of alerts' 'Open run' and 'Logs' links, defaults filled in."""
        pages = self.api_base()
        return (
            self.alert_dashboard_url_template or pages + "/runs/{run_id}",
            self.alert_logs_url_template or pages + "/runs/{run_id}/tasks/{task_id}",
        )

    def api_token_roles(self) -> dict[str, tuple[str, str]]:
        """api_tokens as token -> (name, role)."""
        if self.api_tokens is None:
            return {}
        found = orjson.loads(self.api_tokens.get_secret_value())
        return {entry["token"]: (name, entry["role"]) for name, entry in found.items()}

    def check_dsns(self) -> dict[str, str]:
        """check_databases as name -> DSN."""
        if self.check_databases is None:
            return {}
        return dict(orjson.loads(self.check_databases.get_secret_value()))

    def secret_values(self) -> list[str]:
        """Every secret's text, and the URLs and secrets inside alert_sinks, for redaction."""
        found = []
        for name in SECRET_SETTINGS:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
        found += list(self.check_dsns().values())
        found += list(self.api_token_roles())
        if self.alert_sinks is not None:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                for sink in orjson.loads(self.alert_sinks.get_secret_value()).values():
                    found += [str(v) for k, v in sink.items() if k in ("url", "secret") and v]
        return found

    run_dir_root: Path = Field(
        default=Path(".tributary/runs"),
        description="{run_dir} of a task's command, env or cwd: <run_dir_root>/<pipeline>/"
        "<run id>, a working directory per run, made before each attempt where it runs.",
    )
    task_log_dir: Path = Field(
        default=Path("logs/tasks"),
        description="Attempt output goes to <task_log_dir>/<run_id>/<task_id>/<attempt>.log.",
    )
    attempt_state_dir: Path = Field(
        default=Path(".tributary/attempts"),
        description="Where the attempt keeper (the process that runs this service's attempts "
        "and outlives it) keeps its socket and each attempt's state; one per service process "
        "on a host.",
    )
    max_parallel_tasks: int = Field(
        default=4, ge=1, description="Attempts this process runs at once."
    )
    pools: dict[str, int] = Field(
        default_factory=dict,
        description="Named pools: how many tasks of each may run at once across all "
        'replicas, e.g. {"warehouse": 2} (a TOML table, or JSON in the variable).',
    )
    startup_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long start-up waits, retrying with backoff, for PostgreSQL and Kafka "
        "to answer (/healthz alive, /readyz 503 meanwhile; a worker waits for Kafka alike) "
        "before it gives up (exit 1).",
    )
    shutdown_drain_seconds: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long running attempts may finish."
    )
    executor_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Safety-net poll for work queued by other replicas (seconds).",
    )
    lease_ttl_seconds: float = Field(
        default=30.0,
        ge=1.0,
        description="A running attempt whose worker stops renewing it for this long is lost "
        "and retried (heartbeats renew it three times per period).",
    )
    default_task_timeout_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="The timeout of every task that sets no timeout of its own (then SIGTERM, "
        "grace, SIGKILL, rollback, as for its own); 0: none. An attempt's lease is never "
        "renewed past its timeout plus cleanup, grace and rollback time.",
    )
    earliest_batch_date: date = Field(
        default=date(1900, 1, 1),
        description="Runs for an earlier batch date are refused (with the reason) when "
        "announced or requested.",
    )
    latest_batch_date: date = Field(
        default=date(2999, 12, 31),
        description="Runs for a later batch date are refused (with the reason) when "
        "announced or requested.",
    )
    max_lost_attempts: int = Field(
        default=3,
        ge=0,
        description="Attempts of a task instance that may be lost through no fault of the task "
        "(its service, worker or supervisor went away, or the service stopped) and retried "
        "without using the task's own retries; beyond it they count as failures.",
    )
    stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A loop whose round runs, or that keeps failing, this long (or intake "
        "with messages waiting and nothing committed this long) is reported stalled: an "
        "ERROR line, tributary_loop_stalled, and /readyz not ready.",
    )
    history_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Days the transition log, the ids of applied events, sent outbox rows and "
        "ignored events are kept; older rows are pruned in small batches (0: kept for ever). "
        "Runs, task attempts, outputs, dead letters and the audit log are never pruned.",
    )
    timer_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Longest wait between checks for due retries and expired leases (seconds).",
    )
    relay_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="Safety-net poll of the outbox."
    )
    relay_batch_size: int = Field(default=500, ge=1, description="Outbox rows published at once.")
    consumer_batch_size: int = Field(
        default=500, ge=1, description="Events applied in one database transaction at most."
    )


SECRET_SETTINGS = frozenset(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
)
