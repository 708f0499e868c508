"""The task cache key: a success of a ``cache: true`` task may be reused by a later attempt
with the same key, instead of running again."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import orjson

from service.execution.launch import Launch


def cache_key(
    spec_hash: str, task_id: str, launch: Launch, versions: Mapping[tuple[str, str], str]
) -> str:
    """sha256 of the spec version, the rendered command and the current version of each input
    partition (dataset, partition); an input never announced counts as absent."""
    inputs = [[d, p, versions.get((d, p))] for d, p in launch.inputs]
    material = orjson.dumps([spec_hash, task_id, list(launch.argv), inputs])
    return hashlib.sha256(material).hexdigest()
