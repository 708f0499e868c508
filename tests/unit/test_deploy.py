"""The deployment's monitoring speaks of metrics that exist: every metric the Grafana
dashboard and the Prometheus rules name is served on /metrics (the rules themselves are
checked by promtool in CI: ``promtool check rules`` and ``promtool test rules``)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import yaml

from service import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "tributary.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
NAMED = re.compile(r"\btributary_[a-z_]+")
HISTOGRAM = ("_bucket", "_sum", "_count")


def served() -> set[str]:
    """Every sample name /metrics serves, from its # TYPE lines (a labelled metric has no
    sample before its first observation): a counter as ``…_total``, a histogram's series."""
    names = set()
    for line in metrics.exposition().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "histogram":
                names |= {name + suffix for suffix in HISTOGRAM}
            elif kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
            else:
                names.add(name)
    return names


def expressions() -> dict[str, list[str]]:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    rules = yaml.safe_load(RULES.read_text())
    return {
        "dashboard": [t["expr"] for p in panels for t in p["targets"]]
        + [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v],
        "rules": [r["expr"] for g in rules["groups"] for r in g["rules"]],
    }


def test_every_metric_the_dashboard_and_the_rules_name_is_served() -> None:
    found = served()
    assert "tributary_runs_ended_total" in found
    assert "tributary_task_duration_seconds_bucket" in found
    for where, exprs in expressions().items():
        assert exprs, where
        named = {name for expr in exprs for name in NAMED.findall(expr)}
        assert named, where
        assert named <= found, (where, sorted(named - found))


def test_the_dashboard_covers_what_operators_watch() -> None:
    named = {name for expr in expressions()["dashboard"] for name in NAMED.findall(expr)}
    for metric in (
        "tributary_runs_ended_total",
        "tributary_run_duration_seconds_bucket",
        "tributary_task_queue_wait_seconds_bucket",
        "tributary_sla_missed_total",
        "tributary_consumer_lag_messages",
        "tributary_outbox_backlog",
        "tributary_dead_letters_total",
        "tributary_alerts_failed_total",
    ):
        assert metric in named, metric
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts >= {
        "TributaryDown",
        "TributaryConsumerLagGrowing",
        "TributaryOutboxBacklog",
        "TributaryDeadLetters",
        "TributaryRunsFailing",
        "TributarySLAMissed",
    }


def test_the_compose_stack_names_real_settings_and_files() -> None:
    from service.config import Settings

    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    settings = set(Settings.model_fields)
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("TRIBUTARY_"):
                assert variable.removeprefix("TRIBUTARY_").lower() in settings, (name, variable)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / "deploy" / source).exists(), (name, source)
    tributary = [s for s in compose["services"].values() if "build" in s]
    assert len(tributary) == 4  # two replicas, two workers
    assert all(s["stop_grace_period"] == "45s" for s in tributary)
