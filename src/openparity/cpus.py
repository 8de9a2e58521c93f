"""How many CPU threads one openparity process uses: $OPENPARITY_THREADS when set, else the
CPUs this process may run on (its affinity: a container's cpuset or `taskset` counts, not the
host's core count). llama.cpp's threads, the sandbox's parallel runs and the forecast's
workers all take it from here, so two processes sharing cores can be told to share them."""

from __future__ import annotations

import os

from openparity.errors import OpenparityError

THREADS_ENV = "OPENPARITY_THREADS"


def cpu_threads() -> int:
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise OpenparityError(
                f"{THREADS_ENV}={value!r} is not a whole number of threads",
                hint=f"set {THREADS_ENV} to 1 or more, or unset it to use every CPU",
            )
        return int(value)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1
