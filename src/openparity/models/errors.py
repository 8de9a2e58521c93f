"""Errors of the model layer; each message names what to fix."""

from openparity.errors import OpenparityError


class ModelConfigError(OpenparityError):
    """A model spec or models.yaml entry is malformed."""


class UnknownModelError(OpenparityError):
    """No backend, alias, file or models.yaml entry matches the requested model."""


class MissingAPIKeyError(OpenparityError):
    """The model needs an API key and none is set."""


class MissingDependencyError(OpenparityError):
    """An optional extra (llama-cpp-python, the embedded weights, ...) is not installed."""


class BackendUnavailableError(OpenparityError):
    """The server behind a model cannot be reached."""


class ModelCallError(OpenparityError):
    """A request reached the backend but did not produce a completion (after retries)."""


class UnsupportedCapabilityError(OpenparityError):
    """The backend cannot do what was asked (e.g. prompt log-likelihoods on a chat-only API)."""
