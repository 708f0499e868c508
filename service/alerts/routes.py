"""Where alerts go, from the settings: sinks by name (``alert_sinks``, a secret) and routes by
pipeline id or domain (``alert_routes``). Checked before the service touches any server."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from service.alerts.sinks import Sink, make_sink
from service.config import Settings
from service.errors import ConfigError
from service.observability import get_logger

log = get_logger(__name__)

Routes = dict[str, Sequence[Sink]]  # pipeline id, domain or "default" -> sinks


def routes_from(settings: Settings) -> Routes | None:
    """The alert routes; None when no sinks are configured (alerts off)."""
    if settings.alert_sinks is None:
        log.warning("alerts.disabled", reason="no alert_sinks configured")
        return None
    try:
        configured = orjson.loads(settings.alert_sinks.get_secret_value())
        if not isinstance(configured, dict):
            raise ValueError("expected a JSON object of sinks by name")
        sinks = {name: make_sink(name, config) for name, config in configured.items()}
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise ConfigError(f"setting 'alert_sinks' (TRIBUTARY_ALERT_SINKS): {exc}") from None
    named = {name for names in settings.alert_routes.values() for name in names}
    unknown = sorted(named - set(sinks))
    if unknown:
        raise ConfigError(
            f"setting 'alert_routes' names unknown sinks {unknown} (configured: {sorted(sinks)})"
        )
    routes: Routes = {
        key: [sinks[name] for name in names] for key, names in settings.alert_routes.items()
    }
    routes.setdefault("default", list(sinks.values()) if not settings.alert_routes else [])
    return routes
