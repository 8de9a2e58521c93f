"""Writing reports and other results to files without ever leaving a partial file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from openparity.errors import OpenparityError


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, then rename: readers see the old or the new file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OpenparityError(
            f"cannot write {path} ({exc.strerror or exc})",
            hint="check the directory, permissions and free disk space",
        ) from None
