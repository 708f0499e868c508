"""Pipeline and task specifications as data engineers write them (YAML, one pipeline a file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Ids appear in file names, log paths, Kafka keys and URLs: keep them plain.
ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetTrigger(Spec):
    """A run starts when this dataset announces a partition (a ``dataset.ready`` event)."""

    dataset: str = Field(min_length=1)


class TaskSpec(Spec):
    id: str = Field(pattern=ID_PATTERN)
    description: str = ""
    # argv, never a shell string: templates such as {batch_date} are filled per argument.
    command: list[str] = Field(min_length=1)
    requires: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class PipelineSpec(Spec):
    id: str = Field(pattern=ID_PATTERN)
    version: str = "1"
    domain: str = "default"
    description: str = ""
    owner: str = ""
    triggers: list[DatasetTrigger] = Field(default_factory=list)
    tasks: list[TaskSpec] = Field(min_length=1)
