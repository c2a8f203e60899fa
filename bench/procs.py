"""Process trees, CPU time and memory from /proc (Linux), and quiet waiting between runs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    cpu_s: float  # utime + stime


def _read_stat(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm is in parentheses and may hold spaces; fields after it are space separated.
    close = raw.rfind(b")")
    comm = raw[raw.find(b"(") + 1 : close].decode(errors="replace")
    fields = raw[close + 2 :].split()
    # fields[0] is state (field 3); utime/stime are fields 14/15, ppid is field 4.
    return ProcInfo(pid, int(fields[1]), comm, (int(fields[11]) + int(fields[12])) * TICK_S)


def all_procs() -> dict[int, ProcInfo]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _read_stat(int(entry))
            if info is not None:
                procs[info.pid] = info
    return procs


def tree(roots: Iterable[int], procs: dict[int, ProcInfo] | None = None) -> dict[int, ProcInfo]:
    """The roots and all their descendants that are alive."""
    procs = all_procs() if procs is None else procs
    children: dict[int, list[int]] = {}
    for info in procs.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found: dict[int, ProcInfo] = {}
    stack = [pid for pid in roots if pid in procs]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found[pid] = procs[pid]
        stack.extend(children.get(pid, ()))
    return found


def role(info: ProcInfo) -> str:
    """'envoy' or 'app' (the Python side: ext_proc, LiteLLM, backend)."""
    return "envoy" if info.comm.startswith("envoy") else "app"


def cpu_by_role(snapshot: dict[int, ProcInfo]) -> dict[str, float]:
    out = {"envoy": 0.0, "app": 0.0}
    for info in snapshot.values():
        out[role(info)] += info.cpu_s
    return out


def cpu_delta(before: dict[int, ProcInfo], after: dict[int, ProcInfo]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, by role (new processes count from zero)."""
    out = {"envoy": 0.0, "app": 0.0}
    for pid, info in after.items():
        start = before[pid].cpu_s if pid in before and before[pid].comm == info.comm else 0.0
        out[role(info)] += max(0.0, info.cpu_s - start)
    return out


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_by_role(snapshot: dict[int, ProcInfo]) -> dict[str, float]:
    out = {"envoy": 0.0, "app": 0.0}
    for pid, info in snapshot.items():
        out[role(info)] += rss_mb(pid)
    return out


def wait_quiet(roots: Iterable[int], max_wait_s: float = 5.0, window_s: float = 0.15,
               idle_share: float = 0.07) -> float:
    """Wait until the given trees use under `idle_share` of one core; returns seconds waited.

    Runs are interleaved, so a target still finishing requests cut off at the end of its run
    (LiteLLM keeps working on them) must not steal CPU from the next target's run."""
    roots = list(roots)
    start = time.monotonic()
    last = sum(p.cpu_s for p in tree(roots).values())
    while time.monotonic() - start < max_wait_s:
        time.sleep(window_s)
        now = sum(p.cpu_s for p in tree(roots).values())
        if now - last <= window_s * idle_share:
            break
        last = now
    return time.monotonic() - start
