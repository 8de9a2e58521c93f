"""The one error type of `openparity align`."""

from __future__ import annotations

from openparity.errors import OpenparityError


class AlignError(OpenparityError):
    """Training cannot start or go on (bad data, a wrong base model, a mismatched resume)."""
