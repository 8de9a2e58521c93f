"""How many threads an openparity process takes: its CPU affinity, or OPENPARITY_THREADS."""

import os
import subprocess
import sys

import pytest

from openparity.cpus import THREADS_ENV, cpu_threads
from openparity.errors import OpenparityError


def test_the_environment_sets_the_thread_count(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert cpu_threads() == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_says_what_to_set(monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(OpenparityError, match="whole number of threads"):
        cpu_threads()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_without_the_variable_a_process_counts_the_cpus_it_may_run_on():
    """A process pinned to one CPU (taskset, a container's cpuset) uses one thread, however
    many cores the host has."""
    env = {k: v for k, v in os.environ.items() if k != THREADS_ENV}
    pinned = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
            "from openparity.cpus import cpu_threads; print(cpu_threads())",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert pinned.stdout.strip() == "1"
