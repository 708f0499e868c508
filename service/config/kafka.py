"""The settings of the Kafka clients: the brokers, the groups, the security (TLS, SASL) and the
topics Tributary creates. Part of the one flat :class:`~service.config.settings.Settings`
(``kafka_*`` keys); a security setting that the chosen protocol would not use is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

TLS = ("SSL", "SASL_SSL")
QUEUE_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"  # as a task's queue: key (spec/base.py)
SASL = ("SASL_PLAINTEXT", "SASL_SSL")


def requests_topic(base: str, queue: str | None) -> str:
    """Where the requests of a queue's tasks go: the requests topic, or one of its own."""
    return base if queue is None else f"{base}.{queue}"


class KafkaSettings(BaseModel):
    kafka_bootstrap_servers: str = Field(description="Kafka brokers, host:port[,host:port…].")
    kafka_client_id: str = Field(default="tributary", description="Kafka client id.")
    kafka_consumer_group: str = Field(
        default="tributary", description="Consumer group shared by every replica."
    )
    kafka_enable_idempotence: bool = Field(
        default=True,
        description="Idempotent producer: on for Apache Kafka/Redpanda/MSK, off for Tansu.",
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=1_000, description="Consumer session timeout (ms)."
    )
    kafka_heartbeat_interval_ms: int = Field(
        default=3_000, ge=100, description="Consumer heartbeat interval (ms)."
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=30_000,
        description="Longest a fetch waits for data. Apache Kafka answers as soon as data "
        "arrives; Tansu tends to hold the fetch, so keep it short (20-50) there.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism, when the cluster requires SASL."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, json_schema_extra={"secret": True}, description="SASL password (secret)."
    )
    kafka_max_message_bytes: int = Field(
        default=1_048_576,
        ge=10_000,
        description="Largest record Tributary produces (bytes; the producer's "
        "max_request_size). Refused input larger than this is dead-lettered as a bounded "
        "envelope (reason, origin, size, sha256, the first KiB).",
    )
    kafka_create_topics: bool = Field(
        default=True, description="Create missing topics at start-up."
    )
    kafka_topic_partitions: int = Field(
        default=4, ge=1, description="Partitions of topics Tributary creates."
    )
    kafka_topic_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of topics Tributary creates."
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle (PEM) the brokers' certificates are checked against, with "
        "SSL or SASL_SSL; unset: the system's (enough for MSK, Confluent Cloud).",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None,
        description="This client's certificate (PEM) for mutual TLS, with kafka_ssl_keyfile.",
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="The private key (PEM) of kafka_ssl_certfile."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None,
        json_schema_extra={"secret": True},
        description="The password of kafka_ssl_keyfile, if it has one (secret).",
    )
    kafka_worker_group: str = Field(
        default="tributary-workers",
        description="Consumer group of the remote workers (tributary worker).",
    )
    worker_queue: str | None = Field(
        default=None,
        pattern=QUEUE_PATTERN,
        description="The queue a tributary worker takes tasks from (tasks with that queue: "
        "key), as --queue does; unset: the tasks without a queue. Workers only.",
    )

    @model_validator(mode="after")
    def _security_in_use(self) -> KafkaSettings:
        """A TLS or SASL setting the protocol would not use is a mistake, not a default."""
        protocol = self.kafka_security_protocol
        tls = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
        unused = [n for n in tls if getattr(self, n) is not None and protocol not in TLS]
        sasl = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
        unused += [n for n in sasl if getattr(self, n) is not None and protocol not in SASL]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} set, but kafka_security_protocol is {protocol}, which "
                "does not use them: choose SSL, SASL_PLAINTEXT or SASL_SSL, or unset them"
            )
        if protocol in SASL and self.kafka_sasl_mechanism is None:
            raise ValueError(f"kafka_security_protocol {protocol} needs kafka_sasl_mechanism")
        if (self.kafka_ssl_keyfile is None) != (self.kafka_ssl_certfile is None):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together")
        return self
