"""Reading a YAML file into a pydantic model, with one clear error line for every mistake:
a missing file, broken YAML (with its line), or the first invalid key path."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from openparity.errors import OpenparityError

M = TypeVar("M", bound=BaseModel)


def read_validated(
    path: Path,
    model: type[M],
    error: type[OpenparityError],
    *,
    what: str,
    hint: str,
    missing_hint: str | None = None,
) -> M:
    """The file's contents as `model`; `what` names the file in errors ("models file")."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}", hint=missing_hint or "check the path") from None
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}:{_where(exc)} is not valid YAML ({_said(exc)})") from None
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise error(f"{path}: {where}: {first['msg']}", hint=hint) from None


def _where(exc: yaml.YAMLError) -> str:
    """The line to look at: where the broken construct began (a quote or bracket never
    closed), not where the parser gave up on it, which can be lines later."""
    began = getattr(exc, "context_mark", None)
    noticed = getattr(exc, "problem_mark", None)
    if began is not None and noticed is not None and began.line != noticed.line:
        return f" line {began.line + 1}"
    return f" line {noticed.line + 1}" if noticed is not None else ""


def _said(exc: yaml.YAMLError) -> str:
    context, problem = getattr(exc, "context", None), getattr(exc, "problem", None)
    noticed = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    at = f" at line {noticed.line + 1}" if noticed is not None else ""
    return f"{context}, {problem}{at}" if context else f"{problem}{at}"
