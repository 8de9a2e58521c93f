"""Errors of the harness; each message names what to fix."""

from openparity.errors import OpenparityError


class TaskError(OpenparityError):
    """A task is unknown, its data is missing or malformed."""


class RunStoreError(OpenparityError):
    """The run store cannot be opened, or a run is missing or conflicts."""


class SandboxUnavailableError(OpenparityError):
    """The kernel refuses the isolation the sandbox needs; nothing was run."""


class ScoresError(OpenparityError):
    """Scores handed to the statistics are not numbers in [0, 1] (or there are none)."""
