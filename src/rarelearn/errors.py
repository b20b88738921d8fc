"""Errors a user can cause. The CLI turns them into one message and exit code 2."""


class RarelearnError(Exception):
    """A problem with the user's input or environment (bad setting, missing program, ...)."""


class ConfigError(RarelearnError):
    """A configuration value is invalid; the message names the setting."""


class LabelingError(RarelearnError):
    """A reference method cannot be set up (missing program, parameters, unknown method)."""


class ModelError(RarelearnError):
    """A model cannot be used: unknown element in a frame, missing or corrupted model folder."""
