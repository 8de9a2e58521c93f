"""The one error type of `openparity federated`."""

from __future__ import annotations

from openparity.errors import OpenparityError


class FederatedError(OpenparityError):
    """The alliance cannot start or go on (bad member data, a wrong setting, a dead SuperLink)."""
