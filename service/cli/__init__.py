"""The ``tributary`` command.

The parser is built without importing the service: each command's module is imported only
when that command runs, so ``--help`` and quick commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from service import __version__

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        (getattr(args, "help_parser", None) or parser).print_help()
        sys.exit(EXIT_USAGE)
    from service.cli.common import run_command  # the service's errors, imported once needed

    try:
        code = run_command(_resolve(args.handler), args)
        sys.stdout.flush()
    except BrokenPipeError:  # `tributary runs list | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _date(text: str) -> object:
    import datetime  # only when the option is used: --help stays light

    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _resolve(handler: str) -> object:
    module, _, name = handler.partition(":")
    return getattr(importlib.import_module(f"service.cli.{module}"), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tributary",
        description="Tributary: an event-driven ETL run orchestrator.",
    )
    parser.add_argument("--version", action="version", version=f"tributary {__version__}")
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (default: config/<env>.toml)"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _service_commands(commands)
    _pipeline_commands(commands)
    _event_commands(commands)
    _run_commands(commands)
    return parser


def _service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the service with the configured servers")
    serve.set_defaults(handler="serving:cmd_serve")
    worker = commands.add_parser(
        "worker", help="run tasks requested over Kafka (executor: remote), any number of them"
    )
    worker.add_argument(
        "--queue",
        metavar="NAME",
        help="take only the tasks with this queue (their queue: key); default: the tasks "
        "without one (or the worker_queue setting)",
    )
    worker.set_defaults(handler="serving:cmd_worker")
    dev = commands.add_parser(
        "dev", help="run the service on embedded defaults: starts what it needs, loads examples"
    )
    dev.set_defaults(handler="dev:cmd_dev")
    migrate = commands.add_parser("migrate", help="apply pending database migrations and exit")
    migrate.set_defaults(handler="serving:cmd_migrate")
    completion = commands.add_parser(
        "completion", help="print a shell completion script (bash; zsh via bashcompinit)"
    )
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    completion.set_defaults(handler="completion:cmd_completion")


def _pipeline_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser("validate", help="check pipeline files; exit 1 on any problem")
    validate.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="pipeline files (YAML, JSON, or Python modules written with the task SDK) or "
        "directories",
    )
    validate.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or JSON"
    )
    validate.set_defaults(handler="pipelines:cmd_validate")

    compile_ = commands.add_parser(
        "compile", help="a Python module's pipelines (task SDK) as the JSON the service loads"
    )
    compile_.add_argument("module", type=Path, help="the module's file, e.g. pipelines/orders.py")
    compile_.add_argument(
        "--out", type=Path, help="write <pipeline id>.json into this directory (default: print)"
    )
    compile_.set_defaults(handler="pipelines:cmd_compile")
    plan = commands.add_parser("plan", help="dry run: what a run would do, nothing executed")
    plan.add_argument("pipeline", help="a pipeline id, or a pipeline file")
    plan.add_argument("--partition", required=True, help="e.g. 2026-11-21")
    plan.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a run parameter"
    )
    plan.add_argument("--resume-from", metavar="TASK", help="re-run TASK and what depends on it")
    plan.add_argument("--pipelines-dir", type=Path, help="where to find PIPELINE by id")
    plan.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or JSON"
    )
    plan.set_defaults(handler="pipelines:cmd_plan")


def _event_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    emit = commands.add_parser("emit-ready", help="produce a dataset.ready event")
    emit.add_argument("dataset", help="the dataset's name, as pipelines trigger on it")
    emit.add_argument("partition", help="e.g. 2026-11-21")
    emit.add_argument("--version", dest="data_version", help="version or checksum of the data")
    emit.add_argument(
        "--producer", default="tributary-cli", help="who produced the data (default: tributary-cli)"
    )
    emit.set_defaults(handler="events:cmd_emit_ready")

    trigger = commands.add_parser(
        "trigger", help="start a run by hand; prints the run id, or why the service refused it"
    )
    trigger.add_argument("pipeline", help="the pipeline id")
    trigger.add_argument("--date", required=True, help="the run's batch date, e.g. 2026-11-21")
    trigger.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a run parameter"
    )
    trigger.add_argument("--reason", help="why, for the run's history")
    trigger.add_argument(
        "--no-wait",
        action="store_true",
        help="send run.requested to Kafka and return at once, without the service's answer",
    )
    trigger.add_argument(
        "--wait", action="store_true", help="follow the run to its end, a line per task change"
    )
    _api_options(trigger)
    trigger.set_defaults(handler="operate:cmd_trigger")

    backfill = commands.add_parser(
        "backfill", help="one run per batch date of a range, oldest first; again: nothing new"
    )
    backfill.add_argument("pipeline", help="the pipeline id")
    backfill.add_argument("--from", dest="from_date", required=True, help="first batch date")
    backfill.add_argument("--to", dest="to_date", required=True, help="last batch date")
    backfill.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a run parameter"
    )
    backfill.add_argument("--dry-run", action="store_true", help="list what would be created")
    backfill.add_argument(
        "--wait", action="store_true", help="follow the runs to their end (exit 1 if one fails)"
    )
    backfill.add_argument("--reason", help="why, for the runs' history")
    _api_options(backfill)
    backfill.set_defaults(handler="operate:cmd_backfill")


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the service's API (default: the api_url setting)")
    parser.add_argument("--token", help="a bearer token (default: the cli_token setting)")
    parser.add_argument("--json", action="store_true", help="print the API's answer as JSON")


def _run_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs_parser = commands.add_parser("runs", help="inspect runs")
    runs_parser.set_defaults(help_parser=runs_parser)
    runs = runs_parser.add_subparsers(metavar="ACTION")
    runs_list = runs.add_parser("list", help="the latest runs, newest first")
    runs_list.add_argument(
        "--limit", type=_positive, default=20, help="how many runs at most (default 20)"
    )
    runs_list.add_argument("--pipeline", help="this pipeline's runs only")
    runs_list.add_argument(
        "--state",
        choices=("queued", "running", "success", "failed", "cancelled"),
        help="runs in this state only",
    )
    runs_list.add_argument(
        "--from", dest="from_date", type=_date, help="batch dates from this one (YYYY-MM-DD)"
    )
    runs_list.add_argument(
        "--to", dest="to_date", type=_date, help="batch dates up to this one (YYYY-MM-DD)"
    )
    runs_list.add_argument("--json", action="store_true", help="print them as JSON")
    runs_list.set_defaults(handler="runs:cmd_runs_list")
    runs_show = runs.add_parser("show", help="one run and its tasks")
    runs_show.add_argument("run_id", help="the run id, e.g. 20261121-142233-8a3f")
    runs_show.add_argument("--json", action="store_true", help="print it whole, as JSON")
    runs_show.set_defaults(handler="runs:cmd_runs_show")
    _run_actions(runs)
    _pipelines_actions(commands)
    _logs_command(commands)


def _run_actions(runs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    failed = runs.add_parser(
        "failed", help="tasks failed for good lately: error, and the command to retry each"
    )
    failed.add_argument("--since", default="1d", help="how far back: 1d, 12h, 30m (default 1d)")
    failed.add_argument("--limit", type=_positive, default=100, help="at most this many")
    failed.set_defaults(handler="operate:cmd_runs_failed")
    _api_options(failed)
    cancel = runs.add_parser("cancel", help="cancel a run: running attempts stopped, rolled back")
    cancel.add_argument("run_id", help="the run id")
    cancel.add_argument("--reason", help="why, for the run's history")
    _api_options(cancel)
    cancel.set_defaults(handler="operate:cmd_cancel")
    retry = runs.add_parser("retry", help="rerun a failed run (or one task) under the same id")
    retry.add_argument("run_id", help="the run id")
    retry.add_argument("--task", help="retry this task only")
    retry.add_argument("--downstream", action="store_true", help="with --task: and after it")
    retry.add_argument(
        "--current-version",
        action="store_true",
        help="follow the pipeline's current version (same tasks), not the run's own",
    )
    retry.add_argument("--reason", help="why, for the run's history")
    _api_options(retry)
    retry.set_defaults(handler="operate:cmd_retry")
    resume = runs.add_parser("resume", help="rerun a finished run from a task on")
    resume.add_argument("run_id", help="the run id")
    resume.add_argument("--from", dest="from_task", required=True, help="the task to rerun from")
    resume.add_argument("--reason", help="why, for the run's history")
    _api_options(resume)
    resume.set_defaults(handler="operate:cmd_resume")
    mark = runs.add_parser("mark", help="set a task that is not running to success or skipped")
    mark.add_argument("run_id", help="the run id")
    mark.add_argument("task", help="the task id")
    mark.add_argument(
        "--state", required=True, choices=("success", "skipped"), help="the state to set"
    )
    mark.add_argument("--reason", help="why, for the run's history")
    _api_options(mark)
    mark.set_defaults(handler="operate:cmd_mark")


def _logs_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    logs = commands.add_parser("logs", help="a task's log (the latest attempt, or --attempt N)")
    logs.add_argument("run_id", help="the run id")
    logs.add_argument("task", help="the task id")
    logs.add_argument("--attempt", type=_positive, help="which attempt (default: the latest)")
    logs.add_argument("--tail", type=_positive, help="only the last N lines")
    logs.add_argument("--follow", action="store_true", help="print new lines until it ends")
    _api_options(logs)
    logs.set_defaults(handler="operate:cmd_logs")


def _pipelines_actions(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pipelines_parser = commands.add_parser("pipelines", help="the deployed pipelines")
    pipelines_parser.set_defaults(help_parser=pipelines_parser)
    pipelines = pipelines_parser.add_subparsers(metavar="ACTION")
    listing = pipelines.add_parser("list", help="each pipeline: paused or not, next run")
    _api_options(listing)
    listing.set_defaults(handler="operate:cmd_pipelines_list")
    show = pipelines.add_parser("show", help="one pipeline: triggers, next and last runs")
    show.add_argument("pipeline", help="the pipeline id")
    _api_options(show)
    show.set_defaults(handler="operate:cmd_pipelines_show")
    for action, text in (
        ("pause", "its triggers and schedules are recorded, its runs wait"),
        ("unpause", "what waited starts, oldest batch date first"),
    ):
        parser = pipelines.add_parser(action, help=text)
        parser.add_argument("pipeline", help="the pipeline id")
        parser.add_argument("--reason", help="why, for the audit trail")
        _api_options(parser)
        parser.set_defaults(handler="operate:cmd_pause", pause=action == "pause")
