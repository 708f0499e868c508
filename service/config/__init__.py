"""Settings: the model (``settings.py``), and how they are read from a per-environment TOML file
with ``TRIBUTARY_*`` environment variables on top (``loading.py``)."""

from service.config.loading import env_var, load_settings, settings_reference
from service.config.settings import SECRET_SETTINGS, Settings

__all__ = ["SECRET_SETTINGS", "Settings", "env_var", "load_settings", "settings_reference"]
