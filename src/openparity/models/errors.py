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


class LlamaBuildCrashError(OpenparityError):
    """The installed llama.cpp build crashes on this CPU (found by a subprocess probe)."""


class BackendUnavailableError(OpenparityError):
    """The server behind a model cannot be reached."""


class ModelCallError(OpenparityError):
    """A request reached the backend but did not produce a completion (after retries).

    `reason` is a short code a router can count and act on: http_429, http_5xx, http_4xx,
    timeout, malformed, stream_cut, empty, upstream_error, context. `status` and
    `retry_after_s` carry what the server said, `upstream_error` its OpenAI-style error object.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        reason: str = "upstream_error",
        status: int | None = None,
        retry_after_s: float | None = None,
        upstream_error: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s
        self.upstream_error = upstream_error  # the server's own {"message", "type", ...}


class UnsupportedCapabilityError(OpenparityError):
    """The backend cannot do what was asked (e.g. prompt log-likelihoods on a chat-only API)."""
