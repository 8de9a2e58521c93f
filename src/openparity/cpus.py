"""How many CPUs an openparity process may use (its affinity: a container's cpuset or `taskset`
counts, not the host's core count), and how many compute threads it runs: $OPENPARITY_THREADS
when set, else one per usable CPU. llama.cpp's threads and the forecast's workers take
`cpu_threads()`, so two processes sharing cores can be told to share them; the sandbox's
parallel runs, which mostly wait on process start-up and pipes, take `usable_cpus()`."""

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
    return usable_cpus()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1
