"""Loading a user's own Python function from a file named in a config (a task scorer, a gateway
check). This is the user's trusted code, not a model's: it runs in-process."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openparity.errors import OpenparityError


def load_function(
    file: Path, function: str, error: type[OpenparityError], *, what: str
) -> Callable[..., Any]:
    """`function` from the Python file `file`; `what` names it in errors ("scorer")."""
    spec = importlib.util.spec_from_file_location(f"openparity_user_{file.stem}", file)
    if spec is None or not file.is_file():
        raise error(f"{what} file not found: {file}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:
        raise error(f"cannot load {what} {file} ({type(exc).__name__}: {exc})") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise error(f"{file} has no function {function!r}")
    return found
