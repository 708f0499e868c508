"""Prometheus metrics, served on ``/metrics``. Base units (seconds), counters end in ``_total``,
labels only of bounded cardinality: states, outcomes, topics, and the deployed pipelines' ids
(``pipeline``) and task ids (``task``, on the two task histograms) — never run ids, batch
dates or anything an event can make up. See docs/operations.md for the series count.

Every metric lives in :data:`REGISTRY`, one per process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

# From milliseconds (scheduling) to hours (task runs).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DURATION_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600)

RUNS_ENDED = Counter(
    "tributary_runs_ended_total",
    "Runs that reached a terminal state, by pipeline and state.",
    ["pipeline", "state"],
    registry=REGISTRY,
)
RUN_DURATION = Histogram(
    "tributary_run_duration_seconds",
    "From a run's start to its end, by pipeline and final state.",
    ["pipeline", "state"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
TASKS_ENDED = Counter(
    "tributary_tasks_ended_total",
    "Task instances that reached a terminal state, by pipeline and state.",
    ["pipeline", "state"],
    registry=REGISTRY,
)
RETRIES_SCHEDULED = Counter(
    "tributary_task_retries_scheduled_total",
    "Failed attempts given another one, by pipeline.",
    ["pipeline"],
    registry=REGISTRY,
)
SLA_MISSED = Counter(
    "tributary_sla_missed_total",
    "Runs found past their SLA deadline, by pipeline.",
    ["pipeline"],
    registry=REGISTRY,
)
ATTEMPTS_LOST = Counter(
    "tributary_attempts_lost_total",
    "Attempts whose worker stopped renewing the lease.",
    registry=REGISTRY,
)
HISTORY_PRUNED = Counter(
    "tributary_history_pruned_rows_total",
    "Rows older than history_retention_days deleted, by table.",
    ["table"],
    registry=REGISTRY,
)
TASK_DURATION = Histogram(
    "tributary_task_duration_seconds",
    "How long attempts ran (local and remote), by pipeline, task and outcome.",
    ["pipeline", "task", "outcome"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "tributary_task_queue_wait_seconds",
    "From a task being queued to its attempt being claimed, by pipeline and task.",
    ["pipeline", "task"],
    buckets=(*LATENCY_BUCKETS, 30, 60, 300, 900),
    registry=REGISTRY,
)
SCHEDULING_LATENCY = Histogram(
    "tributary_scheduling_latency_seconds",
    "From an attempt ending to the commit that queued its successors, by pipeline.",
    ["pipeline"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TASKS_RUNNING = Gauge(
    "tributary_tasks_running", "Attempts this process is running now.", registry=REGISTRY
)
FREE_SLOTS = Gauge(
    "tributary_executor_free_slots",
    "Execution slots of this process not in use.",
    registry=REGISTRY,
)
EVENTS_CONSUMED = Counter(
    "tributary_events_consumed_total",
    "Events taken from Kafka, by type.",
    ["type"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "tributary_consumer_lag_messages",
    "Messages behind the end of each consumed topic.",
    ["topic"],
    registry=REGISTRY,
)
OUTBOX_PUBLISHED = Counter(
    "tributary_outbox_published_total", "Events the relay published.", registry=REGISTRY
)
OUTBOX_BACKLOG = Gauge(
    "tributary_outbox_backlog",
    "Events committed but not yet published (seen by the leader).",
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "tributary_dead_letters_total",
    "Records sent to the dead-letter topic, by origin topic.",
    ["topic"],
    registry=REGISTRY,
)
ALERTS_SENT = Counter(
    "tributary_alerts_sent_total", "Alerts a chat sink accepted.", ["sink"], registry=REGISTRY
)
ALERTS_FAILED = Counter(
    "tributary_alerts_failed_total",
    "Alerts a sink refused for good, or that ran out of tries.",
    ["sink", "why"],
    registry=REGISTRY,
)
ALERTS_DROPPED = Counter(
    "tributary_alerts_dropped_total",
    "Alerts dropped because the queue to the sinks was full.",
    registry=REGISTRY,
)
LOOP_FAILURES = Counter(
    "tributary_loop_failures_total",
    "Rounds of a loop that failed for a retriable reason (a server away, a lost race).",
    ["loop"],
    registry=REGISTRY,
)
LOOP_STALLED = Gauge(
    "tributary_loop_stalled",
    "1 while a loop makes no progress (a round too long, failing too long, or messages "
    "waiting with nothing committed), else 0.",
    ["loop"],
    registry=REGISTRY,
)
LIVE_STATE_AVAILABLE = Gauge(
    "tributary_live_state_available",
    "1 while Redis takes live-state writes, 0 when not.",
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(REGISTRY)
