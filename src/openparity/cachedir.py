"""Where openparity keeps what it can rebuild: $OPENPARITY_CACHE_DIR, else the user's cache
folder ($XDG_CACHE_HOME or ~/.cache) / openparity."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    root = os.environ.get("OPENPARITY_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "openparity")
