"""Tributary: an event-driven ETL run orchestrator."""

__version__ = "0.1.0"
