"""Errors a user can cause. The CLI turns them into one message and exit code 2."""

from pathlib import Path


class RarelearnError(Exception):
    """A problem with the user's input or environment (bad setting, missing program, ...)."""


class ConfigError(RarelearnError):
    """A configuration value is invalid; the message names the setting."""


class LabelingError(RarelearnError):
    """A reference method cannot be set up (missing program, parameters, unknown method)."""


class ModelError(RarelearnError):
    """A model cannot be used: unknown element in a frame, missing or corrupted model folder."""


class DamagedFileError(RarelearnError):
    """A file of a run folder cannot be read (truncated, garbled): the message names it, why,
    and what the user can do (``advice``), so a damaged folder never ends in a traceback."""

    def __init__(self, path: Path, reason: str, advice: str) -> None:
        self.path = path
        self.reason = reason
        self.advice = advice
        super().__init__(f"{path} is damaged or unreadable ({reason}). {advice}")

    def __reduce__(self) -> tuple:
        """Picklable (a worker process may raise it)."""
        return (type(self), (self.path, self.reason, self.advice))
