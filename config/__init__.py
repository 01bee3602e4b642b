"""Settings for folio-stream: see :mod:`config.settings`."""

from config.settings import SETTINGS_HELP, Settings, SettingsError, load_settings

__all__ = ["SETTINGS_HELP", "Settings", "SettingsError", "load_settings"]
