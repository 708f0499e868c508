"""HTTP: health, readiness, metrics and the REST views (served by the service itself)."""
