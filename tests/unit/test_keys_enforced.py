"""Every key of the pipeline language is enforced by the running service, and a test shows it.

``validate`` accepts only keys of the models; this walks every model reachable from
``PipelineSpec`` and fails when a key has no test named here (a new key needs one), when a
named test does not exist, or when an entry names a key that is gone.
"""

from __future__ import annotations

import ast
import types
import typing
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from service.spec.models import PipelineSpec
from service.spec.tasks import TaskDefaults

TESTS = Path(__file__).resolve().parents[1]

TRIGGERING = "integration/test_triggering.py"
ORCHESTRATOR = "integration/test_orchestrator.py"
EXECUTOR = "integration/test_executor.py"
CAPACITY = "integration/test_capacity.py"
WAITS = "integration/test_waits.py"
PROBES = "integration/test_probes.py"
API = "integration/test_api_pipelines.py::test_the_pipelines_endpoint_shows_the_next_scheduled_runs"
EACH_ATTEMPT = f"{EXECUTOR}::test_each_attempt_ends_as_its_spec_says"
WHERE_AND_HOW = f"{EXECUTOR}::test_commands_run_where_and_how_the_spec_says"
CHAINS = (
    f"{TRIGGERING}::test_a_task_waits_for_its_data_without_a_slot_then_chains_through_its_output"
)
INPUTS = f"{WAITS}::test_an_input_naming_a_partition_is_waited_for_unless_told_not_to"
CHECK_WAITS = f"{WAITS}::test_a_check_holds_its_task_until_ready_and_a_wait_that_times_out_fails_it"
POKES = "unit/test_checks.py::test_pokes_back_off_up_to_their_max"
PARAMS = "unit/test_spec.py::test_params_are_typed_and_checked"
BACKOFF = "unit/test_retry.py::test_backoff_grows_exponentially_up_to_its_max"
RETRIED = "unit/test_retry.py::test_which_failures_are_retried"
SCHEDULES = "integration/test_schedules.py"

ENFORCED: dict[str, list[str]] = {
    "PipelineSpec.id": [f"{TRIGGERING}::test_bad_manual_requests_are_refused_with_the_reason"],
    "PipelineSpec.version": [API],
    "PipelineSpec.domain": [
        API,
        "integration/test_alerts.py::test_every_sink_signs_its_own_way_and_routes_pick_them",
    ],
    "PipelineSpec.description": [API],
    "PipelineSpec.owner": [API],
    "PipelineSpec.triggers": [CHAINS],
    "PipelineSpec.params": [f"{TRIGGERING}::test_a_manual_run_takes_typed_params_once_per_request"],
    "PipelineSpec.max_active_runs": [
        "integration/test_admission.py::test_runs_beyond_max_active_runs_wait_and_start_oldest_date_first",
        "integration/test_admission.py::test_replicas_admitting_together_never_pass_the_limit",
    ],
    "PipelineSpec.defaults": [
        "unit/test_spec.py::test_defaults_apply_to_every_task_and_env_and_tags_merge"
    ],
    "PipelineSpec.sla": [f"{TRIGGERING}::test_a_run_past_its_sla_is_announced_once"],
    "PipelineSpec.tasks": [f"{ORCHESTRATOR}::test_claim_complete_and_advance"],
    "TaskSpec.id": [f"{ORCHESTRATOR}::test_claim_complete_and_advance"],
    "TaskSpec.description": [API],
    "TaskSpec.tags": [API],
    "TaskSpec.env": ["integration/test_process.py::test_the_task_sees_only_its_environment"],
    "TaskSpec.inherit_env": [
        "integration/test_process.py::test_the_task_sees_only_its_environment"
    ],
    "TaskSpec.cwd": [WHERE_AND_HOW],
    "TaskSpec.command": [EACH_ATTEMPT],
    "TaskSpec.shell": [WHERE_AND_HOW],
    "TaskSpec.requires": ["unit/test_decide.py::test_a_chain_runs_in_order_and_succeeds"],
    "TaskSpec.trigger_rule": [
        f"{ORCHESTRATOR}::test_a_failure_fails_downstream_but_all_done_tasks_still_run"
    ],
    "TaskSpec.retry": [f"{ORCHESTRATOR}::test_a_failed_attempt_is_retried_when_its_time_comes"],
    "TaskSpec.timeout": [
        EACH_ATTEMPT,
        "integration/test_time_limits.py::test_a_task_without_a_timeout_gets_the_default_and_its_lease_stops_at_the_deadline",
    ],
    "TaskSpec.grace_period": [EACH_ATTEMPT],
    "TaskSpec.resources": [f"{CAPACITY}::test_memory_and_slots_bound_the_claim"],
    "TaskSpec.exit_codes": [EACH_ATTEMPT],
    "TaskSpec.cache": [
        f"{EXECUTOR}::test_a_cached_task_runs_again_only_when_its_inputs_change",
        f"{EXECUTOR}::test_a_cache_hit_needs_skipped_upstream_tasks_and_current_outputs",
        "acceptance/test_reruns.py::test_a_rerun_of_a_date_leaves_the_published_partition_intact",
    ],
    "TaskSpec.executor": [
        "unit/test_spec.py::test_a_remote_task_cannot_be_cached_and_remote_by_default_keeps_cached_tasks_local",
        "acceptance/test_remote_workers.py::test_a_worker_killed_mid_task_hands_it_to_another",
    ],
    "TaskSpec.python": [
        "acceptance/test_sdk_pipeline.py::test_python_tasks_report_gate_and_branch_through_the_real_service"
    ],
    "TaskSpec.expect": [
        "unit/test_conditions.py::test_an_expectation_that_fails_fails_the_task_with_the_value_and_no_retry",
        "acceptance/test_sdk_pipeline.py::test_python_tasks_report_gate_and_branch_through_the_real_service",
    ],
    "TaskSpec.when": [
        "unit/test_conditions.py::test_a_branch_runs_where_its_condition_holds_and_is_skipped_where_not",
        "acceptance/test_sdk_pipeline.py::test_python_tasks_report_gate_and_branch_through_the_real_service",
    ],
    "TaskSpec.queue": [
        "unit/test_spec.py::test_a_queue_sends_its_task_to_that_queues_workers",
        "acceptance/test_worker_queues.py::test_each_queue_runs_on_its_own_workers_within_their_resources",
    ],
    "TaskSpec.priority": [f"{CAPACITY}::test_a_big_task_at_the_head_is_not_overtaken"],
    "TaskSpec.wait_for": [CHAINS, CHECK_WAITS],
    "TaskSpec.inputs": [INPUTS],
    "TaskSpec.outputs": [CHAINS],
    "TaskSpec.cleanup": [EACH_ATTEMPT],
    "TaskSpec.rollback": [EACH_ATTEMPT, WHERE_AND_HOW],
    "Triggers.datasets": [
        f"{ORCHESTRATOR}::test_a_partition_makes_one_run_whatever_is_redelivered"
    ],
    "Triggers.manual": [f"{TRIGGERING}::test_bad_manual_requests_are_refused_with_the_reason"],
    "Triggers.schedule": [
        f"{SCHEDULES}::test_two_replicas_firing_one_schedule_start_one_run_per_fire"
    ],
    "Triggers.on_new_version": [
        f"{TRIGGERING}::test_a_new_version_reruns_when_the_pipeline_says_so"
    ],
    "DatasetTrigger.dataset": [
        f"{ORCHESTRATOR}::test_a_partition_makes_one_run_whatever_is_redelivered"
    ],
    "DatasetTrigger.partition_format": [
        f"{TRIGGERING}::test_a_partition_a_pipeline_cannot_map_starts_nothing"
    ],
    "DatasetTrigger.batch_date_offset": ["unit/test_spec.py::test_partitions_map_to_batch_dates"],
    "Schedule.cron": [f"{SCHEDULES}::test_two_replicas_firing_one_schedule_start_one_run_per_fire"],
    "Schedule.timezone": [
        f"{SCHEDULES}::test_a_schedule_fires_on_its_own_wall_clock",
        "unit/test_schedule.py::test_a_time_the_clocks_skip_fires_once_right_after_the_change",
    ],
    "Schedule.batch_date_offset": [
        f"{SCHEDULES}::test_two_replicas_firing_one_schedule_start_one_run_per_fire",
        f"{SCHEDULES}::test_a_schedule_fires_on_its_own_wall_clock",
    ],
    "Schedule.catchup": [
        f"{SCHEDULES}::test_after_downtime_the_newest_missed_fire_runs_then_the_on_time_one",
        "unit/test_schedule.py::test_after_downtime_latest_runs_the_newest_missed_fire_and_all_runs_a_bounded_few",
    ],
    "Schedule.max_catchup": [
        "unit/test_schedule.py::test_after_downtime_latest_runs_the_newest_missed_fire_and_all_runs_a_bounded_few"
    ],
    "ParamSpec.type": [PARAMS],
    "ParamSpec.description": [API],
    "ParamSpec.default": [PARAMS],
    "ParamSpec.required": [
        PARAMS,
        "unit/test_spec.py::test_triggered_pipelines_cannot_require_params",
    ],
    "ParamSpec.choices": [f"{TRIGGERING}::test_bad_manual_requests_are_refused_with_the_reason"],
    "Backoff.base": [
        BACKOFF,
        "integration/test_timers.py::test_retries_are_queued_at_their_backoff_times",
    ],
    "Backoff.factor": [BACKOFF],
    "Backoff.max": [BACKOFF],
    "RetryPolicy.max_attempts": [
        f"{ORCHESTRATOR}::test_a_failed_attempt_is_retried_when_its_time_comes"
    ],
    "RetryPolicy.backoff": [
        "integration/test_timers.py::test_retries_are_queued_at_their_backoff_times"
    ],
    "RetryPolicy.jitter": ["unit/test_retry.py::test_jitter_stays_within_its_band_and_the_max"],
    "RetryPolicy.on_exit_codes": [RETRIED],
    "RetryPolicy.on_timeout": [RETRIED],
    "Resources.memory_mb": [f"{CAPACITY}::test_memory_and_slots_bound_the_claim"],
    "Resources.cpu_cores": [f"{CAPACITY}::test_a_big_task_at_the_head_is_not_overtaken"],
    "Resources.pool": [f"{CAPACITY}::test_a_full_pool_holds_back_only_its_own_tasks"],
    "ExitCodes.skip": [EACH_ATTEMPT],
    "ExitCodes.fatal": [EACH_ATTEMPT],
    "Step.command": [EACH_ATTEMPT],
    "Step.shell": [WHERE_AND_HOW],
    "Step.timeout": [WHERE_AND_HOW],
    "DatasetWait.dataset": [CHAINS],
    "DatasetWait.partition": [CHAINS],
    "DatasetWait.timeout": [INPUTS],
    "CheckWait.check": [
        CHECK_WAITS,
        f"{PROBES}::test_a_command_is_ready_not_yet_or_in_error_by_its_exit_code",
    ],
    "CheckWait.shell": ["unit/test_checks.py::test_values_in_a_check_are_quoted_for_where_they_go"],
    "CheckWait.not_ready_codes": [
        f"{PROBES}::test_a_command_is_ready_not_yet_or_in_error_by_its_exit_code"
    ],
    "CheckWait.path": [CHECK_WAITS, f"{PROBES}::test_a_path_is_ready_when_it_and_its_marker_exist"],
    "CheckWait.marker": [f"{PROBES}::test_a_path_is_ready_when_it_and_its_marker_exist"],
    "CheckWait.sql": [f"{PROBES}::test_a_query_is_ready_when_its_first_column_is_true"],
    "CheckWait.database": [f"{PROBES}::test_a_query_is_ready_when_its_first_column_is_true"],
    "CheckWait.url": [
        f"{PROBES}::test_a_url_is_ready_on_2xx_not_yet_on_404_and_in_error_otherwise"
    ],
    "CheckWait.poke_interval": [POKES, CHECK_WAITS],
    "CheckWait.poke_backoff": [POKES],
    "CheckWait.max_poke_interval": [POKES],
    "CheckWait.timeout": [CHECK_WAITS],
    "DatasetRef.uri": [
        "integration/test_lineage.py::test_an_attempt_is_a_start_and_a_complete_with_its_datasets"
    ],
    "DatasetRef.dataset": [CHAINS],
    "DatasetRef.partition": [CHAINS],
    "InputRef.uri": [
        "integration/test_lineage.py::test_an_attempt_is_a_start_and_a_complete_with_its_datasets"
    ],
    "InputRef.dataset": [INPUTS],
    "InputRef.partition": [INPUTS],
    "InputRef.wait": [INPUTS],
    "Sla.deadline": [f"{TRIGGERING}::test_a_run_past_its_sla_is_announced_once"],
}


def models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def every_key() -> set[str]:
    """Model.field for every model reachable from PipelineSpec (the task defaults are the
    task's own keys, enforced as those)."""
    found: set[str] = set()
    todo: list[type[BaseModel]] = [PipelineSpec]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if model is not TaskDefaults:
                found.add(f"{model.__name__}.{name}")
            todo += models_in(field.annotation)
    return found


@cache
def functions_in(path: str) -> set[str]:
    tree = ast.parse((TESTS / path).read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_key_of_the_language_has_a_test_that_shows_it_enforced() -> None:
    keys = every_key()
    assert sorted(keys - set(ENFORCED)) == [], "keys with no enforcement test"
    assert sorted(set(ENFORCED) - keys) == [], "entries for keys that no longer exist"
    assert "TaskSpec.cwd" in keys  # the walk reached the tasks
    missing = [
        ref
        for refs in ENFORCED.values()
        for ref in refs
        if ref.split("::")[1] not in functions_in(ref.split("::")[0])
    ]
    assert missing == [], "named tests that do not exist"
