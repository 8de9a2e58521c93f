"""Memory and process limits for a sandboxed program's whole process tree (cgroups).

rlimits are per process: 64 processes may each use the whole memory limit. A cgroup bounds
the tree: `memory.max` and `pids.max` on cgroup v2, `memory.limit_in_bytes` and `pids.max`
on the v1 hierarchies, under the cgroup this process runs in. Where neither can be created
(no delegation, a read-only /sys/fs/cgroup, a non-root user without a delegated cgroup),
`tree_limits` returns None and `availability()` says why: the per-process rlimits remain.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


@dataclass
class TreeLimits:
    """One run's cgroup(s): the launcher joins them before it starts anything."""

    version: str  # "v1" or "v2"
    dirs: list[Path]
    procs: list[str]  # cgroup.procs files the launcher writes its pid into
    oom_file: Path  # memory.events (v2) or memory.oom_control (v1): both count "oom_kill"
    cpu_file: Path | None = None  # cpu.stat (v2: usage_usec) or cpuacct.usage (v1: ns)
    _oom_before: int = field(default=0, repr=False)

    def cpu_seconds(self) -> float | None:
        """CPU time the whole tree has used so far, or None where it is not counted."""
        if self.cpu_file is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            text = self.cpu_file.read_text()
            if self.version == "v1":
                return int(text) / 1e9
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        return None

    def oom_killed(self) -> bool:
        """True when the kernel killed a process of this tree for exceeding the limit."""
        return self._oom_count() > self._oom_before

    def _oom_count(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            for line in self.oom_file.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Delete the cgroups once their processes are gone (they die with the PID namespace;
        reaping takes a moment)."""
        for directory in self.dirs:
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def _own_paths() -> dict[str, str]:
    """{controller or "": path} of this process's cgroups, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _v2_parent() -> Path | None:
    if not (ROOT / "cgroup.controllers").exists():
        return None
    parent = ROOT / _own_paths().get("", "/").lstrip("/")
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    return parent if {"memory", "pids"} <= set(enabled) else None


def tree_limits(memory_mb: int, processes: int) -> TreeLimits | None:
    """Fresh cgroups limiting memory and processes, or None where none can be made."""
    name = f"openparity-sandbox-{uuid.uuid4().hex[:12]}"
    created: list[Path] = []
    try:
        parent = _v2_parent()
        if parent is not None:
            group = parent / name
            group.mkdir()
            created.append(group)
            (group / "memory.max").write_text(str(memory_mb * 1024 * 1024))
            with contextlib.suppress(FileNotFoundError):
                (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(processes))
            procs = [str(group / "cgroup.procs")]
            limits = TreeLimits("v2", created, procs, group / "memory.events", group / "cpu.stat")
        else:
            own = _own_paths()
            if "memory" not in own or "pids" not in own:
                return None
            memory = ROOT / "memory" / own["memory"].lstrip("/") / name
            pids = ROOT / "pids" / own["pids"].lstrip("/") / name
            for group in (memory, pids):
                group.mkdir()
                created.append(group)
            limit = str(memory_mb * 1024 * 1024)
            (memory / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(FileNotFoundError, PermissionError):
                (memory / "memory.memsw.limit_in_bytes").write_text(limit)
            (pids / "pids.max").write_text(str(processes))
            procs = [str(memory / "cgroup.procs"), str(pids / "cgroup.procs")]
            cpu_file = None
            if "cpuacct" in own:  # CPU time of the whole tree (its own mount or with cpu)
                mount = next(
                    (
                        ROOT / d
                        for d in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")
                        if (ROOT / d / "cpuacct.usage").exists()
                    ),
                    None,
                )
                cpu = None if mount is None else mount / own["cpuacct"].lstrip("/") / name
                try:  # optional: without it CPU time stays bounded per process only
                    if cpu is not None:
                        cpu.mkdir()
                        created.append(cpu)
                        procs.append(str(cpu / "cgroup.procs"))
                        cpu_file = cpu / "cpuacct.usage"
                except OSError:
                    cpu_file = None
            oom_file = memory / "memory.oom_control"
            limits = TreeLimits("v1", created, procs, oom_file, cpu_file)
    except OSError:
        TreeLimits("", created, [], ROOT).remove()
        return None
    limits._oom_before = limits._oom_count()
    return limits


def availability(memory_mb: int = 64, processes: int = 16) -> str:
    """How the sandbox bounds a whole process tree here, in words."""
    probe = tree_limits(memory_mb, processes)
    if probe is None:
        return (
            "no cgroup can be created here (no delegated cgroup v2 with memory and pids, no"
            " writable v1 hierarchy): memory and process limits are per process (rlimits)"
        )
    probe.remove()
    return f"cgroup {probe.version}: memory and process count bounded for the whole process tree"
