"""Writing reports and other results to files without ever leaving a partial file."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from openparity.errors import OpenparityError


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, then rename: readers see the old or the new file.
    The file gets the mode a plain write would give it: an existing file's own, else the
    user's umask applied to 0666."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode_for(path))  # mkstemp made it 0600
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OpenparityError(
            f"cannot write {path} ({exc.strerror or exc})",
            hint="check the directory, permissions and free disk space",
        ) from None


def mode_for(path: Path) -> int:
    """The mode a plain write would give `path`: its own if it exists, else 0666 less the
    umask (mkstemp makes 0600 files: give them this before renaming)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where the system says it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask
