"""Kafka: clients built from settings, broker errors translated, the dead-letter writer."""
