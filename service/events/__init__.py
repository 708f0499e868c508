"""Events: the CloudEvents envelope and the typed data of every event type (the public contract,
``schemas/``). Everything past the edge handles these types, never raw dicts."""

from service.events.envelope import (
    CONTENT_TYPE,
    EVENT_TYPES,
    CloudEvent,
    decode_event,
    new_event,
    parse_event,
    validate_data,
)
from service.events.payloads import (
    PAYLOAD_TYPES,
    DatasetProduced,
    DatasetReady,
    Payload,
    RunCommand,
    RunDeadlineMissed,
    RunRequested,
    RunStatus,
    TaskCompleted,
    TaskHeartbeat,
    TaskRequested,
    TaskStatus,
)

__all__ = [
    "CONTENT_TYPE",
    "EVENT_TYPES",
    "PAYLOAD_TYPES",
    "CloudEvent",
    "DatasetProduced",
    "DatasetReady",
    "Payload",
    "RunCommand",
    "RunDeadlineMissed",
    "RunRequested",
    "RunStatus",
    "TaskCompleted",
    "TaskHeartbeat",
    "TaskRequested",
    "TaskStatus",
    "decode_event",
    "new_event",
    "parse_event",
    "validate_data",
]
