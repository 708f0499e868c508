"""Tributary's task SDK: tasks and pipelines in Python.

    from service.sdk import Context, Pipeline, task

    @task(outputs=["file:///data/orders/{batch_date}"], expect={"rows": "> 0"})
    def load(ctx: Context) -> dict[str, int]:
        ctx.log.info("loading", day=str(ctx.batch_date))
        return {"rows": 1204}

    pipeline = Pipeline("orders", triggers={"datasets": [{"dataset": "orders_raw"}]})
    pipeline.add_task(load)

A task is a function taking a :class:`Context`; what it returns (a mapping of small JSON
values) is its result. ``tributary compile`` turns a module's pipelines into the JSON the
service loads; the service runs each task in its own subprocess through
``python -m service.sdk.runner`` and never imports the code itself.

Light on purpose: importing it pulls in no database, broker or web library.
"""

from service.sdk.context import Context, context
from service.sdk.pipeline import Pipeline, pipelines_in
from service.sdk.tasks import TaskFunction, task

__all__ = ["Context", "Pipeline", "TaskFunction", "context", "pipelines_in", "task"]
